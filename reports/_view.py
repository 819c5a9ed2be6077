"""What the diagnosis templates show, prepared once for HTML and Markdown alike.

Templates get plain strings and small records, never RunLogs or numpy values: every number is
formatted here, so both formats say the same thing in the same words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Protocol

import numpy as np

from diagnostics.findings import PRIMARY_ORDER, SEVERITIES, Diagnosis, Finding, Fix
from diagnostics.runlog import LOSS, RunLog
from reports import _style
from reports._run_plot import has_plottable_data, plot_run


class RunErrorLike(Protocol):
    source: str
    format: str
    error: str


@dataclass(frozen=True)
class RunError:
    """A run that could not be read: where it was, what format was tried, and the one-line reason.

    Any object with these three attributes works too (such as the readers' ``ReadResult``).
    """

    source: str
    format: str
    error: str


@dataclass(frozen=True)
class FixView:
    param: str
    from_text: str
    to_text: str
    why: str
    source: str


@dataclass(frozen=True)
class FindingView:
    code: str
    name: str
    condition: str
    severity: str
    symbol: str
    confidence: str
    message: str
    evidence: list[tuple[str, str]]
    region: str
    fixes: list[FixView]


@dataclass
class RunView:
    index: int
    anchor: str
    slug: str
    label: str
    source: str
    format: str
    error: str | None = None
    primary: str | None = None
    conditions: list[str] = field(default_factory=list)
    findings: list[FindingView] = field(default_factory=list)
    abstentions: list[tuple[str, str]] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    png: bytes | None = None
    image_path: str | None = None  # set by the Markdown writer: where the PNG was written

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def problem_count(self) -> int:
        """Findings at warning or error severity: notes (``info``) are not problems."""
        return sum(f.severity in ("warning", "error") for f in self.findings)

    @property
    def other_conditions(self) -> list[str]:
        return [c for c in self.conditions if c != self.primary]


@dataclass(frozen=True)
class Summary:
    runs: int
    with_problems: int
    errors: int
    condition_counts: list[tuple[str, int]]


def run_views(results: Sequence[Diagnosis | RunErrorLike], *, draw: bool = True) -> list[RunView]:
    return [_run_view(i, result, draw) for i, result in enumerate(results, start=1)]


def summarize(views: Sequence[RunView]) -> Summary:
    counts: Counter[str] = Counter()
    for view in views:
        if view.ok:
            counts.update(view.conditions or ["no verdict"])
    errors = sum(not v.ok for v in views)
    order = {name: i for i, name in enumerate(PRIMARY_ORDER)}
    ordered = sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    if errors:
        ordered.append(("error", errors))
    problems = sum(v.ok and any(c not in ("healthy", "insufficient") for c in v.conditions) for v in views)
    return Summary(runs=len(views), with_problems=problems, errors=errors, condition_counts=ordered)


def _run_view(index: int, result: Diagnosis | RunErrorLike, draw: bool) -> RunView:
    if not isinstance(result, Diagnosis):
        source = str(getattr(result, "source", "") or "?")
        return RunView(
            index=index,
            anchor=f"run-{index}",
            slug=_slug(index, source),
            label=source,
            source=source,
            format=str(getattr(result, "format", "") or "unknown"),
            error=_one_line(str(getattr(result, "error", "") or "unknown error")),
        )
    run = result.run
    severity_rank = {name: i for i, name in enumerate(SEVERITIES)}
    findings = sorted(result.findings, key=lambda f: (-severity_rank.get(f.severity, -1), -f.confidence))
    return RunView(
        index=index,
        anchor=f"run-{index}",
        slug=_slug(index, run.label),
        label=run.label,
        source=run.source,
        format=run.format,
        primary=result.primary,
        conditions=result.conditions,
        findings=[_finding_view(f) for f in findings],
        abstentions=[(a.code, _abstention_text(a.reason)) for a in result.abstentions],
        facts=run_facts(run),
        png=plot_run(result) if draw and has_plottable_data(run) else None,
    )


def _finding_view(finding: Finding) -> FindingView:
    return FindingView(
        code=finding.code,
        name=finding.name,
        condition=finding.condition,
        severity=finding.severity,
        symbol=_style.SEVERITY_SYMBOLS.get(finding.severity, "•"),
        confidence=f"{100 * float(finding.confidence):.0f}%" if _finite(finding.confidence) else "?",
        message=finding.message,
        evidence=[(str(k), format_value(v)) for k, v in finding.evidence.items()],
        region=_region_text(finding.region),
        fixes=[_fix_view(fix) for fix in finding.fixes],
    )


def _fix_view(fix: Fix) -> FixView:
    return FixView(
        param=fix.param,
        from_text="unset" if fix.from_ is None else format_value(fix.from_),
        to_text="unset" if fix.to is None else format_value(fix.to),
        why=fix.why,
        source=fix.source,
    )


# The TrainingArguments / LoraConfig values a reader wants next to the curves, in this order.
_FACT_ARGS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "warmup_ratio",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_grad_norm",
    "weight_decay",
    "r",
    "lora_alpha",
    "lora_dropout",
)


def run_facts(run: RunLog) -> list[tuple[str, str]]:
    """Short (name, value) pairs describing the run: method, model, length, key arguments."""
    facts: list[tuple[str, str]] = []
    if run.config.method:
        facts.append(("method", run.config.method))
    if run.config.model:
        facts.append(("model", run.config.model))
    if run.points:
        steps = f"{run.last_step:,}"
        if run.planned_steps and run.planned_steps != run.last_step:
            steps += f" of {run.planned_steps:,} planned"
        facts.append(("steps", steps))
        epochs = [p.epoch for p in run.points if p.epoch is not None and math.isfinite(p.epoch)]
        if epochs and max(epochs) > 0:
            facts.append(("epochs", format_value(max(epochs))))
        losses = run.series(LOSS).finite
        if len(losses):
            facts.append(("final loss", format_value(float(losses.values[-1]))))
    for name in _FACT_ARGS:
        value = run.config.get(name)
        if value is not None and value != "":
            facts.append((name, format_value(value)))
    if run.config.transformers_version:
        facts.append(("transformers", run.config.transformers_version))
    return facts


def format_value(value: Any, *, limit: int = 80) -> str:
    """A compact, readable rendering of an evidence or config value (numbers to 4 significant
    digits, long lists cut short)."""
    text = _format(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _format(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_format(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | np.ndarray):
        items = [_format(v) for v in list(value)[:8]]
        more = ", …" if len(value) > 8 else ""
        return "[" + ", ".join(items) + more + "]"
    return str(value)


def _format_float(value: float) -> str:
    """4 significant digits; exponents written as TrainingArguments values are (``1e-5``)."""
    text = f"{value:.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _region_text(region: tuple[float, float] | None) -> str:
    if not region:
        return ""
    first, last = (_format_step(v) for v in region)
    return f"step {first}" if first == last else f"steps {first}–{last}"


def _format_step(value: Any) -> str:
    return f"{float(value):,.0f}" if _finite(value) else str(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _abstention_text(reason: str) -> str:
    reason = _one_line(reason)
    return (
        reason if reason.lower().startswith("insufficient evidence") else f"insufficient evidence: {reason}"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def _slug(index: int, label: str) -> str:
    """A safe file name for the run's image: its number and the end of its path."""
    parts = PurePath(label.replace("\\", "/")).parts[-2:]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-.")[-60:].strip("-.")
    return f"{index:02d}-{tail}" if tail else f"{index:02d}-run"
