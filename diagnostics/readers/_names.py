"""Column and tag names of metric logs -> the canonical RunLog names.

One mechanism serves generic CSV / JSONL, Lightning's ``metrics.csv`` and TensorBoard tags: the user's
``column_map`` first, then the built-in aliases, then Lightning's ``*_step`` / ``*_epoch`` variants.
Two names never land on one canonical name: the exact canonical name wins, then the first alias.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from diagnostics.runlog import EVAL_LOSS, GRAD_NORM, LEARNING_RATE, LOSS

STEP = "step"
EPOCH = "epoch"

# Keys are compared lower-cased, so `Loss/train` and `loss/train` are one alias.
_ALIASES: dict[str, str] = {
    **dict.fromkeys(["loss", "train_loss", "train/loss", "training_loss", "loss/train"], LOSS),
    **dict.fromkeys(
        [
            "eval_loss",
            "eval/loss",
            "val_loss",
            "val/loss",
            "valid_loss",
            "valid/loss",
            "validation_loss",
            "validation/loss",
            "loss/val",
            "loss/eval",
            "loss/validation",
        ],
        EVAL_LOSS,
    ),
    **dict.fromkeys(
        ["grad_norm", "train/grad_norm", "gradient_norm", "grad-norm", "gradnorm", "train/gradient_norm"],
        GRAD_NORM,
    ),
    **dict.fromkeys(
        ["learning_rate", "lr", "train/learning_rate", "train/lr", "learning-rate", "optimizer/lr"],
        LEARNING_RATE,
    ),
    **dict.fromkeys(
        ["step", "global_step", "current_steps", "train/global_step", "trainer/global_step", "_step"], STEP
    ),
    **dict.fromkeys(["iteration", "iter", "steps"], STEP),
    **dict.fromkeys(["epoch", "train/epoch", "epochs", "trainer/epoch"], EPOCH),
}
# Lightning's LearningRateMonitor: `lr-AdamW`, `lr-SGD-momentum`, one column per param group `/pg1`.
_LR_MONITOR = re.compile(r"^lr-[A-Za-z]\w*(?:/pg1)?$")
# A `*_step` variant is preferred over `*_epoch` once it has this many points.
MIN_STEP_POINTS = 5


def alias(name: str) -> str | None:
    """The canonical name of one column or tag, or None."""
    found = _ALIASES.get(name.lower())
    if found is None and _LR_MONITOR.match(name):
        found = LEARNING_RATE
    return found


def plan_names(counts: Mapping[str, int], column_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """The final name of every column: canonical where one applies, the column's own name otherwise.

    ``counts`` gives, per column, how many values it holds (in first-seen order); it decides
    between Lightning's ``train_loss_step`` (per step) and ``train_loss_epoch`` (per epoch): the
    step variant wins once it has MIN_STEP_POINTS points, the epoch variant otherwise. For
    evaluation metrics the epoch variant always wins (per-batch validation values are noise).
    """
    column_map = column_map or {}
    wanted: dict[str, list[tuple[int, str]]] = {}
    names = list(counts)
    for order, column in enumerate(names):
        target, rank = _target(column, counts, column_map)
        if target is not None:
            wanted.setdefault(target, []).append((rank * 10_000 + order, column))
    plan = {column: column for column in names}
    for target, candidates in wanted.items():
        candidates.sort()
        plan[candidates[0][1]] = target
    return plan


def _target(column: str, counts: Mapping[str, int], column_map: Mapping[str, str]) -> tuple[str | None, int]:
    """(canonical name, rank): lower ranks win when several columns want one name."""
    if column in column_map:
        return column_map[column], 0
    if alias(column) is not None and column.lower() == alias(column):
        return alias(column), 1
    base, variant = _split_variant(column)
    if variant is None:
        return alias(column), 3
    target = alias(base)
    if target is None:
        return None, 9
    other = f"{base}_{'epoch' if variant == 'step' else 'step'}"
    if other not in counts:
        return target, 4
    step_count = counts[column] if variant == "step" else counts[other]
    prefer_step = target != EVAL_LOSS and step_count >= MIN_STEP_POINTS
    chosen = (variant == "step") == prefer_step
    return (target, 5) if chosen else (None, 9)


def _split_variant(column: str) -> tuple[str, str | None]:
    for variant in ("step", "epoch"):
        suffix = f"_{variant}"
        if column.endswith(suffix) and len(column) > len(suffix):
            return column[: -len(suffix)], variant
    return column, None


def find_column(
    columns: Iterable[str], wanted: str, column_map: Mapping[str, str] | None = None
) -> str | None:
    """The column that holds ``wanted`` (``step`` or ``epoch``): the user's map first, then aliases."""
    columns = list(columns)
    for column in columns:
        if column_map and column_map.get(column) == wanted:
            return column
    for column in columns:
        if column.lower() == wanted:
            return column
    for column in columns:
        if alias(column) == wanted:
            return column
    return None


def looks_like_metrics(columns: Iterable[str], column_map: Mapping[str, str] | None = None) -> bool:
    """Whether a table with these columns is a metric log (it names a loss, a step or a learning rate)."""
    for column in columns:
        if column_map and column in column_map:
            return True
        target = alias(column) or alias(_split_variant(column)[0])
        if target in (LOSS, EVAL_LOSS, LEARNING_RATE, GRAD_NORM):
            return True
    return False
