"""Argument changes shared by several rules, computed from the run's own values."""

from __future__ import annotations

import math

import numpy as np

from diagnostics.advice import Current, current, round_lr, warmup_fraction
from diagnostics.findings import Fix
from diagnostics.rules._base import RuleContext

QLORA_PAPER = "Dettmers et al. 2023, QLoRA (artidoro/qlora scripts)"
HF_DOCS = "transformers TrainingArguments documentation"
LORA_METHODS = ("lora", "qlora", "dora")


def logged_peak_lr(ctx: RuleContext) -> float | None:
    lr = ctx.stats.lr
    return float(np.max(lr.values)) if len(lr) else None


def scale_learning_rate(ctx: RuleContext, factor: float, why: str, source: str = "") -> Fix:
    lr = current(ctx.run, "learning_rate", logged_peak_lr(ctx))
    return Fix("learning_rate", lr.value, round_lr(lr.value * factor), why + lr.note, source)


def set_warmup(
    ctx: RuleContext, fraction: float, why: str, source: str = QLORA_PAPER, *, at_least: bool = False
) -> Fix | None:
    """Warm-up as a fraction of the run, named as the user's transformers names it (None when the
    run already warms up about that long, or, with ``at_least``, longer: a run that diverged is
    never told to shorten its warm-up)."""
    now = warmup_fraction(ctx.run)
    if now is None and ctx.stats.lr_schedule is not None:
        now = round(ctx.stats.lr_schedule.warmup_fraction, 3)
    if now is not None and abs(now - fraction) <= 0.2 * fraction:
        return None
    if at_least and now is not None and now >= fraction:
        return None
    param = ctx.vocabulary.warmup_param
    note = " (a float below 1 is a fraction of the run in transformers 5)" if param == "warmup_steps" else ""
    return Fix(param, now, fraction, why + note, source)


def clip_to_percentile(ctx: RuleContext, why: str, percentile: float = 90) -> Fix | None:
    grad = ctx.stats.grad_norm_all.finite
    if len(grad) < 5:
        return None
    target = float(np.percentile(grad.values, percentile))
    now = current(ctx.run, "max_grad_norm")
    if now.value is not None and target >= float(now.value):
        return None
    return max_grad_norm_to(now, target, why, "research notes: AUTOTRAINER repairs")


def max_grad_norm_to(now: Current, target: float, why: str, source: str) -> Fix:
    """Clip at ``target`` (two significant digits, as norms are read off a log)."""
    return Fix("max_grad_norm", now.value, float(f"{target:.2g}"), why + now.note, source)


def more_accumulation(ctx: RuleContext, why: str) -> Fix:
    now = current(ctx.run, "gradient_accumulation_steps")
    return Fix("gradient_accumulation_steps", now.value, int(now.value or 1) * 2, why + now.note)


def raise_dropout(ctx: RuleContext, why: str) -> Fix | None:
    """LoRA-family runs regularise through ``lora_dropout``; full fine-tuning has none to raise."""
    method = ctx.run.config.method
    if method not in (*LORA_METHODS, None):
        return None
    now = current(ctx.run, "lora_dropout")
    value = float(now.value or 0.0)
    if value >= 0.1:
        return None
    return Fix("lora_dropout", now.value, 0.1, why + now.note, QLORA_PAPER + ": 0.1 for 7B-13B models")


def add_weight_decay(ctx: RuleContext, why: str) -> Fix | None:
    now = current(ctx.run, "weight_decay")
    if float(now.value or 0.0) >= 0.01:
        return None
    return Fix("weight_decay", now.value, 0.01, why + now.note, "Unsloth / LLaMA-Factory defaults (0.01)")


def epochs_to(ctx: RuleContext, epoch: float, why: str) -> Fix | None:
    """``num_train_epochs`` cut to ``epoch`` (rounded up to a half epoch)."""
    if not math.isfinite(epoch) or epoch <= 0:
        return None
    target = max(0.5, math.ceil(epoch * 2) / 2)
    now = current(ctx.run, "num_train_epochs")
    if now.value is not None and target >= float(now.value):
        return None
    return Fix("num_train_epochs", now.value, target, why + now.note)


def early_stopping(ctx: RuleContext) -> list[Fix]:
    """Keep the best checkpoint and stop once eval loss stops improving (HF EarlyStoppingCallback)."""
    fixes = [
        Fix(
            "load_best_model_at_end",
            ctx.run.config.get("load_best_model_at_end", False),
            True,
            "keep the checkpoint with the lowest eval loss instead of the last one "
            '(with metric_for_best_model="eval_loss" and save_steps a multiple of eval_steps)',
            HF_DOCS,
        ),
        Fix(
            "early_stopping_patience",
            None,
            2,
            "stop after two evaluations without improvement: pass "
            "callbacks=[EarlyStoppingCallback(early_stopping_patience=2)] to the Trainer",
            "transformers EarlyStoppingCallback",
        ),
    ]
    return fixes


def longer_training(ctx: RuleContext, factor: float, why: str) -> Fix:
    """More steps: ``max_steps`` when the run set it, else ``num_train_epochs``."""
    planned = ctx.run.planned_steps
    epochs = ctx.run.config.get("num_train_epochs")
    if isinstance(epochs, int | float) and 0 < epochs < 10_000:
        return Fix("num_train_epochs", epochs, float(f"{epochs * factor:.3g}"), why)
    if planned:
        return Fix("max_steps", planned, int(planned * factor), why)
    return Fix("num_train_epochs", None, f"x{factor:g}", why + " (the run's length is not in its files)")
