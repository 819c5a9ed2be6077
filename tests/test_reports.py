"""Reports: the run figure, the self-contained HTML and the Markdown folder of a diagnosis."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diagnostics.findings import Abstention, Diagnosis, Finding, Fix
from diagnostics.runlog import RunLog
from reports import (
    RunError,
    figure_to_png_bytes,
    plot_run,
    render_diagnosis_html,
    render_diagnosis_markdown,
    run_figure,
    to_data_uri,
)
from reports._figures import minmax_downsample
from reports._render import markdown_text
from tests._paths import REAL_LOGS

PNG_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
EVIL = "<script>alert(1)</script>"


def make_run(
    name: str = "runs/lora-a/trainer_state.json",
    steps: int = 200,
    *,
    eval_every: int | None = 20,
    grad: bool = True,
    lr: bool = True,
    steps_per_epoch: int | None = 50,
) -> RunLog:
    run = RunLog(source=name, format="trainer_state")
    run.config.training_args.update(max_grad_norm=1.0, learning_rate=2e-4, max_steps=steps)
    rng = np.random.default_rng(0)
    for step in range(1, steps + 1):
        metrics: dict[str, float] = {"loss": 2.5 * step**-0.3 + 0.05 * rng.standard_normal()}
        if grad:
            metrics["grad_norm"] = 0.8 + 0.2 * rng.random()
        if lr:
            metrics["learning_rate"] = 2e-4 * min(1.0, step / 20) * (1 - step / (steps + 1))
        epoch = step / steps_per_epoch if steps_per_epoch else None
        run.add(step, epoch=epoch, **metrics)
        if eval_every and step % eval_every == 0:
            run.add(step, epoch=epoch, eval_loss=2.0 * step**-0.2 + 0.002 * step)
    return run


def make_diagnosis(run: RunLog, *, message: str = "eval loss rises after its minimum") -> Diagnosis:
    overfitting = Finding(
        code="OVF001",
        name="eval-loss-rises",
        condition="overfitting",
        severity="warning",
        confidence=0.8,
        message=message,
        evidence={
            "best_step": 100,
            "best_eval_loss": 0.8123456,
            "rise": np.float64(0.042),
            "window": (100, 200),
        },
        fixes=[
            Fix("learning_rate", 2e-4, 1e-4, "a smaller step overshoots less", "LoRA Without Regret"),
            Fix("lora_dropout", None, 0.1, "regularise the adapter"),
        ],
        region=(100.0, 200.0),
        metric="eval_loss",
    )
    spike = Finding(
        code="GRD001",
        name="gradient-spikes",
        condition="oscillating",
        severity="error",
        confidence=0.55,
        message="grad norm spikes above max_grad_norm",
        region=(150.0, 150.0),
        metric="grad_norm",
    )
    return Diagnosis(run, [overfitting, spike], [Abstention("STL001", "fewer than 10 eval points")])


def decode_pngs(html: str) -> list[Image.Image]:
    images = []
    for payload in PNG_URI.findall(html):
        png = base64.b64decode(payload, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(png))
        image.load()
        images.append(image)
    return images


def panel_labels(figure) -> list[str]:
    return [axes.get_ylabel() for axes in figure.axes]


# --- figure -----------------------------------------------------------------------------------------


def test_plot_run_returns_a_png_of_the_expected_size() -> None:
    png = plot_run(make_diagnosis(make_run()))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.width == 900
    assert 400 <= image.height <= 600
    assert len(png) < 150_000


def test_panels_without_data_are_left_out() -> None:
    assert panel_labels(run_figure(make_run())) == ["loss", "grad norm", "learning rate"]
    assert panel_labels(run_figure(make_run(grad=False))) == ["loss", "learning rate"]
    only_loss = make_run(grad=False, lr=False, eval_every=None)
    assert panel_labels(run_figure(only_loss)) == ["loss"]
    short = Image.open(io.BytesIO(plot_run(only_loss)))
    tall = Image.open(io.BytesIO(plot_run(make_run())))
    assert short.height < tall.height

    lr_only = RunLog(source="lr-only")
    for step in range(1, 10):
        lr_only.add(step, learning_rate=1e-4)
    assert panel_labels(run_figure(lr_only)) == ["learning rate"]


def test_findings_are_shaded_and_labelled_on_their_panel() -> None:
    figure = run_figure(make_run(), make_diagnosis(make_run()).findings)
    loss_axes, grad_axes, _ = figure.axes
    assert any("OVF001" in text.get_text() for text in loss_axes.texts)
    assert any("GRD001" in text.get_text() for text in grad_axes.texts)
    assert loss_axes.patches, "the overfitting region is shaded"


def test_a_whole_run_finding_gets_a_bar_not_a_tinted_panel() -> None:
    whole = Finding("STL001", "no-progress", "stalled", "warning", 0.9, "flat", region=(1.0, 200.0))
    loss_axes = run_figure(make_run(), [whole]).axes[0]
    assert not loss_axes.patches
    assert any(line.get_linewidth() == 3 for line in loss_axes.get_lines())
    assert any("STL001" in text.get_text() for text in loss_axes.texts)


def test_max_grad_norm_is_drawn_when_known() -> None:
    run = make_run()
    figure = run_figure(run)
    assert any("max_grad_norm 1" in text.get_text() for text in figure.axes[1].texts)
    run.config.training_args.pop("max_grad_norm")
    assert not any("max_grad_norm" in text.get_text() for text in run_figure(run).axes[1].texts)


def test_non_finite_values_are_marked_not_fatal() -> None:
    run = make_run()
    run.add(50, loss=math.nan)
    run.add(60, loss=math.inf, grad_norm=math.nan)
    run.add(200, eval_loss=math.nan)
    figure = run_figure(run)
    assert "NaN / inf (4)" in [text.get_text() for text in figure.legends[0].get_texts()]
    crosses = [
        [len(line.get_xdata()) for line in axes.get_lines() if line.get_marker() == "x"]
        for axes in figure.axes
    ]
    assert crosses == [[3], [1], []]
    assert plot_run(run).startswith(b"\x89PNG")

    all_nan = RunLog(source="all-nan")
    for step in range(1, 6):
        all_nan.add(step, loss=math.nan, grad_norm=math.inf)
    assert plot_run(all_nan).startswith(b"\x89PNG")


def test_log_scale_only_when_loss_spans_decades() -> None:
    assert run_figure(make_run()).axes[0].get_yscale() == "linear"
    run = RunLog(source="collapse")
    for step in range(1, 100):
        run.add(step, loss=10.0 * 0.95**step)  # 9.5 -> 0.06: two decades
    assert run_figure(run).axes[0].get_yscale() == "log"
    run = RunLog(source="one decade")
    for step in range(1, 100):
        run.add(step, loss=3.0 - 2.0 * step / 100)  # 2.98 -> 1.02
    assert run_figure(run).axes[0].get_yscale() == "linear"
    zero = RunLog(source="zeros")
    for step in range(1, 100):
        zero.add(step, loss=0.0 if step > 5 else 3.0)
    assert run_figure(zero).axes[0].get_yscale() == "linear"


def test_epoch_boundaries_are_labelled() -> None:
    figure = run_figure(make_run(steps=200, steps_per_epoch=50))
    labels = [(t.get_text(), round(t.xy[0])) for t in epoch_labels(figure)]
    assert labels == [("ep 1", 50), ("ep 2", 100), ("ep 3", 150)]
    assert not epoch_labels(run_figure(make_run(steps_per_epoch=None)))
    many = epoch_labels(run_figure(make_run(steps=1000, steps_per_epoch=2)))
    assert 0 < len(many) <= 12


def epoch_labels(figure) -> list:
    return [t for t in figure.axes[0].texts if t.get_text().startswith("ep ")]


def test_run_without_any_metric_still_gives_a_png() -> None:
    assert plot_run(RunLog(source="empty")).startswith(b"\x89PNG")


def test_the_smoothed_curve_is_tensorboards_debiased_ema() -> None:
    run = RunLog(source="ema")
    for step, loss in enumerate([1.0, 2.0, 3.0, 2.0, 1.0, 2.0], start=1):
        run.add(step, loss=loss)
    lines = run_figure(run).axes[0].get_lines()
    smoothed = next(line for line in lines if line.get_label().endswith("smoothed"))
    expected, last = [], 0.0
    for n, y in enumerate([1.0, 2.0, 3.0, 2.0, 1.0, 2.0], start=1):
        last = last * 0.6 + 0.4 * y
        expected.append(last / (1 - 0.6**n))
    assert list(smoothed.get_ydata()) == pytest.approx(expected)


def test_downsampling_keeps_spikes_and_ends() -> None:
    x = np.arange(100_000, dtype=float)
    y = np.sin(x / 500)
    y[54_321] = 50.0
    y[77_777] = -50.0
    dx, dy = minmax_downsample(x, y, 2000)
    assert len(dx) <= 2002
    assert 50.0 in dy and -50.0 in dy
    assert dx[0] == 0 and dx[-1] == 99_999
    assert np.all(np.diff(dx) > 0)
    same_x, _ = minmax_downsample(x[:10], y[:10], 2000)
    assert len(same_x) == 10


def test_long_runs_plot_quickly() -> None:
    run = make_run(steps=100_000, eval_every=1000, steps_per_epoch=25_000)
    start = time.perf_counter()
    png = plot_run(make_diagnosis(run))
    assert time.perf_counter() - start < 10  # ~1 s on one shared core
    assert len(png) < 200_000


def test_figure_helpers_for_other_reports() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])
    png = figure_to_png_bytes(figure)
    assert png.startswith(b"\x89PNG")
    assert not plt.fignum_exists(figure.number), "pyplot figures are closed after saving"
    assert to_data_uri(b"abc") == "data:image/png;base64,YWJj"


# --- HTML -------------------------------------------------------------------------------------------


def test_html_has_one_decodable_png_per_readable_run() -> None:
    results = [
        make_diagnosis(make_run("a/trainer_state.json")),
        Diagnosis(make_run("b/metrics.csv", grad=False, lr=False)),
        RunError("c/broken.json", "trainer_state", "not JSON: line 3"),
        make_diagnosis(make_run("d/events.out.tfevents", eval_every=None)),
    ]
    html = render_diagnosis_html(results, title="Nightly runs")
    images = decode_pngs(html)
    assert len(images) == 3
    assert all(image.width == 900 and image.height > 100 for image in images)
    assert html.count('<section class="card run"') == 4
    assert "<title>Nightly runs</title>" in html


def test_html_is_self_contained() -> None:
    html = render_diagnosis_html([make_diagnosis(make_run())])
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "@import" not in html and "url(" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', html))
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', html))


def test_html_escapes_everything_that_comes_from_logs() -> None:
    run = make_run(EVIL)
    run.format = '"><img src=x onerror=alert(2)>'
    run.config.method = "<b>lora</b>"
    diagnosis = make_diagnosis(run, message="<i>rises</i> & falls")
    diagnosis.findings[0].evidence["<k>"] = "<v>"
    diagnosis.findings[0].fixes.append(Fix("<param>", "<a>", "</td><to>", "<why>", "<src>"))
    diagnosis.findings[0].code = "<code>"
    diagnosis.abstentions.append(Abstention("<ab>", "<reason>"))
    error = RunError(f"x/{EVIL}.json", "<fmt>", f"bad {EVIL}")
    html = render_diagnosis_html([diagnosis, error], title=f"Runs {EVIL}")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for raw in (
        "<img src=x",
        "<b>lora",
        "<i>rises",
        "<k>",
        "<v>",
        "<param>",
        "</td><to>",
        "<why>",
        "<ab>",
        "<fmt>",
    ):
        assert raw not in html, raw
    assert "&lt;i&gt;rises&lt;/i&gt; &amp; falls" in html
    assert len(PNG_URI.findall(html)) == 1


def test_html_shows_summary_findings_fixes_and_abstentions() -> None:
    html = render_diagnosis_html(
        [make_diagnosis(make_run("a")), Diagnosis(make_run("b")), RunError("c", "csv", "empty file")]
    )
    summary = html[: html.index('<section class="card run"')]
    assert 'href="#run-1"' in summary and 'href="#run-3"' in summary
    assert "overfitting" in summary and "no verdict" in summary and "error" in summary
    assert "<code>learning_rate</code>: 0.0002 → <span" in html
    assert "LoRA Without Regret" in html
    assert "lora_dropout</code>: unset →" in html
    assert "insufficient evidence: fewer than 10 eval points" in html
    assert "best_eval_loss: 0.8123" in html and "window: [100, 200]" in html
    assert 'class="error-line">empty file<' in html
    # the most severe finding comes first
    assert html.index("GRD001") < html.index("OVF001", html.index('<section class="card run"'))


def test_duck_typed_read_results_render_as_errors() -> None:
    ReadResult = namedtuple("ReadResult", "source format run error")
    html = render_diagnosis_html([ReadResult("logs/x.jsonl", "jsonl", None, "line 4:\n not JSON")])
    assert "line 4: not JSON" in html
    assert "data:image/png" not in html


def test_run_with_nothing_to_plot_has_no_image() -> None:
    empty = RunLog(source="empty.csv", format="lightning")
    empty.add(1, eval_accuracy=0.5)
    html = render_diagnosis_html([Diagnosis(empty)])
    assert "data:image/png" not in html
    assert "Nothing to plot" in html


# --- Markdown ---------------------------------------------------------------------------------------


def table_rows(markdown: str) -> list[list[str]]:
    """Cells of every table row, split on pipes that are not escaped."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append(cells)
    return rows


