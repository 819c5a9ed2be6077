"""Synthetic training runs with known answers, one family per condition.

Each builder returns a RunLog shaped like an HF Trainer log (logging every 10 steps, epochs,
learning rate, optional eval every ``eval_every`` steps) whose true condition is known by
construction. Noise is seeded, multiplicative and small unless the condition is about noise.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from diagnostics import RunLog

LOG_EVERY = 10


def _schedule(step: int, total: int, peak: float, warmup: float, kind: str) -> float:
    warm = max(1, int(warmup * total))
    if step < warm:
        return peak * step / warm
    if kind == "constant":
        return peak
    progress = (step - warm) / max(1, total - warm)
    if kind == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * progress))
    return peak * (1 - progress)


def build(
    train_curve,
    *,
    total: int = 1000,
    epochs: float = 3.0,
    eval_curve=None,
    eval_every: int = 100,
    noise: float = 0.01,
    eval_noise: float | None = None,
    seed: int = 0,
    peak_lr: float = 2e-4,
    warmup: float = 0.03,
    schedule: str = "linear",
    grad_norm=None,
    logged_until: int | None = None,
    name: str = "synthetic",
) -> RunLog:
    """A run whose training loss at run fraction x is ``train_curve(x)`` (times noise)."""
    rng = np.random.default_rng(seed)
    run = RunLog(source=name, format="synthetic", name=name)
    run.config.training_args.update(
        {"max_steps": total, "num_train_epochs": epochs, "logging_steps": LOG_EVERY}
    )
    last = logged_until or total
    for step in range(LOG_EVERY, last + 1, LOG_EVERY):
        x = step / total
        loss = train_curve(x) * (1 + noise * rng.standard_normal())
        metrics = {"loss": loss, "learning_rate": _schedule(step, total, peak_lr, warmup, schedule)}
        metrics["grad_norm"] = grad_norm(x, rng) if grad_norm else 0.5 * (1 + 0.1 * rng.standard_normal())
        run.add(step, epoch=epochs * x, **metrics)
        if eval_curve is not None and step % eval_every == 0:
            run.add(
                step,
                epoch=epochs * x,
                eval_loss=eval_curve(x)
                * (1 + (noise / 3 if eval_noise is None else eval_noise) * rng.standard_normal()),
            )
    return run


def decay(start: float = 2.5, floor: float = 1.0, rate: float = 8.0):
    return lambda x: floor + (start - floor) * math.exp(-rate * x)


def healthy(seed: int = 0) -> RunLog:
    return build(decay(), eval_curve=decay(2.4, 1.15, 7.0), seed=seed, name="healthy")


def overfitting(seed: int = 0) -> RunLog:
    # Eval falls until 40% of the run, then climbs 15% while training keeps falling.
    def eval_curve(x: float) -> float:
        return 1.3 + 1.0 * math.exp(-10 * x) + 0.5 * max(0.0, x - 0.4) ** 1.2

    return build(decay(2.5, 0.6, 4.0), eval_curve=eval_curve, seed=seed, name="overfitting")


def oscillating(seed: int = 0) -> RunLog:
    return build(lambda x: 2.0, noise=0.25, seed=seed, name="oscillating")


def diverging_nan(seed: int = 0) -> RunLog:
    run = build(decay(), seed=seed, name="diverging-nan", logged_until=600)
    run.add(610, epoch=1.83, loss=float("nan"), grad_norm=float("nan"), learning_rate=2e-4)
    run.add(620, epoch=1.86, loss=float("nan"), grad_norm=float("nan"), learning_rate=2e-4)
    return run


def diverging_rise(seed: int = 0, warmup: float = 0.03) -> RunLog:
    # Learns, then blows up once the rate peaks: the loss ends at 2.5x its best.
    def curve(x: float) -> float:
        return 1.0 + 1.5 * math.exp(-15 * x) + (3.0 * (x - 0.5) if x > 0.5 else 0.0)

    return build(curve, seed=seed, name="diverging-rise", schedule="constant", warmup=warmup)


def zero_loss(seed: int = 0) -> RunLog:
    run = RunLog(source="zero-loss", format="synthetic", name="zero-loss")
    run.config.training_args["max_steps"] = 400
    run.add(10, epoch=0.08, loss=8.5, grad_norm=40.0, learning_rate=1e-5)
    for step in range(20, 410, 10):
        run.add(step, epoch=step / 125, loss=0.0, grad_norm=float("nan"), learning_rate=2e-4)
    return run


def stalled(seed: int = 0) -> RunLog:
    return build(lambda x: 2.30 - 0.03 * x, noise=0.01, seed=seed, name="stalled")


def stalled_noisy(seed: int = 0) -> RunLog:
    """Per-batch losses 12% noisy around a flat level, one early batch far above it, and a flat
    eval loss: the training loss alone looks like it fell."""
    run = build(
        lambda x: 3.5, noise=0.12, eval_noise=0.002, seed=seed, eval_curve=lambda x: 3.5, name="stalled-noisy"
    )
    first = run.points[0]
    run.points[0] = dataclasses.replace(first, metrics={**first.metrics, "loss": 5.0})
    return run


def converged_early(seed: int = 0) -> RunLog:
    """Learns within the first 5% (before the first evaluation), then sits at its floor."""
    return build(
        lambda x: 1.5 + 2.0 * math.exp(-80 * x),
        seed=seed,
        eval_curve=lambda x: 1.62 - 0.04 * x,
        name="converged-early",
    )


def chance_level(seed: int = 0) -> RunLog:
    return build(
        lambda x: math.log(4) + 0.01 * math.exp(-20 * x),
        eval_curve=lambda x: math.log(4),
        noise=0.0005,
        seed=seed,
        name="chance-level",
    )


def too_slow(seed: int = 0) -> RunLog:
    # A straight descent at constant rate, cut off at the end of the budget.
    return build(lambda x: 3.0 - 1.2 * x, schedule="constant", seed=seed, name="too-slow")


def too_slow_checkpoint(seed: int = 0) -> RunLog:
    # A checkpoint at 25% of a planned 4,000 steps, still descending.
    return build(
        lambda x: 3.0 * math.exp(-1.5 * x),
        total=4000,
        logged_until=1000,
        seed=seed,
        schedule="cosine",
        name="too-slow-checkpoint",
    )


def memorizing_staircase(seed: int = 0) -> RunLog:
    # Flat inside each epoch, 10% lower after each boundary.
    return build(lambda x: 2.0 * 0.9 ** math.floor(3 * x - 1e-9), noise=0.01, seed=seed, name="staircase")


def memorizing_collapse(seed: int = 0) -> RunLog:
    return build(decay(1.5, 0.01, 12.0), epochs=20, seed=seed, name="collapse")


def long_warmup(seed: int = 0) -> RunLog:
    return build(decay(), warmup=0.3, seed=seed, name="long-warmup")


def insufficient() -> RunLog:
    run = RunLog(source="insufficient", format="synthetic", name="insufficient")
    for step, loss in ((10, 2.0), (20, 1.8), (30, 1.7)):
        run.add(step, epoch=step / 100, loss=loss)
    return run


def grad_spike(seed: int = 0) -> RunLog:
    def grad(x: float, rng) -> float:
        return 40.0 if abs(x - 0.6) < 0.005 else 0.5 * (1 + 0.1 * rng.standard_normal())

    return build(decay(), eval_curve=decay(2.4, 1.15, 7.0), grad_norm=grad, seed=seed, name="grad-spike")


def eval_oscillating(seed: int = 0) -> RunLog:
    # Training looks fine; the eval loss swings between ~1.2 and ~1.9 from one evaluation to the next.
    def eval_curve(x: float) -> float:
        return 1.55 + 0.35 * (-1) ** round(x * 20)

    return build(decay(), eval_curve=eval_curve, eval_every=50, seed=seed, name="eval-oscillating")
