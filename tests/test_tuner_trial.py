"""One worker's trials on the tiny Llama: outcomes, the recorded curve, and a base that stays intact
through out-of-memory errors, NaN losses, pruning and Ctrl-C."""

from __future__ import annotations

import json
import math

import datasets
import optuna
import psutil
import pytest
import torch

from tests._tuner_helpers import one_thread  # noqa: F401 - the fixture, used below
from tuner._pruning import DivergenceGuard
from tuner._tiny import build_tiny_llama
from tuner._trial import TrialSettings, Worker, _TimedTrainer, is_out_of_memory
from tuner.methods import get_method

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = {
    "learning_rate": 2e-3,
    "effective_batch_size": 4,
    "warmup_ratio": 0.1,
    "lr_scheduler_type": "linear",
    "max_grad_norm": 1.0,
    "weight_decay": 0.0,
}
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}


def _rows(n: int, seed: int) -> datasets.Dataset:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(10, 24, (1,), generator=generator))
        # a learnable pattern: counting up from a random start
        start = int(torch.randint(0, 100, (1,), generator=generator))
        ids = [(start + i) % 200 for i in range(length)]
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": [-100] * 3 + ids[3:]})
    return datasets.Dataset.from_list(rows)


@pytest.fixture(scope="module")
def data():
    return _rows(64, 0), _rows(24, 1)


def _worker(data, method="lora", **settings) -> Worker:
    base, tokenizer = build_tiny_llama(seed=0)
    train, evaluation = data
    defaults = {
        "max_steps": 4,
        "eval_every": 2,
        "eval_examples": 8,
        "eval_batch_size": 8,
        "max_micro_batch": 4,
    }
    return Worker(
        method=get_method(method),
        base=base,
        tokenizer=tokenizer,
        train_dataset=train,
        eval_dataset=evaluation,
        settings=TrialSettings(**{**defaults, **settings}),
    )


def _weights(worker: Worker) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in worker.base.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_complete_trial_records_curve_best_and_timings(data):
    worker = _worker(data)
    pristine = _weights(worker)
    first = worker.run(ARGS, LORA, name="trial-0", evaluate_full=True)
    assert first.state == "complete", first.reason
    assert first.steps_run == 4 and worker.eval_subset.num_rows == 8
    run = first.run
    assert {"loss", "eval_loss", "grad_norm", "learning_rate"} <= set(run.metric_names)
    assert run.series("eval_loss").steps.tolist() == [2.0, 4.0]
    assert first.best_eval_loss == min(run.series("eval_loss").values)
    assert first.best_step in (2, 4)
    assert first.full_eval_loss is not None and math.isfinite(first.full_eval_loss)
    assert {"setup", "train", "eval", "full_eval", "cleanup"} <= set(first.seconds)
    assert 0 < first.memory["rss"] <= first.memory["peak_rss"]
    assert run.config.training_args["per_device_train_batch_size"] == 4
    assert run.config.training_args["warmup_steps"] == 0.1  # installed (5.x) vocabulary
    attrs = first.user_attrs()
    curve = json.loads(attrs["curve"])
    assert curve["source"] == "trial-0" and len(curve["points"]) >= 4
    assert json.dumps(attrs)  # JSON-safe
    assert _same(_weights(worker), pristine)
    again = worker.run(ARGS, LORA, name="trial-1", keep=lambda o: True)
    assert again.best_eval_loss == pytest.approx(first.best_eval_loss, rel=1e-5)  # same base, same result
    assert worker.kept is not None and worker.kept.name == "trial-1"
    worker.run({**ARGS, "learning_rate": 1e-4}, LORA, keep=lambda o: False)  # not kept
    name, loss = worker.evaluate_kept()
    assert name == "trial-1" and loss == pytest.approx(first.full_eval_loss, rel=1e-4)
    assert _same(_weights(worker), pristine)


def test_eval_loss_is_per_token_whatever_the_batching(data):
    by_eight = _worker(data, eval_batch_size=8).run(ARGS, LORA, evaluate_full=True)
    by_five = _worker(data, eval_batch_size=5).run(ARGS, LORA, evaluate_full=True)
    assert by_five.best_eval_loss == pytest.approx(by_eight.best_eval_loss, rel=1e-5)
    assert by_five.full_eval_loss == pytest.approx(by_eight.full_eval_loss, rel=1e-5)


