"""HF Trainer's ``trainer_state.json``: the ``log_history`` of a run, one checkpoint or many.

Train records (those with ``loss``) give loss / grad_norm / learning_rate and whatever else the
trainer logged; eval records give ``eval_*``; ``predict_*`` / ``test_*`` records without a step are
placed at the step before them. The end-of-run summary (``train_loss`` + ``train_runtime``, no
``loss``) is skipped: it is a mean over the run, not a point of the curve. Several
``checkpoint-N/trainer_state.json`` of one output directory are one run: the state with the highest
``global_step`` wins (it carries the whole history, resumed runs included). A ``.json`` file holding
only the list (``json.dump(trainer.state.log_history, f)``) is read the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diagnostics.readers._base import (
    MAX_JSON_BYTES,
    LogFormat,
    ReaderError,
    check_point_count,
    decode_error,
    file_size_guard,
    numeric_items,
    point,
    to_float,
)
from diagnostics.readers._config import state_config
from diagnostics.runlog import LogPoint, RunLog

NAME = "trainer_state"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_SKIP = frozenset({"step", "epoch"})


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    if path.name.endswith("trainer_state.json"):
        return True
    if path.suffix != ".json":
        return False
    # A whole state, or `json.dump(trainer.state.log_history, f)`: a bare list of Trainer records.
    bare_history = head.lstrip().startswith(b"[") and b'"step"' in head and b'loss"' in head
    return b'"log_history"' in head or bare_history


def run_key(path: Path) -> Path:
    """checkpoint-N/trainer_state.json and a trainer_state.json beside checkpoint-N dirs: the output dir."""
    if _CHECKPOINT.match(path.parent.name):
        return path.parent.parent
    if path.name == "trainer_state.json":
        return path.parent
    return path


def read(paths: Sequence[Path], column_map: Mapping[str, str] | None = None) -> list[RunLog]:
    state, chosen = _latest_state(paths)
    source = (
        paths[0] if len(paths) == 1 and not _CHECKPOINT.match(paths[0].parent.name) else run_key(paths[0])
    )
    run = RunLog(source=str(source), format=NAME)
    run.extend(_points(state, _label(chosen)))
    run.config.merge(state_config(state))
    if _global_step(state):
        run.trained_steps = int(_global_step(state))
    return [run]


def _latest_state(paths: Sequence[Path]) -> tuple[dict[str, Any], Path]:
    """The state with the highest global_step. Checkpoints are tried newest first, so a checkpoint
    truncated by a killed save falls back to the one before it; the top-level file (written at the
    end of training) competes with the newest readable checkpoint."""
    top = [p for p in paths if not _CHECKPOINT.match(p.parent.name)]
    checkpoints = sorted(
        (p for p in paths if _CHECKPOINT.match(p.parent.name)),
        key=lambda p: int(_CHECKPOINT.match(p.parent.name).group(1)),  # type: ignore[union-attr]
        reverse=True,
    )
    candidates: list[tuple[dict[str, Any], Path]] = []
    first_error: ReaderError | None = None
    for group in (top, checkpoints):
        for path in group:
            try:
                candidates.append((load(path), path))
                break
            except ReaderError as error:
                first_error = first_error or error
    if not candidates:
        assert first_error is not None
        raise first_error
    return max(candidates, key=lambda c: (_global_step(c[0]), c[1] in top))


def load(path: Path) -> dict[str, Any]:
    """The parsed state, or a one-line ReaderError saying what is wrong with the file."""
    what = _label(path)
    file_size_guard(path, MAX_JSON_BYTES, what)
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise decode_error(what) from None
    except json.JSONDecodeError as error:
        hint = "truncated" if error.pos >= len(raw.rstrip()) else "corrupt"
        raise ReaderError(
            f"{what} is not valid JSON ({hint}: {error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if isinstance(data, list) and all(isinstance(record, dict) for record in data):
        data = {"log_history": data}
    if not isinstance(data, dict) or not isinstance(data.get("log_history"), list):
        raise ReaderError(f"{what} is not a trainer state (no 'log_history' list)")
    return data


def _points(state: Mapping[str, Any], what: str) -> list[LogPoint]:
    history = state["log_history"]
    check_point_count(len(history), what)
    points: list[LogPoint] = []
    step = 0
    for record in history:
        if not isinstance(record, dict):
            continue
        step = int(to_float(record.get("step")) or step)
        if "loss" not in record and "train_runtime" in record and "train_loss" in record:
            continue
        metrics = numeric_items(record, _SKIP)
        if metrics:
            points.append(point(step, to_float(record.get("epoch")), metrics))
    return points


def _global_step(state: Mapping[str, Any]) -> float:
    return to_float(state.get("global_step")) or 0.0


def _label(path: Path) -> str:
    """The file as the user knows it: checkpoint-300/trainer_state.json rather than a bare name."""
    if _CHECKPOINT.match(path.parent.name):
        return f"{path.parent.name}/{path.name}"
    return path.name


FORMAT = LogFormat(NAME, claims, read, run_key)
