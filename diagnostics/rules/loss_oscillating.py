"""OSC001 loss-oscillating."""

from __future__ import annotations

import numpy as np

from diagnostics.curves import MIN_TRAIN_POINTS
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# Swings of 10% of the loss level or more (research/diagnostics.md: "relative noise > 0.10") ...
MIN_RELATIVE_NOISE = 0.10
# ... that are as large as half of all the progress the run made: a noisy-but-trending curve
# (LABELING.md) has noise far below its total drop.
MIN_NOISE_TO_PROGRESS = 0.5
# The eval loss is averaged over a whole eval set, so it is far smoother than a logged training loss:
# swings of 15% between evaluations, five or more of them, are instability, not sampling noise.
MIN_EVAL_RELATIVE_NOISE = 0.15
MIN_EVAL_SWINGS = 5


def _swinging(relative: float, noise: float, progress: float, threshold: float) -> bool:
    return relative >= threshold and (progress <= 0 or noise / progress >= MIN_NOISE_TO_PROGRESS)


@rule("OSC001", "loss-oscillating", "oscillating", "warning")
def loss_oscillating(ctx: RuleContext):
    """
    ## What it detects
    The training loss swings up and down by 10% of its level or more from one log to the next, and
    the swings are at least half as large as everything the run gained (start level minus end
    level): the curve goes up and down without settling. The eval loss is checked the same way
    (five or more evaluations, swings of 15% of its level: an eval loss averages a whole eval set
    and is far smoother than a logged training loss).

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
    if s.n_train < MIN_TRAIN_POINTS and s.n_eval < MIN_EVAL_SWINGS:
        return loss_oscillating.abstain(f"fewer than {MIN_TRAIN_POINTS} training losses logged")
    curve = "training"
    relative, progress, noise = 0.0, 0.0, 0.0
    if s.n_train >= MIN_TRAIN_POINTS:
        relative = s.train_relative_noise
        progress = max(s.train_peak_start - s.train_end, 0.0)
        noise = s.train_noise
    if not _swinging(relative, noise, progress, MIN_RELATIVE_NOISE) and s.n_eval >= MIN_EVAL_SWINGS:
        level = float(np.median(s.eval.values[-max(3, s.n_eval // 3) :]))
        eval_relative = s.eval_noise / level if level > 0 else 0.0
        eval_progress = max(float(s.eval.values[0]) - s.eval_last, 0.0)
        if _swinging(eval_relative, s.eval_noise, eval_progress, MIN_EVAL_RELATIVE_NOISE):
            curve, relative, progress, noise = "eval", eval_relative, eval_progress, s.eval_noise
    if not _swinging(
        relative, noise, progress, MIN_RELATIVE_NOISE if curve == "training" else MIN_EVAL_RELATIVE_NOISE
    ):
        return None
    ratio = noise / progress if progress > 0 else float("inf")
    fixes = [
        _fixes.scale_learning_rate(ctx, 0.5, "smaller updates overshoot less"),
        _fixes.more_accumulation(ctx, "a larger effective batch averages out gradient noise"),
    ]
    fixes.append(_fixes.clip_to_percentile(ctx, "clip the largest updates"))
    series = s.train if curve == "training" else s.eval
    return loss_oscillating.finding(
        f"{curve} loss swings by {relative:.0%} of its level from log to log, "
        + ("with no net progress" if progress <= 0 else f"{ratio:.1f}x the total progress of {progress:.4g}"),
        confidence=confidence_from_margin(relative, MIN_RELATIVE_NOISE, 0.3),
        evidence={
            "curve": curve,
            "noise": noise,
            "relative_noise": relative,
            "total_progress": progress,
            "noise_to_progress": ratio,
        },
        region=(float(series.steps[0]), float(series.steps[-1])),
        metric="loss" if curve == "training" else "eval_loss",
        fixes=fixes,
    )
