"""Stopping bad trials early: Optuna's pruners on eval loss, plus the diagnostics rules.

Optuna's pruners see one number per evaluation; the diagnostics rules see the whole live curve
(train loss, grad norm, learning rate) and recognise a run that is blowing up before its next
evaluation. Non-finite values stop a trial here directly, whatever the rules say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna

from diagnostics.runlog import CANONICAL_METRICS, RunLog

PRUNERS = ("hyperband", "halving", "median", "none")


class PrunerError(ValueError):
    """The user named a pruner that does not exist."""


def build_pruner(name: str, *, eval_every: int, max_steps: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner called ``name``, with its resource measured in optimizer steps.

    ``hyperband`` (the default) runs successive halving in several brackets, so an aggressive
    bracket cannot kill every slow starter; ``halving`` is one such bracket; ``median`` stops a
    trial whose eval loss is worse than the median of earlier trials at the same step.
    """
    eval_every = max(1, min(eval_every, max_steps))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=eval_every, max_resource=max_steps, reduction_factor=3
        )
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=eval_every, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=eval_every)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise PrunerError(f"unknown pruner {name!r}; choose one of: {', '.join(PRUNERS)}")


@dataclass(frozen=True)
class StopReason:
    """Why a trial stopped before its last step."""

    kind: str  # "pruned", "diverged" or "nan"
    step: int
    message: str
    code: str | None = None

    def __str__(self) -> str:
        code = f"{self.code}: " if self.code else ""
        return f"{self.kind} at step {self.step}: {code}{self.message}"


class DivergenceGuard:
    """The diagnostics rules as a pruner: a trial whose curve diverges, or turns NaN / inf, stops
    at once, with the finding as its reason.

    >>> log = RunLog(source="trial-0")
    >>> log.add(1, loss=2.0)
    >>> log.add(2, loss=float("nan"))
    >>> print(DivergenceGuard().check(log))
    nan at step 2: loss is nan
    """

    def __init__(self, select: tuple[str, ...] = ("DIV",), use_rules: bool = True) -> None:
        self.select = list(select)
        self.use_rules = use_rules
        self._next_rules_at = 0  # number of log points at which the rules run next

    def check(self, run: RunLog) -> StopReason | None:
        if not run.points:
            return None
        last = run.points[-1]
        for metric in CANONICAL_METRICS:
            value = last.metrics.get(metric)
            if value is not None and not math.isfinite(value):
                return StopReason("nan", last.step, f"{metric} is {value}")
        # The rules read the whole curve; on a long run, check at ~10% growth, not every log.
        if not self.use_rules or len(run.points) < self._next_rules_at:
            return None
        self._next_rules_at = len(run.points) + max(1, len(run.points) // 10)
        diagnose = _diagnose()
        if diagnose is None:
            return None
        for finding in diagnose(run, select=self.select).findings:
            if finding.condition == "diverging":
                return StopReason("diverged", last.step, finding.message, finding.code)
        return None


def _diagnose():  # -> Callable | None
    """The diagnostics engine, when it is installed in this tree (it is optional for pruning)."""
    try:
        from diagnostics import diagnose
    except ImportError:
        return None
    return diagnose
