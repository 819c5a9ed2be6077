"""DIV003 rising-loss."""

from __future__ import annotations

import numpy as np

from diagnostics import stats as curve_stats
from diagnostics.curves import LATE_WINDOW, MIN_EVAL_POINTS, MIN_TRAIN_POINTS
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# A loss that ends 50% above its best level has lost most of what a typical fine-tuning run gains
# after its first fast drop (research/diagnostics.md: "EMA_end > 1.5 x min EMA").
RISE_FACTOR = 1.5
# Eval loss rising with the training loss: both must move, the training loss by more than noise.
TRAIN_CO_RISE = 0.10


@rule("DIV003", "rising-loss", "diverging", "error")
def rising_loss(ctx: RuleContext):
    """
    ## What it detects
    The loss climbs and stays up: the smoothed training loss ends at least 1.5x its best level, or
    the eval loss jumps to 1.5x its best and stays there while the training loss rises too.

    ## Why it matters
    Training that makes the training loss itself worse is unstable: the learning rate is too high
    for the batch size, often exposed once warm-up ends. Unlike overfitting, the training loss rises
    as well, so more data or regularisation will not help; smaller updates will.

    ## Evidence
    Best and final levels of the smoothed curves, the step where the level shifted up (a PELT change
    point of the log loss), the step range of the rise, and for the eval case
    the training loss at the start and end of that range.

    ## Fix
    Halve the learning rate, clip gradients at 0.3 and warm up over ~3% of the run.

    ## References
    research/diagnostics.md (AUTOTRAINER's divergence checks; "EMA_end > 1.5 x min EMA");
    Dettmers et al. 2023 (max_grad_norm 0.3, warm-up 3%).
    """
    s = ctx.stats
    fixes = [
        _fixes.scale_learning_rate(ctx, 0.5, "the loss rises when updates are too large"),
        _fixes.set_warmup(ctx, 0.03, "ramp the rate up gently", at_least=True),
    ]
    fixes.append(_fixes.clip_to_percentile(ctx, "clip the largest updates"))
    if s.n_eval >= MIN_EVAL_POINTS and s.n_train >= MIN_TRAIN_POINTS:
        best = s.eval_best
        after = s.eval.values[s.eval_best_index + 1 :]
        if len(after) >= 2 and best > 0 and np.all(after >= 1.3 * best) and after.max() >= RISE_FACTOR * best:
            start_step = s.eval_best_step
            end_step = float(
                s.eval.steps[s.eval_best_index + 1 + int(np.argmax(after >= RISE_FACTOR * best))]
            )
            smooth = s.train_smooth
            train_at_best = float(np.interp(start_step, s.train.steps, smooth))
            train_at_end = float(np.interp(end_step, s.train.steps, smooth))
            if train_at_best > 0 and train_at_end >= (1 + TRAIN_CO_RISE) * train_at_best:
                ratio = float(after.max() / best)
                return rising_loss.finding(
                    f"eval loss jumped from {best:.4g} (step {start_step:g}) to {after.max():.4g} and stayed "
                    f"up while the training loss rose {train_at_end / train_at_best - 1:.0%} "
                    "over the same steps",
                    confidence=confidence_from_margin(ratio, RISE_FACTOR, 2.5),
                    evidence={
                        "eval_best": best,
                        "eval_best_step": start_step,
                        "eval_after_max": float(after.max()),
                        "train_smoothed_at_best": train_at_best,
                        "train_smoothed_after": train_at_end,
                    },
                    region=(start_step, float(s.eval.steps[-1])),
                    metric="eval_loss",
                    fixes=fixes,
                )
    if s.n_train < MIN_TRAIN_POINTS:
        return rising_loss.abstain(f"fewer than {MIN_TRAIN_POINTS} training losses logged")
    smooth = s.train_smooth
    late = s.train_x >= 1 - LATE_WINDOW
    if late.all() or not late.any():
        return None
    best_before = float(np.min(smooth[~late]))
    end_level = s.train_end
    rise = end_level - best_before
    if best_before <= 0 or end_level < RISE_FACTOR * best_before or rise < 3 * s.train_noise:
        return None
    if s.train_late is not None and s.train_late.falling:
        return None
    best_index = int(np.argmin(np.where(late, np.inf, smooth)))
    best_step = float(s.train.steps[best_index])
    # Where the level shifted up: the change point (PELT) nearest after the best level.
    shifts = [
        i for i in curve_stats.change_points(np.log(np.maximum(s.train.values, 1e-12))) if i > best_index
    ]
    rise_step = float(s.train.steps[shifts[0]]) if shifts else best_step
    return rising_loss.finding(
        f"training loss rose from {best_before:.4g} (smoothed, step {best_step:g}) "
        f"to {end_level:.4g} at the end"
        + (f"; the level shifted up at step {rise_step:g}" if shifts else ""),
        confidence=confidence_from_margin(end_level / best_before, RISE_FACTOR, 3.0),
        evidence={
            "best_smoothed": best_before,
            "best_step": best_step,
            "final_level": end_level,
            "noise": s.train_noise,
            "change_point_step": rise_step if shifts else None,
        },
        region=(rise_step, float(s.train.steps[-1])),
        fixes=fixes,
    )
