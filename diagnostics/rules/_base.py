"""What a rule is: a code, a name, a condition, a severity, a documented pure check.

A rule's docstring is its manual and is printed by ``diagnose --explain CODE``; it always has the
sections *What it detects*, *Why it matters*, *Evidence*, *Fix* and *References*. The check is a
pure function of a ``RuleContext`` (the run, its statistics, the advice vocabulary) that returns a
``Finding``, an ``Abstention`` ("insufficient evidence", with the reason) or ``None`` (checked,
nothing found).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diagnostics.advice import Vocabulary
from diagnostics.curves import CurveStats
from diagnostics.findings import CONDITIONS, SEVERITIES, Abstention, Finding, Fix
from diagnostics.runlog import RunLog

SECTIONS = ("What it detects", "Why it matters", "Evidence", "Fix", "References")


@dataclass
class RuleContext:
    run: RunLog
    stats: CurveStats
    vocabulary: Vocabulary
    # Findings of the rules that ran before this one (HLT001 and GRD002's advice read them).
    findings: list[Finding] = field(default_factory=list)


Check = Callable[[RuleContext], "Finding | Abstention | None"]


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    condition: str
    severity: str
    check: Check
    explanation: str

    def __call__(self, context: RuleContext) -> Finding | Abstention | None:
        return self.check(context)

    def finding(
        self,
        message: str,
        *,
        confidence: float,
        evidence: dict[str, Any],
        fixes: list[Fix | None] | None = None,
        region: tuple[float, float] | None = None,
        metric: str = "loss",
        severity: str | None = None,
    ) -> Finding:
        """A finding of this rule (``severity`` may lower the rule's default, e.g. to a note).

        ``fixes`` may hold ``None`` for a fix that does not apply to this run (the run already has
        that value); those are left out.
        """
        return Finding(
            code=self.code,
            name=self.name,
            condition=self.condition,
            severity=severity or self.severity,
            confidence=min(max(confidence, 0.0), 1.0),
            message=message,
            evidence=evidence,
            fixes=[fix for fix in fixes or [] if fix is not None],
            region=region,
            metric=metric,
        )

    def abstain(self, reason: str) -> Abstention:
        return Abstention(self.code, reason)


def rule(code: str, name: str, condition: str, severity: str) -> Callable[[Check], Rule]:
    """Turn a documented check function into a ``Rule``."""
    if condition not in CONDITIONS:
        raise ValueError(f"{code}: unknown condition {condition!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"{code}: unknown severity {severity!r}")

    def wrap(check: Check) -> Rule:
        doc = inspect.cleandoc(check.__doc__ or "")
        missing = [s for s in SECTIONS if f"## {s}" not in doc]
        if missing:
            raise ValueError(f"{code}: explanation lacks sections {missing}")
        return Rule(code, name, condition, severity, check, doc)

    return wrap


def confidence_from_margin(value: float, threshold: float, full_at: float) -> float:
    """0.5 at the threshold, rising linearly to 0.95 where the evidence is ``full_at``.

    Works both ways: for "lower is worse" statistics pass thresholds with ``full_at < threshold``.
    """
    if full_at == threshold:
        return 0.95
    share = (value - threshold) / (full_at - threshold)
    return 0.5 + 0.45 * min(max(share, 0.0), 1.0)
