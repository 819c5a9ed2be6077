"""MEM001 epoch-staircase."""

from __future__ import annotations

import math

from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# A step must lower the loss by at least 5% (the smallest epoch drops people point out in real logs
# are 6-10%) and stand two standard errors out of the curve's noise, at most boundaries tested.
MIN_DROP = 0.05
MIN_Z = 2.0
MIN_SHARE = 0.75


@rule("MEM001", "epoch-staircase", "memorizing", "warning")
def epoch_staircase(ctx: RuleContext):
    """
    ## What it detects
    The training loss drops in steps at epoch boundaries and stays roughly flat inside epochs: the
    level after a boundary is at least 5% below what the curve's own trend predicts, by two
    standard errors, at three quarters or more of the boundaries that can be tested.

    ## Why it matters
    The drop happens when the data repeats: the model is memorising the examples it has already
    seen. It is harmless while the eval loss keeps improving and harmful once the eval loss rises
    with it; either way, further epochs mostly buy memorisation.

    ## Evidence
    The boundaries tested, the relative jump at each (net of the within-epoch trend), their
    median in standard errors.

    ## Fix
    Train fewer epochs (or on more, deduplicated data), and regularise the adapter
    (`lora_dropout` 0.1).

    ## References
    "Epochal Sawtooth" (arXiv 2410.10056); databricks/dolly#129 (harmful when eval rises);
    LLaMA-Factory#7485 (often benign); research/diagnostics.md.
    """
    steps = ctx.stats.epoch_steps
    if steps is None:
        return epoch_staircase.abstain("no epoch boundary with enough logs on both sides")
    drop = -math.expm1(steps.median_jump)
    if drop < MIN_DROP or steps.z > -MIN_Z or steps.share_negative < MIN_SHARE:
        return None
    fixes = []
    epochs = ctx.stats.epochs_logged
    if epochs and epochs >= 2:
        fix = _fixes.epochs_to(ctx, max(1.0, epochs / 2), "each extra epoch mostly memorises repeated examples")
        fixes += [fix] if fix else []
    dropout = _fixes.raise_dropout(ctx, "dropout on the adapter input slows memorisation")
    fixes += [dropout] if dropout else []
    return epoch_staircase.finding(
        f"training loss steps down by {drop:.0%} at epoch boundaries "
        f"({len(steps.jumps)} tested, {steps.share_negative:.0%} lower, {-steps.z:.1f} standard errors)",
        confidence=confidence_from_margin(-steps.z, MIN_Z, 5.0),
        evidence={
            "boundary_steps": steps.boundaries,
            "jumps_log": [round(j, 4) for j in steps.jumps],
            "median_drop": drop,
            "z": steps.z,
        },
        region=(steps.boundaries[0], float(ctx.stats.train.steps[-1])),
        fixes=fixes,
    )
