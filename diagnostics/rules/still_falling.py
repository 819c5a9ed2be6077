"""SLW001 still-falling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnostics import stats as curve_stats
from diagnostics.curves import LATE_WINDOW, MIN_EVAL_POINTS, MIN_TRAIN_POINTS, CurveStats
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# research/diagnostics.md: "late slope <= -2% per 10% of training".
STEEP_SLOPE = -0.02
# A curve that has not begun to level off: its last 30% still carries 15% of the run's improvement
# (a straight descent carries 30%; an exponential approach to its floor under 5%), falling
# significantly at 1% or more per 10% of the run (slower than that is flat: see STL001).
UNCONVERGED_SHARE = 0.15
UNCONVERGED_SLOPE = -0.01
# A checkpoint of an unfinished run only has to be clearly descending: 0.75% per 10% or more, with a
# fifth or more of its improvement made in the last 30% (it is not levelling off).
CHECKPOINT_SLOPE = -0.0075
CHECKPOINT_SHARE = 0.2
# Whatever the path, the last 30% must still carry 5% of the improvement: a curve crawling along its
# floor (a near-zero loss falling on a log scale) has converged.
MIN_SHARE = 0.05
# A finished run whose rate annealed to under 10% of its peak flattens because of its schedule:
# more steps of the same schedule stretch the curve rather than extend it.
ANNEALED = 0.1
EVAL_POINTS = 4


@dataclass(frozen=True)
class _Tail:
    """How a curve ends: its share of the improvement made in the last 30%, its log slope per 10%
    of the run there, and whether the fall is established (significant, or every one of the last
    three logs lower when there are too few to test)."""

    metric: str
    share: float
    slope: float
    falling: bool
    significant: bool


@rule("SLW001", "still-falling", "too_slow", "warning")
def still_falling(ctx: RuleContext):
    """
    ## What it detects
    The loss is still clearly going down when the log ends, in one of three shapes: a steep tail
    (2% or more lower per 10% of the run over the last 30%, significantly, in research notes'
    terms); a curve that has not begun to level off (its last 30% still carries 15% or more of the
    run's improvement on the linear scale, and it falls 1% or more per 10% there); or a checkpoint
    of an unfinished run still descending (0.75% per 10%, a fifth of its improvement in the last
    30%). In every case the last 30% must carry at least 5% of the improvement (a near-zero loss
    crawling along its floor has converged). The eval loss is checked as well as the training loss,
    unless the eval loss has not improved for two evaluations (more training would not help the
    model). A finished run whose learning rate annealed to under 10% of its peak is not reported:
    its flattening is the schedule's.

    ## Why it matters
    The run stopped before it converged: more steps (or a larger learning rate) would still lower
    the loss. For a checkpoint it says the run is still mid-descent and worth continuing.

    ## Evidence
    The curve used, its share of the improvement made in the last 30%, its late slope per 10% of
    the run and whether the fall is significant, whether the run finished.

    ## Fix
    Train longer (2x the steps or epochs) and, for a finished run, consider a larger learning rate
    (x2) or a shorter warm-up.

    ## References
    research/diagnostics.md (starting rule 7; AUTOTRAINER slow-convergence repair: raise the rate);
    real_logs/LABELING.md (`too_slow`).
    """
    s = ctx.stats
    if s.n_train < MIN_TRAIN_POINTS and s.n_eval < EVAL_POINTS:
        return still_falling.abstain("too few points to judge the end of the run")
    schedule = s.lr_schedule
    if s.finished and schedule is not None and schedule.final_fraction_of_peak < ANNEALED:
        return None
    eval_stopped_improving = s.n_eval >= MIN_EVAL_POINTS and s.eval_best_index <= s.n_eval - 3
    tails = []
    if s.n_train >= MIN_TRAIN_POINTS and not eval_stopped_improving:
        tails.append(_tail(s, "loss"))
    if s.n_eval >= EVAL_POINTS:
        tails.append(_tail(s, "eval_loss"))
    for tail in tails:
        if tail is None or tail.share < MIN_SHARE:
            continue
        steep = tail.slope <= STEEP_SLOPE and (tail.significant or tail.share >= CHECKPOINT_SHARE)
        unconverged = tail.share >= UNCONVERGED_SHARE and tail.falling and tail.slope <= UNCONVERGED_SLOPE
        checkpoint = not s.finished and tail.share >= CHECKPOINT_SHARE and tail.slope <= CHECKPOINT_SLOPE
        if steep or unconverged or checkpoint:
            return _finding(ctx, tail)
    return None


def _tail(s: CurveStats, metric: str) -> _Tail | None:
    if metric == "loss":
        late, share, values, steps = s.train_late, s.late_share, s.train.values, s.train.steps
    else:
        late, share = s.window(0.5, 1.0, "eval"), s.late_share_of("eval")
        values, steps = s.eval.values, s.eval.steps
    if late is not None:
        return _Tail(metric, share, late.log_slope_per_10pct, late.falling, late.falling)
    # Too few logs at the end for a trend test: read the last three.
    last = values[-3:]
    if len(last) < 3 or np.any(last <= 0):
        return None
    slope = curve_stats.theil_sen_slope(s.x_of(steps[-3:]), np.log(last)) * 0.1
    return _Tail(metric, share, slope, bool(np.all(np.diff(last) < 0)), False)


def _finding(ctx: RuleContext, tail: _Tail):
    s = ctx.stats
    fixes = [_fixes.longer_training(ctx, 2.0, "the loss was still falling when the run stopped")]
    if s.finished:
        fixes.append(_fixes.scale_learning_rate(ctx, 2.0, "converge in the same budget"))
    return still_falling.finding(
        f"{'eval' if tail.metric == 'eval_loss' else 'training'} loss still falls "
        f"{-tail.slope:.1%} per 10% of the run at the end ({tail.share:.0%} of its improvement came in the "
        "last 30%"
        + ("" if s.finished else f"; the log stops at step {s.last_step:g} of {s.total_steps:g}")
        + ")",
        confidence=confidence_from_margin(tail.share, MIN_SHARE, 0.3),
        evidence={
            "curve": tail.metric,
            "late_share": tail.share,
            "late_slope_per_10pct": tail.slope,
            "significant": tail.significant,
            "finished": s.finished,
            "last_step": s.last_step,
            "planned_steps": s.total_steps,
        },
        region=(s.first_step + (1 - LATE_WINDOW) * (s.last_step - s.first_step), s.last_step),
        metric=tail.metric,
        fixes=fixes,
    )
