"""OVF001 eval-loss-rising."""

from __future__ import annotations

import numpy as np

from diagnostics import stats as curve_stats
from diagnostics.curves import MIN_EVAL_POINTS
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# The smallest rise that counts, relative to the best eval loss. "Ends within a few percent of its
# best" is healthy (real_logs/LABELING.md) but a steady creep of 1-2% over several evaluations
# is the classic early sign (research/diagnostics.md proposes 2%; AUTOTRAINER uses a 0.01 gap).
MIN_RISE = 0.01
# ... and the rise must stand out of the eval curve's own point-to-point noise.
NOISE_MULTIPLE = 2.0
# A rise of 5% of the best eval loss is far outside what evaluation on a fixed eval set varies by
# between checks in healthy runs (their eval curves move by 0.1-3% from one check to the next).
CLEAR_RISE = 0.05


@rule("OVF001", "eval-loss-rising", "overfitting", "warning")
def eval_loss_rising(ctx: RuleContext):
    """
    ## What it detects
    The eval loss reaches its minimum and then rises, while the training loss does not rise: every
    later evaluation is above the best, and either the rise creeps on over two or more evaluations
    (more than 1% of the best and twice the eval loss's own noise), or the later evaluations sit
    typically 5% or more above the best (a single later evaluation counts when it is that far up,
    as at the end of a three-epoch run evaluated once per epoch).

    ## Why it matters
    From the minimum on, the model is fitting the training set at the cost of held-out data: every
    later step makes the final model worse. A training loss that rises too is instability, not
    overfitting (see DIV003).

    ## Evidence
    The best eval loss and its step/epoch, the last eval loss, the rise (relative and in noise
    units), the Mann-Kendall trend of the evaluations after the best.

    ## Fix
    Stop at the best epoch (`num_train_epochs` -> the epoch of the minimum) and keep the best
    checkpoint (`load_best_model_at_end=True` with early stopping); regularise more
    (`lora_dropout` 0.1, `weight_decay` 0.01) or lower the learning rate.

    ## References
    HF EarlyStoppingCallback; Dettmers et al. 2023 (lora_dropout 0.1 at 7-13B); research/diagnostics.md
    (AUTOTRAINER and UMLAUT overfitting checks).
    """
    s = ctx.stats
    if s.n_eval < MIN_EVAL_POINTS:
        return eval_loss_rising.abstain(f"eval loss logged {s.n_eval} time(s); {MIN_EVAL_POINTS} are needed")
    best_i = s.eval_best_index
    after = s.eval.values[best_i + 1 :]
    best = s.eval_best
    if not after.size or best <= 0 or not np.all(after > best):
        return None
    rise = s.eval_last - best
    tail_trend = curve_stats.trend(s.eval.steps[best_i:], s.eval.values[best_i:])
    # The classic sign: a steady creep over two or more evaluations, out of the noise.
    creeping = (
        len(after) >= 2
        and rise >= MIN_RISE * best
        and rise >= NOISE_MULTIPLE * s.eval_noise
        and (tail_trend is None or tail_trend.slope > 0)
    )
    # Or a clear step up that stays: every later evaluation above the best, typically 5% or more
    # (a single later evaluation counts when it is that far up, as at the end of a 3-epoch run).
    # The median of k evaluations is uncertain by about 1.25 noise / sqrt(k): it must clear twice that.
    typical = float(np.median(after))
    stepped_up = typical - best >= max(CLEAR_RISE * best, 2.5 * s.eval_noise / np.sqrt(len(after)))
    if not (creeping or stepped_up):
        return None
    rise = max(rise, typical - best)
    if s.n_train >= 2:
        smooth = s.train_smooth
        train_at_best = float(np.interp(s.eval_best_step, s.train.steps, smooth))
        train_end = float(np.interp(s.eval.steps[-1], s.train.steps, smooth))
        if train_at_best > 0 and train_end > 1.1 * train_at_best:
            return None
    best_epoch = float(s.eval.epochs[best_i])
    fixes = [
        _fixes.epochs_to(ctx, best_epoch, "the eval loss was lowest there"),
        *_fixes.early_stopping(ctx),
        _fixes.raise_dropout(ctx, "more regularisation against fitting the training set"),
        _fixes.add_weight_decay(ctx, "more regularisation against fitting the training set"),
    ]
    relative = rise / best
    noise_units = rise / s.eval_noise if s.eval_noise > 0 else float("inf")
    epoch_text = f", epoch {best_epoch:.3g}" if np.isfinite(best_epoch) else ""
    return eval_loss_rising.finding(
        f"eval loss bottomed at {best:.4g} (step {s.eval_best_step:g}{epoch_text}) and rose {relative:.1%} "
        f"to {s.eval_last:.4g} over the {len(after)} evaluations since",
        confidence=confidence_from_margin(min(relative / MIN_RISE, noise_units / NOISE_MULTIPLE), 1.0, 5.0),
        evidence={
            "eval_best": best,
            "eval_best_step": s.eval_best_step,
            "eval_best_epoch": best_epoch,
            "eval_last": s.eval_last,
            "rise_relative": relative,
            "rise_in_noise_units": noise_units,
            "trend_p": tail_trend.p if tail_trend else None,
        },
        region=(s.eval_best_step, float(s.eval.steps[-1])),
        metric="eval_loss",
        fixes=fixes,
    )
