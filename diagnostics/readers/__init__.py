"""Log readers: the files people already have -> RunLogs.

>>> results = read_runs("run_logs/")                       # doctest: +SKIP
>>> [(r.source, r.format, r.error) for r in results]       # doctest: +SKIP
[('run_logs/exp1', 'trainer_state', None), ('run_logs/exp2/train.log', 'hf_stdout', None)]

``read_runs`` takes a file or a folder; in a folder it finds the runs itself (all checkpoints of one
output dir are one run, all event files of one folder are one run) and returns them sorted by
path. It never raises for a bad file: that file becomes a ReadResult with ``error`` set, a single
line such as ``trainer_state.json is not valid JSON (truncated: ...)``, and every other run is
still read. Files that are not logs (README.md without Trainer lines, labels.tsv, config JSONs,
code) are skipped without a word.

Adding a format means one module with a ``FORMAT`` (see ``_base.LogFormat``) and one line in
``FORMATS`` below; the order of ``FORMATS`` is the order in which formats claim a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from diagnostics.readers import (
    generic_csv,
    generic_jsonl,
    hf_stdout,
    lightning_csv,
    llamafactory_jsonl,
    runlog_json,
    tensorboard,
    trainer_state,
)
from diagnostics.readers._base import LogFormat, NotALog, ReaderError
from diagnostics.readers._config import ConfigFinder
from diagnostics.readers._discovery import config_dir, group, run_directory, sniff, walk
from diagnostics.runlog import RunLog

FORMATS: tuple[LogFormat, ...] = (
    trainer_state.FORMAT,
    runlog_json.FORMAT,
    tensorboard.FORMAT,
    llamafactory_jsonl.FORMAT,
    lightning_csv.FORMAT,
    generic_jsonl.FORMAT,
    generic_csv.FORMAT,
    hf_stdout.FORMAT,
)


@dataclass
class ReadResult:
    """One run found on disk: its RunLog, or the one-line reason it could not be read."""

    source: str  # the file, or the run directory for multi-file runs (checkpoints, event files)
    format: str  # a name of FORMATS: "trainer_state", "hf_stdout", "tensorboard", ...
    run: RunLog | None  # None when it failed
    error: str | None

    @property
    def ok(self) -> bool:
        return self.run is not None


def read_runs(path: str | Path, column_map: Mapping[str, str] | None = None) -> list[ReadResult]:
    """Every run in ``path`` (a log file or a folder searched recursively), sorted by path.

    ``column_map`` names the user's own columns for CSV / JSONL / TensorBoard logs, e.g.
    ``{"train/loss": "loss", "val/loss": "eval_loss"}``; common aliases are built in.
    """
    path = Path(path)
    column_map = dict(column_map or {})
    if not path.exists():
        return [ReadResult(str(path), "unknown", None, f"{path} does not exist")]
    if path.is_file():
        return _read_one_file(path, column_map)
    finder = ConfigFinder(path)
    results = []
    for log_format, key, files in group(list(walk(path)), FORMATS, column_map):
        results.extend(_read_group(log_format, key, files, column_map, finder, path, quiet=True))
    return _without_duplicates(results)


def read_file(path: str | Path, column_map: Mapping[str, str] | None = None) -> ReadResult:
    """One log file, its format sniffed from its name and content. A file that holds several runs (a
    notebook that trains twice) gives its last run here; ``read_runs`` gives all of them."""
    return _read_one_file(Path(path), dict(column_map or {}))[-1]


def _read_one_file(path: Path, column_map: dict[str, str]) -> list[ReadResult]:
    if not path.is_file():
        return [ReadResult(str(path), "unknown", None, f"{path} does not exist or is not a file")]
    log_format = sniff(path, FORMATS, column_map)
    if log_format is None:
        return [ReadResult(str(path), "unknown", None, f"{path.name} is not a log format this tool reads")]
    finder = ConfigFinder(path.parent)
    return _read_group(log_format, path, [path], column_map, finder, path.parent, quiet=False)


def _read_group(
    log_format: LogFormat,
    key: Path,
    files: list[Path],
    column_map: Mapping[str, str],
    finder: ConfigFinder,
    root: Path,
    quiet: bool,
) -> list[ReadResult]:
    what = files[0].name if len(files) == 1 else f"{key.name}/"
    try:
        runs = log_format.read(files, column_map)
    except NotALog as reason:
        return [] if quiet else [ReadResult(str(key), log_format.name, None, str(reason))]
    except ReaderError as error:
        return [ReadResult(str(key), log_format.name, None, str(error))]
    except MemoryError:
        return [ReadResult(str(key), log_format.name, None, f"{what} is too large to read in memory")]
    except Exception as error:  # a reader bug must not cost the user the other runs
        message = f"{what} could not be read ({type(error).__name__}: {error})".splitlines()[0]
        return [ReadResult(str(key), log_format.name, None, message)]
    found = finder.for_log(config_dir(files), with_state=log_format is not trainer_state.FORMAT)
    results = []
    for run in runs:
        run.config.merge(found)
        run.name = run.name or _label(Path(run.source.split("#run")[0]), root, run.source)
        results.append(ReadResult(run.source, log_format.name, run, None))
    return results


def _label(source: Path, root: Path, full: str) -> str:
    """The run as the user would name it: its path below the folder they gave."""
    try:
        relative = source.relative_to(root)
    except ValueError:
        relative = Path(source.name)
    label = source.name if str(relative) == "." else str(relative)
    return label + full[len(str(source)) :]


def _without_duplicates(results: list[ReadResult]) -> list[ReadResult]:
    """An HF output dir logs one run several ways (trainer_state.json, TensorBoard under runs/,
    LLaMA-Factory's trainer_log.jsonl, a captured stdout). Keep the trainer_state run and drop the
    others found in its folder or below, unless they reach further than it."""
    states = {
        run_directory(Path(r.source)): r.run.last_step
        for r in results
        if r.run is not None
        and r.format == trainer_state.NAME
        and (Path(r.source).is_dir() or Path(r.source).name == "trainer_state.json")
    }
    if not states:
        return results
    kept = []
    for result in results:
        if result.run is not None and result.format != trainer_state.NAME:
            folder = run_directory(Path(result.source.split("#run")[0]))
            owner = next((d for d in (folder, *folder.parents[:2]) if d in states), None)
            if owner is not None and result.run.last_step <= states[owner]:
                continue
        kept.append(result)
    return kept


__all__ = ["FORMATS", "ReadResult", "read_file", "read_runs"]
