"""STL002 chance-level."""

from __future__ import annotations

import math

import numpy as np

from diagnostics.curves import MIN_EVAL_POINTS, MIN_TRAIN_POINTS
from diagnostics.findings import Fix
from diagnostics.rules import _fixes
from diagnostics.rules._base import RuleContext, rule

# The loss of a model that ignores its input: cross-entropy of a uniform guess over k classes is
# ln k; the squared error of always predicting 0.5 on 0/1 targets is 0.25.
CHANCE_LEVELS = {f"ln {k} (uniform over {k} classes)": math.log(k) for k in range(2, 11)} | {
    "0.25 (MSE of predicting 0.5 for 0/1 targets)": 0.25
}
TOLERANCE = 0.003  # within 0.3% of the level
MAX_SLOPE = 0.005  # and flat: under 0.5% per 10% of the run


@rule("STL002", "chance-level", "stalled", "warning")
def chance_level(ctx: RuleContext):
    """
    ## What it detects
    The loss settles, flat, within 0.3% of a chance level: ln k for k = 2..10 (a uniform guess over
    k classes) or 0.25 (always predicting 0.5 on 0/1 targets under squared error). The eval loss is
    used when it was logged three times or more, else the training loss.

    ## Why it matters
    A loss resting exactly on a chance level means the model outputs the same guess for every
    input: it has found the trivial solution and stopped learning, however smooth the curve looks.

    ## Evidence
    The final level, the chance level it matches and the difference, the late slope.

    ## Fix
    Check that inputs reach the model and labels are right (shuffled, not all one class), then raise
    the learning rate about 3x.

    ## References
    real_logs/LABELING.md (`stalled`: "often stuck at a chance level such as ln 2 or ln 4").
    """
    s = ctx.stats
    use_eval = s.n_eval >= MIN_EVAL_POINTS
    if not use_eval and s.n_train < MIN_TRAIN_POINTS:
        return chance_level.abstain("too few points to read a final level")
    curve = s.eval if use_eval else s.train
    tail = curve.values[-max(3, len(curve) // 5) :]
    level = float(np.median(tail))
    window = s.window(0.5, 1.0, "eval" if use_eval else "train")
    if window is not None and abs(window.log_slope_per_10pct) > MAX_SLOPE:
        return None
    if np.ptp(tail) > 4 * TOLERANCE * max(level, 1e-12) and not use_eval:
        return None
    name, target = min(CHANCE_LEVELS.items(), key=lambda item: abs(item[1] - level))
    if abs(level - target) > TOLERANCE * target:
        return None
    return chance_level.finding(
        f"{'eval' if use_eval else 'training'} loss settles at {level:.5g}, the chance level {name}",
        confidence=0.85,
        evidence={"level": level, "chance_level": target, "which": name, "curve": curve.name},
        region=(float(curve.steps[len(curve) - len(tail)]), float(curve.steps[-1])),
        metric=curve.name,
        fixes=[
            Fix(
                "inputs and labels",
                None,
                "vary with the example",
                "a constant prediction gives exactly this loss",
            ),
            _fixes.scale_learning_rate(ctx, 3.0, "escape the trivial solution with larger updates"),
        ],
    )
