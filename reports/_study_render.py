"""The tuning study report in HTML (one self-contained file) and Markdown (a file and its images).

Both are drawn from one :class:`StudyView`: build it once with :func:`prepare_study_report` and
render it in as many formats as needed, so the figures are drawn once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports._render import IMAGE_FOLDER, environment
from reports._study_records import StudyRecord, study_record
from reports._study_view import StudyView, study_view

STUDY_REPORT_HTML = "report.html"
STUDY_REPORT_MD = "report.md"


def prepare_study_report(study: Any, *, generated: str | None = None, **options: Any) -> StudyView:
    """Everything the report shows, figures drawn, for an ``optuna.Study`` or a :class:`StudyRecord`.

    ``options`` (all optional): ``title``; ``snippet``, the best configuration as Python
    (TrainingArguments, LoraConfig, ...); ``config_yaml``, the same as ``best_config.yaml``;
    ``train_command``, the command that trains it; ``storage``, shown as given (so pass it without
    its password); ``export_note``, a line under the snippet. ``generated`` (a time) is printed
    under the title.
    """
    if isinstance(study, StudyView):
        return study
    record = study if isinstance(study, StudyRecord) else study_record(study)
    view = study_view(record, **options)
    view.generated = generated or ""
    return view


def render_study_html(study: Any, **options: Any) -> str:
    """The report as one HTML document with every image inline (no scripts, nothing fetched).

    ``study``: an ``optuna.Study``, a :class:`StudyRecord` or a prepared :class:`StudyView`;
    ``options`` are those of :func:`prepare_study_report`.
    """
    view = prepare_study_report(study, **options)
    return environment().get_template("study.html").render(**_context(view))


def render_study_markdown(study: Any, out_dir: Path, **options: Any) -> Path:
    """Write ``out_dir/report.md`` and its images under ``out_dir/report_files/`` (relative links,
    so the folder can be moved or committed); returns the Markdown path."""
    view = prepare_study_report(study, **options)
    out_dir = Path(out_dir)
    images = out_dir / IMAGE_FOLDER
    images.mkdir(parents=True, exist_ok=True)
    for index, figure in enumerate(view.figures):
        if figure.png is not None:
            name = f"study-{figure.key}.png"
            (images / name).write_bytes(figure.png)
            view.figures[index] = _with_path(figure, f"{IMAGE_FOLDER}/{name}")
    for item in view.diagnoses:
        if item.run.png is not None:
            name = f"{item.run.anchor}.png"
            (images / name).write_bytes(item.run.png)
            item.run.image_path = f"{IMAGE_FOLDER}/{name}"
    report = out_dir / STUDY_REPORT_MD
    report.write_text(environment().get_template("study.md").render(**_context(view)), encoding="utf-8")
    return report


def _context(view: StudyView) -> dict[str, Any]:
    return {"title": view.title, "view": view, "generated": view.generated}


def _with_path(figure: Any, path: str) -> Any:
    from dataclasses import replace

    return replace(figure, image_path=path)
