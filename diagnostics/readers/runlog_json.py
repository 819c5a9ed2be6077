"""This tool's own ``run_log.json``: a ``RunLog.to_dict()`` as `tune train` and `tune study` write it.

Reading it back is exact: points, configuration and the step the run reached come through as they
were recorded (NaN / inf are stored as strings and read back as floats).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from diagnostics.readers._base import (
    MAX_JSON_BYTES,
    LogFormat,
    ReaderError,
    decode_error,
    file_size_guard,
)
from diagnostics.runlog import RunLog

NAME = "runlog"


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    if path.suffix != ".json":
        return False
    return path.name.endswith("run_log.json") or (b'"points"' in head and b'"source"' in head)


def read(paths: Sequence[Path], column_map: Mapping[str, str] | None = None) -> list[RunLog]:
    path = paths[0]
    file_size_guard(path, MAX_JSON_BYTES, path.name)
    try:
        data = json.loads(path.read_bytes())
    except UnicodeDecodeError:
        raise decode_error(path.name) from None
    except json.JSONDecodeError as error:
        raise ReaderError(f"{path.name} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise ReaderError(f"{path.name} is not a run log (no 'points' list)")
    try:
        run = RunLog.from_dict({**data, "source": str(path)})
    except (KeyError, TypeError, ValueError) as error:
        raise ReaderError(f"{path.name} has a malformed point ({type(error).__name__}: {error})") from None
    run.format = NAME
    return [run]


FORMAT = LogFormat(NAME, claims, read)