def test_full_fine_tuning_restores_weights_between_trials(data):
    worker = _worker(data, method="full")
    pristine = _weights(worker)
    outcome = worker.run({**ARGS, "learning_rate": 1e-3}, {})
    assert outcome.state == "complete", outcome.reason
    assert _same(_weights(worker), pristine)


def test_out_of_memory_halves_the_micro_batch_then_gives_up(data, monkeypatch):
    worker = _worker(data)
    pristine = _weights(worker)
    original = _TimedTrainer.training_step

    def step_that_fits_two(self, model, inputs, *args, **kwargs):
        if inputs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(_TimedTrainer, "training_step", step_that_fits_two)
    outcome = worker.run(ARGS, LORA)
    assert outcome.state == "complete", outcome.reason
    assert (outcome.per_device_train_batch_size, outcome.gradient_accumulation_steps) == (2, 2)
    assert worker.max_micro_batch == 2  # learned for the next trials

    def never_fits(self, model, inputs, *args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    monkeypatch.setattr(_TimedTrainer, "training_step", never_fits)
    outcome = worker.run(ARGS, LORA)
    assert outcome.state == "infeasible"
    assert outcome.reason.startswith("out of memory at micro batch 1")
    assert _same(_weights(worker), pristine)


def test_nan_loss_stops_the_trial_at_once(data, monkeypatch):
    worker = _worker(data, max_steps=6)
    original = _TimedTrainer.compute_loss

    def nan_after_two_steps(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        if model.training and self.state.global_step >= 2:
            return loss * float("nan")
        return loss

    monkeypatch.setattr(_TimedTrainer, "compute_loss", nan_after_two_steps)
    outcome = worker.run(ARGS, LORA)
    assert outcome.state == "nan", outcome.reason
    assert outcome.steps_run == 3
    assert outcome.reason == "nan at step 3: loss is nan"


def test_interrupt_ends_the_trial_and_restores_the_base(data, monkeypatch):
    worker = _worker(data, method="full")
    pristine = _weights(worker)
    original = _TimedTrainer.training_step

    def interrupted_at_step_two(self, *args, **kwargs):
        if self.state.global_step == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_TimedTrainer, "training_step", interrupted_at_step_two)
    outcome = worker.run(ARGS, {})
    assert outcome.state == "interrupted" and outcome.reason == "interrupted at step 2"
    assert _same(_weights(worker), pristine)


def test_pruner_stops_the_trial_and_says_so(data):
    worker = _worker(data)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    trial = study.ask()
    outcome = worker.run(ARGS, LORA, trial=trial, pruner_name="threshold")
    assert outcome.state == "pruned"
    assert (
        outcome.reason
        == f"pruned at step 2: by the threshold pruner (eval loss {outcome.best_eval_loss:.4g})"
    )
    assert outcome.steps_run == 2
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {2: outcome.best_eval_loss}


def test_no_pruning_at_the_last_step(data):
    worker = _worker(data, max_steps=2, eval_every=2)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    outcome = worker.run(ARGS, LORA, trial=study.ask())
    assert outcome.state == "complete" and outcome.steps_run == 2


def test_divergence_rules_stop_a_diverging_curve():
    from diagnostics import RunLog

    run = RunLog(source="trial-9")
    guard = DivergenceGuard()
    reason = None
    for step in range(1, 41):
        loss = 2.0 - 0.02 * step if step <= 20 else 1.6 + 0.5 * (step - 20)
        run.add(step, loss=loss, grad_norm=1.0, learning_rate=1e-3)
        reason = guard.check(run)
        if reason:
            break
    assert reason is not None and reason.kind == "diverged" and reason.code.startswith("DIV")
    assert 20 < reason.step < 40


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_resident_memory_stays_flat_over_trials(data):
    worker = _worker(data)
    process = psutil.Process()
    levels = []
    for _ in range(6):
        assert worker.run(ARGS, LORA).state == "complete"
        levels.append(process.memory_info().rss)
    assert max(levels[1:]) <= levels[0] * 1.05, [round(x / 2**20) for x in levels]
