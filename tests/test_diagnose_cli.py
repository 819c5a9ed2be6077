"""The `diagnose` command: outputs, exit codes, errors, and the live callback."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diagnostics.cli import app
from tests import synthetic_curves as synth
from tests._paths import REAL_LOGS

runner = CliRunner()


def write_trainer_state(path: Path, run) -> None:
    history = []
    for point in run.points:
        record = {"step": point.step, "epoch": point.epoch, **point.metrics}
        history.append(
            {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"global_step": run.last_step, "max_steps": run.planned_steps, "log_history": history})
    # JSON has no NaN literal; HF writes NaN / Infinity as Python's json module does.
    path.write_text(text.replace('"nan"', "NaN").replace('"inf"', "Infinity"))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    write_trainer_state(tmp_path / "good" / "trainer_state.json", synth.healthy())
    write_trainer_state(tmp_path / "bad" / "checkpoint-600" / "trainer_state.json", synth.diverging_nan())
    write_trainer_state(tmp_path / "over" / "trainer_state.json", synth.overfitting())
    broken = tmp_path / "broken" / "trainer_state.json"
    broken.parent.mkdir()
    broken.write_text('{"log_history": [{"loss": 1.0, "step": 1}, ')
    return tmp_path


def test_json_contract_over_a_folder_with_a_corrupt_file(runs_dir):
    result = runner.invoke(app, [str(runs_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert len(runs) == 4
    primary = {Path(r["path"]).relative_to(runs_dir).parts[0]: r["primary"] for r in runs}
    assert primary == {"good": "healthy", "bad": "diverging", "over": "overfitting", "broken": None}
    errors = [r for r in runs if r["status"] == "error"]
    assert len(errors) == 1
    assert errors[0]["error"] and "\n" not in errors[0]["error"]
    assert errors[0]["findings"] == [] and errors[0]["primary"] is None
    for run in runs:
        assert set(run) >= {"path", "format", "status", "error", "primary", "conditions", "findings"}


def test_fail_on_sets_the_exit_code(runs_dir):
    assert runner.invoke(app, [str(runs_dir), "--format", "json", "--fail-on", "error"]).exit_code == 1
    good = runs_dir / "good" / "trainer_state.json"
    assert runner.invoke(app, [str(good), "--format", "json", "--fail-on", "warning"]).exit_code == 0


def test_select_limits_the_rules(runs_dir):
    result = runner.invoke(app, [str(runs_dir / "over"), "--format", "json", "--select", "DIV"])
    run = json.loads(result.stdout)["runs"][0]
    assert run["findings"] == []


def test_explain_prints_the_rule_manual():
    result = runner.invoke(app, ["--explain", "ovf001"])
    assert result.exit_code == 0
    for section in ("What it detects", "Why it matters", "Evidence", "Fix", "References"):
        assert section in result.stdout
    assert runner.invoke(app, ["--explain", "NOPE1"]).exit_code == 2


def test_list_rules():
    result = runner.invoke(app, ["--list-rules"])
    assert "DIV001" in result.stdout and "SLW001" in result.stdout


def test_missing_path_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, [str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert "Traceback" not in result.output


def test_unknown_rule_code_is_a_clear_error(runs_dir):
    result = runner.invoke(app, [str(runs_dir), "--select", "ZZZ"])
    assert result.exit_code == 2 and "ZZZ" in result.output


def test_html_and_markdown_reports(runs_dir, tmp_path):
    html = tmp_path / "out" / "report.html"
    result = runner.invoke(app, [str(runs_dir), "--format", "html", "--out", str(html)])
    assert result.exit_code == 0, result.output
    text = html.read_text()
    assert text.count('<img src="data:image/png;base64,') == 3
    md_dir = tmp_path / "md"
    result = runner.invoke(app, [str(runs_dir), "--format", "md", "--out", str(md_dir)])
    assert result.exit_code == 0, result.output
    report = next(md_dir.glob("*.md")).read_text()
    images = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert len(images) == 3 and all((md_dir / image).is_file() for image in images)


def test_table_output_names_every_run(runs_dir):
    result = runner.invoke(app, [str(runs_dir)])
    assert result.exit_code == 0
    assert "diverging" in result.stdout and "error" in result.stdout


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/real_logs not present")
def test_console_script_on_a_single_real_log(tmp_path):
    log = tmp_path / "trainer_log.jsonl"
    shutil.copyfile(REAL_LOGS / "008_llamafactory_trainer_log.jsonl", log)
    out = subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", str(log), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    run = json.loads(out.stdout)["runs"][0]
    assert run["primary"] == "diverging"


def test_live_callback_reports_divergence_and_can_stop_training(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from diagnostics.callback import DiagnosticsCallback

    seen = []
    callback = DiagnosticsCallback(stop_on=("diverging",), on_finding=seen.append)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=3e-4, max_grad_norm=1.0, report_to=[])
    state, control = TrainerState(), TrainerControl()
    state.max_steps = 1000
    callback.on_train_begin(args, state, control)
    for point in synth.diverging_nan().points:
        state.global_step, state.epoch = point.step, point.epoch
        callback.on_log(args, state, control, logs=dict(point.metrics))
        if control.should_training_stop:
            break
    assert [f.code for f in seen] == ["DIV001"]
    assert control.should_training_stop
    assert state.global_step == 610  # stopped at the first NaN
    assert callback.run.config.training_args["learning_rate"] == 3e-4
    callback.on_train_end(args, state, control)
    assert callback.final.primary == "diverging"
