"""The figures about the searched parameters: the loss against each of them (slice plots) and
parallel coordinates. Categorical values sit at evenly spaced positions, log-sampled ones on log
axes, as Optuna samples them.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from reports import _style
from reports._figures import new_figure, styled
from reports._run_plot import _short_number
from reports._study_plots import (
    BEST,
    COMPLETE,
    LOSS_COLORS,
    _clip,
    _finish_loss_axis,
    _margins,
    _robust_top,
)
from reports._study_records import ParamSpec, TrialRecord

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


def _short_value(value: object) -> str:
    if isinstance(value, float):
        return _short_number(value)
    return str(value)
