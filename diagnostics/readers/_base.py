"""What every reader shares: the format record of the registry, the two exceptions, limits and helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostics.runlog import LogPoint, RunLog

# JSON logs must be parsed whole; a trainer_state.json of a very long run is ~30 MB, so anything far
# above that is refused instead of taking gigabytes of memory. Line-based logs are streamed.
MAX_JSON_BYTES = 64 * 1024 * 1024
# A run with more records than this is not a log a person could look at; it is refused before its
# points take hundreds of MB (a LogPoint with four metrics is ~400 bytes).
MAX_POINTS = 500_000
# How much of a file the sniffers see.
HEAD_BYTES = 16 * 1024


class ReaderError(Exception):
    """A file that is meant to be a log but cannot be read; the message is one line for the user."""


class NotALog(Exception):
    """A file that turns out not to be a log at all (a README with no Trainer lines): skipped quietly."""


@dataclass(frozen=True)
class LogFormat:
    """One log format of the registry.

    ``claims(path, head, column_map)`` says from the file name and its first bytes (and the user's
    column names) whether the file is of this format. ``run_key(path)`` says which run the file
    belongs to: files of one format with the same key are read together as one run (TensorBoard:
    all event files of a directory; trainer_state: all checkpoints of a run directory).
    ``read(paths, column_map)`` turns those files into RunLogs (usually one) and raises ReaderError
    or NotALog.
    """

    name: str
    claims: Callable[[Path, bytes, Mapping[str, str]], bool]
    read: Callable[[Sequence[Path], Mapping[str, str]], list[RunLog]]
    run_key: Callable[[Path], Path] = lambda path: path


def to_float(value: Any) -> float | None:
    """A number from a log value: ints, floats and numeric strings (transformers 5.x prints strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def numeric_items(record: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, float]:
    """The numeric values of ``record`` except the keys in ``skip``."""
    out: dict[str, float] = {}
    for key, value in record.items():
        kind = type(value)
        if kind is float or kind is int:  # the common case, first: 1,000 runs are read in a second
            if key not in skip:
                out[key] = float(value)
        elif key not in skip:
            number = to_float(value)
            if number is not None:
                out[key] = number
    return out


def check_point_count(count: int, what: str) -> None:
    if count > MAX_POINTS:
        raise ReaderError(f"{what} holds more than {MAX_POINTS:,} log records; refusing to read it whole")


def file_size_guard(path: Path, limit: int, what: str) -> int:
    size = path.stat().st_size
    if size == 0:
        raise ReaderError(f"{what} is empty")
    if size > limit:
        raise ReaderError(
            f"{what} is {size / 2**20:.0f} MB, over the {limit // 2**20} MB limit for this format; "
            "pass a trimmed copy"
        )
    return size


def point(step: int, epoch: float | None, metrics: dict[str, float]) -> LogPoint:
    """A LogPoint whose epoch is None when the log gave none (or a non-finite one)."""
    if epoch is not None and not math.isfinite(epoch):
        epoch = None
    return LogPoint(int(step), epoch, metrics)


def is_binary(head: bytes) -> bool:
    return b"\x00" in head


def decode_error(what: str) -> ReaderError:
    return ReaderError(f"{what} is not UTF-8 text (binary or corrupt file)")
