"""RunLog: the normalised history of one training run, the one data type the whole tool passes around.

Readers build RunLogs from files, a trial builds one live from a ``TrainerCallback``, the rules read
them and the reports draw them. Metric names are canonicalised by the readers so that every other
part of the tool can rely on four names:

``loss``
    the training loss as logged (a running mean over the logging window in HF Trainer),
``eval_loss``
    the evaluation loss,
``grad_norm``
    the gradient norm *before* clipping (what ``clip_grad_norm_`` returns and HF logs),
``learning_rate``
    the learning rate at that step.

Any other metric is kept under its own name (``eval_accuracy``, ``mean_token_accuracy``, ...).
Configuration uses the user's own vocabulary: ``training_args`` holds TrainingArguments names
(``learning_rate``, ``num_train_epochs``, ``max_steps``, ``warmup_steps``, ``max_grad_norm``...),
``peft`` holds LoraConfig / IA3Config names (``r``, ``lora_alpha``, ``lora_dropout``...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LOSS = "loss"
EVAL_LOSS = "eval_loss"
GRAD_NORM = "grad_norm"
LEARNING_RATE = "learning_rate"
CANONICAL_METRICS = (LOSS, EVAL_LOSS, GRAD_NORM, LEARNING_RATE)

METHODS = ("full", "lora", "qlora", "dora", "ia3")


@dataclass(frozen=True)
class LogPoint:
    """One logged record: the optimizer step it belongs to, its epoch (if known) and its metrics."""

    step: int
    epoch: float | None
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Series:
    """One metric over the run, sorted by step, one value per step (the last logged wins).

    ``epochs`` holds NaN where the log gave no epoch. Values may be NaN or inf: a rule that
    cares about non-finite losses must see them, so nothing is filtered here.
    """

    name: str
    steps: np.ndarray
    values: np.ndarray
    epochs: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def finite(self) -> Series:
        """The same series without its NaN / inf points."""
        keep = np.isfinite(self.values)
        return Series(self.name, self.steps[keep], self.values[keep], self.epochs[keep])

    def between(self, first_step: float, last_step: float) -> Series:
        """The points with ``first_step <= step <= last_step``."""
        keep = (self.steps >= first_step) & (self.steps <= last_step)
        return Series(self.name, self.steps[keep], self.values[keep], self.epochs[keep])


@dataclass
class RunConfig:
    """What is known of how the run was configured, in the user's own argument names."""

    training_args: dict[str, Any] = field(default_factory=dict)
    peft: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    model: str | None = None
    transformers_version: str | None = None

    def get(self, name: str, default: Any = None) -> Any:
        """A TrainingArguments value, else a peft value, else ``default``."""
        if name in self.training_args and self.training_args[name] is not None:
            return self.training_args[name]
        if name in self.peft and self.peft[name] is not None:
            return self.peft[name]
        return default

    def merge(self, other: RunConfig) -> None:
        """Fill what this config does not know yet from ``other`` (values already here win)."""
        for key, value in other.training_args.items():
            self.training_args.setdefault(key, value)
        for key, value in other.peft.items():
            self.peft.setdefault(key, value)
        self.method = self.method or other.method
        self.model = self.model or other.model
        self.transformers_version = self.transformers_version or other.transformers_version


@dataclass
class RunLog:
    """The normalised history of one run plus what is known of its configuration.

    >>> log = RunLog(source="demo")
    >>> log.add(10, epoch=0.5, loss=2.0, learning_rate=2e-4)
    >>> log.add(20, epoch=1.0, loss=1.5, eval_loss=1.7)
    >>> log.series("loss").values.tolist()
    [2.0, 1.5]
    """

    source: str
    format: str = "unknown"
    points: list[LogPoint] = field(default_factory=list, repr=False)
    config: RunConfig = field(default_factory=RunConfig)
    name: str | None = None
    # The optimizer step the run reached (TrainerState.global_step) when the log says: the last
    # logged point can be earlier (the end-of-run summary is not a point of the curve).
    trained_steps: int | None = None

    def __post_init__(self) -> None:
        self._cache: dict[str, Series] = {}

    @property
    def label(self) -> str:
        return self.name or self.source

    def add(self, step: int, epoch: float | None = None, **metrics: float) -> None:
        """Append one record. Values are converted to float; ``None`` values are dropped."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        if not clean:
            return
        self.points.append(LogPoint(int(step), None if epoch is None else float(epoch), clean))
        self._cache.clear()

    def extend(self, points: Iterable[LogPoint]) -> None:
        self.points.extend(points)
        self._cache.clear()

    @property
    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for point in self.points:
            names.update(dict.fromkeys(point.metrics))
        return list(names)

    def has(self, metric: str) -> bool:
        return any(metric in point.metrics for point in self.points)

    def series(self, metric: str) -> Series:
        """The values of ``metric`` sorted by step; on repeated steps the last record wins."""
        cached = self._cache.get(metric)
        if cached is not None:
            return cached
        by_step: dict[int, tuple[float, float]] = {}
        for point in self.points:
            if metric in point.metrics:
                epoch = math.nan if point.epoch is None else point.epoch
                by_step[point.step] = (point.metrics[metric], epoch)
        steps = np.array(sorted(by_step), dtype=float)
        values = np.array([by_step[int(s)][0] for s in steps], dtype=float)
        epochs = np.array([by_step[int(s)][1] for s in steps], dtype=float)
        result = Series(metric, steps, values, epochs)
        self._cache[metric] = result
        return result

    @property
    def last_step(self) -> int:
        return max((p.step for p in self.points), default=0)

    @property
    def planned_steps(self) -> int | None:
        """``max_steps`` of the run when the log says so (a checkpoint may stop before it)."""
        value = self.config.training_args.get("max_steps")
        if isinstance(value, int | float) and 0 < value < 2**62:
            return int(value)
        return None

    def steps_per_epoch(self) -> float | None:
        """Optimizer steps per epoch, from the logged (step, epoch) pairs."""
        pairs = [(p.step, p.epoch) for p in self.points if p.epoch and p.epoch > 0 and p.step > 0]
        if len(pairs) < 2:
            return None
        step, epoch = pairs[-1]
        return step / epoch

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "name": self.name,
            "trained_steps": self.trained_steps,
            "config": {
                "training_args": self.config.training_args,
                "peft": self.config.peft,
                "method": self.config.method,
                "model": self.config.model,
                "transformers_version": self.config.transformers_version,
            },
            "points": [
                {"step": p.step, "epoch": p.epoch, **{k: _json_number(v) for k, v in p.metrics.items()}}
                for p in self.points
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunLog:
        cfg = data.get("config") or {}
        log = cls(
            source=data["source"],
            format=data.get("format", "unknown"),
            name=data.get("name"),
            trained_steps=data.get("trained_steps"),
            config=RunConfig(
                training_args=dict(cfg.get("training_args") or {}),
                peft=dict(cfg.get("peft") or {}),
                method=cfg.get("method"),
                model=cfg.get("model"),
                transformers_version=cfg.get("transformers_version"),
            ),
        )
        for raw in data.get("points", []):
            metrics = {k: float(v) for k, v in raw.items() if k not in ("step", "epoch") and v is not None}
            log.points.append(LogPoint(int(raw["step"]), raw.get("epoch"), metrics))
        return log


def _json_number(value: float) -> float | str:
    """JSON has no NaN/inf; keep them as strings so they survive a round trip."""
    return value if math.isfinite(value) else str(value)
