"""PyTorch Lightning's ``CSVLogger`` file (``metrics.csv``).

Every row has ``step`` and usually ``epoch``; the other columns are sparse (a row holds what one
``log_metrics`` call wrote). ``train_loss_step`` / ``train_loss_epoch`` come from
``self.log(..., on_step=True, on_epoch=True)``: the per-step loss is used once it has enough points,
the per-epoch one otherwise, and the other variant is kept under its own name. ``val_loss`` (or
``val_loss_epoch``) is the eval loss and ``lr-AdamW`` (LearningRateMonitor, first param group) the
learning rate. Steps are Lightning's own (0-based: the first log of ``log_every_n_steps=50`` is 49).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from diagnostics.readers._table import csv_columns, csv_records, table_format

NAME = "lightning_csv"


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    if path.name.endswith("metrics.csv"):
        return True
    if path.suffix.lower() != ".csv":
        return False
    columns = csv_columns(path, head)
    return (
        "step" in columns
        and "epoch" in columns
        and any(
            column.endswith(("_step", "_epoch")) or column.startswith(("lr-", "val_", "train_"))
            for column in columns
        )
    )


FORMAT = table_format(NAME, claims, csv_records)
