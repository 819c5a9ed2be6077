"""Turning findings into argument changes, in the vocabulary of the user's transformers.

transformers 5.x removed ``warmup_ratio`` (a float ``warmup_steps`` below 1 is read as a ratio) and
``group_by_length``, and renamed ``evaluation_strategy`` to ``eval_strategy`` (4.41). Most logs in
the wild come from 4.x. Advice is written for the run's own version when its files say, else for
the installed one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

from diagnostics.runlog import RunLog

# TrainingArguments / LoraConfig defaults, used when the run's files do not say (transformers 4.x
# and 5.x agree on these; peft's LoraConfig defaults r=8, lora_alpha=8, lora_dropout=0.0).
DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-5,
    "max_grad_norm": 1.0,
    "weight_decay": 0.0,
    "num_train_epochs": 3,
    "gradient_accumulation_steps": 1,
    "lora_dropout": 0.0,
    "r": 8,
    "warmup_fraction": 0.0,
}


@cache
def _installed_major() -> int:
    try:
        return int(metadata.version("transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 5


@dataclass(frozen=True)
class Vocabulary:
    """Which argument names the advice uses."""

    transformers_major: int

    @classmethod
    def for_run(cls, run: RunLog) -> Vocabulary:
        version = run.config.transformers_version
        if version:
            try:
                return cls(int(str(version).split(".")[0]))
            except ValueError:
                pass
        return cls(_installed_major())

    @property
    def warmup_param(self) -> str:
        return "warmup_steps" if self.transformers_major >= 5 else "warmup_ratio"

    @property
    def eval_strategy_param(self) -> str:
        return "eval_strategy"


@dataclass(frozen=True)
class Current:
    """A run's current value of an argument and whether it was read or assumed."""

    value: Any
    known: bool

    @property
    def note(self) -> str:
        return "" if self.known else " (not in the run's files: the library default is assumed)"


def current(run: RunLog, name: str, logged_lr_peak: float | None = None) -> Current:
    """The run's value of ``name``: from its configuration files, else (for the learning rate) the
    logged peak rate, else the library default."""
    value = run.config.get(name)
    if value is not None:
        return Current(value, True)
    if name == "learning_rate" and logged_lr_peak:
        return Current(logged_lr_peak, True)
    return Current(DEFAULTS.get(name), False)


def warmup_fraction(run: RunLog) -> float | None:
    """The configured warm-up as a fraction of the run, from either vocabulary."""
    ratio = run.config.get("warmup_ratio")
    if isinstance(ratio, int | float) and ratio > 0:
        return float(ratio)
    steps = run.config.get("warmup_steps")
    if isinstance(steps, float) and 0 < steps < 1:
        return steps
    planned = run.planned_steps
    if isinstance(steps, int | float) and steps >= 1 and planned:
        return float(steps) / planned
    return None


def round_lr(value: float) -> float:
    """Learning rates are written with two significant digits (2e-4, 1.5e-5)."""
    if value <= 0 or not math.isfinite(value):
        return value
    return float(f"{value:.2g}")
