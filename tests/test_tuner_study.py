"""``tune study`` end to end on the tiny Llama: every method, resume after Ctrl-C, out-of-memory
trials, a dead worker's trial, the exported configuration, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from diagnostics.readers import read_runs
from tests._tuner_helpers import batch_space, one_thread  # noqa: F401 - the fixture, used below
from tuner._live import NullView, StudyCounts
from tuner._study import StudyInterrupted, StudySettings, open_storage, run_study
from tuner._trial import _TimedTrainer
from tuner.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def study_args(tmp_path: Path, method: str = "lora", n_trials: int = 4, **extra: str) -> list[str]:
    args = {
        "--method": method,
        "--model": "tiny-llama",
        "--max-examples": "48",
        "--n-trials": str(n_trials),
        "--max-steps": "4",
        "--eval-every": "2",
        "--eval-examples": "8",
        "--space": str(batch_space(tmp_path, method)),
        "--out": str(tmp_path / method),
        **extra,
    }
    return ["study", "-q", *[x for pair in args.items() for x in pair]]


def settings_for(tmp_path: Path, method: str = "lora", **extra) -> StudySettings:
    values = {
        "method": method,
        "model": "tiny-llama",
        "max_examples": 48,
        "n_trials": 4,
        "max_steps": 4,
        "eval_every": 2,
        "eval_examples": 8,
        "space": batch_space(tmp_path, method),
        "out": tmp_path / method,
    }
    return StudySettings(**{**values, **extra})


def load(tmp_path: Path, method: str = "lora") -> optuna.Study:
    url = f"sqlite:///{tmp_path / method / 'study.db'}"
    (name,) = optuna.get_all_study_names(url)
    return optuna.load_study(study_name=name, storage=url)


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "dora", "ia3"])
def test_every_method_completes_a_study(tmp_path, method):
    result = runner.invoke(app, study_args(tmp_path, method))
    assert result.exit_code == 0, result.output
    study = load(tmp_path, method)
    counts = StudyCounts.of(study, 4)
    assert counts.finished == 4 and counts.complete >= 1 and counts.failed == 0
    attrs = study.user_attrs
    for key in (
        "model",
        "dataset",
        "method",
        "search_space",
        "sampler",
        "pruner",
        "budget",
        "hardware",
        "versions",
    ):
        assert key in attrs, key
    assert attrs["qlora_cpu_emulation"] is (method == "qlora")
    assert attrs["budget"]["max_steps"] == 4 and attrs["versions"]["optuna"].startswith("5")
    best = study.best_trial
    assert best.value == pytest.approx(best.user_attrs["best_eval_loss"], rel=1e-5)
    for trial in study.trials:
        user = trial.user_attrs
        assert {"outcome", "reason", "steps_run", "best_eval_loss", "curve", "seconds"} <= set(user)
        assert json.loads(user["curve"])["config"]["method"] == method
    folder = tmp_path / method
    assert (folder / "best_config.yaml").is_file() and (folder / "best_config.py").is_file()
    # The report is written at the end of the study (and after trials while it runs).
    html = (folder / "report.html").read_text()
    assert "Best configuration" in html and f"trial {best.number}" in html
    assert (folder / "report.md").is_file()
    if method != "full":
        assert (folder / "best_adapter" / "adapter_config.json").is_file()
        assert (folder / "best_adapter" / "trainer_state.json").is_file()
    full = attrs["best_full_eval"]
    assert full["trial"] == best.number and full["eval_loss"] > 0


def test_best_and_train_commands(tmp_path):
    args = [a for a in study_args(tmp_path, "lora", n_trials=2) if a != "-q"]  # with the (non-terminal) view
    study = runner.invoke(app, args)
    assert study.exit_code == 0, study.output
    assert "trial 0  " in study.output and "best: trial" in study.output
    shown = runner.invoke(app, ["best", str(tmp_path / "lora"), "--out", str(tmp_path / "exported")])
    assert shown.exit_code == 0, shown.output
    assert "LoraConfig(" in shown.output and "warmup_steps=" in shown.output
    reported = runner.invoke(
        app, ["report", str(tmp_path / "lora"), "-f", "html", "--out", str(tmp_path / "rep")]
    )
    assert reported.exit_code == 0, reported.output
    assert (tmp_path / "rep" / "report.html").is_file() and not (tmp_path / "rep" / "report.md").exists()
    bad = runner.invoke(app, ["report", str(tmp_path / "lora"), "-f", "pdf"])
    assert bad.exit_code == 2 and "pdf" in bad.output
    config = tmp_path / "exported" / "best_config.yaml"
    trained = runner.invoke(
        app, ["train", "--config", str(config), "--max-steps", "3", "--out", str(tmp_path / "trained")]
    )
    assert trained.exit_code == 0, trained.output
    assert "trained 3 steps; eval loss on the whole split" in trained.output
    for name in ("adapter_config.json", "trainer_state.json", "training_args.json", "run_log.json"):
        assert (tmp_path / "trained" / name).is_file(), name
    # diagnose finds the trained run once, with the configuration it ran with.
    (read,) = read_runs(tmp_path / "trained")
    assert (
        read.run.config.training_args["max_grad_norm"]
        == yaml.safe_load(config.read_text())["training_args"]["max_grad_norm"]
    )
    assert read.run.config.peft["r"] == yaml.safe_load(config.read_text())["peft"]["r"]
    saved_args = json.loads((tmp_path / "trained" / "training_args.json").read_text())
    assert saved_args["output_dir"] == str(tmp_path / "trained")
    # The tool's own run_log.json carries when the run evaluated, in steps (eval_every 0.1 of 3 -> 1).
    logged = json.loads((tmp_path / "trained" / "run_log.json").read_text())["config"]["training_args"]
    assert (logged["eval_strategy"], logged["eval_steps"], logged["max_steps"]) == ("steps", 1, 3)


class _CtrlCAtStep(NullView):
    """Presses Ctrl-C at ``step`` of the ``trial``-th trial."""

    def __init__(self, trial: int, step: int) -> None:
        self.trial, self.at, self.current = trial, step, None

    def trial_started(self, number, config):
        self.current = number

    def step(self, step, max_steps, loss):
        if self.current == self.trial and step == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_records_the_trial_and_the_same_command_resumes(tmp_path):
    settings = settings_for(tmp_path, n_trials=3)
    with pytest.raises(StudyInterrupted) as stopped:
        run_study(settings, _CtrlCAtStep(trial=1, step=2))
    assert stopped.value.result.counts.complete + stopped.value.result.counts.pruned == 1
    study = load(tmp_path)
    interrupted = study.trials[1]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["outcome"] == "interrupted"
    assert interrupted.user_attrs["reason"] == "interrupted at step 2"
    assert study.trials[2].state == TrialState.WAITING  # re-queued with the same parameters
    assert (tmp_path / "lora" / "best_config.yaml").is_file()  # nothing already found is lost

    resumed = run_study(settings)
    study = load(tmp_path)
    assert resumed.counts.finished == 3 and resumed.counts.interrupted == 1
    assert study.trials[2].params == interrupted.params
    assert study.trials[2].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(study.trials) == 4


def test_ctrl_c_exits_130_from_the_command_line(tmp_path, monkeypatch):
    def ctrl_c(self, step, max_steps, loss):
        raise KeyboardInterrupt

    monkeypatch.setattr(NullView, "step", ctrl_c)
    result = runner.invoke(app, study_args(tmp_path, n_trials=2))
    assert result.exit_code == 130, result.output
    assert "run the same command again to resume" in result.output


def _trial_name(trainer: _TimedTrainer) -> str:
    from tuner._callbacks import TrialCallback

    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, TrialCallback)).run.source


def test_out_of_memory_trial_is_infeasible_and_the_study_goes_on(tmp_path, monkeypatch):
    original = _TimedTrainer.training_step

    def oom_in_trial_one(self, *args, **kwargs):
        if _trial_name(self) == "trial-1":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_TimedTrainer, "training_step", oom_in_trial_one)
    result = run_study(settings_for(tmp_path, n_trials=3))
    assert result.counts.infeasible == 1 and result.counts.finished == 3
    trial = load(tmp_path).trials[1]
    assert trial.state == TrialState.PRUNED  # TPE learns from PRUNED trials, never from FAIL ones
    assert trial.constraints == {"memory": 1.0}
    assert trial.user_attrs["outcome"] == "infeasible"
    assert trial.user_attrs["reason"].startswith("out of memory at micro batch 1: CUDA out of memory")


def test_three_failures_in_a_row_end_the_study_with_one_line(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(_TimedTrainer, "training_step", broken)
    result = runner.invoke(app, study_args(tmp_path, n_trials=5))
    assert result.exit_code == 2
    assert (
        result.output.strip().splitlines()[-1]
        == "tune: error: 3 trials in a row failed; last: ValueError: boom"
    )


def test_a_dead_workers_trial_is_retried(tmp_path):
    settings = settings_for(tmp_path, n_trials=2, heartbeat_interval=1, grace_period=2)
    storage = open_storage(settings.storage_url(), heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name=settings.resolved_study_name(), storage=storage)
    dead = study.ask({"learning_rate": optuna.distributions.FloatDistribution(3e-5, 1e-3, log=True)})
    storage.record_heartbeat(dead._trial_id)  # then the worker "dies": no more heartbeats
    import time

    time.sleep(3.5)
    run_study(settings)
    study = load(tmp_path)
    assert study.trials[0].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert StudyCounts.of(study, 2).finished == 2


def test_resume_with_other_settings_is_refused(tmp_path):
    assert runner.invoke(app, study_args(tmp_path, n_trials=1)).exit_code == 0
    result = runner.invoke(app, study_args(tmp_path, n_trials=2, **{"--max-steps": "6"}))
    assert result.exit_code == 2
    assert "was run with --max-steps 4, not 6" in result.output


def _bad_range(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "extends: lora\nparams:\n"
        "  learning_rate: {kind: float, low: 1.0e-3, high: 1.0e-5, log: true, source: x}\n"
    )
    return str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--method": "lorax"}, "unknown method 'lorax'"),
        ({"--dataset": "no/such/file.jsonl"}, "no/such/file.jsonl"),
        ({"--model": "./no/such/model"}, "model path does not exist: ./no/such/model"),
        ({"--space": "BAD_RANGE"}, "learning_rate"),
        ({"--pruner": "sometimes"}, "unknown pruner 'sometimes'"),
    ],
)
def test_bad_input_gives_one_line_and_a_nonzero_exit(tmp_path, change, message):
    args = study_args(tmp_path)
    for flag, value in change.items():
        value = _bad_range(tmp_path) if value == "BAD_RANGE" else value
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune: error:"), result.output
    assert message in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content", [None, "learning_rate: 1\n", "method: [unclosed\n"])
def test_train_with_a_bad_config_gives_one_line(tmp_path, content):
    config = tmp_path / "best_config.yaml"
    if content is not None:
        config.write_text(content)
    result = runner.invoke(app, ["train", "-q", "--config", str(config)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune: error:"), result.output


def test_best_of_a_missing_study_gives_one_line(tmp_path):
    missing = str(tmp_path / "nothing-here")
    result = runner.invoke(app, ["best", missing])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"tune: error: no study at {missing!r}: give a study folder, a .db file, or a name with --storage"
    ]


def test_space_command_lists_parameters_and_sources():
    result = runner.invoke(app, ["space", "--method", "qlora"])
    assert result.exit_code == 0
    assert "learning_rate" in result.output and "bnb_4bit_quant_type" in result.output


def test_help_and_space_answer_without_loading_torch():
    # `tune --help` and `tune space` took 9 s when the package imported torch eagerly.
    code = (
        "import sys; from typer.testing import CliRunner; from tuner.cli import app; "
        "result = CliRunner().invoke(app, ['space', '--method', 'qlora']); "
        "assert result.exit_code == 0, result.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
