"""Any JSON-lines metric log (one object per line, e.g. a custom loop's ``json.dumps(metrics)``).

Columns are named through the user's ``column_map`` and the built-in aliases (``train_loss``,
``val_loss``, ``lr``, ``global_step``...); nested objects become ``outer/inner`` names, so W&B-style
``{"train": {"loss": 1.2}}`` is ``train/loss``. Without a step column the line number is the step.
A JSONL file whose first record names no metric (a dataset) is not a log and is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from diagnostics.readers._names import looks_like_metrics
from diagnostics.readers._table import first_json_record, jsonl_records, table_format

NAME = "jsonl"


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        return False
    record = first_json_record(head)
    return record is not None and looks_like_metrics(record, column_map)


FORMAT = table_format(NAME, claims, jsonl_records)
