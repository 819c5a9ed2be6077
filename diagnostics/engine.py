"""Run the rules over RunLogs. The engine knows nothing about any particular rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from diagnostics.advice import Vocabulary
from diagnostics.curves import CurveStats
from diagnostics.findings import Abstention, Diagnosis, Finding
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