def test_markdown_writes_report_and_linked_images(tmp_path: Path) -> None:
    results = [
        make_diagnosis(make_run("runs/a/trainer_state.json")),
        make_diagnosis(make_run("runs/b/trainer_state.json")),
        RunError("runs/c/trainer_state.json", "trainer_state", "truncated file"),
    ]
    report = render_diagnosis_markdown(results, tmp_path / "out", title="Report")
    assert report == tmp_path / "out" / "report.md"
    text = report.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 2
    assert len(set(links)) == 2, "runs with the same file name get their own image"
    for link in links:
        assert not Path(link).is_absolute()
        image = report.parent / link
        assert image.is_file() and image.read_bytes().startswith(b"\x89PNG")
    assert "truncated file" in text
    assert "`learning_rate`: 0.0002 -> **0.0001**" in text
    assert "[runs/a/trainer\\_state.json](#run-1)" in text or "[runs/a/trainer_state.json](#run-1)" in text
    assert '<a id="run-3"></a>' in text


def test_markdown_cells_escape_pipes_newlines_and_html(tmp_path: Path) -> None:
    run = make_run(f"a|b\n{EVIL}")
    diagnosis = make_diagnosis(run, message="loss | eval\nsecond line")
    diagnosis.findings[0].evidence["note"] = "x|y"
    diagnosis.findings[0].fixes.append(Fix("per|param", 1, 2, "why | not\nnow"))
    text = render_diagnosis_markdown([diagnosis], tmp_path).read_text(encoding="utf-8")
    assert "<script>" not in text
    rows = table_rows(text)
    widths = {len(row) for row in rows[:3]}
    assert widths == {6}, "summary rows keep their six cells"
    finding_rows = [row for row in rows if len(row) != 6 or "OVF001" in "".join(row)]
    assert finding_rows and all(len(row) == 6 for row in finding_rows)
    assert "loss \\| eval<br>second line" in text


