"""HTML and Markdown reports of diagnoses and of tuning studies, with their figures.

``reports`` renders what it is given: RunLogs, Diagnoses and, for runs that could not be read, a
source path with its error; for a study, an ``optuna.Study`` or the plain records
``study_record`` makes of one (``_study_records`` is the only module that reads Optuna). It knows
no command line, no storage URL and reads no log files.

>>> from diagnostics import Diagnosis, RunLog
>>> run = RunLog(source="runs/a/trainer_state.json")
>>> for step in range(1, 50):
...     run.add(step, loss=2.0 / step**0.3)
>>> html = render_diagnosis_html([Diagnosis(run), RunError("runs/b.csv", "lightning", "no 'step' column")])
>>> html.count('<img src="data:image/png;base64,')
1

The building blocks (``figure_to_png_bytes``, ``to_data_uri``, the ``base.html`` template and the
macros in ``macros.html``) are shared by every report so that all of them look alike.
"""

from reports._figures import figure_to_png_bytes, to_data_uri
from reports._render import render_diagnosis_html, render_diagnosis_markdown
from reports._run_plot import plot_run, run_figure
from reports._study_records import ParamSpec, StudyRecord, TrialRecord, study_record
from reports._study_render import prepare_study_report, render_study_html, render_study_markdown
from reports._view import RunError

__all__ = [
    "ParamSpec",
    "RunError",
    "StudyRecord",
    "TrialRecord",
    "figure_to_png_bytes",
    "plot_run",
    "prepare_study_report",
    "render_diagnosis_html",
    "render_diagnosis_markdown",
    "render_study_html",
    "render_study_markdown",
    "run_figure",
    "study_record",
    "to_data_uri",
]
