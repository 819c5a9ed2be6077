"""DIV001 non-finite-values."""

from __future__ import annotations

import numpy as np

from diagnostics.findings import Fix
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, rule
from diagnostics.runlog import EVAL_LOSS, GRAD_NORM, LOSS


@rule("DIV001", "non-finite-values", "diverging", "error")
def non_finite_values(ctx: RuleContext):
    """
    ## What it detects
    A NaN or infinite training loss, eval loss or gradient norm anywhere in the log.

    ## Why it matters
    Once a weight is NaN every later step is wasted. HF Trainer drops NaN/inf losses from the logged
    average by default (`logging_nan_inf_filter=True`), so the gradient norm is often the only place
    a NaN shows (MiniCPM-V#212: `'loss': 0.0, 'grad_norm': nan`). An isolated infinite gradient
    norm (at most 5% of the logs) with a finite loss is the loss scaler skipping an overflowing step:
    that is reported as a note, not a failure.

    ## Evidence
    The first step and metric with a non-finite value, and how many logs have one.

    ## Fix
    Train in bf16 instead of fp16 where the hardware allows it, lower the learning rate tenfold,
    clip gradients harder (`max_grad_norm 0.3`) and warm up over ~3% of the run.

    ## References
    research/diagnostics.md (HF Trainer log facts); Dettmers et al. 2023 (QLoRA: max_grad_norm 0.3,
    warm-up 3%); unsloth#712.
    """
    bad: list[tuple[float, str, float]] = []
    for metric, series in (
        (LOSS, ctx.stats.train_all),
        (EVAL_LOSS, ctx.stats.eval_all),
        (GRAD_NORM, ctx.stats.grad_norm_all),
    ):
        for step, value in zip(series.steps, series.values, strict=True):
            if not np.isfinite(value):
                bad.append((float(step), metric, float(value)))
    if not bad:
        return None
    bad.sort()
    first_step, first_metric, first_value = bad[0]
    only_inf_grad = all(m == GRAD_NORM and np.isinf(v) for _, m, v in bad)
    rare = len(bad) <= max(1, 0.05 * len(ctx.stats.grad_norm_all))
    evidence = {
        "first_step": first_step,
        "metric": first_metric,
        "value": str(first_value),
        "count": len(bad),
    }
    region = (first_step, bad[-1][0])
    if only_inf_grad and rare:
        return non_finite_values.finding(
            f"grad_norm was inf at {len(bad)} log(s) from step {first_step:g} while the loss stayed finite: "
            "fp16 loss-scale overflows, skipped by the scaler",
            confidence=0.6,
            evidence=evidence,
            region=region,
            metric=GRAD_NORM,
            severity="info",
            fixes=[
                Fix("bf16", ctx.run.config.get("bf16", False), True, "bf16 has fp32's range: no overflow")
            ],
        )
    fixes = [
        Fix(
            "bf16", ctx.run.config.get("bf16", False), True, "bf16 has fp32's exponent range; fp16 overflows"
        ),
        _fixes.scale_learning_rate(ctx, 0.1, "a NaN usually follows an update that was too large"),
        Fix(
            "max_grad_norm",
            ctx.run.config.get("max_grad_norm", 1.0),
            0.3,
            "clip large updates",
            _fixes.QLORA_PAPER,
        ),
        _fixes.set_warmup(ctx, 0.03, "ramp the rate up while the optimizer state is empty", at_least=True),
    ]
    return non_finite_values.finding(
        f"{first_metric} is {first_value} at step {first_step:g} ({len(bad)} non-finite value(s) in all)",
        confidence=0.99,
        evidence=evidence,
        region=region,
        metric=first_metric,
        fixes=fixes,
    )
