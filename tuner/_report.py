"""The study report as ``tune study`` and ``tune report`` write it: ``report.html`` (self-contained)
and ``report.md`` with its images in ``report_files/``, beside ``best_config.yaml``.

Every file is written to a temporary name first and renamed into place, so a study interrupted
while writing its report still has the previous one, whole.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna

from reports import prepare_study_report, render_study_html, render_study_markdown
from reports._render import IMAGE_FOLDER
from reports._study_render import STUDY_REPORT_HTML, STUDY_REPORT_MD
from tuner._export import CONFIG_FILE, python_snippet, write_best_config

FORMATS = ("html", "md")
#: Images of an earlier report that a new one may no longer use (and that are removed then).
_OWN_IMAGES = re.compile(r"^(study-[a-z]+|trial-\d+)\.png$")


def write_study_report(
    study: optuna.Study,
    out_dir: Path,
    *,
    formats: Sequence[str] = FORMATS,
    storage_url: str | None = None,
) -> list[Path]:
    """Write the report of ``study`` into ``out_dir`` in each of ``formats`` ("html", "md");
    return the report files written.

    The best configuration is exported beside it (``best_config.yaml`` / ``.py``, as ``tune best``
    writes them) so that the report's ``tune train --config best_config.yaml`` works from
    ``out_dir``. ``storage_url`` is shown without its password.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format {unknown[0]!r}; choose from: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    export = _export_best(study, out_dir)
    view = prepare_study_report(
        study,
        storage=redact_url(storage_url) if storage_url else None,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **export,
    )
    written: list[Path] = []
    if "html" in formats:
        written.append(_write_atomic(out_dir / STUDY_REPORT_HTML, render_study_html(view)))
    if "md" in formats:
        written.append(_write_markdown(view, out_dir))
    return written


def _export_best(study: optuna.Study, out_dir: Path) -> dict[str, Any]:
    """The best configuration as Python and YAML (also written to ``out_dir``), and how to train it."""
    from tuner._study import best_config

    try:
        best = best_config(study)
    except Exception as error:  # an old or foreign study: the report still shows the trials
        note = f"The best configuration could not be exported: {type(error).__name__}: {error}"
        return {"export_note": " ".join(note.split())[:300]}
    if best is None:
        return {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".best-config-") as scratch:
        paths = write_best_config(best, Path(scratch))
        config_yaml = paths[0].read_text(encoding="utf-8")
        for path in paths:
            os.replace(path, out_dir / path.name)
    return {
        "snippet": python_snippet(best),
        "config_yaml": config_yaml,
        "train_command": f"tune train --config {CONFIG_FILE}",
        "export_note": f"{CONFIG_FILE} and best_config.py lie beside this report: run the command there.",
    }


def _write_atomic(path: Path, text: str) -> Path:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; a report is for sharing
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_markdown(view: Any, out_dir: Path) -> Path:
    """Render into a scratch folder, move each image into ``report_files/`` (each rename atomic),
    then the Markdown file, then drop images the new report no longer links."""
    images = out_dir / IMAGE_FOLDER
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".report-") as scratch:
        rendered = render_study_markdown(view, Path(scratch))
        fresh = {p.name for p in (Path(scratch) / IMAGE_FOLDER).glob("*.png")}
        images.mkdir(exist_ok=True)
        for name in fresh:
            os.replace(Path(scratch) / IMAGE_FOLDER / name, images / name)
        target = out_dir / STUDY_REPORT_MD
        os.replace(rendered, target)
    for stale in images.glob("*.png"):
        if stale.name not in fresh and _OWN_IMAGES.match(stale.name):
            with contextlib.suppress(OSError):
                stale.unlink()
    return target


def redact_url(url: str) -> str:
    """``url`` without its password: ``postgresql://user:***@host/db``; passwords given as query
    parameters (``?password=...``) are masked too."""
    text = str(url)
    scheme, separator, rest = text.partition("://")
    if separator:
        netloc, slash, path = rest.partition("/")
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{host}"
        text = f"{scheme}://{netloc}{slash}{path}"
    return _QUERY_SECRET.sub(r"\1***", text)


_QUERY_SECRET = re.compile(r"(?i)([?&;](?:password|passwd|pwd|sslpassword|secret|token)=)[^&;#]*")


class ReportKeeper:
    """Keeps a running study's report current without slowing it down.

    After a trial the report is rewritten when ``min_interval`` seconds have passed since the last
    write (a 100-trial report takes a few seconds to draw), and always at the end. A report that
    cannot be written (a full disk, a bug in a plot) is said in one line; the study goes on.
    """

    def __init__(
        self, study: optuna.Study, out_dir: Path, storage_url: str | None, say, min_interval: float = 30.0
    ):
        self.study, self.out_dir, self.storage_url, self.say = study, out_dir, storage_url, say
        self.min_interval = min_interval
        self._last = -float("inf")

    def after_trial(self) -> None:
        if time.monotonic() - self._last >= self.min_interval:
            self.write()

    def write(self) -> list[Path]:
        self._last = time.monotonic()
        try:
            return write_study_report(self.study, self.out_dir, storage_url=self.storage_url)
        except Exception as error:  # the report must never cost the user the study
            self.say(f"report not written: {type(error).__name__}: {error}")
            return []
