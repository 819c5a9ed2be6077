"""DIV002 zero-loss."""

from __future__ import annotations

import numpy as np

from diagnostics.findings import Fix
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, rule


@rule("DIV002", "zero-loss", "diverging", "error")
def zero_loss(ctx: RuleContext):
    """
    ## What it detects
    The training loss is exactly 0.0 on two or more consecutive logs, and either the gradient norm
    at those logs is 0 or NaN, or the zeros start before the first epoch is over.

    ## Why it matters
    A cross-entropy of exactly zero means the loss is not being computed: every label masked to
    -100, an fp16 overflow turned into zeros, or NaNs filtered out of the logged average. A model
    cannot have memorised data it has not yet seen twice, so zeros inside the first epoch are a
    broken loss, not learning. (Zeros reached smoothly after many epochs on a tiny dataset are
    memorisation: see MEM002.)

    ## Evidence
    The first step at exactly 0, the number of zero logs, the gradient norm there, the epoch.

    ## Fix
    Check the label mask (are any labels not -100?), train in bf16 instead of fp16, and lower the
    learning rate tenfold.

    ## References
    MiniCPM-V#212 and unsloth#712 (`'loss': 0.0, 'grad_norm': nan`); research/diagnostics.md.
    """
    train = ctx.stats.train
    if len(train) < 3:
        return zero_loss.abstain("fewer than 3 training losses logged")
    zero = train.values == 0.0
    runs = np.flatnonzero(zero[1:] & zero[:-1])
    if len(runs) == 0:
        return None
    first = int(runs[0])
    step = float(train.steps[first])
    epoch = float(train.epochs[first])
    grad = ctx.stats.grad_norm_all
    grad_at = grad.values[np.isin(grad.steps, train.steps[zero])]
    broken_grad = len(grad_at) > 0 and bool(np.all(~np.isfinite(grad_at) | (grad_at == 0)))
    first_epoch = np.isfinite(epoch) and epoch < 1.0
    if not (broken_grad or (len(grad_at) == 0 and first_epoch)):
        return None
    why = (
        "gradient norm is 0/NaN there"
        if broken_grad
        else f"reached in epoch {epoch:.2f}, before any data repeated"
    )
    return zero_loss.finding(
        f"training loss is exactly 0.0 from step {step:g} on {int(zero.sum())} logs ({why})",
        confidence=0.95 if broken_grad else 0.85,
        evidence={
            "first_zero_step": step,
            "zero_logs": int(zero.sum()),
            "epoch": epoch,
            "grad_norm_at_zeros": grad_at[:5].tolist(),
        },
        region=(step, float(train.steps[-1])),
        fixes=[
            Fix("labels", None, "some tokens != -100", "a fully masked batch gives loss 0 and no gradient"),
            Fix("bf16", ctx.run.config.get("bf16", False), True, "fp16 overflows can zero or NaN the loss"),
            _fixes.scale_learning_rate(ctx, 0.1, "a loss that breaks early often follows too large updates"),
        ],
    )
