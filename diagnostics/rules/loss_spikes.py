"""OSC002 loss-spikes."""

from __future__ import annotations

import numpy as np

from diagnostics.curves import MIN_TRAIN_POINTS
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, rule

# research/diagnostics.md: a spike is "loss > EMA + max(6 sigma, 25%)".
SIGMAS = 6.0
RELATIVE = 0.25
# Recurring: three or more, so a single bad batch is not reported.
MIN_SPIKES = 3


@rule("OSC002", "loss-spikes", "oscillating", "info")
def loss_spikes(ctx: RuleContext):
    """
    ## What it detects
    Three or more logs where the training loss jumps above its running (debiased EMA) level by six
    noise units and 25% or more, then comes back.

    ## Why it matters
    Recurring spikes come from a few hard or broken examples, from updates that overshoot, or from
    the loss scaler in fp16. When the curve recovers each time they are a note, not a failure (a
    per-batch loss near zero spikes often and harmlessly); if they grow or stop recovering, see
    DIV003. Reported as a note with its fixes.

    ## Evidence
    The spike steps, their heights relative to the running level, the noise.

    ## Fix
    Clip at the 90th percentile of the logged gradient norms; look at the batches at the spike
    steps; a smaller learning rate if they recur late in training.

    ## References
    research/diagnostics.md (spike definition); real_logs/LABELING.md ("repeated spikes").
    """
    s = ctx.stats
    if s.n_train < MIN_TRAIN_POINTS:
        return loss_spikes.abstain(f"fewer than {MIN_TRAIN_POINTS} training losses logged")
    values = s.train.values
    running = s.train_smooth
    baseline = np.concatenate([[values[0]], running[:-1]])
    height = values - baseline
    spikes = np.flatnonzero((height > SIGMAS * s.train_noise) & (height > RELATIVE * np.abs(baseline)))
    spikes = spikes[spikes > 0]
    if len(spikes) < MIN_SPIKES:
        return None
    steps = s.train.steps[spikes]
    relative = height[spikes] / np.abs(baseline[spikes])
    fixes = [_fixes.clip_to_percentile(ctx, "spikes follow the largest updates")]
    return loss_spikes.finding(
        f"{len(spikes)} loss spikes (up to {relative.max():.0%} above the running level), "
        f"first at step {steps[0]:g}",
        confidence=0.6,
        evidence={"spike_steps": steps[:20].tolist(), "relative_heights": relative[:20].tolist()},
        region=(float(steps[0]), float(steps[-1])),
        fixes=fixes,
    )
