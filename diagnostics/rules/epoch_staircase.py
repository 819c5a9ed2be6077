"""MEM001 epoch-staircase."""

from __future__ import annotations

import math

from diagnostics.curves import MIN_EVAL_POINTS
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# A step must lower the loss by at least 5% (the smallest epoch drops people point out in real logs
# are 6-10%) and stand two standard errors out of the curve's noise, at most boundaries tested.
MIN_DROP = 0.05
MIN_Z = 2.0
MIN_SHARE = 0.75
# A 5% step cannot be told from noise larger than half the loss level (per-batch losses near zero).
MAX_RELATIVE_NOISE = 0.5
# An eval loss that ends within 1% of its best (OVF001's smallest rise) is still improving.
BENIGN_EVAL_GAP = 0.01


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
    with it, so a run whose last eval loss is within 1% of its best is not reported; without an eval
    loss nobody
    can tell, and further epochs mostly buy memorisation. Loss noise above half its level hides
    such steps: the rule abstains there.

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
    s = ctx.stats
    steps = s.epoch_steps
    if steps is None:
        return epoch_staircase.abstain("no epoch boundary with enough logs on both sides")
    if s.train_relative_noise > MAX_RELATIVE_NOISE:
        return epoch_staircase.abstain(
            f"the loss is too noisy ({s.train_relative_noise:.0%} of its level) to see steps"
        )
    if s.n_eval >= MIN_EVAL_POINTS and s.eval_last <= (1 + BENIGN_EVAL_GAP) * s.eval_best:
        # The repetition still helps held-out data: the staircase is benign (LLaMA-Factory#7485).
        return None
    drop = -math.expm1(steps.median_jump)
    if drop < MIN_DROP or steps.z > -MIN_Z or steps.share_negative < MIN_SHARE:
        return None
    epochs = s.epochs_logged
    fixes = [
        _fixes.epochs_to(ctx, max(1.0, epochs / 2), "each extra epoch mostly memorises repeated examples")
        if epochs and epochs >= 2
        else None,
        _fixes.raise_dropout(ctx, "dropout on the adapter input slows memorisation"),
    ]
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
        region=(steps.boundaries[0], float(s.train.steps[-1])),
        fixes=fixes,
    )
