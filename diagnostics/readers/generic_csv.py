"""Any CSV / TSV metric log: a header naming the columns, one row per logged step.

Columns are named through the user's ``column_map`` and the built-in aliases, as for JSONL; a table
whose header names no metric (``labels.tsv``, a dataset) is not a log and is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from diagnostics.readers._names import looks_like_metrics
from diagnostics.readers._table import csv_columns, csv_records, table_format

NAME = "csv"


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    if path.suffix.lower() not in (".csv", ".tsv"):
        return False
    return looks_like_metrics(csv_columns(path, head), column_map)


FORMAT = table_format(NAME, claims, csv_records)
