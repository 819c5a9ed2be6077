"""GRD002 clipping-most-steps."""

from __future__ import annotations

import numpy as np

from diagnostics.advice import Current, current
from diagnostics.findings import Fix
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, rule

MOST = 0.5


@rule("GRD002", "clipping-most-steps", "oscillating", "info")
def clipping_most_steps(ctx: RuleContext):
    """
    ## What it detects
    After the first 10% of the run, more than half of the logged gradient norms exceed
    `max_grad_norm` (1.0 unless the run's files say otherwise), i.e. most updates are clipped.

    ## Why it matters
    The logged `grad_norm` is measured before clipping, so this share is the share of clipped
    steps. Clipping nearly every step turns Adam into sign-like updates of fixed size and hides a
    learning rate that is too high. It is a note: many healthy fine-tuning runs clip early on.

    ## Evidence
    The share of clipped logs, the threshold, the median and 90th percentile of the norms.

    ## Fix
    When the run is also unstable (a diverging or oscillating finding), lower the learning rate.
    Otherwise raise `max_grad_norm` to the 90th percentile of the logged norms, so that only the
    largest updates are clipped; a run that is stalled or too slow must not be told to take
    smaller steps still.

    ## References
    research/diagnostics.md (HF logs the pre-clipping norm; starting rule 2).
    """
    s = ctx.stats
    grad = s.grad_norm_all.finite
    if len(grad) < 5:
        return clipping_most_steps.abstain("fewer than 5 gradient norms logged")
    limit = current(ctx.run, "max_grad_norm")
    if not limit.value or float(limit.value) <= 0:
        return None
    values = grad.values[s.x_of(grad.steps) > 0.1]
    if len(values) < 5:
        return None
    share = float(np.mean(values > float(limit.value)))
    if share <= MOST:
        return None
    p90 = float(np.percentile(values, 90))
    return clipping_most_steps.finding(
        f"{share:.0%} of logged gradient norms exceed max_grad_norm={limit.value}{limit.note}",
        confidence=0.7 if limit.known else 0.5,
        evidence={
            "share_clipped": share,
            "max_grad_norm": limit.value,
            "median": float(np.median(values)),
            "p90": p90,
        },
        region=(float(grad.steps[0]), float(grad.steps[-1])),
        metric="grad_norm",
        fixes=[_fix(ctx, limit, p90)],
    )


# The rules of these conditions run before this one (see the registry's order).
UNSTABLE = ("diverging", "oscillating")


def _fix(ctx: RuleContext, limit: Current, p90: float) -> Fix:
    if any(f.condition in UNSTABLE and f.severity != "info" for f in ctx.findings):
        return _fixes.scale_learning_rate(ctx, 0.5, "most updates are clipped and the run is unstable")
    return _fixes.max_grad_norm_to(
        limit,
        p90,
        "clip only the largest updates (the 90th percentile of the logged norms)",
        "research/diagnostics.md: HF logs the norm before clipping",
    )
