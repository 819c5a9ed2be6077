"""Run the rules over RunLogs. The engine knows nothing about any particular rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostics.advice import Vocabulary
from diagnostics.curves import CurveStats
from diagnostics.findings import Abstention, Diagnosis, Finding
from diagnostics.readers import read_runs
from diagnostics.rules import Rule, RuleContext, select_rules
from diagnostics.runlog import RunLog


def diagnose(
    run: RunLog,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    *,
    rules: Sequence[Rule] | None = None,
) -> Diagnosis:
    """Diagnose one run.

    >>> from diagnostics import RunLog
    >>> run = RunLog(source="demo")
    >>> for step in range(1, 31):
    ...     run.add(step * 10, loss=float("nan") if step == 20 else 2.0 / step**0.3)
    >>> diagnose(run, select=["DIV"]).primary
    'diverging'
    """
    chosen = list(rules) if rules is not None else select_rules(select, ignore)
    context = RuleContext(run=run, stats=CurveStats(run), vocabulary=Vocabulary.for_run(run))
    diagnosis = Diagnosis(run=run)
    for rule in chosen:
        context.findings = diagnosis.findings
        result = rule(context)
        if isinstance(result, Finding):
            diagnosis.findings.append(result)
        elif isinstance(result, Abstention):
            diagnosis.abstentions.append(result)
    return diagnosis


@dataclass
class RunFailure:
    """A run that could not be read: where, in which format, and the one-line reason."""

    source: str
    format: str
    error: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.source,
            "format": self.format,
            "status": "error",
            "error": self.error,
            "primary": None,
            "conditions": [],
            "findings": [],
        }


def diagnose_path(
    path: str | Path,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    *,
    column_map: Mapping[str, str] | None = None,
) -> list[Diagnosis | RunFailure]:
    """Read every run under ``path`` (a log file or a folder) and diagnose each one.

    A run that cannot be read, or whose diagnosis fails, becomes a ``RunFailure`` with a one-line
    reason; the other runs are still diagnosed.
    """
    rules = select_rules(select, ignore)
    results: list[Diagnosis | RunFailure] = []
    for read in read_runs(path, column_map=column_map):
        if read.run is None:
            results.append(RunFailure(read.source, read.format, read.error or "unreadable"))
            continue
        try:
            results.append(diagnose(read.run, rules=rules))
        except Exception as error:  # a bug in one rule must not cost the user every other run
            results.append(
                RunFailure(read.source, read.format, f"diagnosis failed: {type(error).__name__}: {error}")
            )
    return results
