"""STL001 no-progress."""

from __future__ import annotations

import numpy as np

from diagnostics.curves import MIN_TRAIN_POINTS
from diagnostics.findings import Fix
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# research/diagnostics.md: "< 5% drop over the first 30% of post-warm-up training"; over the whole run
# a loss that improved by less than 10% has not learned (the healthy real logs all fall 11% or more).
MAX_EARLY_DROP = 0.05
MAX_TOTAL_DROP = 0.10
# A checkpoint whose loss has only just started to fall (at 1% or more per 10% of the run) is slow,
# not stuck: SLW001 reports it.
FALLING_SLOPE = -0.01
# Flat means flat both ways: a loss that ends a quarter or more above its start is rising (DIV003
# reads rises of 1.5x; the stalled real logs move between -6% and +10%).
MAX_RISE = 0.25
# The eval loss averages a fixed held-out set, so it is far less noisy than a per-batch training
# loss: four or more evaluations from the first half of the run on that all stay within 1% of the
# first show a run that is not learning even when one lucky batch makes the training loss look like
# it fell. The training loss must still not have fallen 10% from its start (medians, both ends),
# or only within two standard errors of its noise: a model that learned before its first
# evaluation and then flattened has converged, not stalled.
EVAL_POINTS = 4
MAX_EVAL_MOVE = 0.01


@rule("STL001", "no-progress", "stalled", "warning")
def no_progress(ctx: RuleContext):
    """
    ## What it detects
    The training loss is essentially flat: it falls less than 5% over the first 30% of the run
    after warm-up and less than 10% over the whole run (and does not rise by a quarter or more:
    that is DIV003's). A checkpoint whose loss has begun to fall
    clearly at the end is left to SLW001 (too slow).
    A noisy per-batch training loss can hide a stall, so the eval loss is read too: four or more
    evaluations from the first half of the run on, all within 1% of the first, while the training
    loss fell less than 10% from its start or no more than its noise explains.

    ## Why it matters
    The run is not learning. Typical causes are a learning rate far too low, nothing trainable
    (adapters on the wrong modules, frozen parameters), labels that are all masked or misaligned,
    or a task the model cannot learn from its inputs, which then sits at a chance level (ln 2 for
    two classes, ln 4 for four).

    ## Evidence
    Start, early and final levels of the training loss, the drops, the late trend.

    ## Fix
    Raise the learning rate about 3x (research: 2-5x), and check the trainable parameter count and
    the label mask before spending more compute.

    ## References
    research/diagnostics.md (starting rule 6; AUTOTRAINER "best one-epoch gain < 0.01");
    real_logs/LABELING.md (`stalled`).
    """
    s = ctx.stats
    if s.n_train < MIN_TRAIN_POINTS:
        return no_progress.abstain(f"fewer than {MIN_TRAIN_POINTS} training losses logged")
    start_x = 0.0
    schedule = s.lr_schedule
    if schedule is not None and not schedule.still_warming_up:
        start_x = float(s.x_of(np.array([schedule.warmup_end_step]))[0])
    start_x = min(max(start_x, 0.0), 0.5)
    values, x = s.train.values, s.train_x
    # Medians, not extremes: on a noisy curve one high first log is not a drop.
    head = values[x <= start_x + 0.05] if np.any(x <= start_x + 0.05) else values[:1]
    start = float(np.median(head[: max(1, min(3, len(head)))]))
    early = values[(x >= start_x + 0.2) & (x <= start_x + 0.4)]
    early_level = (
        float(np.median(early)) if len(early) else float(np.interp(start_x + 0.3, x, s.train_smooth))
    )
    if start <= 0:
        return None
    early_drop = (start - early_level) / start
    total_drop = s.train_drop
    if early_drop >= MAX_EARLY_DROP or total_drop >= MAX_TOTAL_DROP or total_drop <= -MAX_RISE:
        return _flat_eval(ctx, start)
    late = s.train_late
    if late is not None and late.falling and late.log_slope_per_10pct <= FALLING_SLOPE and not s.finished:
        return None
    return no_progress.finding(
        f"training loss barely moves: {start:.4g} -> {early_level:.4g} over the first 30% "
        f"({early_drop:+.1%}) and {s.train_end:.4g} at the end ({total_drop:.1%} lower in all)",
        confidence=confidence_from_margin(-total_drop, -MAX_TOTAL_DROP, 0.0),
        evidence={
            "start": start,
            "early_level": early_level,
            "end": s.train_end,
            "early_drop": early_drop,
            "total_drop": total_drop,
            "late_slope_per_10pct": late.log_slope_per_10pct if late else None,
        },
        region=(float(s.train.steps[0]), float(s.train.steps[-1])),
        fixes=_stalled_fixes(ctx),
    )


def _flat_eval(ctx: RuleContext, train_start: float):
    """The held-out path: a flat eval loss over most of the run, and no real fall in training."""
    s = ctx.stats
    if s.n_eval < EVAL_POINTS or float(s.x_of(s.eval.steps[:1])[0]) > 0.5:
        return None
    first = float(s.eval.values[0])
    if first <= 0:
        return None
    moves = np.abs(s.eval.values - first) / first
    tail = s.train.values[-max(3, s.n_train // 5) :]
    train_end = float(np.median(tail))
    train_drop = (train_start - train_end) / train_start
    if moves.max() >= MAX_EVAL_MOVE or train_drop <= -MAX_RISE:
        return None
    # The training loss's fall must be small or within its noise: a median of n points has a
    # standard error of about 1.25 sigma / sqrt(n); the start is a median of 3 logs.
    standard_error = 1.25 * s.train_noise * np.sqrt(1 / 3 + 1 / len(tail))
    significant = standard_error == 0 or train_start - train_end > 2 * standard_error
    if train_drop >= MAX_TOTAL_DROP and significant:
        return None
    noise_note = "" if significant else ", within its noise"
    return no_progress.finding(
        f"eval loss does not move: {first:.4g} -> {float(s.eval.values[-1]):.4g} over {s.n_eval} evaluations"
        f" (all within {moves.max():.1%} of the first); training loss {train_start:.4g} ->"
        f" {train_end:.4g} ({train_drop:.1%} lower{noise_note})",
        confidence=confidence_from_margin(-float(moves.max()), -MAX_EVAL_MOVE, 0.0),
        evidence={
            "eval_first": first,
            "eval_last": float(s.eval.values[-1]),
            "eval_max_move": float(moves.max()),
            "eval_points": s.n_eval,
            "train_start": train_start,
            "train_drop": train_drop,
        },
        region=(float(s.eval.steps[0]), float(s.eval.steps[-1])),
        metric="eval_loss",
        fixes=_stalled_fixes(ctx),
    )


def _stalled_fixes(ctx: RuleContext) -> list[Fix]:
    return [
        _fixes.scale_learning_rate(ctx, 3.0, "a loss that does not move usually needs larger updates"),
        Fix(
            "trainable parameters",
            None,
            "> 0 and on the intended modules",
            "print_trainable_parameters(); check target_modules and frozen layers",
        ),
        Fix(
            "labels", None, "prompt masked, completion kept", "check that the loss sees the tokens it should"
        ),
    ]
