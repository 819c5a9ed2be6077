"""Records of named numbers (CSV rows, JSON lines) -> a RunLog: the code the tabular formats share."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from diagnostics.readers._base import (
    LogFormat,
    ReaderError,
    check_point_count,
    decode_error,
    point,
    to_float,
)
from diagnostics.readers._names import EPOCH, STEP, find_column, plan_names
from diagnostics.runlog import RunLog

# CSV fields can be long (a logged list); the default 128 KiB limit would raise mid-file.
csv.field_size_limit(16 * 1024 * 1024)


def records_to_run(
    records: Iterable[Mapping[str, Any]],
    run: RunLog,
    what: str,
    column_map: Mapping[str, str] | None = None,
    drop: frozenset[str] = frozenset(),
) -> RunLog:
    """Fill ``run`` with one point per record: the step column (or the record's ordinal), the epoch
    column, and every other numeric column under its planned name."""
    rows: list[dict[str, float]] = []
    counts: dict[str, int] = {}
    for record in records:
        row = {}
        for key, value in record.items():
            number = to_float(value)
            if number is not None and key not in drop:
                row[key] = number
                counts[key] = counts.get(key, 0) + 1
        rows.append(row)
        check_point_count(len(rows), what)
    step_column = find_column(counts, STEP, column_map)
    epoch_column = find_column(counts, EPOCH, column_map)
    metric_counts = {k: v for k, v in counts.items() if k not in (step_column, epoch_column)}
    plan = plan_names(metric_counts, column_map)
    points = []
    step = 0
    for ordinal, row in enumerate(rows, start=1):
        step = int(row[step_column]) if step_column in row else (step if step_column else ordinal)
        metrics = {plan[k]: v for k, v in row.items() if k in plan}
        if metrics:
            points.append(point(step, row.get(epoch_column) if epoch_column else None, metrics))
    run.extend(points)
    return run


def csv_records(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a CSV / TSV file as dicts, streamed; a ReaderError for an unreadable file."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            head = handle.readline()
            if not head.strip():
                raise ReaderError(f"{path.name} is empty")
            reader = csv.DictReader(_chain(head, handle), delimiter=_delimiter(path, head))
            for row in reader:
                yield {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    except UnicodeDecodeError:
        raise decode_error(path.name) from None
    except csv.Error as error:
        raise ReaderError(f"{path.name} is not valid CSV ({error})") from None


def csv_columns(path: Path, head: bytes) -> list[str]:
    """The header of a CSV / TSV file from its first bytes ([] when there is none)."""
    text = head.decode("utf-8", "replace")
    first = text.splitlines()[0] if text else ""
    try:
        return next(csv.reader([first], delimiter=_delimiter(path, first)), [])
    except csv.Error:
        return []


def jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    """JSON objects, one a line, streamed. A line cut off at the end of the file (a job still
    writing) is dropped; a file whose lines are mostly not JSON is an error."""
    bad = good = 0
    first_bad = ""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError as error:
                    bad += 1
                    first_bad = first_bad or f"line {number}: {error.msg}"
                    continue
                if isinstance(record, dict):
                    good += 1
                    yield _flatten(record)
    except UnicodeDecodeError:
        raise decode_error(path.name) from None
    if good == 0 and bad == 0:
        raise ReaderError(f"{path.name} is empty")
    if bad > max(1, good // 10):
        raise ReaderError(f"{path.name} is not valid JSON lines ({bad} bad lines, first at {first_bad})")


def first_json_record(head: bytes) -> dict[str, Any] | None:
    line = head.split(b"\n", 1)[0].strip()
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return _flatten(record) if isinstance(record, dict) else None


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"loss": 1}} -> {"train/loss": 1} (W&B-style nesting), one level deep is plenty."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not prefix:
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


def _delimiter(path: Path, head: str) -> str:
    if path.suffix.lower() == ".tsv" or ("\t" in head and "," not in head):
        return "\t"
    return ","


def _chain(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


def table_format(
    name: str,
    claims: Callable[[Path, bytes, Mapping[str, str]], bool],
    read_records: Callable[[Path], Iterable[Mapping[str, Any]]],
    drop: frozenset[str] = frozenset(),
) -> LogFormat:
    """A LogFormat for a tabular log whose records ``read_records(path)`` yields."""

    def read(paths: Sequence[Path], column_map: Mapping[str, str] | None = None) -> list[RunLog]:
        run = RunLog(source=str(paths[0]), format=name)
        return [records_to_run(read_records(paths[0]), run, paths[0].name, column_map, drop)]

    return LogFormat(name, claims, read)
