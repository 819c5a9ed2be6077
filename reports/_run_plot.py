"""The figure of one run: loss (train, smoothed, eval) with the findings marked, grad norm, learning rate.

Panels share the step axis; a panel whose metric was never logged is left out. Many-point runs are
downsampled for drawing only (min and max per bucket, so spikes stay), after smoothing on all points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from diagnostics import stats
from diagnostics.findings import Diagnosis, Finding
from diagnostics.runlog import EVAL_LOSS, GRAD_NORM, LEARNING_RATE, LOSS, RunLog, Series
from reports import _style
from reports._figures import (
    figure_to_png_bytes,
    minmax_downsample,
    new_figure,
    place_axes,
    styled,
)

EMA_WEIGHT = 0.6
# Log scale once the finite values span more than this many decades: a loss falling from 12 to 1
# leaves the part that matters (train vs eval near the end) a flat line on a linear axis.
LOG_SCALE_DECADES = 1.0
# Above this many epochs, boundaries are drawn every n-th epoch only.
MAX_EPOCH_LINES = 30
MAX_EPOCH_LABELS = 12
# Few points are drawn with markers, so a reader sees where the log actually has values.
MARKER_LIMIT = 60
# A finding whose step range covers this much of the panel is about the whole curve.
WHOLE_RUN_FRACTION = 0.8
# Margins in inches: room for the epoch labels on top and the step axis below.
_TOP = 0.28
_BOTTOM = 0.45
_GAP = 0.15
_LEFT = 0.8
_LEGEND = 0.24


@dataclass
class _Panel:
    key: str
    axes: Axes


def plot_run(diagnosis: Diagnosis | RunLog) -> bytes:
    """PNG bytes of one run's figure (see ``run_figure``); a ``RunLog`` is drawn without findings."""
    run, findings = (
        (diagnosis.run, diagnosis.findings) if isinstance(diagnosis, Diagnosis) else (diagnosis, ())
    )
    with styled():
        return figure_to_png_bytes(run_figure(run, findings))


def has_plottable_data(run: RunLog) -> bool:
    return any(run.has(metric) for metric in (LOSS, EVAL_LOSS, GRAD_NORM, LEARNING_RATE))


def panel_keys(run: RunLog) -> list[str]:
    """Which panels the run's figure has, top to bottom."""
    keys = []
    if run.has(LOSS) or run.has(EVAL_LOSS):
        keys.append("loss")
    if run.has(GRAD_NORM):
        keys.append("grad_norm")
    if run.has(LEARNING_RATE):
        keys.append("learning_rate")
    return keys


def run_figure(run: RunLog, findings: Sequence[Finding] = ()) -> Figure:
    """The run's figure: up to three panels on one step axis (loss, grad norm, learning rate)."""
    keys = panel_keys(run)
    if not keys:
        return _empty_figure("nothing to plot: no loss, grad norm or learning rate was logged")
    extra = len(keys) - 1
    # the legend gets a band of its own above the panels, so it never hides a curve
    top = _TOP + (_LEGEND if keys != ["learning_rate"] else 0.0)
    height = _style.MAIN_PANEL_HEIGHT + extra * (_style.EXTRA_PANEL_HEIGHT + _GAP) + top + _BOTTOM
    figure = new_figure(_style.FIG_WIDTH, height, layout=None)
    ratios = [_style.MAIN_PANEL_HEIGHT] + [_style.EXTRA_PANEL_HEIGHT] * extra
    with styled():
        grid = figure.subplots(len(keys), 1, sharex=True, squeeze=False, height_ratios=ratios)
        panels = [_Panel(key, axes) for key, axes in zip(keys, grid[:, 0], strict=True)]
        handles: list[Line2D] = []
        non_finite = 0
        for panel in panels:
            if panel.key == "loss":
                handles += _draw_loss(panel.axes, run)
                non_finite += _mark_non_finite(panel.axes, [run.series(LOSS), run.series(EVAL_LOSS)])
            elif panel.key == "grad_norm":
                _draw_grad_norm(panel.axes, run)
                non_finite += _mark_non_finite(panel.axes, [run.series(GRAD_NORM)])
            else:
                _draw_learning_rate(panel.axes, run)
        if non_finite:
            handles.append(_non_finite_handle(non_finite))
        boundaries = _epoch_boundaries(run)
        for panel in panels:
            for _, step in boundaries:
                panel.axes.axvline(
                    step, color=_style.EPOCH_LINE, linewidth=0.8, linestyle=(0, (3, 2)), zorder=0.5
                )
        _label_epochs(panels[0].axes, boundaries)
        _mark_findings(panels, findings)
        panels[-1].axes.set_xlabel("step")
        panels[-1].axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # no step 1.5
        place_axes(figure, len(panels), left=_LEFT, right=0.15, top=top, bottom=_BOTTOM, gap=_GAP)
        if handles:
            figure.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(_LEFT / _style.FIG_WIDTH, 1 - 0.03 / height),
                ncol=len(handles),
                frameon=False,
                borderaxespad=0,
                handlelength=1.8,
                columnspacing=1.6,
            )
    return figure


