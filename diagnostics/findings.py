"""What a diagnosis says: findings with their evidence and fixes, per run.

These are plain records: rules create them, the engine collects them, reports and the CLI show
them. ``Diagnosis.to_json`` is the per-run object of the ``diagnose --format json`` contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diagnostics.runlog import RunLog

CONDITIONS = (
    "healthy",
    "overfitting",
    "oscillating",
    "diverging",
    "stalled",
    "too_slow",
    "memorizing",
    "lr_schedule",
    "insufficient",
)

SEVERITIES = ("info", "warning", "error")

# When several conditions are present, the one that most needs fixing comes first: a broken or
# exploding run before anything else (AUTOTRAINER's priority: gradient problems > slow convergence /
# oscillation > overfitting), then a run that does not learn, then the rest.
PRIMARY_ORDER = (
    "diverging",
    "stalled",
    "overfitting",
    "oscillating",
    "lr_schedule",
    "memorizing",
    "too_slow",
    "insufficient",
    "healthy",
)


@dataclass(frozen=True)
class Fix:
    """One argument change: ``param`` from ``from_`` to ``to``, with the reason and its source."""

    param: str
    from_: Any
    to: Any
    why: str
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "from": self.from_,
            "to": self.to,
            "why": self.why,
            "source": self.source,
        }

    def __str__(self) -> str:
        if self.from_ is None:
            return f"{self.param} -> {_show(self.to)}"
        return f"{self.param} {_show(self.from_)} -> {_show(self.to)}"


@dataclass
class Finding:
    """A rule's verdict on one run, with the evidence a person can check."""

    code: str
    name: str
    condition: str
    severity: str
    confidence: float
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fixes: list[Fix] = field(default_factory=list)
    # (first_step, last_step) of the part of the curve the finding is about: reports shade it.
    region: tuple[float, float] | None = None
    metric: str = "loss"

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "condition": self.condition,
            "severity": self.severity,
            "confidence": round(float(self.confidence), 3),
            "message": self.message,
            "evidence": _jsonable(self.evidence),
            "region": list(self.region) if self.region else None,
            "fixes": [fix.to_json() for fix in self.fixes],
        }


@dataclass(frozen=True)
class Abstention:
    """A rule that could not judge this run, and why ("insufficient evidence" is an answer)."""

    code: str
    reason: str


@dataclass
class Diagnosis:
    """Everything the rules said about one run."""

    run: RunLog
    findings: list[Finding] = field(default_factory=list)
    abstentions: list[Abstention] = field(default_factory=list)

    @property
    def conditions(self) -> list[str]:
        """The conditions found, most pressing first (``PRIMARY_ORDER``).

        Notes (``info`` findings) are not conditions. When no rule found a problem the verdict is
        ``healthy`` if HLT001 saw positive evidence, else ``insufficient`` where the rules said so.
        """
        problems = {f.condition for f in self.findings if f.severity != "info"}
        if not problems:
            if any(f.condition == "healthy" for f in self.findings):
                problems = {"healthy"}
            elif any(f.condition == "insufficient" for f in self.findings) or any(
                a.code == "HLT001" for a in self.abstentions
            ):
                problems = {"insufficient"}
        return [c for c in PRIMARY_ORDER if c in problems]

    @property
    def primary(self) -> str | None:
        """The condition that most needs fixing: a broken run before one that does not learn, before
        one that overfits, and so on down ``PRIMARY_ORDER``."""
        conditions = self.conditions
        return conditions[0] if conditions else None

    @property
    def problems(self) -> list[Finding]:
        """Findings at warning or error severity, most severe first."""
        return sorted(
            (f for f in self.findings if f.severity != "info"),
            key=lambda f: (-SEVERITIES.index(f.severity), -f.confidence),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.run.source,
            "format": self.run.format,
            "status": "ok",
            "error": None,
            "primary": self.primary,
            "conditions": self.conditions,
            "findings": [f.to_json() for f in self.findings],
            "abstentions": [{"code": a.code, "reason": a.reason} for a in self.abstentions],
        }


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _jsonable(value: Any) -> Any:
    """Evidence may hold numpy scalars, tuples or non-finite floats; JSON takes none of them."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return float(f"{value:.6g}")
    return value
