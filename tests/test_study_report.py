"""The tuning study report: contents and their order, the leaderboard, figures, graceful small
studies, escaping, the storage URL without its password, atomic writes, and a 100-trial study
rendered fast and small. (The report in a real browser: ``test_report_browser.py``.)"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from PIL import Image

from diagnostics.findings import Diagnosis, Finding
from diagnostics.runlog import RunLog
from reports import render_diagnosis_html, render_study_html, render_study_markdown, study_record
from reports._study_facts import param_text
from reports._study_view import leaderboard_order
from search_spaces import load_space
from tuner._report import redact_url, write_study_report

optuna.logging.set_verbosity(optuna.logging.WARNING)

PNG_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
MD_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
EVIL = "<script>alert(1)</script>"
VERSIONS = {
    "torch": "2.13.0",
    "transformers": "5.0.0",
    "peft": "0.18.0",
    "trl": "0.26.0",
    "bitsandbytes": "0.49.0",
    "optuna": "5.0.0",
}


# --- a synthetic study with the attributes `tune study` records ------------------------------------


def fake_curve(number: int, lr: float, steps: int, final: float, *, diverge_at: int | None = None) -> RunLog:
    """A plausible short fine-tuning curve: loss falling towards ``final``, eval every 4 steps; a
    diverging one blows up from ``diverge_at`` and ends in NaN."""
    rng = np.random.default_rng(number)
    run = RunLog(source=f"trial-{number}", format="tune")
    run.config.method = "qlora"
    run.config.training_args = {"learning_rate": lr, "max_steps": 32, "max_grad_norm": 1.0}
    for step in range(1, steps + 1):
        level = final + (2.9 - final) * math.exp(-5 * step / 32)
        loss, grad = level + 0.04 * rng.standard_normal(), 0.5 + 0.3 * rng.random()
        broken = diverge_at is not None and step >= diverge_at
        if broken:
            growth = step - diverge_at + 1  # type: ignore[operator]
            loss, grad = loss * 1.6**growth, grad * 4**growth
            loss = float("nan") if growth > 4 else loss
        run.add(step, loss=loss, grad_norm=grad, learning_rate=lr * min(1.0, step / 3))
        if step % 4 == 0 and not broken:
            run.add(step, eval_loss=level + 0.1)
    return run


def record_study_attrs(study: optuna.Study, n_trials: int, **overrides) -> None:
    space = load_space("qlora")
    attrs = {
        "method": "qlora",
        "model": {
            "name": "SmolLM2-135M-Instruct",
            "spec": "SmolLM2-135M-Instruct",
            "device": "cpu",
            "dtype": "bfloat16",
            "n_params": 134_515_008,
            "quantization": "nf4-emulated-cpu",
        },
        "dataset": {"name": "stdlib-docs", "spec": "stdlib-docs", "n_train": 900, "n_eval": 100},
        "search_space": space.to_dict(),
        "sampler": "TPESampler(multivariate=True, constant_liar=True, n_startup_trials=10)",
        "pruner": "hyperband",
        "budget": {
            "n_trials": n_trials,
            "max_steps": 32,
            "eval_every": 4,
            "eval_examples": 32,
            "max_length": 128,
        },
        "hardware": {"host": "box", "cpu_count": 2, "memory_gb": 15.6, "cuda": False},
        "versions": VERSIONS,
        "qlora_cpu_emulation": True,
        "baseline": {
            "config": space.defaults().to_dict(),
            "eval_loss": 2.06,
            "outcome": "complete",
            "curve": json.dumps(fake_curve(10_000, 2e-4, 32, 1.95).to_dict()),
        },
    }
    for key, value in {**attrs, **overrides}.items():
        study.set_user_attr(key, value)


def synthetic_study(
    n_trials: int = 100,
    *,
    name: str = "qlora-smollm2-stdlib",
    kinds: tuple[str, ...] | None = None,
    seed: int = 0,
    storage: str | None = None,
    edit: Callable[[dict, str], None] | None = None,
) -> optuna.Study:
    """An Optuna study with the real QLoRA search space, a formula as objective and curves,
    outcomes and reasons as ``tune study`` records them (``kinds`` fixes the outcome per trial;
    ``edit(attrs, kind)`` may change a trial's attributes before they are stored)."""
    space = load_space("qlora")
    study = optuna.create_study(
        study_name=name, storage=storage, direction="minimize", sampler=optuna.samplers.RandomSampler(seed)
    )
    record_study_attrs(study, n_trials)
    rng = np.random.default_rng(seed)
    outcomes = ["complete", "pruned", "diverged", "infeasible", "failed"]
    for number in range(n_trials):
        trial = study.ask(space.distributions())
        lr = trial.params["learning_rate"]
        final = (
            1.7
            + 0.35 * (math.log10(lr) + 3.6) ** 2
            + 0.3 * trial.params["lora_dropout"]
            + 0.05 * rng.random()
        )
        kind = kinds[number] if kinds else str(rng.choice(outcomes, p=[0.5, 0.36, 0.06, 0.05, 0.03]))
        attrs: dict = {"outcome": kind, "seconds": {"train": 30.0, "eval": 5.0}, "worker": "box:1"}
        run: RunLog | None = None
        if kind == "complete":
            run = fake_curve(number, lr, 32, final)
            attrs["reason"] = "completed 32 steps"
        elif kind == "pruned":
            stop = int(rng.choice([4, 12]))
            run = fake_curve(number, lr, stop, final + 0.2)
            last = float(run.series("eval_loss").values[-1])
            attrs["reason"] = f"pruned at step {stop}: by the hyperband pruner (eval loss {last:.4g})"
            for step, value in zip(
                run.series("eval_loss").steps, run.series("eval_loss").values, strict=True
            ):
                trial.report(float(value), int(step))
        elif kind == "diverged":
            run = fake_curve(number, lr, 10, final, diverge_at=6)
            attrs.update(reason="diverged at step 10: DIV001: loss is nan at step 10", finding_code="DIV001")
        elif kind == "infeasible":
            attrs["reason"] = (
                "out of memory at micro batch 1: CUDA out of memory. Tried to allocate 20.00 GiB"
            )
        else:
            attrs["reason"] = "RuntimeError: expected scalar type BFloat16 but found Float"
        if run is not None:
            evals = run.series("eval_loss")
            best = int(np.argmin(evals.values))
            attrs.update(
                steps_run=run.last_step,
                best_eval_loss=float(evals.values[best]),
                best_step=int(evals.steps[best]),
                curve=json.dumps(run.to_dict()),
            )
        else:
            attrs.update(steps_run=0, best_eval_loss=None, best_step=None)
        if edit is not None:
            edit(attrs, kind)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if kind == "complete":
            study.tell(trial, attrs["best_eval_loss"])
        else:
            study.tell(trial, state=TrialState.FAIL if kind == "failed" else TrialState.PRUNED)
    return study


def decode_pngs(html: str) -> list[Image.Image]:
    images = []
    for payload in PNG_URI.findall(html):
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        image.load()
        assert image.width > 100 and image.height > 50
        images.append(image)
    return images


def outside_code_blocks(markdown: str) -> str:
    return re.sub(r"(?ms)^(`{3,}).*?^\1$", "", markdown)


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    return synthetic_study(40)


@pytest.fixture(scope="module")
def report(study, tmp_path_factory) -> tuple[Path, str, str]:
    folder = tmp_path_factory.mktemp("report")
    write_study_report(study, folder, storage_url="postgresql://tuner:hunter2@db.internal:5432/optuna")
    html = (folder / "report.html").read_text(encoding="utf-8")
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    return folder, html, markdown


# --- contents ----------------------------------------------------------------------------------------


def test_sections_come_answer_first(report) -> None:
    _, html, markdown = report
    for text in (html, markdown):
        anchors = [
            text.index(f'id="{name}"') for name in ("answer", "study", "leaderboard", "plots", "diagnosis")
        ]
        assert anchors == sorted(anchors)


def test_the_answer_is_the_best_loss_the_snippet_and_the_command(study, report) -> None:
    folder, html, markdown = report
    best = study.best_trial
    assert f"{best.value:.4f}" in html[: html.index('id="study"')]
    snippet = re.search(r'<pre class="code" id="best-config"><code>(.*?)</code>', html, re.S)
    assert snippet, "the best configuration block"
    for call in ("TrainingArguments(", "LoraConfig(", "BitsAndBytesConfig("):
        assert call in snippet.group(1)
    learning_rate = float(f"{best.params['learning_rate']:.6g}")
    assert f"learning_rate={learning_rate!r}" in snippet.group(1)
    for text in (html, markdown):
        assert "tune train --config best_config.yaml" in text
    assert (folder / "best_config.yaml").is_file() and (folder / "best_config.py").is_file()
    assert "```python\n" in markdown and "TrainingArguments(" in markdown
    # compared with the common defaults the study measured (eval loss 2.06)
    assert "% lower than the method" in html and "common defaults in the same 32 steps (2.0600 →" in html


def test_the_study_says_how_it_was_run(report) -> None:
    _, html, markdown = report
    for text in (html, markdown):
        for package, version in VERSIONS.items():
            assert f"{package} {version}" in text
        for fact in (
            "SmolLM2-135M-Instruct",
            "stdlib-docs",
            "TPESampler",
            "Hyperband",
            "2 CPU cores",
            "32 steps each",
        ):
            assert fact in text, fact
        assert "QLoRA ran with CPU NF4 emulation" in text
        assert "Total time" in text
    assert "[5e-5, 5e-4] log" in html  # the search space, as searched


def test_no_emulation_line_when_qlora_ran_on_cuda() -> None:
    study = synthetic_study(3, kinds=("complete",) * 3)
    study.set_user_attr("qlora_cpu_emulation", False)
    assert "CPU NF4 emulation" not in render_study_html(study)


def test_leaderboard_is_sorted_and_says_why_each_trial_stopped(study, report) -> None:
    _, html, markdown = report
    record = study_record(study, importances=False)
    ordered = leaderboard_order(record.trials)
    complete = [t.value for t in ordered if t.outcome == "complete"]
    assert complete == sorted(complete) and ordered[0].number == study.best_trial.number
    rows = re.findall(r'<tr class="([^"]*)" id="row-(\d+)">', html)
    assert [int(number) for _, number in rows] == [t.number for t in ordered]
    for (css, _), trial in zip(rows, ordered, strict=True):
        assert ("compact" in css) == (trial.outcome != "complete")
    reasons = {t.outcome: t.reason for t in record.trials}
    assert reasons["pruned"].startswith("pruned by Hyperband at step ")
    for outcome, label in (("pruned", "pruned"), ("diverged", "diverged"), ("infeasible", "out of memory")):
        assert outcome in reasons
        tail = reasons[outcome].removeprefix(label).lstrip(" :")  # the badge says the first words
        assert f'{label}</span> <span class="reason">{tail}</span>' in html
        phrase = reasons[outcome] if reasons[outcome].startswith(label) else f"{label}: {reasons[outcome]}"
        assert f"| {phrase} |" in markdown


def test_every_plot_is_there(report) -> None:
    _, html, _ = report
    for key in ("history", "curves", "importance", "slices", "parallel"):
        section = html[html.index(f'id="plot-{key}"') :]
        assert section.index("<img") < section.index("</div>"), key
    # five study figures, the best trial's figure and up to three failed trials' figures
    assert 6 <= len(decode_pngs(html)) <= 9


def test_diagnoses_of_the_best_and_the_failed_trials(study, report) -> None:
    _, html, _ = report
    diagnosis = html[html.index('id="diagnosis"') :]
    assert f"Trial {study.best_trial.number} — the best" in diagnosis
    record = study_record(study, importances=False)
    diverged = min(t.number for t in record.trials if t.outcome == "diverged")
    assert f'id="trial-{diverged}"' in diagnosis
    assert "DIV001" in diagnosis  # the rule's own finding on the diverged curve, with its fixes
    assert "learning_rate" in diagnosis[diagnosis.index(f'id="trial-{diverged}"') :]


def test_few_complete_trials_get_a_note_instead_of_importances() -> None:
    study = synthetic_study(4, kinds=("complete", "pruned", "complete", "infeasible"))
    html = render_study_html(study)
    assert "Parameter importances need at least 6 complete trials; this study has 2." in html
    assert len(decode_pngs(html)) >= 4  # history, curves, slices, parallel (and the best trial)


def test_a_study_without_any_complete_trial_still_reports() -> None:
    study = synthetic_study(3, kinds=("failed", "infeasible", "pruned"))
    html = render_study_html(study)
    assert "No trial has completed yet" in html
    assert "Parallel coordinates" in html and "Needs at least two complete trials" in html
    empty = optuna.create_study(study_name="empty")
    assert "No trials yet." in render_study_html(empty)


def test_a_bare_optuna_study_renders_and_export_failure_is_a_note(tmp_path) -> None:
    """An old or foreign study has no user attrs at all: everything that is known is shown."""
    study = optuna.create_study(study_name="bare")
    study.optimize(lambda t: (t.suggest_float("x", 0.1, 10, log=True) - 2) ** 2, n_trials=8)
    paths = write_study_report(study, tmp_path)
    html = paths[0].read_text()
    assert "The best configuration could not be exported" in html
    assert len(decode_pngs(html)) >= 3  # history, slices, parallel coordinates (no curves, one param)


def test_running_trials_are_shown_as_running() -> None:
    study = synthetic_study(3, kinds=("complete",) * 3)
    study.ask()  # a trial another worker is running right now
    html = render_study_html(study)
    assert "1 running" in html and "outcome-running" in html


PRUNED_WORDINGS = [  # (as the tuner stored it, as the report says it)
    (
        "pruned at step 4: by the hyperband pruner (eval loss 2.31)",
        "pruned by Hyperband at step 4 (eval loss 2.31)",
    ),
    ("pruned at step 12: pruned by hyperband at step 12", "pruned by Hyperband at step 12"),
    (
        "pruned at step 8: by the median pruner (eval loss 1.9)",
        "pruned by the median pruner at step 8 (eval loss 1.9)",
    ),
]


@pytest.mark.parametrize(("stored", "shown"), PRUNED_WORDINGS)
def test_a_pruned_trial_says_by_which_pruner_at_which_step(stored: str, shown: str) -> None:
    def reason(attrs: dict, kind: str) -> None:
        attrs["reason"] = stored

    study = synthetic_study(2, kinds=("complete", "pruned"), edit=reason)
    (pruned,) = [t for t in study_record(study, importances=False).trials if t.outcome == "pruned"]
    assert pruned.reason == shown


def test_param_values_read_like_arguments() -> None:
    assert [param_text(v) for v in (2e-4, 0.05, 1.0, 0.0, 16, "cosine", 0.000471809)] == [
        "2e-4",
        "0.05",
        "1.0",
        "0.0",
        "16",
        "cosine",
        "4.7e-4",
    ]


# --- Markdown ----------------------------------------------------------------------------------------


def test_markdown_images_resolve_relatively_wherever_the_folder_goes(report, tmp_path) -> None:
    folder, _, markdown = report
    moved = tmp_path / "checkout" / "tune_runs" / "study"
    shutil.copytree(folder, moved)  # a fresh checkout: the folder elsewhere
    links = MD_IMAGE.findall(markdown)
    assert len(links) >= 6
    for link in links:
        assert not link.startswith(("/", "http:", "https:", "file:", "data:")), link
        image = Image.open(moved / link)
        image.load()
        assert image.width > 100


def test_rewriting_the_report_keeps_one_consistent_folder(tmp_path) -> None:
    study = synthetic_study(30)
    write_study_report(study, tmp_path)
    stale = tmp_path / "report_files" / "trial-999.png"
    stale.write_bytes(b"old")
    write_study_report(study, tmp_path, formats=("md",))
    assert not stale.exists(), "images of an earlier report that the new one does not link are removed"
    linked = set(MD_IMAGE.findall((tmp_path / "report.md").read_text()))
    assert {f"report_files/{p.name}" for p in (tmp_path / "report_files").iterdir()} == linked
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no scratch files left"


def test_report_files_are_readable_by_others_as_the_umask_allows(tmp_path) -> None:
    previous = os.umask(0o022)
    try:
        paths = write_study_report(synthetic_study(5), tmp_path)
    finally:
        os.umask(previous)
    for path in paths:
        assert path.stat().st_mode & 0o777 == 0o644, path


# --- writes are atomic -------------------------------------------------------------------------------


def test_an_interrupted_write_leaves_the_previous_report(tmp_path, monkeypatch) -> None:
    study = synthetic_study(12)
    write_study_report(study, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import tuner._report

    monkeypatch.setattr(tuner._report, "render_study_markdown", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_study_report(study, tmp_path, formats=("md",))
    monkeypatch.setattr(tuner._report, "render_study_html", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_study_report(study, tmp_path, formats=("html",))
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_format_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        write_study_report(synthetic_study(2), tmp_path, formats=("pdf",))


# --- escaping and secrets ----------------------------------------------------------------------------


def test_everything_from_the_study_is_escaped(tmp_path) -> None:
    def evil(attrs: dict, kind: str) -> None:
        if kind != "complete":
            attrs["reason"] = f"stopped {EVIL} | a\nb"
        elif "curve" in attrs:
            curve = json.loads(attrs["curve"])
            curve["source"] = f"runs/{EVIL}"
            curve["config"]["training_args"]["<k>"] = "<v>"
            attrs["curve"] = json.dumps(curve)

    kinds = ("complete", "pruned", "complete", "diverged", "failed", "complete")
    study = synthetic_study(6, name=f"study {EVIL}", kinds=kinds, edit=evil)
    study.set_user_attr("model", {"name": f"model {EVIL}", "spec": "<img src=x onerror=alert(2)>"})
    study.set_user_attr("dataset", {"name": "d", "spec": "data/<b>train</b>.jsonl", "note": "</td><td>x"})
    study.set_user_attr("sampler", "<i>sampler</i>")
    study.set_user_attr("versions", {"torch": "<u>2</u>"})
    write_study_report(study, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for raw in ("<img src=x", "<b>train", "</td><td>x", "<i>sampler", "<u>2", "<k>", "<v>"):
        assert raw not in html, raw
    assert "<title>Tuning report: study &lt;script&gt;" in html
    markdown = (tmp_path / "report.md").read_text()
    prose = outside_code_blocks(markdown)
    for raw in ("<script", "<img", "<b>", "</td>", "<i>", "<u>"):
        assert raw not in prose, raw
    # a table row stays one row: pipes and newlines from a reason cannot break it
    rows = [line for line in prose.splitlines() if line.startswith("|") and "stopped &lt;script>" in line]
    assert rows and all(row.count(" | ") >= 10 and row.endswith("|") for row in rows)


def test_the_storage_url_is_shown_without_its_password(report) -> None:
    folder, html, markdown = report
    for text in (html, markdown.replace("\\", "")):  # Markdown escapes the asterisks
        assert "postgresql://tuner:***@db.internal:5432/optuna" in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        (
            "postgresql+psycopg2://u:p%40ss@h:5432/db?sslmode=require",
            "postgresql+psycopg2://u:***@h:5432/db?sslmode=require",
        ),
        ("mysql://root:pa:ss@w@db/x", "mysql://root:***@db/x"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host/db?user=u&password=secret&x=1", "postgresql://host/db?user=u&password=***&x=1"),
        ("sqlite:////work/tune_runs/a/study.db", "sqlite:////work/tune_runs/a/study.db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- the diagnose report's summary (a shared building block) ----------------------------------------


def test_diagnose_summary_counts_warnings_and_errors_not_notes() -> None:
    run = RunLog(source="runs/a")
    for step in range(1, 30):
        run.add(step, loss=2.0 / step**0.3)
    note = Finding("GRD002", "clipping-most-steps", "lr_schedule", "info", 0.7, "a note")
    warning = Finding("STL001", "no-progress", "stalled", "warning", 0.9, "a warning")
    html = render_diagnosis_html([Diagnosis(run, [note]), Diagnosis(run, [note, warning])])
    counts = re.findall(r'<td class="num">(\d+)</td>\s*</tr>', html)
    assert counts == ["0", "1"]
    assert "Problems</th>" in html


# --- a hundred trials --------------------------------------------------------------------------------


def test_a_hundred_trial_report_renders_in_under_10_s_and_5_mb(tmp_path) -> None:
    write_study_report(synthetic_study(5), tmp_path / "warm")  # imports and font caches, not rendering
    study = synthetic_study(100)
    start, cpu_start = time.perf_counter(), time.process_time()
    written = write_study_report(study, tmp_path / "big")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    html = written[0]
    size = html.stat().st_size
    print(
        f"100-trial report (HTML + Markdown): {seconds:.2f} s wall, {cpu:.2f} s CPU, HTML {size / 1e6:.2f} MB"
    )
    # CPU time is what the report costs; wall time on a shared 2-core CI machine also counts its
    # neighbours, so it only has to stay in the same range
    assert cpu < 10
    assert seconds < 20
    assert size < 5_000_000
    text = html.read_text()
    assert len(re.findall(r'<tr class="[^"]*" id="row-\d+">', text)) == 100
    assert len(decode_pngs(text)) >= 8  # five study figures, the best and failed trials
    folder = sum(p.stat().st_size for p in (tmp_path / "big").rglob("*.png"))
    assert folder < 5_000_000


def test_markdown_and_html_need_the_figures_drawn_once(monkeypatch, tmp_path) -> None:
    import reports._study_view as view_module

    calls = []
    original = view_module.history_figure
    monkeypatch.setattr(view_module, "history_figure", lambda *a, **k: calls.append(1) or original(*a, **k))
    write_study_report(synthetic_study(6), tmp_path)
    assert len(calls) == 1
    render_study_markdown(synthetic_study(6), tmp_path / "md")
    assert (tmp_path / "md" / "report.md").is_file()
