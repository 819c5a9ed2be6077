"""Scale-free statistics of short, noisy training curves.

Every number a rule compares with a threshold comes from here and is *relative*: the absolute level
of a loss differs between tasks, tokenisers and even transformers versions (transformers#34263), so
levels are only ever compared with the same curve's own levels, noise and span.

Sources: TensorBoard's debiased EMA (``tensorboard/plugins/scalar/...``: weight 0.6 by default);
Mann-Kendall with the Hamed & Rao (1998) variance correction for autocorrelated series; Theil-Sen
slopes (``scipy.stats.theilslopes``); PELT change points (``ruptures``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD of a normal sample times this estimates its standard deviation
# Mann-Kendall and Theil-Sen compare every pair of points; longer series are averaged into this
# many buckets first (averaging also removes batch noise, as a longer logging interval would).
MAX_PAIRWISE_POINTS = 300


def ema(values: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """TensorBoard's debiased exponential moving average; non-finite points pass through unchanged."""
    out = np.empty(len(values), dtype=float)
    last = 0.0
    n = 0
    for i, y in enumerate(values):
        if not math.isfinite(y):
            out[i] = y
            continue
        last = last * weight + (1 - weight) * y
        n += 1
        out[i] = last / (1 - weight**n)
    return out


def robust_sigma(residuals: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (robust to spikes)."""
    residuals = residuals[np.isfinite(residuals)]
    if len(residuals) == 0:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(residuals - np.median(residuals))))


def local_noise(values: np.ndarray) -> float:
    """Point-to-point noise of a curve, blind to its trend.

    Second differences ``y[i+1] - 2 y[i] + y[i-1]`` cancel any locally linear trend, and for white
    noise their variance is 6 sigma^2; the MAD keeps a few spikes from inflating the estimate.
    """
    values = values[np.isfinite(values)]
    if len(values) < 4:
        return 0.0
    return robust_sigma(np.diff(values, n=2)) / math.sqrt(6)


def bucket_means(x: np.ndarray, y: np.ndarray, max_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive points into at most ``max_points`` buckets.

    Keeps O(n^2) statistics (Mann-Kendall, Theil-Sen) cheap on runs with thousands of logged steps;
    averaging also removes batch noise the way a longer logging interval would.
    """
    n = len(y)
    if n <= max_points:
        return x, y
    edges = np.linspace(0, n, max_points + 1).astype(int)
    xs = np.array([x[a:b].mean() for a, b in itertools.pairwise(edges)])
    ys = np.array([y[a:b].mean() for a, b in itertools.pairwise(edges)])
    return xs, ys


@dataclass(frozen=True)
class Trend:
    """A monotonic-trend test and its robust slope.

    ``slope`` is the Theil-Sen slope of the values against ``x``; ``z``/``p`` come from the
    Mann-Kendall test with Hamed-Rao's correction, so an autocorrelated (smooth) series is not
    mistaken for a more significant trend than it is.
    """

    n: int
    slope: float
    tau: float
    z: float
    p: float

    @property
    def falling(self) -> bool:
        return self.p < 0.05 and self.slope < 0

    @property
    def rising(self) -> bool:
        return self.p < 0.05 and self.slope > 0


def trend(x: np.ndarray, y: np.ndarray) -> Trend | None:
    """Mann-Kendall (Hamed-Rao) test plus Theil-Sen slope; ``None`` below 4 points."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = bucket_means(x[keep], y[keep], MAX_PAIRWISE_POINTS)
    n = len(y)
    if n < 4:
        return None
    diffs = np.sign(y[None, :] - y[:, None])
    s = float(np.triu(diffs, 1).sum())
    _, tie_counts = np.unique(y, return_counts=True)
    var_s = (n * (n - 1) * (2 * n + 5) - np.sum(tie_counts * (tie_counts - 1) * (2 * tie_counts + 5))) / 18.0
    slope = theil_sen_slope(x, y)
    var_s *= _hamed_rao_factor(x, y, slope)
    if var_s <= 0:
        return Trend(n, slope, 0.0, 0.0, 1.0)
    z = (s - np.sign(s)) / math.sqrt(var_s) if s != 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2))  # two-sided normal p-value
    tau = s / (0.5 * n * (n - 1))
    return Trend(n, slope, float(tau), float(z), p)


def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """The median of the slopes between all pairs of points with distinct x (Theil 1950, Sen 1968).

    Written out with numpy because importing scipy.stats costs more than a whole diagnosis; the
    result equals ``scipy.stats.theilslopes(y, x).slope`` (checked in the tests).
    """
    if len(x) < 2:
        return 0.0
    if len(x) > MAX_PAIRWISE_POINTS:  # pairwise work is quadratic: average into buckets first
        x, y = bucket_means(x, y, MAX_PAIRWISE_POINTS)
    dx = x[None, :] - x[:, None]
    dy = y[None, :] - y[:, None]
    upper = np.triu(np.ones_like(dx, dtype=bool), 1) & (dx != 0)
    if not upper.any():
        return 0.0
    return float(np.median(dy[upper] / dx[upper]))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (``scipy.stats.rankdata``'s default)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def _hamed_rao_factor(x: np.ndarray, y: np.ndarray, slope: float) -> float:
    """n/n* of Hamed & Rao (1998): inflate the variance of S by the significant rank autocorrelations
    of the detrended series."""
    n = len(y)
    ranks = average_ranks(y - slope * x)
    ranks = ranks - ranks.mean()
    denom = float(np.sum(ranks**2))
    if denom == 0:
        return 1.0
    bound = 1.96 / math.sqrt(n)
    total = 0.0
    for lag in range(1, n - 1):
        rho = float(np.sum(ranks[:-lag] * ranks[lag:]) / denom)
        if abs(rho) > bound:
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    factor = 1 + 2 * total / (n * (n - 1) * (n - 2))
    return max(factor, 1e-3)


def change_points(y: np.ndarray, *, min_size: int = 3, penalty: float | None = None) -> list[int]:
    """Indices where the mean level of ``y`` shifts (PELT, l2 cost, via ``ruptures``).

    The default penalty is BIC-like: ``2 * sigma^2 * log(n)`` with sigma the robust noise of the
    first differences, so only shifts well above the noise are returned.
    """
    import ruptures

    y = y[np.isfinite(y)]
    n = len(y)
    if n < 2 * min_size:
        return []
    if penalty is None:
        sigma = robust_sigma(np.diff(y)) / math.sqrt(2)
        penalty = 2 * max(sigma, 1e-12) ** 2 * math.log(n) * 2
    algo = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(y.reshape(-1, 1))
    return [i for i in algo.predict(pen=penalty) if i < n]


@dataclass(frozen=True)
class LrSchedule:
    """The learning-rate curve read back: warm-up, peak and decay.

    Fractions are of the run's planned steps where known (``max_steps``), else of the logged span.
    """

    peak: float
    peak_step: float
    warmup_end_step: float
    warmup_fraction: float
    final_lr: float  # at the planned end (followed along the last decaying segment past the last log)
    final_fraction_of_peak: float
    # Fraction of the planned run spent with the rate below 5% of its peak after the peak.
    near_zero_fraction: float
    constant_after_warmup: bool
    still_warming_up: bool
    total_steps: float


def lr_schedule(steps: np.ndarray, lrs: np.ndarray, total_steps: float) -> LrSchedule | None:
    keep = np.isfinite(lrs)
    steps, lrs = steps[keep], lrs[keep]
    if len(lrs) < 3 or total_steps <= 0:
        return None
    peak = float(lrs.max())
    if peak <= 0:
        return None
    # Warm-up ends at the first step that reaches (almost) the peak: cosine / linear decay start right there.
    reached = np.nonzero(lrs >= 0.98 * peak)[0]
    first_peak = int(reached[0])
    rising_start = lrs[0] < 0.9 * peak
    # A rate already at its peak (or decaying) at the first log shows no warm-up: whatever came
    # before that log cannot be measured, so none is claimed.
    warmup_end = 0.0
    if rising_start:
        # Logs are sparse: the warm-up ended between the last rising log and the first log at the
        # peak. A linear warm-up from 0 through (step, lr) reaches the peak at step * peak / lr;
        # without a usable rising point only the last rising log is certain.
        last_rising = float(steps[first_peak - 1])
        rate = float(lrs[first_peak - 1])
        estimate = last_rising * peak / rate if rate > 0 else last_rising
        warmup_end = min(max(estimate, last_rising), float(steps[first_peak]))
    after = lrs[first_peak:]
    low = after < 0.05 * peak
    near_zero_fraction = 0.0
    if low.any():
        first_low = int(np.nonzero(low)[0][0])
        near_zero_fraction = max(0.0, (total_steps - float(steps[first_peak + first_low])) / total_steps)
    spread = float(np.ptp(after)) / peak if len(after) > 1 else 0.0
    still_warming = bool(first_peak == len(lrs) - 1 and rising_start and float(steps[-1]) < total_steps)
    # Sparse logs rarely land on the last step: a rate still decaying at the last log is followed to
    # the planned end along its last segment (a linear or cosine decay to 0 ends at 0).
    final_lr = float(lrs[-1])
    if len(lrs) >= 2 and lrs[-1] < lrs[-2] and steps[-1] > steps[-2] and total_steps > steps[-1]:
        slope = float(lrs[-1] - lrs[-2]) / float(steps[-1] - steps[-2])
        final_lr = max(0.0, final_lr + slope * (total_steps - float(steps[-1])))
    return LrSchedule(
        peak=peak,
        peak_step=float(steps[first_peak]),
        warmup_end_step=warmup_end,
        warmup_fraction=warmup_end / total_steps,
        final_lr=final_lr,
        final_fraction_of_peak=final_lr / peak,
        near_zero_fraction=near_zero_fraction,
        constant_after_warmup=spread < 0.02,
        still_warming_up=still_warming,
        total_steps=total_steps,
    )


def epoch_boundaries(steps: np.ndarray, epochs: np.ndarray) -> list[float]:
    """Steps at which a new whole epoch starts, from the logged (step, epoch) pairs."""
    keep = np.isfinite(epochs)
    steps, epochs = steps[keep], epochs[keep]
    if len(steps) < 2 or epochs[-1] - epochs[0] < 0.5:
        return []
    per_epoch = (steps[-1] - steps[0]) / (epochs[-1] - epochs[0]) if epochs[-1] > epochs[0] else 0
    if per_epoch <= 0:
        return []
    first_epoch = math.floor(epochs[0]) + 1
    last_epoch = math.floor(epochs[-1] + 1e-6)
    offset = steps[-1] - epochs[-1] * per_epoch
    return [float(offset + e * per_epoch) for e in range(first_epoch, last_epoch + 1)]


def relative_change(before: float, after: float) -> float:
    """(after - before) / |before|, 0 when before is 0."""
    return (after - before) / abs(before) if before else 0.0