def _empty_figure(text: str) -> Figure:
    figure = new_figure(_style.FIG_WIDTH, 1.2)
    with styled():
        axes = figure.add_subplot()
        axes.set_axis_off()
        axes.text(0.5, 0.5, text, ha="center", va="center", color=_style.MUTED, transform=axes.transAxes)
    return figure


def _draw_loss(axes: Axes, run: RunLog) -> list[Line2D]:
    train, evaluation = run.series(LOSS), run.series(EVAL_LOSS)
    handles: list[Line2D] = []
    if len(train):
        finite = train.finite
        raw_x, raw_y = minmax_downsample(finite.steps, finite.values, _style.MAX_DRAWN_POINTS)
        few = len(finite) <= MARKER_LIMIT
        (raw,) = axes.plot(
            raw_x,
            raw_y,
            color=_style.TRAIN_RAW,
            linewidth=0.9,
            marker="o" if few else None,
            markersize=2.5,
            label="train loss",
        )
        handles.append(raw)
        if len(finite) >= 5:
            smooth = stats.ema(finite.values, EMA_WEIGHT)
            sx, sy = minmax_downsample(finite.steps, smooth, _style.MAX_DRAWN_POINTS)
            (line,) = axes.plot(
                sx, sy, color=_style.TRAIN_SMOOTH, linewidth=1.8, label="train loss, smoothed"
            )
            handles.append(line)
    if len(evaluation):
        finite = evaluation.finite
        ex, ey = minmax_downsample(finite.steps, finite.values, _style.MAX_DRAWN_POINTS)
        (line,) = axes.plot(
            ex,
            ey,
            color=_style.EVAL,
            linewidth=1.6,
            marker="o" if len(ex) <= 200 else None,
            markersize=4,
            markeredgecolor="white",
            markeredgewidth=0.6,
            label="eval loss",
            zorder=3,
        )
        handles.append(line)
    _choose_y_scale(axes, [train, evaluation], max_ticks=8)
    axes.set_ylabel("loss")
    return handles


def _draw_grad_norm(axes: Axes, run: RunLog) -> None:
    series = run.series(GRAD_NORM)
    finite = series.finite
    x, y = minmax_downsample(finite.steps, finite.values, _style.MAX_DRAWN_POINTS)
    axes.plot(
        x,
        y,
        color=_style.GRAD_NORM,
        linewidth=1.1,
        marker="o" if len(x) <= MARKER_LIMIT else None,
        markersize=2.5,
    )
    limit = _max_grad_norm(run)
    if limit is not None:
        axes.axhline(limit, color=_style.THRESHOLD, linestyle="--", linewidth=1.0, zorder=2.5)
        axes.annotate(
            f"max_grad_norm {limit:g}",
            xy=(1.0, limit),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=7.5,
            color=_style.THRESHOLD,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
        )
    _choose_y_scale(axes, [series], extra=[limit] if limit else [], max_ticks=4)
    axes.set_ylabel("grad norm")


def _draw_learning_rate(axes: Axes, run: RunLog) -> None:
    series = run.series(LEARNING_RATE).finite
    x, y = minmax_downsample(series.steps, series.values, _style.MAX_DRAWN_POINTS)
    axes.plot(x, y, color=_style.LEARNING_RATE, linewidth=1.4)
    axes.set_ylabel("learning rate")
    axes.set_ylim(bottom=0)
    # "2e-4" on each tick reads like the TrainingArguments value; an offset text would collide
    # with the panel above
    axes.yaxis.set_major_formatter(FuncFormatter(_short_number))
    axes.yaxis.set_major_locator(MaxNLocator(nbins=3))


def _short_number(value: float, _position: float | None = None) -> str:
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def _max_grad_norm(run: RunLog) -> float | None:
    value = run.config.training_args.get("max_grad_norm")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _mark_non_finite(axes: Axes, series_list: Sequence[Series]) -> int:
    """NaN / inf points as crosses on the top edge of the panel, where no value can be drawn;
    returns how many there are."""
    steps = np.concatenate([s.steps[~np.isfinite(s.values)] for s in series_list if len(s)] or [np.empty(0)])
    if len(steps):
        axes.plot(
            steps,
            np.ones_like(steps),
            transform=axes.get_xaxis_transform(),
            clip_on=False,
            zorder=5,
            **_NON_FINITE_STYLE,
        )
    return len(steps)


def _non_finite_handle(count: int) -> Line2D:
    return Line2D([], [], label=f"NaN / inf ({count})", **_NON_FINITE_STYLE)


_NON_FINITE_STYLE = {
    "linestyle": "none",
    "marker": "x",
    "markersize": 6,
    "markeredgewidth": 1.6,
    "color": _style.NON_FINITE,
}


