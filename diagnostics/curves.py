"""Per-run curve statistics that the rules share, computed once per run (and lazily).

A rule never recomputes a statistic another rule also needs: it asks ``CurveStats``. All levels
are relative to the run's own curve, and positions along the run are fractions of the logged span
(``x`` in [0, 1]), so slopes read "per 10% of training" for runs of any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from diagnostics import stats
from diagnostics.runlog import EVAL_LOSS, GRAD_NORM, LEARNING_RATE, LOSS, RunLog, Series

# A trainer run is judged from the loss it logged; below this many finite training points there is
# no curve to judge. The research notes propose ~10 post-warm-up points; people labelling real logs
# read a trend, a level-off or a rise with confidence from five (one log per epoch over a
# five-epoch run, or a 500-step run logged every 100) and call three "insufficient".
MIN_TRAIN_POINTS = 5
# Eval-based rules need a minimum, a last value and something in between.
MIN_EVAL_POINTS = 3
LATE_WINDOW = 0.3  # "the end of the run": its last 30% of logged steps


@dataclass(frozen=True)
class Window:
    """A stretch of a curve in run fractions, with its level and trend on log loss."""

    x_start: float
    x_end: float
    n: int
    level: float  # median value
    # Theil-Sen slope of log(loss) per 10% of the run: -0.05 means 5% lower every 10% of training.
    log_slope_per_10pct: float
    falling: bool  # Mann-Kendall significant downward
    rising: bool


class CurveStats:
    """Statistics of one run's curves. Build with ``CurveStats(run)``; everything is lazy."""

    def __init__(self, run: RunLog) -> None:
        self.run = run

    # ---- raw series -----------------------------------------------------------------------------
    @cached_property
    def train_all(self) -> Series:
        return self.run.series(LOSS)

    @cached_property
    def train(self) -> Series:
        return self.train_all.finite

    @cached_property
    def eval_all(self) -> Series:
        return self.run.series(EVAL_LOSS)

    @cached_property
    def eval(self) -> Series:
        return self.eval_all.finite

    @cached_property
    def grad_norm_all(self) -> Series:
        return self.run.series(GRAD_NORM)

    @cached_property
    def lr(self) -> Series:
        return self.run.series(LEARNING_RATE).finite

    # ---- span -------------------------------------------------------------------------------------
    @cached_property
    def first_step(self) -> float:
        steps = [s.steps[0] for s in (self.train, self.eval) if len(s)]
        return float(min(steps)) if steps else 0.0

    @cached_property
    def last_step(self) -> float:
        steps = [s.steps[-1] for s in (self.train, self.eval) if len(s)]
        return float(max(steps)) if steps else 0.0

    @cached_property
    def total_steps(self) -> float:
        """The planned length of the run when known and plausible, else the logged span."""
        planned = self.run.planned_steps
        if planned and planned >= self.last_step:
            return float(planned)
        return self.last_step

    @cached_property
    def finished(self) -> bool:
        """Whether the log reaches the planned end (a checkpoint of a longer run has not)."""
        planned = self.run.planned_steps
        if planned is None:
            return True
        if self.run.trained_steps:  # the trainer said where it stopped (a checkpoint says so too)
            return max(self.last_step, float(self.run.trained_steps)) >= 0.95 * planned
        reached = self.last_step
        # The last log can only land on the logging grid: a run whose next log would fall past its
        # planned end has finished as far as its log can tell.
        steps = self.train.steps if self.n_train >= 2 else self.eval.steps
        interval = float(np.median(np.diff(steps))) if len(steps) >= 2 else 0.0
        return reached + interval >= planned or reached >= 0.95 * planned

    def x_of(self, steps: np.ndarray) -> np.ndarray:
        """Run fraction of each step over the logged span (0 = first log, 1 = last log)."""
        span = self.last_step - self.first_step
        if span <= 0:
            return np.zeros(len(steps))
        return (steps - self.first_step) / span

    # ---- train loss --------------------------------------------------------------------------------
    @cached_property
    def n_train(self) -> int:
        return len(self.train)

    @cached_property
    def train_x(self) -> np.ndarray:
        return self.x_of(self.train.steps)

    @cached_property
    def train_smooth(self) -> np.ndarray:
        return stats.ema(self.train.values)

    @cached_property
    def train_noise(self) -> float:
        """Robust point-to-point noise of the training loss (see ``stats.local_noise``)."""
        return stats.local_noise(self.train.values)

    @cached_property
    def train_start(self) -> float:
        """The initial level: the median of the first few logs (the first alone may be a warm-up outlier)."""
        if self.n_train == 0:
            return math.nan
        k = max(1, min(3, self.n_train // 10))
        return float(np.median(self.train.values[:k]))

    @cached_property
    def train_peak_start(self) -> float:
        """The highest of the first few logs: where learning starts from."""
        if self.n_train == 0:
            return math.nan
        k = max(1, min(3, self.n_train // 10))
        return float(np.max(self.train.values[:k]))

    @cached_property
    def train_end(self) -> float:
        """The final level: the median of the last 10% of logs (at least 3)."""
        if self.n_train == 0:
            return math.nan
        k = max(min(3, self.n_train), self.n_train // 10)
        return float(np.median(self.train.values[-k:]))

    @cached_property
    def train_relative_noise(self) -> float:
        level = abs(self.train_end) or abs(self.train_start)
        return self.train_noise / level if level else 0.0

    @cached_property
    def train_drop(self) -> float:
        """Relative fall of the training loss from its start to its end level (0.4 = 40% lower)."""
        return -stats.relative_change(self.train_peak_start, self.train_end)

    def window(self, x_start: float, x_end: float, series: str = "train") -> Window | None:
        curve = self.train if series == "train" else self.eval
        x = self.x_of(curve.steps)
        keep = (x >= x_start - 1e-9) & (x <= x_end + 1e-9)
        values = curve.values[keep]
        if len(values) < 4:
            return None
        xs, ys = stats.bucket_means(x[keep], values)
        positive = ys > 0
        if positive.sum() < 4:
            return None
        result = stats.trend(xs[positive], np.log(ys[positive]))
        if result is None:
            return None
        return Window(
            x_start=x_start,
            x_end=x_end,
            n=int(keep.sum()),
            level=float(np.median(values)),
            log_slope_per_10pct=result.slope * 0.1,
            falling=result.falling,
            rising=result.rising,
        )

    @cached_property
    def train_late(self) -> Window | None:
        """The last 30% of the run, widened to 50% when it holds too few logs to test."""
        return self.window(1 - LATE_WINDOW, 1.0) or self.window(0.5, 1.0)

    @cached_property
    def train_before_late(self) -> Window | None:
        return self.window(0.4, 1 - LATE_WINDOW) or self.window(0.25, 0.75)

    @cached_property
    def train_overall(self) -> Window | None:
        return self.window(0.0, 1.0)

    # ---- eval loss ---------------------------------------------------------------------------------
    @cached_property
    def n_eval(self) -> int:
        return len(self.eval)

    @cached_property
    def eval_best_index(self) -> int:
        return int(np.argmin(self.eval.values))

    @cached_property
    def eval_best(self) -> float:
        return float(self.eval.values[self.eval_best_index])

    @cached_property
    def eval_best_step(self) -> float:
        return float(self.eval.steps[self.eval_best_index])

    @cached_property
    def eval_last(self) -> float:
        return float(self.eval.values[-1])

    @cached_property
    def eval_noise(self) -> float:
        return stats.local_noise(self.eval.values)

    # ---- other series ------------------------------------------------------------------------------
    @cached_property
    def lr_schedule(self) -> stats.LrSchedule | None:
        return stats.lr_schedule(self.lr.steps, self.lr.values, self.total_steps)

    @cached_property
    def epoch_boundaries(self) -> list[float]:
        train = self.train
        return stats.epoch_boundaries(train.steps, train.epochs)

    @cached_property
    def epochs_logged(self) -> float | None:
        epochs = self.train.epochs[np.isfinite(self.train.epochs)]
        return float(epochs[-1]) if len(epochs) else None

    @cached_property
    def max_grad_norm(self) -> float | None:
        value = self.run.config.get("max_grad_norm")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    # ---- shape statistics used by several rules ----------------------------------------------------
    @cached_property
    def late_share(self) -> float:
        """Share of the training loss's total improvement made in the last 30% (see ``late_share_of``)."""
        if self.n_train < MIN_TRAIN_POINTS:
            return 0.0
        return self.late_share_of("train")

    def late_share_of(self, series: str) -> float:
        """Share of a curve's total improvement (on the linear scale) made in the last 30% of the run.

        A curve that flattens near its floor has a small share even when its log slope is steep.
        """
        if series == "train":
            x, values, start, end = self.train_x, self.train.values, self.train_peak_start, self.train_end
        else:
            x, values = self.x_of(self.eval.steps), self.eval.values
            start, end = float(values[0]), float(values[-1])
        if len(x) < 2:
            return 0.0
        smooth = stats.ema(values)
        at_late_start = float(np.interp(1 - LATE_WINDOW, x, smooth))
        total = max(start, float(smooth.max())) - end
        if total <= 0:
            return 0.0
        return (at_late_start - end) / total

    @cached_property
    def epoch_steps(self) -> EpochSteps | None:
        return epoch_step_statistic(self.train.steps, self.train.values, self.train.epochs)


@dataclass(frozen=True)
class EpochSteps:
    """How the training loss moves across epoch boundaries, net of its trend inside epochs."""

    boundaries: list[float]  # the step of the first log of each new epoch that could be tested
    # Per boundary: log-level change across it minus what the new epoch's own trend explains
    # (-0.08 = the loss sits 8% lower after the boundary than the trend predicts).
    jumps: list[float]
    noise: float  # robust noise of log loss, point to point
    window: int  # logs taken on each side

    @property
    def median_jump(self) -> float:
        return float(np.median(self.jumps))

    @property
    def share_negative(self) -> float:
        return float(np.mean([j < 0 for j in self.jumps]))

    @property
    def z(self) -> float:
        """The median jump in standard errors: a median of ``window`` logs has an error of about
        1.25 noise / sqrt(window) on each side, and the median over n boundaries shrinks it by
        about 1.25 / sqrt(n)."""
        if self.noise <= 0:
            return -math.inf if self.median_jump < 0 else 0.0
        side = 1.25 * self.noise / math.sqrt(self.window)
        error = math.sqrt(2) * side * (1.25 / math.sqrt(len(self.jumps)) if len(self.jumps) > 1 else 1.0)
        return self.median_jump / error


def epoch_step_statistic(steps: np.ndarray, values: np.ndarray, epochs: np.ndarray) -> EpochSteps | None:
    """Measure the drops of the training loss at epoch boundaries.

    Multi-epoch fine-tuning often shows a staircase: the loss drops when the data repeats and stays
    flat inside each epoch (arXiv 2410.10056, "Epochal Sawtooth"; LLaMA-Factory#7485). For each
    boundary the median log loss of the ``k`` logs after it is compared with that of the ``k`` logs
    before it, less the change the new epoch's own within-epoch slope predicts over that distance.
    Work is on log loss, so the convexity of a decaying curve does not look like a step. The first
    log of an epoch is skipped: HF averages the loss over the logging window, which straddles the
    boundary.
    """
    keep = np.isfinite(epochs) & (values > 0)
    steps, values, epochs = steps[keep], np.log(values[keep]), epochs[keep]
    if len(values) < 8:
        return None
    # A log at epoch 1.0 closes epoch 0: HF stamps each log with the epoch reached after its step.
    group = np.maximum(np.ceil(epochs - 1e-9) - 1, 0).astype(int)
    positive = epochs > 0
    steps_per_epoch = float(np.median(steps[positive] / epochs[positive])) if positive.any() else 0.0
    boundaries, jumps = [], []
    k = 3
    for g in np.unique(group)[:-1]:
        before = np.nonzero(group == g)[0]
        after = np.nonzero(group == g + 1)[0][1:]
        if len(before) < k or len(after) < k + 1:
            continue
        b_idx, a_idx = before[-k:], after[:k]
        # The trend across the gap: the mean of the slopes at the end of the old epoch and inside the
        # new one, so a curve still descending steeply out of its first epoch is not read as a step.
        tail = before[-max(k, len(before) // 2) :]
        tail_slope = _slope(steps[tail], values[tail])
        slope = (tail_slope + _slope(steps[after], values[after])) / 2
        expected = slope * (steps[a_idx].mean() - steps[b_idx].mean())
        jump = float(np.median(values[a_idx]) - np.median(values[b_idx]) - expected)
        # A step needs a tread: where the old epoch was still descending faster than the jump (the
        # initial fast drop of a run), a boundary says nothing about repetition.
        if abs(tail_slope) * steps_per_epoch > 2 * abs(jump):
            continue
        jumps.append(jump)
        boundaries.append(float(steps[after[0] - 1]))
    if not jumps:
        return None
    return EpochSteps(boundaries, jumps, stats.local_noise(values), k)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return stats.theil_sen_slope(x, y)
