"""GRD001 grad-norm-spike."""

from __future__ import annotations

import numpy as np

from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, rule

SPIKE_FACTOR = 10.0  # ten times the median gradient norm of the run


@rule("GRD001", "grad-norm-spike", "diverging", "warning")
def grad_norm_spike(ctx: RuleContext):
    """
    ## What it detects
    A logged gradient norm ten times the run's median or more, after the first 10% of the run
    (early norms are large while the loss falls fast). It is a warning when the training loss
    jumps at the same log or the next, and a note otherwise.

    ## Why it matters
    A gradient explosion that moves the loss is the first step of a divergence; one the loss shrugs
    off (clipping absorbed it) is worth knowing but not fixing. The logged `grad_norm` is the norm
    before clipping.

    ## Evidence
    The spike steps, their size relative to the median, the loss change at those steps.

    ## Fix
    Clip at the 90th percentile of the logged norms and, if the loss jumped, lower the learning
    rate.

    ## References
    research/diagnostics.md (AUTOTRAINER exploding-gradient checks; HF logs the pre-clipping norm).
    """
    s = ctx.stats
    grad = s.grad_norm_all.finite
    if len(grad) < 5:
        return grad_norm_spike.abstain("fewer than 5 gradient norms logged")
    median = float(np.median(grad.values))
    if median <= 0:
        return None
    late = s.x_of(grad.steps) > 0.1
    spikes = np.flatnonzero(late & (grad.values >= SPIKE_FACTOR * median))
    if len(spikes) == 0:
        return None
    steps = grad.steps[spikes]
    loss_moved = False
    if s.n_train >= 3:
        for step in steps:
            i = int(np.searchsorted(s.train.steps, step))
            if 0 < i < s.n_train:
                window = s.train.values[i : i + 2]
                before = s.train_smooth[i - 1]
                loss_moved |= bool(np.any(window - before > max(3 * s.train_noise, 0.1 * abs(before))))
    fixes = [_fixes.clip_to_percentile(ctx, "clip the exploding updates")]
    if loss_moved:
        fixes.append(_fixes.scale_learning_rate(ctx, 0.5, "the loss jumped with the gradient"))
    ratio = float(grad.values[spikes].max() / median)
    return grad_norm_spike.finding(
        f"gradient norm reached {ratio:.0f}x its median at step {steps[0]:g}"
        + (" and the loss jumped with it" if loss_moved else "; the loss did not react"),
        confidence=0.8 if loss_moved else 0.6,
        evidence={
            "spike_steps": steps[:20].tolist(),
            "max_ratio_to_median": ratio,
            "median": median,
            "loss_jumped": loss_moved,
        },
        region=(float(steps[0]), float(steps[-1])),
        metric="grad_norm",
        severity=None if loss_moved else "info",
        fixes=fixes,
    )
