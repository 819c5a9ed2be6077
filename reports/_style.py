"""The one look of every report: colours, fonts and figure sizes, shared by the plots and the CSS.

Colours come from the Okabe-Ito palette, which stays distinguishable for the common forms of colour
blindness; every coloured thing also carries a text label (and severities a shape), so colour is
never the only carrier of meaning.
"""

from __future__ import annotations

from typing import Any

# Okabe & Ito (2008), "Color Universal Design".
BLUE = "#0072B2"
SKY = "#56B4E9"
GREEN = "#009E73"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
YELLOW = "#F0E442"
BROWN = "#8C6D31"
GREY = "#8C959F"
INK = "#1F2328"
MUTED = "#59636E"

# Plot series.
TRAIN_RAW = "#A8C4E0"
TRAIN_SMOOTH = BLUE
EVAL = ORANGE
GRAD_NORM = GREEN
LEARNING_RATE = PURPLE
THRESHOLD = "#4D4D4D"
NON_FINITE = VERMILLION
EPOCH_LINE = "#C9CED4"
GRID = "#E6E9ED"

CONDITION_COLORS: dict[str, str] = {
    "healthy": GREEN,
    "overfitting": ORANGE,
    "oscillating": PURPLE,
    "diverging": VERMILLION,
    "stalled": BLUE,
    "too_slow": SKY,
    # pure Okabe-Ito yellow vanishes on white as a border or a line; a darker gold keeps its hue
    "memorizing": "#C8B400",
    "lr_schedule": BROWN,
    "insufficient": GREY,
}
ERROR_COLOR = "#24292F"  # a run that could not be read: not a condition, a failure
OTHER_COLOR = GREY

# What became of a tuning trial (the study report's leaderboard); labels say it in words too.
OUTCOME_COLORS: dict[str, str] = {
    "complete": GREEN,
    "pruned": GREY,
    "diverged": VERMILLION,
    "nan": VERMILLION,
    "infeasible": PURPLE,
    "failed": ERROR_COLOR,
    "interrupted": ORANGE,
    "running": SKY,
    "waiting": GREY,
}

SEVERITY_COLORS: dict[str, str] = {"error": VERMILLION, "warning": ORANGE, "info": BLUE}
# A distinct shape per severity, so the level reads without colour.
SEVERITY_SYMBOLS: dict[str, str] = {"error": "✖", "warning": "▲", "info": "●"}

FONT_STACK = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", '
    '"Liberation Sans", sans-serif'
)
MONO_STACK = 'ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace'

# Figures: 100 dpi and ~9 in wide keeps one PNG around 50 kB and sharp enough at 900 px.
DPI = 100
FIG_WIDTH = 9.0
# Height (inches) of the main panel and of each extra panel.
MAIN_PANEL_HEIGHT = 2.5
EXTRA_PANEL_HEIGHT = 1.0
# Drawing more points than there are pixels wastes time and shows nothing more.
MAX_DRAWN_POINTS = 2000

RC_PARAMS: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "axes.labelcolor": MUTED,
    "axes.edgecolor": "#B8BFC6",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.7,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "#E1E4E8",
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "path.simplify": True,
    "agg.path.chunksize": 10000,
}


def condition_color(condition: str | None) -> str:
    return CONDITION_COLORS.get(condition or "", OTHER_COLOR)


def tint(hex_color: str, amount: float = 0.85) -> str:
    """``hex_color`` mixed with white (``amount`` of white): a calm background for a badge."""
    rgb = [int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(c + (255 - c) * amount) for c in rgb]
    return "#" + "".join(f"{c:02X}" for c in mixed)


def css_variables() -> dict[str, str]:
    """Colours as CSS custom properties (``--cond-overfitting`` ...), so CSS and plots agree."""
    variables = {"--ink": INK, "--muted": MUTED, "--accent": BLUE}
    palettes = {
        "cond": {**CONDITION_COLORS, "error": ERROR_COLOR, "other": OTHER_COLOR},
        "sev": SEVERITY_COLORS,
        "outcome": OUTCOME_COLORS,
    }
    for prefix, palette in palettes.items():
        for name, color in palette.items():
            variables[f"--{prefix}-{name}"] = color
            variables[f"--{prefix}-{name}-bg"] = tint(color)
    return variables
