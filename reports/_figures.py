"""Figure plumbing shared by every report: a styled Agg figure, PNG bytes, data URIs, downsampling.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas instead of pyplot, so
a report never touches pyplot's global figure registry or the user's interactive backend, and a
figure is freed as soon as it is dropped.
"""

from __future__ import annotations

import base64
import contextlib
import io
import sys
import threading
from collections.abc import Iterator

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from reports import _style


def new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    """An empty figure in the report style, on an Agg canvas. ``layout=None`` leaves placement to
    the caller (``place_axes``): constrained layout costs a second full draw per figure."""
    with styled():
        figure = Figure(figsize=(width, height), dpi=_style.DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def place_axes(
    figure: Figure,
    rows: int,
    *,
    left: float,
    right: float,
    top: float,
    bottom: float,
    gap: float,
    columns: int = 1,
    column_gap: float = 0.0,
) -> None:
    """Fixed margins and gaps between ``rows`` stacked axes (and ``columns`` side by side), in
    inches (the same on every figure, so report figures line up one under the other)."""
    width, height = figure.get_size_inches()
    mean_axes_height = (height - top - bottom - gap * (rows - 1)) / rows
    mean_axes_width = (width - left - right - column_gap * (columns - 1)) / columns
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        hspace=gap / mean_axes_height,
        wspace=column_gap / mean_axes_width if columns > 1 else None,
    )


_style_depth = threading.local()


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Context manager for drawing: axes, ticks and legends created inside pick up the style.

    Re-entrant at no cost: entering ``rc_context`` copies all of matplotlib's settings, which is a
    noticeable share of drawing a small figure, so nested uses share the outermost one.
    """
    depth = getattr(_style_depth, "value", 0)
    if depth:
        _style_depth.value = depth + 1
        try:
            yield
        finally:
            _style_depth.value = depth
        return
    with matplotlib.rc_context(_style.RC_PARAMS):
        _style_depth.value = 1
        try:
            yield
        finally:
            _style_depth.value = 0


def figure_to_png_bytes(figure: Figure, *, dpi: int | None = None, palette: bool = True) -> bytes:
    """The figure as PNG bytes. A figure made through pyplot is closed afterwards.

    ``palette`` stores the image with at most 256 colours: line plots look the same and the file
    is 3-4x smaller, which matters when fifty of them are inlined into one HTML file. Pass
    ``palette=False`` for figures with smooth colour gradients (colour maps, images).
    """
    buffer = io.BytesIO()
    with styled():
        figure.savefig(buffer, format="png", dpi=dpi or _style.DPI, metadata={"Software": None})
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)  # a no-op for figures pyplot does not manage
    if not palette:
        return buffer.getvalue()
    image = Image.open(buffer).convert("RGB")
    indexed = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    compact = io.BytesIO()
    indexed.save(compact, format="PNG", optimize=True)
    return compact.getvalue()


def to_data_uri(png: bytes, mime: str = "image/png") -> str:
    """``data:image/png;base64,...`` for inlining an image into a self-contained HTML file."""
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def minmax_downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~``max_points`` points that draw like all of them: per bucket of neighbouring points
    the minimum and the maximum are kept (in their order), so a one-step spike stays visible.

    Expects finite ``y``; the first and last points are always kept.
    """
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    size = -(-n // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    rows = padded.reshape(buckets, size)
    valid = ~np.all(np.isnan(rows), axis=1)
    offsets = np.arange(buckets)[valid] * size
    lows = offsets + np.nanargmin(rows[valid], axis=1)
    highs = offsets + np.nanargmax(rows[valid], axis=1)
    keep = np.unique(np.concatenate([lows, highs, [0, n - 1]]))
    return x[keep], y[keep]
