"""The figures of a tuning study: optimisation history, every trial's curves, parameter importances,
loss against each parameter, and parallel coordinates.

Every figure stays readable at a hundred trials: many lines are drawn thin and pale with the best
trial on top, pruned and failed trials are grey, and a trial far worse than the rest (a diverged
one) is pinned to the top edge instead of squashing everyone else into a flat line.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator, ScalarFormatter

from diagnostics import stats
from diagnostics.runlog import EVAL_LOSS, LOSS, RunLog
from reports import _style
from reports._figures import minmax_downsample, new_figure, styled
from reports._run_plot import EMA_WEIGHT, _short_number
from reports._study_records import ParamSpec, TrialRecord

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


# --- slices ------------------------------------------------------------------------------------------


def slice_figure(params: Sequence[ParamSpec], trials: Sequence[TrialRecord]) -> Figure | None:
    """Best eval loss of every complete trial against each parameter, one small panel each; the
    best trial is starred. Log axes where the space samples on a log scale."""
    complete = [t for t in trials if t.outcome == "complete" and t.loss is not None]
    shown = [p for p in params if any(p.name in t.params for t in complete)]
    if not complete or not shown:
        return None
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = new_figure(_style.FIG_WIDTH, 0.1 + 2.1 * rows, layout=None)
    values = [t.loss for t in complete]
    top = _robust_top(values, values)
    best = min(complete, key=lambda t: t.loss)  # type: ignore[arg-type,return-value]
    alpha = 0.85 if len(complete) <= 30 else 0.55
    with styled():
        grid = figure.subplots(rows, columns, sharey=True, squeeze=False)
        _margins(figure, top=0.3, bottom=0.45, wspace=0.2, hspace=0.8)
        for index, axes in enumerate(grid.flat):
            if index >= len(shown):
                axes.set_visible(False)
                continue
            param = shown[index]
            having = [t for t in complete if param.name in t.params]
            x = _positions(param, [t.params[param.name] for t in having], jitter=True)
            y = _clip([t.loss for t in having], top)
            axes.scatter(x, y, s=14, color=COMPLETE, alpha=alpha, linewidths=0, zorder=3)
            if param.name in best.params:
                bx = _positions(param, [best.params[param.name]], jitter=False)
                axes.scatter(bx, [best.loss], s=90, marker="*", color=BEST, zorder=4)
            _param_axis(axes, param)
            axes.set_title(param.display, loc="left", fontsize=8.5, color=_style.INK)
            if index % columns == 0:
                axes.set_ylabel("best eval loss")
        _finish_loss_axis(grid[0, 0], values, top)
    return figure


def _positions(param: ParamSpec, values: Sequence[object], *, jitter: bool) -> np.ndarray:
    if param.kind != "categorical":
        return np.asarray([float(v) for v in values], dtype=float)  # type: ignore[arg-type]
    index = {repr(c): i for i, c in enumerate(param.choices)}
    positions = np.asarray([index.get(repr(v), len(index)) for v in values], dtype=float)
    if jitter and len(positions) > 1:
        # a fixed spread, so equal choices show as a cluster, not one dot
        rng = np.random.default_rng(0)
        positions = positions + rng.uniform(-0.12, 0.12, len(positions))
    return positions


def _param_axis(axes: Axes, param: ParamSpec) -> None:
    if param.kind == "categorical":
        labels = [_short_value(c) for c in param.choices]
        crowded = sum(len(label) for label in labels) > 18
        axes.set_xticks(range(len(labels)), [_wrap(label, 10) if crowded else label for label in labels])
        axes.set_xlim(-0.5, len(param.choices) - 0.5)
        axes.grid(axis="x", visible=False)
        if crowded:
            axes.tick_params(axis="x", labelsize=7)
        return
    if param.log and param.low and param.low > 0:
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_minor_locator(NullLocator())  # unlabelled minor ticks cost drawing time
    axes.xaxis.set_major_formatter(FuncFormatter(_short_number))
    if param.low is not None and param.high is not None and param.high > param.low:
        if param.log and param.low > 0:
            axes.set_xlim(param.low / 1.15, param.high * 1.15)
        else:
            pad = 0.04 * (param.high - param.low)
            axes.set_xlim(param.low - pad, param.high + pad)
    if not (param.log and param.low and param.low > 0):
        axes.xaxis.set_major_locator(MaxNLocator(nbins=4))


# --- parallel coordinates ----------------------------------------------------------------------------


def parallel_figure(params: Sequence[ParamSpec], trials: Sequence[TrialRecord]) -> Figure | None:
    """One vertical axis per parameter and one for the loss; a line per complete trial, darker the
    better, the best in red on top. Categorical axes list their choices, log axes are log-spaced."""
    complete = sorted(
        (t for t in trials if t.outcome == "complete" and t.loss is not None),
        key=lambda t: -t.loss,  # type: ignore[operator]
    )
    shown = [p for p in params if any(p.name in t.params for t in complete)]
    if len(complete) < 2 or not shown:
        return None
    axes_count = len(shown) + 1
    figure = new_figure(_style.FIG_WIDTH, 3.7, layout=None)
    with styled():
        axes = figure.add_axes((0.05, 0.2, 0.86, 0.72))
        losses = np.asarray([t.loss for t in complete], dtype=float)
        loss_spec = ParamSpec("loss", "float", float(losses.min()), float(losses.max()))
        columns = [_unit(p, [t.params.get(p.name) for t in complete]) for p in shown]
        columns.append(_unit(loss_spec, losses.tolist()))
        lines = [np.column_stack([np.arange(axes_count), row]) for row in np.column_stack(columns)]
        norm = Normalize(losses.min(), losses.max() if losses.max() > losses.min() else losses.min() + 1)
        colors = LOSS_COLORS(norm(losses))
        width = 1.2 if len(complete) <= 30 else 0.8
        axes.add_collection(LineCollection(lines[:-1], colors=colors[:-1], linewidths=width, alpha=0.9))
        axes.plot(*lines[-1].T, color=BEST, linewidth=2.4, zorder=4, marker="o", markersize=3.5)
        for i, param in enumerate([*shown, loss_spec]):
            axes.axvline(i, color="#8C959F", linewidth=0.9, zorder=1)
            for position, text in _axis_ticks(param):
                axes.annotate(
                    text,
                    xy=(i, position),
                    xytext=(3, 0),
                    textcoords="offset points",
                    fontsize=7,
                    color=_style.MUTED,
                    va="center",
                    ha="left",
                    bbox={
                        "boxstyle": "square,pad=0.05",
                        "facecolor": "white",
                        "edgecolor": "none",
                        "alpha": 0.7,
                    },
                    zorder=6,
                )
            label = "best eval loss" if param is loss_spec else _wrap(param.display)
            axes.annotate(
                label,
                xy=(i, 0),
                xytext=(0, -8),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=8,
                color=_style.INK,
                annotation_clip=False,
            )
        axes.set_xlim(-0.15, axes_count - 1 + 0.45)
        axes.set_ylim(-0.04, 1.04)
        axes.set_axis_off()
        figure.text(
            0.05,
            0.97,
            f"{len(complete)} complete trials; darker lines reached a lower eval loss, red is the best",
            fontsize=8,
            color=_style.MUTED,
            va="top",
        )
    return figure


def _unit(param: ParamSpec, values: Sequence[object]) -> np.ndarray:
    """Values mapped onto [0, 1] along the parameter's axis (missing values at the bottom)."""
    if param.kind == "categorical":
        count = max(1, len(param.choices) - 1)
        index = {repr(c): i for i, c in enumerate(param.choices)}
        return np.asarray([index.get(repr(v), 0) / count for v in values], dtype=float)
    numbers = np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)  # type: ignore[arg-type]
    low, high = _range(param, numbers)
    if param.log and low > 0:
        numbers, low, high = np.log10(np.maximum(numbers, low)), math.log10(low), math.log10(high)
    span = high - low if high > low else 1.0
    return np.nan_to_num((numbers - low) / span, nan=0.0)