def test_markdown_of_unreadable_runs_only(tmp_path: Path) -> None:
    unreadable = [RunError("a.json", "trainer_state", "empty")]
    report = render_diagnosis_markdown(unreadable, tmp_path / "new" / "dir")
    assert "> empty" in report.read_text(encoding="utf-8")
    assert not (report.parent / "report_files").exists()


def test_macros_escape_cells_but_keep_markup() -> None:
    """The building blocks a second report (the tuning study) reuses."""
    from reports._render import environment

    ui = environment().get_template("macros.html").module
    columns = [("Trial", ""), ("Loss", "num")]
    html = str(ui.table(columns, [[EVIL, 1.25], [ui.badge("overfitting"), 2]]))
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert '<span class="badge cond-overfitting">' in html
    assert '<td class="num">1.25</td>' in html
    assert 'class="badge cond-other"' in str(ui.badge('"><b>new-condition'))


def test_markdown_text_escaping() -> None:
    assert markdown_text("a|b") == "a\\|b"
    assert markdown_text("<b>x</b>") == "&lt;b>x&lt;/b>"
    assert markdown_text("learning_rate *2*") == "learning_rate \\*2\\*"
    assert markdown_text("_lead") == "\\_lead"
    assert markdown_text("one\n\ntwo") == "one<br>two"
    assert markdown_text("&amp; stays visible") == "&amp;amp; stays visible"


# --- real logs --------------------------------------------------------------------------------------


def read_trainer_state(path: Path) -> RunLog:
    """A minimal reader for the test: the diagnostics readers are not this module's business."""
    state = json.loads(path.read_text())
    run = RunLog(source=str(path), format="trainer_state")
    for record in state.get("log_history", []):
        metrics = {
            key: record[key]
            for key in ("loss", "eval_loss", "grad_norm", "learning_rate")
            if isinstance(record.get(key), int | float)
        }
        if "step" in record and metrics:
            run.add(record["step"], epoch=record.get("epoch"), **metrics)
    if state.get("max_steps"):
        run.config.training_args["max_steps"] = state["max_steps"]
    return run


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/real_logs is not beside the repository")
def test_real_logs_render(tmp_path: Path) -> None:
    names = ["003_trainer_state.json", "018_trainer_state.json", "020_trainer_state.json"]
    results = [Diagnosis(read_trainer_state(REAL_LOGS / name)) for name in names]
    html = render_diagnosis_html(results)
    assert len(decode_pngs(html)) == 3
    report = render_diagnosis_markdown(results, tmp_path)
    assert len(list((tmp_path / "report_files").glob("*.png"))) == 3
    assert report.is_file()
