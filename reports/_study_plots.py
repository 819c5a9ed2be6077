"""The figures of a tuning study: optimisation history, every trial's curves and parameter
importances (the figures about each parameter are in ``_param_plots``).

Every figure stays readable at a hundred trials: many lines are drawn thin and pale with the best
trial on top, pruned and failed trials are grey, and a trial far worse than the rest (a diverged
one) is pinned to the top edge instead of squashing everyone else into a flat line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator, ScalarFormatter

from diagnostics import stats
from diagnostics.runlog import EVAL_LOSS, LOSS, RunLog
from reports import _style
from reports._figures import minmax_downsample, new_figure, place_axes, styled
from reports._run_plot import EMA_WEIGHT, _short_number
from reports._study_records import TrialRecord

BEST = _style.VERMILLION
COMPLETE = _style.BLUE
STOPPED = "#B4BBC3"  # pruned, diverged, failed: present but out of the running
BASELINE = _style.THRESHOLD
RUNNING_BEST = _style.ORANGE
# Complete trials coloured by loss in the parallel-coordinates plot: dark is good.
LOSS_COLORS = LinearSegmentedColormap.from_list("loss", [COMPLETE, "#9CC3E4", "#E3EDF6"])
STOPPED_OUTCOMES = ("pruned", "diverged", "nan", "infeasible", "failed", "interrupted")
_LEGEND_BAND = 0.3  # inches above the axes for a legend


# --- optimisation history ----------------------------------------------------------------------------


def history_figure(trials: Sequence[TrialRecord], baseline: float | None = None) -> Figure:
    """Best eval loss per trial (pruned ones grey at the loss they had reached), the running best
    as a step line, the best trial starred and the common defaults as a dashed line."""
    figure = new_figure(_style.FIG_WIDTH, 3.3, layout=None)
    with styled():
        axes = figure.add_subplot()
        done = [t for t in trials if t.loss is not None]
        complete = [t for t in done if t.outcome == "complete"]
        stopped = [t for t in done if t.outcome != "complete"]
        values = [t.loss for t in done] + ([baseline] if baseline is not None else [])
        # a diverged trial's loss does not set the scale: it is pinned to the top edge
        competing = [t.loss for t in done if t.outcome not in ("diverged", "nan")]
        top = _robust_top(values, competing + ([baseline] if baseline is not None else []))
        handles: list[Line2D] = []
        if stopped:
            x, y = _numbers(stopped), _clip([t.loss for t in stopped], top)
            axes.scatter(x, y, s=16, facecolors="white", edgecolors=STOPPED, linewidths=1.0, zorder=2)
            handles.append(_marker_handle("stopped early", "o", STOPPED, hollow=True))
        if complete:
            x, y = _numbers(complete), _clip([t.loss for t in complete], top)
            axes.scatter(x, y, s=18, color=COMPLETE, alpha=0.85, linewidths=0, zorder=3)
            handles.append(_marker_handle("complete", "o", COMPLETE))
            steps_x, steps_y = _running_best(complete, max(t.number for t in trials))
            axes.step(steps_x, steps_y, where="post", color=RUNNING_BEST, linewidth=1.8, zorder=4)
            handles.append(Line2D([], [], color=RUNNING_BEST, linewidth=1.8, label="best so far"))
            best = min(complete, key=lambda t: t.loss)  # type: ignore[arg-type,return-value]
            axes.scatter([best.number], [best.loss], s=140, marker="*", color=BEST, zorder=5)
            handles.append(_marker_handle(f"best: trial {best.number}", "*", BEST, size=11))
        failed = [t for t in trials if t.loss is None and t.outcome in STOPPED_OUTCOMES]
        if failed:
            axes.plot(
                _numbers(failed),
                np.ones(len(failed)),
                transform=axes.get_xaxis_transform(),
                clip_on=False,
                linestyle="none",
                marker="x",
                color=_style.NON_FINITE,
                markersize=6,
                markeredgewidth=1.5,
                zorder=5,
            )
            handles.append(_marker_handle("no eval loss", "x", _style.NON_FINITE))
        if baseline is not None:
            axes.axhline(baseline, color=BASELINE, linestyle="--", linewidth=1.1, zorder=1.5)
            handles.append(
                Line2D([], [], color=BASELINE, linestyle="--", label=f"common defaults {baseline:.4g}")
            )
        if not done:
            _say(axes, "no trial has reported an eval loss yet")
        _finish_loss_axis(axes, values, top)
        axes.set_xlabel("trial")
        axes.set_ylabel("best eval loss")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        band = _legend_above(figure, handles)
        _margins(figure, top=band + 0.1)
    return figure


def _running_best(complete: Sequence[TrialRecord], last: int) -> tuple[list[float], list[float]]:
    ordered = sorted(complete, key=lambda t: t.number)
    xs, ys, best = [], [], math.inf
    for trial in ordered:
        if trial.loss is not None and trial.loss < best:
            best = trial.loss
            xs.append(trial.number)
            ys.append(best)
    xs.append(max(last, xs[-1]))
    ys.append(ys[-1])
    return xs, ys


# --- curves ------------------------------------------------------------------------------------------


def curves_figure(
    trials: Sequence[TrialRecord], best: TrialRecord | None, baseline: RunLog | None = None
) -> Figure | None:
    """Eval loss (left) and smoothed train loss (right) of every trial over its steps."""
    with_curves = [t for t in trials if t.curve is not None]
    if not with_curves and baseline is None:
        return None
    figure = new_figure(_style.FIG_WIDTH, 3.4, layout=None)
    with styled():
        left, right = figure.subplots(1, 2, sharex=True)
        for axes, metric, title in ((left, EVAL_LOSS, "eval loss"), (right, LOSS, "train loss, smoothed")):
            drawn = _draw_curves(axes, with_curves, best, baseline, metric)
            axes.set_title(title, loc="left", color=_style.MUTED)
            axes.set_xlabel("step")
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not drawn:
                _say(axes, f"no {title.split(',')[0]} logged")
        handles = [
            Line2D([], [], color=STOPPED, linewidth=1.2, label="stopped early"),
            Line2D([], [], color=COMPLETE, linewidth=1.2, alpha=0.7, label="complete"),
        ]
        if best is not None:
            handles.append(Line2D([], [], color=BEST, linewidth=2.2, label=f"best: trial {best.number}"))
        if baseline is not None:
            handles.append(
                Line2D([], [], color=BASELINE, linestyle="--", linewidth=1.4, label="common defaults")
            )
        band = _legend_above(figure, handles)
        _margins(figure, top=band + 0.32, wspace=0.75)
    return figure


def _draw_curves(
    axes: Axes,
    trials: Sequence[TrialRecord],
    best: TrialRecord | None,
    baseline: RunLog | None,
    metric: str,
) -> bool:
    groups: dict[str, list[np.ndarray]] = {"stopped": [], "complete": []}
    best_line: np.ndarray | None = None
    ranking_values: list[float] = []
    all_values: list[float] = []
    for trial in trials:
        line = _curve_points(trial.curve, metric)  # type: ignore[arg-type]
        if line is None:
            continue
        all_values += line[:, 1].tolist()
        if trial.outcome in ("complete", "pruned", "interrupted", "running"):
            ranking_values += line[:, 1].tolist()  # a diverged curve does not set the scale
        if best is not None and trial.number == best.number:
            best_line = line
        else:
            groups["complete" if trial.outcome == "complete" else "stopped"].append(line)
    baseline_line = _curve_points(baseline, metric) if baseline is not None else None
    if baseline_line is not None:
        ranking_values += baseline_line[:, 1].tolist()
    if not all_values and baseline_line is None:
        return False
    crowd = len(groups["complete"]) + len(groups["stopped"])
    alpha = 0.8 if crowd <= 10 else 0.55 if crowd <= 40 else 0.35
    top = _robust_top(all_values, ranking_values or all_values)
    for key, color, width in (("stopped", STOPPED, 0.9), ("complete", COMPLETE, 0.9)):
        lines = [_clip_line(line, top) for line in groups[key]]
        if lines:
            axes.add_collection(
                LineCollection(
                    lines, colors=color, linewidths=width, alpha=alpha if key == "complete" else 0.8
                )
            )
    if baseline_line is not None:
        axes.plot(*_clip_line(baseline_line, top).T, color=BASELINE, linestyle="--", linewidth=1.4, zorder=4)
    if best_line is not None:
        few = len(best_line) <= 30
        axes.plot(
            *_clip_line(best_line, top).T,
            color=BEST,
            linewidth=2.2,
            marker="o" if few else None,
            markersize=3.5,
            zorder=5,
        )
    axes.autoscale_view()
    _finish_loss_axis(axes, all_values + ranking_values, top)
    return True


def _curve_points(run: RunLog | None, metric: str) -> np.ndarray | None:
    if run is None or not run.has(metric):
        return None
    series = run.series(metric).finite
    if not len(series):
        return None
    values = series.values
    if metric == LOSS and len(values) >= 5:
        values = stats.ema(values, EMA_WEIGHT)
    x, y = minmax_downsample(series.steps, values, 400)
    return np.column_stack([x, y])


def _clip_line(line: np.ndarray, top: float) -> np.ndarray:
    clipped = line.copy()
    clipped[:, 1] = np.minimum(clipped[:, 1], top)
    return clipped


# --- importances -------------------------------------------------------------------------------------


def importance_figure(importances: dict[str, float], labels: dict[str, str]) -> Figure:
    """Horizontal bars, most important on top, each labelled with its share."""
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    shown = [labels.get(n, n) for n in names]
    figure = new_figure(_style.FIG_WIDTH, 0.75 + 0.3 * len(names), layout=None)
    with styled():
        axes = figure.add_subplot()
        _margins(figure, left=0.25 + 0.068 * max(len(n) for n in shown), top=0.15)
        positions = np.arange(len(names))
        axes.barh(positions, values, color=COMPLETE, height=0.62)
        axes.set_yticks(positions, shown)
        total = sum(values) or 1.0
        for y, value in zip(positions, values, strict=True):
            axes.annotate(
                f"{100 * value / total:.0f}%",
                xy=(value, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=_style.INK,
            )
        axes.set_xlim(0, max(values) * 1.12 if max(values) > 0 else 1)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.2g}"))
        axes.grid(axis="y", visible=False)
        axes.tick_params(axis="y", length=0, labelsize=8.5, labelcolor=_style.INK)
        axes.set_xlabel("importance (PED-ANOVA, share of the total)")
    return figure


# --- shared helpers ----------------------------------------------------------------------------------


def _robust_top(values: Sequence[float | None], ranking: Sequence[float | None]) -> float:
    """The top of a loss axis: everything that competes is visible, a runaway value is not allowed
    to squash the rest (it is drawn at the top edge instead)."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    ranked = np.asarray([v for v in ranking if v is not None and math.isfinite(v)], dtype=float)
    if not len(finite):
        return math.inf
    if not len(ranked):
        ranked = finite
    low = float(min(finite.min(), ranked.min()))
    spread = float(np.quantile(ranked, 0.9)) - low if len(ranked) >= 5 else float(ranked.max()) - low
    limit = float(ranked.max()) + max(spread, 1e-9) * 0.5
    return min(float(finite.max()), limit)


