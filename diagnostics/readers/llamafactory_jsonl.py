"""LLaMA-Factory's ``trainer_log.jsonl``: one JSON object per logging step.

``current_steps`` is the step, ``total_steps`` the planned steps (-> ``max_steps``), ``loss``,
``eval_loss``, ``lr`` and ``epoch`` the metrics; the progress fields (``percentage``,
``elapsed_time``, ``remaining_time``) are dropped. The last line, written at the end of training,
carries no metric and adds no point.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from diagnostics.readers._base import LogFormat, to_float
from diagnostics.readers._table import first_json_record, jsonl_records, records_to_run
from diagnostics.runlog import RunLog

NAME = "llamafactory_jsonl"
_DROP = frozenset({"total_steps", "percentage", "elapsed_time", "remaining_time", "throughput"})


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    if path.name.endswith("trainer_log.jsonl"):
        return True
    record = first_json_record(head) if path.suffix.lower() in (".jsonl", ".json") else None
    return record is not None and "current_steps" in record and "total_steps" in record


def read(paths: Sequence[Path], column_map: Mapping[str, str] | None = None) -> list[RunLog]:
    path = paths[0]
    run = RunLog(source=str(path), format=NAME)
    planned: list[float] = []

    def records() -> Iterator[dict[str, Any]]:
        for record in jsonl_records(path):
            total = to_float(record.get("total_steps"))
            if total:
                planned.append(total)
            yield record

    records_to_run(records(), run, path.name, column_map, _DROP)
    if planned:
        run.config.training_args["max_steps"] = int(planned[-1])
    return [run]


FORMAT = LogFormat(NAME, claims, read)
