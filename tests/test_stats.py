"""The curve statistics the rules rely on, each checked against a case with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as sps

from diagnostics import stats
from diagnostics.curves import epoch_step_statistic

rng = np.random.default_rng(0)


def test_ema_is_tensorboards_debiased_form():
    values = np.array([2.0, 1.0, float("nan"), 1.0])
    smoothed = stats.ema(values, 0.6)
    assert smoothed[0] == pytest.approx(2.0)  # debiasing: the first point is itself
    assert smoothed[1] == pytest.approx((0.6 * 0.4 * 2 + 0.4 * 1) / (1 - 0.36))
    assert math.isnan(smoothed[2])


def test_local_noise_ignores_the_trend():
    x = np.arange(200.0)
    noisy_line = 5 - 0.02 * x + 0.1 * rng.standard_normal(200)
    assert stats.local_noise(noisy_line) == pytest.approx(0.1, rel=0.25)
    assert stats.local_noise(5 - 0.02 * x) == pytest.approx(0.0, abs=1e-9)


def test_theil_sen_and_ranks_match_scipy():
    x = np.sort(rng.random(40))
    y = 3 * x + rng.standard_normal(40)
    y[5] = y[6]
    assert stats.theil_sen_slope(x, y) == pytest.approx(sps.theilslopes(y, x).slope)
    assert np.allclose(stats.average_ranks(y), sps.rankdata(y))


def test_mann_kendall_finds_trends_and_not_noise():
    x = np.arange(50.0)
    assert stats.trend(x, -0.01 * x + 0.05 * rng.standard_normal(50)).falling
    flat = stats.trend(x, rng.standard_normal(50))
    assert not flat.falling and not flat.rising
    # A smooth, autocorrelated wiggle is not a trend once Hamed-Rao corrects the variance.
    wiggle = np.sin(x / 4)
    assert stats.trend(x, wiggle).p > 0.05


def test_change_points_find_a_level_shift():
    y = np.concatenate([np.full(30, 1.0), np.full(30, 2.0)]) + 0.05 * rng.standard_normal(60)
    assert stats.change_points(y) == [30]
    assert stats.change_points(0.05 * rng.standard_normal(60)) == []


def test_lr_schedule_reads_warmup_between_sparse_logs():
    steps = np.arange(10, 1001, 10, dtype=float)
    warm = 150.0  # 15% warm-up, then linear decay to 0
    lrs = np.where(steps < warm, 2e-4 * steps / warm, 2e-4 * (1000 - steps) / (1000 - warm))
    schedule = stats.lr_schedule(steps, lrs, 1000)
    assert schedule.warmup_fraction == pytest.approx(0.15, abs=0.01)
    assert schedule.near_zero_fraction < 0.06
    assert not schedule.still_warming_up


def test_epoch_steps_see_a_staircase_and_not_a_smooth_decay():
    steps = np.arange(1, 91, dtype=float)
    epochs = steps / 30
    staircase = 2.0 * 0.9 ** np.floor(epochs - 1e-9) * (1 + 0.01 * rng.standard_normal(90))
    found = epoch_step_statistic(steps, staircase, epochs)
    assert found is not None and found.median_jump < -0.08 and found.z < -3
    smooth = 2.0 * np.exp(-steps / 60) * (1 + 0.01 * rng.standard_normal(90))
    plain = epoch_step_statistic(steps, smooth, epochs)
    assert plain is None or abs(plain.median_jump) < 0.03