def _clip(values: Sequence[float | None], top: float) -> np.ndarray:
    return np.minimum(np.asarray(values, dtype=float), top)


def _finish_loss_axis(axes: Axes, values: Sequence[float | None], top: float) -> None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), min(max(finite), top)
    if low > 0 and high / low > 10:
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_minor_locator(NullLocator())
        axes.set_ylim(low / 1.1, high * 1.1)
        axes.yaxis.set_major_formatter(FuncFormatter(_short_number))
    else:
        pad = 0.06 * (high - low) if high > low else 0.05 * abs(high) or 0.1
        axes.set_ylim(low - pad, high + pad)
        # as many decimals as the tick spacing needs (5.535, 5.540 ...), never an offset
        axes.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))


def _numbers(trials: Sequence[TrialRecord]) -> list[int]:
    return [t.number for t in trials]


def _marker_handle(label: str, marker: str, color: str, *, hollow: bool = False, size: float = 6) -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="none",
        marker=marker,
        markersize=size,
        markerfacecolor="white" if hollow else color,
        markeredgecolor=color,
        color=color,
        label=label,
    )


def _margins(
    figure: Figure,
    *,
    left: float = 0.75,
    right: float = 0.2,
    top: float = 0.15,
    bottom: float = 0.45,
    wspace: float = 0.0,
    hspace: float = 0.0,
) -> None:
    """Fixed margins and gaps in inches (constrained layout would cost a second full draw)."""
    grid = figure.axes[0].get_subplotspec().get_gridspec() if figure.axes else None
    rows, columns = grid.get_geometry() if grid is not None else (1, 1)
    place_axes(
        figure,
        rows,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        gap=hspace,
        columns=columns,
        column_gap=wspace,
    )


def _legend_above(figure: Figure, handles: list[Line2D]) -> float:
    """The legend in a band of its own above the axes, where it never hides a curve; returns the
    band's height in inches (one row, or two when the entries would not fit in one)."""
    if not handles:
        return 0.0
    width, height = figure.get_size_inches()
    # ~0.075 in per character at 8 pt, plus the handle and the gap
    needed = sum(0.075 * len(str(h.get_label())) + 0.45 for h in handles)
    rows = 1 if needed <= width - 0.9 else 2
    figure.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.75 / width, 1 - 0.04 / height),
        ncol=math.ceil(len(handles) / rows),
        frameon=False,
        borderaxespad=0,
        handlelength=1.8,
        columnspacing=1.4,
    )
    return _LEGEND_BAND * rows


def _say(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", color=_style.MUTED, transform=axes.transAxes)
