"""MEM002 loss-collapse."""

from __future__ import annotations

import numpy as np

from diagnostics.curves import MIN_TRAIN_POINTS
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# The training loss ends at a tenth of where it started or less ...
MAX_END_FRACTION = 0.10
# ... after the data went round at least three times ...
MIN_EPOCHS = 3.0
# ... and held-out data (if any) sits far above it: a model that generalises has its eval loss near
# its training loss (the healthy real logs have ratios of 0.4-2.5).
EVAL_GAP = 5.0


@rule("MEM002", "loss-collapse", "memorizing", "warning")
def loss_collapse(ctx: RuleContext):
    """
    ## What it detects
    Over three or more epochs the training loss collapses to a tenth of its starting level or less,
    while the eval loss (if logged) stays at five times the training loss or more.

    ## Why it matters
    A near-zero training loss after several passes over the same examples means they have been
    memorised. With no eval loss nobody can tell whether the model still generalises; with an eval
    loss far above the training loss, it does not.

    ## Evidence
    Start and end levels of the training loss, the epochs logged, the last eval loss and its ratio
    to the final training loss.

    ## Fix
    Fewer epochs, more or more varied data, regularisation (`lora_dropout` 0.1, `weight_decay`
    0.01), and an eval split to watch (`eval_strategy="steps"`).

    ## References
    research/diagnostics.md ("train loss collapsing towards 0 on a small dataset"); real_logs
    labels (LABELING.md, `memorizing`).
    """
    s = ctx.stats
    if s.n_train < MIN_TRAIN_POINTS:
        return loss_collapse.abstain(f"fewer than {MIN_TRAIN_POINTS} training losses logged")
    epochs = s.epochs_logged
    if epochs is None:
        return loss_collapse.abstain("the log has no epoch numbers")
    start = s.train_peak_start
    if start <= 0 or epochs < MIN_EPOCHS:
        return None
    fraction = s.train_end / start
    if fraction > MAX_END_FRACTION:
        return None
    gap = None
    if s.n_eval >= 1:
        gap = s.eval_last / s.train_end if s.train_end > 0 else float("inf")
        if gap < EVAL_GAP:
            return None
    fixes = [
        _fixes.epochs_to(ctx, max(1.0, epochs / 3), "the training set is memorised after a few passes"),
        _fixes.raise_dropout(ctx, "slows memorisation"),
        _fixes.add_weight_decay(ctx, "slows memorisation"),
    ]
    eval_text = (
        f"; eval loss {s.eval_last:.4g} is {gap:.3g}x the training loss"
        if gap is not None
        else "; no eval loss to tell whether it still generalises"
    )
    return loss_collapse.finding(
        f"training loss collapsed from {start:.4g} to {s.train_end:.4g} ({fraction:.1%}) "
        f"over {epochs:.3g} epochs" + eval_text,
        confidence=confidence_from_margin(-fraction, -MAX_END_FRACTION, -0.01),
        evidence={
            "train_start": start,
            "train_end": s.train_end,
            "end_fraction": fraction,
            "epochs": epochs,
            "eval_last": s.eval_last if s.n_eval else None,
            "eval_to_train_ratio": gap,
        },
        region=(_collapse_step(s, start), float(s.train.steps[-1])),
        fixes=fixes,
    )


def _collapse_step(s, start: float) -> float:
    """The first step where the smoothed loss is down to a tenth of its start."""
    below = np.flatnonzero(s.train_smooth <= MAX_END_FRACTION * start)
    return float(s.train.steps[below[0]]) if len(below) else float(s.train.steps[0])
