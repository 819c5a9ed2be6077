"""LRS002 peak-never-reached."""

from __future__ import annotations

from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, rule


@rule("LRS002", "peak-never-reached", "lr_schedule", "warning")
def peak_never_reached(ctx: RuleContext):
    """
    ## What it detects
    A finished run whose learning rate is still rising at its last log: the warm-up is longer than
    the run.

    ## Why it matters
    The run never trained at the rate it was configured for; the schedule was usually set for a
    different number of steps (a `warmup_steps` count copied from a longer run, or `max_steps`
    lowered without touching it).

    ## Evidence
    The last logged rate, the planned steps, the last step.

    ## Fix
    Warm up over 3% of the run (`warmup_steps=0.03` on transformers 5, `warmup_ratio=0.03` on 4.x).

    ## References
    real_logs/LABELING.md (`lr_schedule`: "a peak never reached in a finished run").
    """
    s = ctx.stats
    schedule = s.lr_schedule
    if schedule is None:
        return peak_never_reached.abstain("no learning-rate curve logged")
    rising_at_end = len(s.lr) >= 3 and s.lr.values[-1] > s.lr.values[-2] > s.lr.values[0]
    if not (s.finished and rising_at_end):
        return None
    return peak_never_reached.finding(
        f"the learning rate is still rising at the last step "
        f"({s.lr.values[-1]:.3g} at step {s.lr.steps[-1]:g}) "
        "of a finished run",
        confidence=0.8,
        evidence={
            "last_lr": float(s.lr.values[-1]),
            "last_step": float(s.lr.steps[-1]),
            "planned_steps": s.total_steps,
        },
        region=(float(s.lr.steps[0]), float(s.lr.steps[-1])),
        metric="learning_rate",
        fixes=[_fixes.set_warmup(ctx, 0.03, "the warm-up must end well before the run does")],
    )
