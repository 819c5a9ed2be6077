"""OSC001 loss-oscillating."""

from __future__ import annotations

from diagnostics.curves import MIN_TRAIN_POINTS
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# Swings of 10% of the loss level or more (research/diagnostics.md: "relative noise > 0.10") ...
MIN_RELATIVE_NOISE = 0.10
# ... that are as large as half of all the progress the run made: a noisy-but-trending curve
# (LABELING.md) has noise far below its total drop.
MIN_NOISE_TO_PROGRESS = 0.5


@rule("OSC001", "loss-oscillating", "oscillating", "warning")
def loss_oscillating(ctx: RuleContext):
    """
    ## What it detects
    The training loss swings up and down by 10% of its level or more from one log to the next, and
    the swings are at least half as large as everything the run gained (start level minus end
    level): the curve goes up and down without settling.

    ## Why it matters
    Swings that large against the level mean the updates overshoot: the learning rate is too high
    for the batch's gradient noise, or batches are too small or too unlike each other. A noisy
    curve that still trends down clearly is not this: its noise is small against its progress.

    ## Evidence
    The point-to-point noise (robust, trend-free), the level, the total progress, the late trend.

    ## Fix
    Halve the learning rate, double the effective batch (`gradient_accumulation_steps` x2), clip at
    the 90th percentile of the logged gradient norms.

    ## References
    research/diagnostics.md (starting rule 2; AUTOTRAINER's oscillation repair: lower the rate, then
    grow the batch); real_logs/LABELING.md (`oscillating`).
    """
    s = ctx.stats
    if s.n_train < MIN_TRAIN_POINTS:
        return loss_oscillating.abstain(f"fewer than {MIN_TRAIN_POINTS} training losses logged")
    relative = s.train_relative_noise
    progress = max(s.train_peak_start - s.train_end, 0.0)
    ratio = s.train_noise / progress if progress > 0 else float("inf")
    if relative < MIN_RELATIVE_NOISE or ratio < MIN_NOISE_TO_PROGRESS:
        return None
    fixes = [
        _fixes.scale_learning_rate(ctx, 0.5, "smaller updates overshoot less"),
        _fixes.more_accumulation(ctx, "a larger effective batch averages out gradient noise"),
    ]
    clip = _fixes.clip_to_percentile(ctx, "clip the largest updates")
    fixes += [clip] if clip else []
    return loss_oscillating.finding(
        f"training loss swings by {relative:.0%} of its level from log to log, "
        + ("with no net progress" if progress <= 0 else f"{ratio:.1f}x the total progress of {progress:.4g}"),
        confidence=confidence_from_margin(relative, MIN_RELATIVE_NOISE, 0.3),
        evidence={
            "noise": s.train_noise,
            "relative_noise": relative,
            "level": s.train_end,
            "total_progress": progress,
            "noise_to_progress": ratio,
        },
        region=(float(s.train.steps[0]), float(s.train.steps[-1])),
        fixes=fixes,
    )