def _range(param: ParamSpec, numbers: np.ndarray) -> tuple[float, float]:
    finite = numbers[np.isfinite(numbers)]
    low = param.low if param.low is not None else float(finite.min()) if len(finite) else 0.0
    high = param.high if param.high is not None else float(finite.max()) if len(finite) else 1.0
    return float(low), float(high)


def _axis_ticks(param: ParamSpec) -> list[tuple[float, str]]:
    if param.kind == "categorical":
        count = max(1, len(param.choices) - 1)
        return [(i / count, _wrap(_short_value(c), 12)) for i, c in enumerate(param.choices)]
    if param.low is None or param.high is None:
        return []
    mid = math.sqrt(param.low * param.high) if param.log and param.low > 0 else (param.low + param.high) / 2
    return [(0.0, _short_number(param.low)), (0.5, _short_number(mid)), (1.0, _short_number(param.high))]


def _wrap(name: str, width: int = 14) -> str:
    """Long names over several lines, broken after an underscore (``constant_with_`` / ``warmup``)."""
    if len(name) <= width:
        return name
    parts = name.replace("_", "_\0").split("\0")
    lines = textwrap.wrap(" ".join(parts), width=width, break_on_hyphens=False)
    return "\n".join(line.replace("_ ", "_") for line in lines)


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
    width, height = figure.get_size_inches()
    grid = figure.axes[0].get_subplotspec().get_gridspec() if figure.axes else None
    rows, columns = grid.get_geometry() if grid is not None else (1, 1)
    axes_width = (width - left - right - wspace * (columns - 1)) / columns
    axes_height = (height - top - bottom - hspace * (rows - 1)) / rows
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=wspace / axes_width if columns > 1 else None,
        hspace=hspace / axes_height if rows > 1 else None,
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


def _short_value(value: object) -> str:
    if isinstance(value, float):
        return _short_number(value)
    return str(value)
