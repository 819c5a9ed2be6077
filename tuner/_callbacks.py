"""The Trainer callback that turns a training run into an Optuna trial.

It builds the trial's RunLog live, reports each evaluation to Optuna, asks the pruner, runs the
divergence guard after every log, and tells the live view how far the trial got.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from diagnostics.runlog import CANONICAL_METRICS, EVAL_LOSS, LOSS, RunLog
from tuner._pruning import DivergenceGuard, StopReason

#: Called after each optimizer step with (step, max_steps, last train loss).
StepHook = Callable[[int, int, float | None], None]


class TrialCallback(TrainerCallback):
    """Records the run, reports eval loss to ``trial`` and stops the run when it should stop.

    The objective is the *best* eval loss seen, not the last (transformers#25247).
    """

    def __init__(
        self,
        run: RunLog,
        *,
        trial: optuna.Trial | None = None,
        guard: DivergenceGuard | None = None,
        pruner_name: str = "pruner",
        on_step: StepHook | None = None,
    ) -> None:
        self.run = run
        self.trial = trial
        self.guard = guard or DivergenceGuard()
        self.pruner_name = pruner_name
        self.on_step = on_step
        self.stop: StopReason | None = None
        self.best_eval_loss: float | None = None
        self.best_step: int | None = None
        self.last_loss: float | None = None
        self.steps_run = 0

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs
    ) -> None:
        metrics = {name: logs[name] for name in CANONICAL_METRICS if name in (logs or {})}
        if not metrics:
            return
        step = state.global_step
        self.run.add(step, epoch=state.epoch, **metrics)
        if LOSS in metrics:
            self.last_loss = float(metrics[LOSS])
        value = metrics.get(EVAL_LOSS)
        if (
            value is not None
            and math.isfinite(value)
            and (self.best_eval_loss is None or value < self.best_eval_loss)
        ):
            self.best_eval_loss, self.best_step = float(value), step
        if self.stop is None:
            reason = self.guard.check(self.run)
            if reason is not None:
                self._stop(control, reason)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, **kwargs
    ) -> None:
        value = (metrics or {}).get(EVAL_LOSS)
        if self.trial is None or self.stop is not None or value is None or not math.isfinite(value):
            return
        step = state.global_step
        self.trial.report(float(value), step)
        # At the last step there is nothing left to save: the trial completes, whatever its rank.
        if step < state.max_steps and self.trial.should_prune():
            reason = f"by the {self.pruner_name} pruner (eval loss {value:.4g})"
            self._stop(control, StopReason("pruned", step, reason))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self.steps_run = state.global_step
        if self.on_step is not None:
            self.on_step(state.global_step, state.max_steps, self.last_loss)

    def _stop(self, control: TrainerControl, reason: StopReason) -> None:
        self.stop = reason
        control.should_training_stop = True
