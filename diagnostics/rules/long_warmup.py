"""LRS001 long-warmup."""

from __future__ import annotations

from diagnostics.advice import warmup_fraction
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, confidence_from_margin, rule

# "warm-up of 15% or more of the run's planned steps (the usual range is 3-10%)": real_logs/LABELING.md;
# QLoRA uses 3%, LLaMA-Factory and Axolotl examples 10% (research/search_spaces.md).
MAX_WARMUP = 0.15
RECOMMENDED = 0.03


@rule("LRS001", "long-warmup", "lr_schedule", "warning")
def long_warmup(ctx: RuleContext):
    """
    ## What it detects
    The learning-rate warm-up takes 15% or more of the run's planned steps, read from the
    configuration when it says (`warmup_ratio`, or `warmup_steps`) and otherwise from the logged
    learning-rate curve. A checkpoint still warming up at 15% of its planned run counts too.

    ## Why it matters
    Warm-up protects the first updates while Adam's moment estimates are empty; a few percent of the
    run is enough (QLoRA: 3%; LLaMA-Factory/Axolotl: 10%). Beyond that the run spends a large share
    of its budget at a reduced rate and short runs never train at full speed.

    ## Evidence
    The warm-up length in steps and as a fraction of the planned steps, the peak rate and where it
    was reached, and whether the value comes from the configuration or the curve.

    ## Fix
    Warm up over 3% of the run: `warmup_steps=0.03` on transformers 5 (a float below 1 is a
    ratio), `warmup_ratio=0.03` on 4.x.

    ## References
    Dettmers et al. 2023 (QLoRA scripts: warmup_ratio 0.03); real_logs/LABELING.md (`lr_schedule`);
    research/search_spaces.md.
    """
    s = ctx.stats
    configured = warmup_fraction(ctx.run)
    schedule = s.lr_schedule
    if configured is not None:
        fraction, origin = configured, "configuration"
        end_step = configured * s.total_steps
    elif schedule is not None:
        fraction, origin = schedule.warmup_fraction, "learning-rate curve"
        end_step = schedule.warmup_end_step
    else:
        return long_warmup.abstain("no learning-rate curve and no warm-up setting in the run's files")
    if fraction < MAX_WARMUP:
        return None
    still = schedule is not None and schedule.still_warming_up
    text = "is still warming up at" if still and origin != "configuration" else "warms up for"
    return long_warmup.finding(
        f"the learning rate {text} {end_step:.0f} of {s.total_steps:.0f} planned steps ({fraction:.0%}; "
        f"3-10% is usual)",
        confidence=confidence_from_margin(fraction, MAX_WARMUP, 0.3),
        evidence={
            "warmup_fraction": fraction,
            "warmup_end_step": end_step,
            "planned_steps": s.total_steps,
            "from": origin,
            "peak_lr": schedule.peak if schedule else None,
        },
        region=(float(s.lr.steps[0]) if len(s.lr) else 0.0, end_step),
        metric="learning_rate",
        fixes=[_fixes.set_warmup(ctx, RECOMMENDED, "a short warm-up is enough for Adam's moments to settle")],
    )
