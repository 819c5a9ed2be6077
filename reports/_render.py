"""Jinja2 environment shared by every report, and the diagnosis report in HTML and Markdown."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from diagnostics.findings import Diagnosis
from reports import _style
from reports._figures import to_data_uri
from reports._run_plot import EMA_WEIGHT
from reports._view import RunErrorLike, RunView, run_views, summarize

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_DIAGNOSIS_TITLE = "Training run diagnosis"
IMAGE_FOLDER = "report_files"

FIGURE_NOTE = (
    f"How to read the figures: train loss as logged (light blue) and smoothed (dark blue, TensorBoard's "
    f"debiased EMA, weight {EMA_WEIGHT}); eval loss in orange. A shaded band is the step range a finding "
    "is about, a bar along the top edge a finding about the whole curve, each labelled with its code "
    "(✖ error, ▲ warning, ● info). Dashed verticals are epoch boundaries; red ✕ on a panel's top edge "
    "are NaN / inf values."
)

# Conditions with a colour of their own; anything else (a future condition) gets the neutral one.
_BADGE_NAMES = (*_style.CONDITION_COLORS, "error", "other")


@functools.cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: HTML templates autoescape everything, Markdown ones use ``md``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        condition_class=condition_class,
        condition_label=str,
        severity_class=severity_class,
        severity_symbol=lambda level: _style.SEVERITY_SYMBOLS.get(level, "•"),
        data_uri=to_data_uri,
        md=markdown_text,
        md_code=markdown_code,
        md_fence=markdown_fence,
        wbr=break_after_underscores,
    )
    env.globals.update(
        css_variables=_style.css_variables(),
        font_stack=Markup(_style.FONT_STACK),
        mono_stack=Markup(_style.MONO_STACK),
        badge_names=_BADGE_NAMES,
        severity_names=tuple(_style.SEVERITY_COLORS),
        outcome_names=tuple(_style.OUTCOME_COLORS),
        figure_note=FIGURE_NOTE,
    )
    return env


def render_diagnosis_html(
    results: Sequence[Diagnosis | RunErrorLike], *, title: str = DEFAULT_DIAGNOSIS_TITLE
) -> str:
    """One self-contained HTML document: a summary of all runs, then per run its figure (inline
    PNG) and findings. Runs that could not be read (``RunError``) show their one-line error."""
    views = run_views(results)
    return _render("diagnosis.html", title, views)


def render_diagnosis_markdown(
    results: Sequence[Diagnosis | RunErrorLike], out_dir: Path, *, title: str = DEFAULT_DIAGNOSIS_TITLE
) -> Path:
    """Write ``out_dir/report.md`` and its figures as ``out_dir/report_files/<run>.png`` (linked
    relatively, so the folder can be moved or committed as is); returns the Markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = out_dir / IMAGE_FOLDER
    views = run_views(results)
    for view in views:
        if view.png is not None:
            images.mkdir(parents=True, exist_ok=True)
            (images / f"{view.slug}.png").write_bytes(view.png)
            view.image_path = f"{IMAGE_FOLDER}/{view.slug}.png"
    report = out_dir / "report.md"
    report.write_text(_render("diagnosis.md", title, views), encoding="utf-8")
    return report


def _render(template: str, title: str, views: list[RunView]) -> str:
    return environment().get_template(template).render(title=title, runs=views, summary=summarize(views))


def condition_class(condition: str | None) -> str:
    """A CSS class suffix that is safe whatever the condition string is."""
    return condition if condition in _BADGE_NAMES else "other"


def severity_class(level: str) -> str:
    return level if level in _style.SEVERITY_COLORS else "info"


# Characters that start Markdown syntax anywhere in a line; `_` only at a word edge, because
# GitHub does not emphasise inside words (``learning_rate`` stays readable in the raw file).
# `<` opens raw HTML and `&` an entity; `>` only quotes at the start of a line, which a cell never is.
_MD_ENTITY = re.compile(r"&(?=#?\w+;)")
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def markdown_text(value: object) -> str:
    """Text safe inside a Markdown paragraph, heading or table cell: no syntax, no raw HTML, no
    line breaks (they would end a table row)."""
    text = _MD_ENTITY.sub("&amp;", str(value)).replace("<", "&lt;")
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    lines = [line.strip() for line in text.splitlines()]
    return "<br>".join(line for line in lines if line)


def markdown_fence(value: object, language: str = "") -> str:
    """A fenced Markdown code block around ``value``: the fence is longer than any run of
    backticks inside, so nothing in the code can close it."""
    text = str(value).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def break_after_underscores(value: object) -> Markup:
    """Escaped text that may wrap after each underscore (long argument names in table headers)."""
    return Markup("_<wbr>").join(escape(part) for part in str(value).split("_"))


def markdown_code(value: object) -> str:
    """Text safe inside a `code span` in a table: backticks and line breaks cannot survive there,
    and GitHub still splits cells on ``|`` inside code."""
    return " ".join(str(value).replace("`", "'").split()).replace("|", "\\|")
