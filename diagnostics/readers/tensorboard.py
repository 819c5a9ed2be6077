"""TensorBoard event files (``events.out.tfevents.*``): one run per directory holding them.

Read with TensorBoard's own ``EventFileLoader`` (records are CRC-checked; a corrupt tail ends the
file instead of raising), streaming, scalars only. Tags are mapped like CSV columns: HF's
``train/loss``, ``train/grad_norm``, ``train/learning_rate``, ``train/epoch``, ``eval/loss`` and
Lightning's ``train_loss``, ``train_loss_step``, ``val_loss``, ``lr-AdamW``, ``epoch``; other
``eval/x`` tags become ``eval_x`` like the Trainer's own names. The Trainer also writes its
arguments as a text summary (``args``), which fills the run's training_args.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diagnostics.readers._base import MAX_POINTS, LogFormat, ReaderError, point
from diagnostics.readers._config import clean_args
from diagnostics.readers._names import EPOCH, STEP, plan_names
from diagnostics.runlog import RunLog

NAME = "tensorboard"
# The end-of-run summary the Trainer logs as `train/train_loss`, `train/train_runtime`, `train/total_flos`.
_HF_SUMMARY_PREFIXES = ("train/train_", "train/total_flos")


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    return "tfevents" in path.name


def run_key(path: Path) -> Path:
    return path.parent


def read(paths: Sequence[Path], column_map: Mapping[str, str] | None = None) -> list[RunLog]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    directory = paths[0].parent
    what = paths[0].name if len(paths) == 1 else f"{directory.name}/ (event files)"
    scalars: list[tuple[str, int, float]] = []
    texts: dict[str, str] = {}
    for path in sorted(paths):
        try:
            events = EventFileLoader(str(path)).Load()
            for event in events:
                for value in event.summary.value:
                    plugin = value.metadata.plugin_data.plugin_name
                    if plugin == "text":
                        texts[value.tag.split("/")[0]] = _text(tensor_util.make_ndarray(value.tensor))
                    elif plugin == "scalars":
                        scalars.append((value.tag, event.step, float(tensor_util.make_ndarray(value.tensor))))
                if len(scalars) > 4 * MAX_POINTS:
                    raise ReaderError(f"{what} holds more than {4 * MAX_POINTS:,} scalar values")
        except ReaderError:
            raise
        except Exception as error:  # protobuf decode errors of a damaged record, bad tensors
            if not scalars:
                raise ReaderError(f"{path.name} is not a readable TensorBoard event file ({error})") from None
    if not scalars:
        raise ReaderError(
            f"{what} holds no scalar summaries (empty, corrupt or not a TensorBoard event file)"
        )
    run = RunLog(source=str(directory), format=NAME)
    run.extend(_points(scalars, column_map))
    _read_texts(texts, run)
    return [run]


def _points(scalars: list[tuple[str, int, float]], column_map: Mapping[str, str] | None):
    counts: dict[str, int] = {}
    for tag, _, _ in scalars:
        counts[tag] = counts.get(tag, 0) + 1
    plan = plan_names(counts, column_map)
    epoch_tag = next((tag for tag, name in plan.items() if name == EPOCH), None)
    by_step: dict[int, dict[str, float]] = {}
    epochs: dict[int, float] = {}
    for tag, step, value in scalars:
        name = plan[tag]
        if tag == epoch_tag:
            epochs[step] = value
        elif name != STEP and name != EPOCH and not tag.startswith(_HF_SUMMARY_PREFIXES):
            by_step.setdefault(step, {})[_display_name(tag, name)] = value
    return [point(step, epochs.get(step), metrics) for step, metrics in sorted(by_step.items())]


def _display_name(tag: str, name: str) -> str:
    if name == tag and tag.startswith("eval/"):
        return "eval_" + tag[len("eval/") :]
    return name


def _text(array: Any) -> str:
    item = array.reshape(-1)[0] if getattr(array, "size", 0) else b""
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def _read_texts(texts: Mapping[str, str], run: RunLog) -> None:
    """The Trainer's `args` and `model_config` text summaries (JSON dumps), when present."""
    for tag, target in (("args", "args"), ("model_config", "model")):
        raw = texts.get(tag)
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if target == "args":
            run.config.training_args.update(clean_args(data))
        else:
            name = data.get("_name_or_path")
            run.config.model = name if isinstance(name, str) and name else run.config.model
            version = data.get("transformers_version")
            run.config.transformers_version = version if isinstance(version, str) else None


FORMAT = LogFormat(NAME, claims, read, run_key)
