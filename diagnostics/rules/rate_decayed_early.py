"""LRS003 rate-decayed-early."""

from __future__ import annotations

import numpy as np

from diagnostics.findings import Fix
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# "a rate decayed to ~0 long before the end while loss still falls" (real_logs/LABELING.md): ~0 is
# under 5% of the peak; "long before" is the last 30% of the run or more.
MIN_SHARE_AT_ZERO = 0.3


@rule("LRS003", "rate-decayed-early", "lr_schedule", "warning")
def rate_decayed_early(ctx: RuleContext):
    """
    ## What it detects
    The learning rate falls below 5% of its peak with 30% or more of the run still to go, while the
    training loss was still falling when it got there.

    ## Why it matters
    The remaining steps barely change the weights: a schedule sized for a shorter run (a
    `max_steps` or epoch count that disagrees with the scheduler's `num_training_steps`, a
    scheduler stepped per micro-batch) wastes that compute while the model was still improving.

    ## Evidence
    The step where the rate reached ~0, the share of the run left, the loss trend just before.

    ## Fix
    Make the schedule span the whole run (a scheduler sized by the Trainer from `max_steps` /
    `num_train_epochs`), or stop the run where the rate reaches zero.

    ## References
    real_logs/LABELING.md (`lr_schedule`); transformers `get_scheduler` documentation.
    """
    s = ctx.stats
    schedule = s.lr_schedule
    if schedule is None:
        return rate_decayed_early.abstain("no learning-rate curve logged")
    if schedule.near_zero_fraction < MIN_SHARE_AT_ZERO or schedule.final_fraction_of_peak > 0.05:
        return None
    zero_step = s.total_steps * (1 - schedule.near_zero_fraction)
    before = s.x_of(np.array([zero_step]))[0]
    window = s.window(max(0.0, before - 0.3), before)
    if window is None or not window.falling:
        return None
    return rate_decayed_early.finding(
        f"the learning rate is ~0 from step {zero_step:.0f}, "
        f"with {schedule.near_zero_fraction:.0%} of the run "
        "left, while the loss was still falling",
        confidence=confidence_from_margin(schedule.near_zero_fraction, MIN_SHARE_AT_ZERO, 0.6),
        evidence={
            "zero_from_step": zero_step,
            "share_left": schedule.near_zero_fraction,
            "loss_slope_before_per_10pct": window.log_slope_per_10pct,
        },
        region=(zero_step, s.total_steps),
        metric="learning_rate",
        fixes=[
            Fix(
                "lr_scheduler_type",
                ctx.run.config.get("lr_scheduler_type"),
                "cosine",
                "let the Trainer size the schedule from max_steps / num_train_epochs so it spans the run",
                "transformers get_scheduler",
            )
        ],
    )
