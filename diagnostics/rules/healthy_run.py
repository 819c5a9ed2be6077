"""HLT001 healthy."""

from __future__ import annotations

from diagnostics.curves import MIN_EVAL_POINTS, MIN_TRAIN_POINTS
from diagnostics.rules._base import RuleContext, rule

MIN_DROP = 0.05  # the training loss fell by 5% or more
EVAL_NEAR_BEST = 0.02  # the last eval loss within 2% of the best (research/diagnostics.md rule 8)


@rule("HLT001", "healthy", "healthy", "info")
def healthy_run(ctx: RuleContext):
    """
    ## What it detects
    No rule found a problem (no warning or error) and there is positive evidence that the run
    learned: the training loss fell by 5% or more, or the last eval loss is within 2% of its best.

    ## Why it matters
    "No problem found" on thin evidence is not a clean bill of health: without positive evidence
    the verdict is "insufficient" instead.

    ## Evidence
    The training-loss drop and the gap between the last and the best eval loss.

    ## Fix
    Nothing to change.

    ## References
    research/diagnostics.md (starting rule 8); real_logs/LABELING.md (`healthy`).
    """
    if any(f.severity != "info" for f in ctx.findings):
        return None
    s = ctx.stats
    drop = s.train_drop if s.n_train >= MIN_TRAIN_POINTS else None
    eval_gap = (
        (s.eval_last - s.eval_best) / s.eval_best if s.n_eval >= MIN_EVAL_POINTS and s.eval_best > 0 else None
    )
    learned = drop is not None and drop >= MIN_DROP
    eval_ok = eval_gap is not None and eval_gap <= EVAL_NEAR_BEST
    if not (learned or eval_ok):
        return healthy_run.abstain("no problem found, but no evidence of learning either")
    parts = []
    if drop is not None:
        parts.append(f"training loss fell {drop:.0%}")
    if eval_gap is not None:
        parts.append(f"last eval loss {eval_gap:.1%} above its best")
    return healthy_run.finding(
        "healthy: " + ", ".join(parts),
        confidence=0.8 if learned and eval_ok else 0.65,
        evidence={"train_drop": drop, "eval_gap_to_best": eval_gap},
    )
