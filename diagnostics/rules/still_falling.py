"""SLW001 still-falling."""

from __future__ import annotations

from diagnostics.curves import MIN_EVAL_POINTS, MIN_TRAIN_POINTS, Window
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# research/diagnostics.md: "late slope <= -2% per 10% of training".
FINISHED_SLOPE = -0.02
# A checkpoint of an unfinished run only has to be clearly descending: a significant fall of at
# least 0.75% per 10% ...
CHECKPOINT_SLOPE = -0.0075
# ... with a fifth or more of its improvement made in the last 30% (it is not levelling off).
CHECKPOINT_SHARE = 0.2
# Either way the last 30% must still carry 5% of the improvement: a curve crawling along its floor
# (a near-zero loss falling on a log scale) has converged.
MIN_SHARE = 0.05
# A finished run whose rate annealed to under 10% of its peak flattens because of its schedule:
# more steps of the same schedule stretch the curve rather than extend it.
ANNEALED = 0.1


@rule("SLW001", "still-falling", "too_slow", "warning")
def still_falling(ctx: RuleContext):
    """
    ## What it detects
    The loss is still clearly falling when the log ends: over the last 30% of the run it falls by 2%
    or more per 10% of training (a checkpoint of an unfinished run: a significant fall of 0.75% or
    more with a fifth of its improvement made in that last stretch), and that stretch still holds
    at least 5% of the run's total improvement. The eval loss is checked as well as the training
    loss, unless the eval loss has not improved for two evaluations (more training would not help
    the model). A finished run whose learning rate annealed to under 10% of its peak is not reported.

    ## Why it matters
    The run stopped before it converged: more steps (or a larger learning rate) would still lower
    the loss. For a checkpoint it says the run is still mid-descent and worth continuing.

    ## Evidence
    The curve used, its late slope per 10% of the run and the Mann-Kendall significance, the share
    of the improvement made late, whether the run finished and how far the rate annealed.

    ## Fix
    Train longer (1.5-2x the steps or epochs) and, for a finished run, consider a larger learning
    rate (x2) or a shorter warm-up.

    ## References
    research/diagnostics.md (starting rule 7; AUTOTRAINER slow-convergence repair: raise the rate).
    """
    s = ctx.stats
    if s.n_train < MIN_TRAIN_POINTS and s.n_eval < MIN_EVAL_POINTS:
        return still_falling.abstain("too few points to judge the end of the run")
    schedule = s.lr_schedule
    annealed = s.finished and schedule is not None and schedule.final_fraction_of_peak < ANNEALED
    if annealed:
        return None
    candidates: list[tuple[str, Window, float]] = []
    eval_stopped_improving = s.n_eval >= MIN_EVAL_POINTS and s.eval_best_index <= s.n_eval - 3
    if s.n_train >= MIN_TRAIN_POINTS and s.train_late is not None and not eval_stopped_improving:
        candidates.append(("loss", s.train_late, s.late_share))
    if s.n_eval >= 4:
        late = s.window(0.5, 1.0, "eval")
        if late is not None:
            candidates.append(("eval_loss", late, s.late_share_of("eval")))
    for metric, late, share in candidates:
        if share < MIN_SHARE:
            continue
        finished_rule = late.log_slope_per_10pct <= FINISHED_SLOPE and (
            late.falling or share >= CHECKPOINT_SHARE
        )
        checkpoint_rule = (
            not s.finished and late.log_slope_per_10pct <= CHECKPOINT_SLOPE and share >= CHECKPOINT_SHARE
        )
        if not (finished_rule or checkpoint_rule):
            continue
        fixes = [_fixes.longer_training(ctx, 2.0, "the loss was still falling when the run stopped")]
        if s.finished:
            fixes.append(_fixes.scale_learning_rate(ctx, 2.0, "converge in the same budget"))
        threshold = FINISHED_SLOPE if finished_rule else CHECKPOINT_SLOPE
        return still_falling.finding(
            f"{'eval' if metric == 'eval_loss' else 'training'} loss still falls "
            f"{-late.log_slope_per_10pct:.1%} per 10% of the run at the end "
            f"({share:.0%} of its improvement came in the last 30%"
            + ("" if s.finished else f"; the log stops at step {s.last_step:g} of {s.total_steps:g}")
            + ")",
            confidence=confidence_from_margin(late.log_slope_per_10pct, threshold, 4 * threshold),
            evidence={
                "curve": metric,
                "late_slope_per_10pct": late.log_slope_per_10pct,
                "significant": late.falling,
                "late_share": share,
                "finished": s.finished,
                "last_step": s.last_step,
                "planned_steps": s.total_steps,
            },
            region=(s.first_step + late.x_start * (s.last_step - s.first_step), s.last_step),
            metric=metric,
            fixes=fixes,
        )
    return None