def _choose_y_scale(
    axes: Axes, series_list: Sequence[Series], *, extra: Sequence[float] = (), max_ticks: int
) -> None:
    values = np.concatenate([s.values[np.isfinite(s.values)] for s in series_list if len(s)] or [np.empty(0)])
    values = np.concatenate([values, np.asarray(extra, dtype=float)])
    if not len(values) or values.min() <= 0:
        return
    decades = math.log10(values.max() / values.min())
    if decades <= LOG_SCALE_DECADES:
        return
    axes.set_yscale("log")
    # 0.1, 0.2, 0.5, 1 ... read faster than bare powers of ten; fewer per decade when many decades
    per_decade = max_ticks / max(decades, 1.0)
    subs = (1.0, 2.0, 5.0) if per_decade >= 3 else (1.0, 3.0) if per_decade >= 2 else (1.0,)
    axes.yaxis.set_major_locator(LogLocator(subs=subs))
    axes.yaxis.set_major_formatter(FuncFormatter(_short_number))
    axes.yaxis.set_minor_formatter(NullFormatter())


def _epoch_boundaries(run: RunLog) -> list[tuple[int, float]]:
    """(epoch, step) where a new epoch starts, thinned out to every n-th epoch when there are many.

    The same boundaries the rules use (``diagnostics.stats.epoch_boundaries`` on the train loss), so
    a finding about a drop "at the epoch boundary" sits on the drawn line.
    """
    series = run.series(LOSS) if run.has(LOSS) else run.series(EVAL_LOSS)
    known = np.isfinite(series.epochs)
    steps = stats.epoch_boundaries(series.steps, series.epochs)
    if not steps:
        return []
    first_epoch = math.floor(series.epochs[known][0]) + 1
    numbered = [(first_epoch + i, step) for i, step in enumerate(steps)]
    inside = [(epoch, step) for epoch, step in numbered if series.steps[0] < step < series.steps[-1]]
    stride = _nice_stride(len(numbered), MAX_EPOCH_LINES)
    return [(epoch, step) for epoch, step in inside if stride == 1 or epoch % stride == 0]


def _label_epochs(axes: Axes, boundaries: list[tuple[int, float]]) -> None:
    """Epoch numbers above the first panel, at the boundary lines (plain texts: a secondary axis
    would cost a tenth of the figure's drawing time)."""
    for epoch, step in boundaries[:: _nice_stride(len(boundaries), MAX_EPOCH_LABELS)]:
        axes.annotate(
            f"ep {epoch}",
            xy=(step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 5),  # clear of the NaN / inf crosses on the top edge
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color=_style.MUTED,
            annotation_clip=False,
        )


def _nice_stride(count: int, limit: int) -> int:
    for stride in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if count / stride <= limit:
            return stride
    return max(1, count // limit)


def _mark_findings(panels: list[_Panel], findings: Sequence[Finding]) -> None:
    """Mark each finding's step range on the panel of its metric and label it with its code.

    A range that covers most of the run says "the whole curve": shading it would only tint the
    panel (and muddy the other marks), so it gets a bar along the top edge instead.
    """
    by_key = {panel.key: panel for panel in panels}
    labels_in_panel: dict[str, int] = {}
    marked = sorted((f for f in findings if f.region), key=lambda f: (f.region[0], f.code))
    for finding in marked:
        first, last = (float(v) for v in finding.region)
        if not (math.isfinite(first) and math.isfinite(last)):
            continue
        color = _style.SEVERITY_COLORS.get(finding.severity, _style.GREY)
        home = by_key.get(_panel_of(finding.metric)) or panels[0]
        axes = home.axes
        low, high = axes.get_xlim()
        if last - first >= WHOLE_RUN_FRACTION * (high - low):
            axes.plot(
                [first, last],
                [1.0, 1.0],
                color=color,
                linewidth=3,
                solid_capstyle="butt",
                transform=axes.get_xaxis_transform(),
                clip_on=False,
                zorder=4,
            )
        elif last > first:
            axes.axvspan(first, last, color=color, alpha=0.15, linewidth=0, zorder=0.6)
        else:
            axes.axvline(first, color=color, alpha=0.7, linewidth=1.5, zorder=0.6)
        slot = labels_in_panel.get(home.key, 0)
        labels_in_panel[home.key] = slot + 1
        _label_region(axes, first, last, finding, color, slot)


def _label_region(axes: Axes, first: float, last: float, finding: Finding, color: str, slot: int) -> None:
    """The finding's code at the top of its band, inside the panel whichever edge the band is near."""
    low, high = axes.get_xlim()
    near_right = first > low + 0.8 * (high - low)
    x = min(max(last, low), high) if near_right else min(max(first, low), high)
    axes.annotate(
        f"{_style.SEVERITY_SYMBOLS.get(finding.severity, '')} {finding.code}".strip(),
        xy=(x, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-3 if near_right else 3, -4 - 12 * (slot % 4)),
        textcoords="offset points",
        ha="right" if near_right else "left",
        va="top",
        fontsize=7.5,
        fontweight="bold",
        color=color,
        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        annotation_clip=False,
        zorder=6,
    )


def _panel_of(metric: str) -> str:
    if metric == GRAD_NORM:
        return "grad_norm"
    if metric == LEARNING_RATE:
        return "learning_rate"
    return "loss"
