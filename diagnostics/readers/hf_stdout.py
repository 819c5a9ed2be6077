"""The HF Trainer's printed dict lines, in any text file (console logs, nohup.out, notebooks, Markdown).

Lines such as ``{'loss': 1.23, 'grad_norm': 0.5, 'learning_rate': 2e-4, 'epoch': 0.5}`` carry no
step, so steps are derived, best evidence first:

1. the training progress bar (``34/204 [01:03<05:30, 1.94s/it]``) gives the planned total steps;
   with the epoch of the end-of-run summary (a finished bar), or with the bars drawn just before
   and just after printed dicts (which bound the step of each dict), it gives the steps per epoch,
   and then ``step = round(epoch * steps_per_epoch)``;
2. otherwise the ordinal of the train record (1, 2, 3...), with eval records at the step of the
   train record before them.

The file is streamed in blocks (tqdm's ``\\r``-separated redraws count as line ends), so a log of
any size is read in bounded memory. A file that runs the Trainer several times (a notebook) holds
several runs: a new one starts after an end-of-run summary or when the epoch goes back.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from diagnostics.readers._base import (
    MAX_POINTS,
    LogFormat,
    NotALog,
    ReaderError,
    check_point_count,
    is_binary,
    numeric_items,
    point,
    to_float,
)
from diagnostics.runlog import RunLog

NAME = "hf_stdout"
TEXT_SUFFIXES = frozenset({".txt", ".log", ".md", ".out", ".err", ".ipynb", ".text", ".stdout", ""})
# Named like a log: binary content or an empty file there is an error, not a file to skip.
_LOG_SUFFIXES = frozenset({".log", ".out", ".err", ".txt"})
# Trainer dicts are flat; the length cap keeps literal_eval away from pathological input.
_DICT = re.compile(r"\{[ \t]*['\"][A-Za-z_][^{}\r\n]{0,4000}\}")
# A tqdm bar, `45%|####  | 34/204 [` or Colab's `45% 34/204 [`, giving (n, total). tqdm writes
# `desc: {percentage:3.0f}%|...`; the Trainer's own bars (train and eval) have no description, so a
# colon before the percentage rules a bar out (dataset `Map: 100%` bars, Lightning's `Epoch 0:  45%`).
# The pattern starts at the `%` so that the regex engine can skip ahead to it (10x faster).
_NOT_DESCRIBED = "".join(f"(?<!:{' ' * pad}{'[0-9]' * digits}%)" for digits in (1, 2, 3) for pad in range(4))
_BAR = re.compile(r"%(?<=\d%)" + _NOT_DESCRIBED + r"(?:\|[^|\r\n]*\|)?[ \t]*(\d+)/(\d+) \[")
# Console logs are mostly tqdm redraws: they are scanned in blocks, not line by line (10x faster).
_BLOCK_CHARS = 1 << 22
_BARE_NUMBER = re.compile(r"(?<![\w'\".])(-?(?:nan|inf(?:inity)?))(?![\w'\"])", re.IGNORECASE)
_WRAPPED_NUMBER = re.compile(r"\b(?:tensor|np\.float\d*|np\.int\d*|float\d*)\(\s*([^,()]+?)\s*(?:,[^()]*)?\)")
_TRAINER_KEYS = frozenset({"loss", "eval_loss", "learning_rate", "grad_norm", "train_runtime", "train_loss"})
_SKIP = frozenset({"epoch", "step"})


def claims(path: Path, head: bytes, column_map: Mapping[str, str]) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES and "tfevents" not in path.name


@dataclass
class _Bar:
    """What one progress-bar total did over a run: is it the training bar, and where was it when
    dicts were printed? A bar drawn after a dict of epoch e shows n >= that dict's step, so
    steps_per_epoch <= n / e; a bar drawn before it shows n <= its step, so steps_per_epoch >= n / e.
    tqdm redraws its bar right after a printed dict, which makes the upper bound exact."""

    first_train: int  # train records seen when the bar was first drawn
    last_train: int
    last_n: int
    max_n: int
    monotone: bool = True
    upper: float = math.inf
    lower: float = 0.0


@dataclass
class _Run:
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # ("train"|"eval", dict)
    bars: dict[int, _Bar] = field(default_factory=dict)
    summary_epoch: float | None = None
    n_train: int = 0
    last_epoch: float = 0.0
    dict_epoch: float | None = None  # epoch of the last printed dict
    finished: bool = False


def read(paths: Sequence[Path], column_map: Mapping[str, str] | None = None) -> list[RunLog]:
    path = paths[0]
    _refuse_binary(path)
    runs = _scan(path)
    if not runs:
        raise NotALog(f"{path.name} holds no Trainer log lines ({{'loss': ...}} dicts)")
    logs = []
    for index, run in enumerate(runs):
        source = str(path) if len(runs) == 1 else f"{path}#run{index + 1}"
        logs.append(_to_runlog(run, source))
    return logs


def _refuse_binary(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError as error:
        raise ReaderError(f"{path.name} could not be read ({error.strerror or error})") from None
    if not head and path.suffix.lower() in _LOG_SUFFIXES - {".txt"}:
        raise ReaderError(f"{path.name} is empty")
    if is_binary(head):
        if path.suffix.lower() in _LOG_SUFFIXES:
            raise ReaderError(f"{path.name} is binary data, not a text log")
        raise NotALog(f"{path.name} is binary data, not a text log")


def _scan(path: Path) -> list[_Run]:
    runs: list[_Run] = []
    current = _Run()
    count = 0
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as handle:
            for kind, value in _events(handle):
                if kind == "bars":
                    _note_bars(current, value)
                    continue
                record: dict[str, Any] = value
                epoch = to_float(record.get("epoch"))
                evaluation = _is_eval(record)
                is_train = "loss" in record or ("learning_rate" in record and not evaluation)
                if is_train and _starts_new_run(current, epoch):
                    runs.append(current)
                    current = _Run()
                _note_dict(current, epoch)
                if "loss" not in record and "train_runtime" in record and "train_loss" in record:
                    current.summary_epoch = epoch
                    current.finished = True
                    continue
                if is_train:
                    current.n_train += 1
                    current.last_epoch = epoch or current.last_epoch
                elif not evaluation:
                    continue
                current.records.append(("train" if is_train else "eval", record))
                count += 1
                if count > MAX_POINTS:
                    check_point_count(count, path.name)
    except OSError as error:
        raise ReaderError(f"{path.name} could not be read ({error.strerror or error})") from None
    runs.append(current)
    return [run for run in runs if run.records]


def _events(handle: TextIO) -> Iterator[tuple[str, Any]]:
    """("bars", [(n, total), ...]) for the bars between two dicts and ("dict", record), in file order.
    Blocks end at a line end (\\n or tqdm's \\r), so a dict is never cut in two."""
    carry = ""
    while True:
        block = handle.read(_BLOCK_CHARS)
        text = carry + block
        carry = ""
        if block:
            cut = max(text.rfind("\n"), text.rfind("\r"))
            if cut < 0 and len(text) < 4 * _BLOCK_CHARS:
                carry = text
                continue
            if cut >= 0:
                text, carry = text[: cut + 1], text[cut + 1 :]
        yield from _block_events(text)
        if not block:
            return


def _block_events(text: str) -> Iterator[tuple[str, Any]]:
    position = 0
    if "{" in text:
        for match in _DICT.finditer(text):
            record = parse_dict(match.group())
            if record is None or not (_TRAINER_KEYS & record.keys() or _is_eval(record)):
                continue
            bars = _region_bars(text, position, match.start())
            if bars:
                yield "bars", bars
            yield "dict", record
            position = match.end()
    bars = _region_bars(text, position, len(text))
    if bars:
        yield "bars", bars


def _region_bars(text: str, start: int, end: int) -> list[tuple[str, str]]:
    """The (n, total) of the bars in text[start:end]. Usually they are redraws of one bar, and only
    its first and last drawing matter: those two are found directly, the rest skipped (counting
    ` [` proves that no other bar is among them); otherwise all are listed."""
    first = _BAR.search(text, start, end)
    if first is None:
        return []
    total = first[2]
    at = text.rfind("%", first.start(), end)
    while (last := _BAR.match(text, at, end)) is None:
        at = text.rfind("%", first.start(), at)
    if last[2] == total and text.count(" [", start, end) == text.count(f"/{total} [", start, end):
        return [(first[1], total), (last[1], total)]
    return _BAR.findall(text, start, end)


def parse_dict(span: str) -> dict[str, Any] | None:
    """A printed dict, read without eval: JSON when it is JSON-shaped, else ast.literal_eval, else
    literal_eval after quoting bare nan / inf and unwrapping ``tensor(1.2)`` / ``np.float64(1.2)``."""
    try:
        data = json.loads(span.replace("'", '"'))
    except ValueError:
        try:
            data = ast.literal_eval(span)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            fixed = _BARE_NUMBER.sub(r"'\1'", _WRAPPED_NUMBER.sub(r"\1", span))
            try:
                data = ast.literal_eval(fixed)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return None
    return data if isinstance(data, dict) and all(isinstance(k, str) for k in data) else None


def _is_eval(record: Mapping[str, Any]) -> bool:
    return any(key.startswith("eval_") for key in record)


def _starts_new_run(run: _Run, epoch: float | None) -> bool:
    if run.finished:
        return True
    return run.n_train > 0 and epoch is not None and epoch < run.last_epoch - 1e-6


def _note_bars(run: _Run, bars: list[tuple[str, str]]) -> None:
    """The bars drawn between two dicts: per total only the first and the last drawing matter."""
    if bars[0][1] == bars[-1][1] and len({total for _, total in bars}) == 1:
        _note_bar(run, int(bars[0][1]), int(bars[0][0]), int(bars[-1][0]))
        return
    firsts = {total: n for n, total in reversed(bars)}
    for total, last in {total: n for n, total in bars}.items():
        _note_bar(run, int(total), int(firsts[total]), int(last))


def _note_bar(run: _Run, total: int, first: int, last: int) -> None:
    bar = run.bars.get(total)
    if bar is None:
        bar = run.bars[total] = _Bar(run.n_train, run.n_train, first, first)
    bar.monotone &= first >= bar.last_n and last >= first
    bar.last_n = last
    bar.max_n = max(bar.max_n, last)
    bar.last_train = run.n_train
    if run.dict_epoch and first > 0:
        bar.upper = min(bar.upper, first / run.dict_epoch)


def _note_dict(run: _Run, epoch: float | None) -> None:
    run.dict_epoch = epoch
    if epoch:
        for bar in run.bars.values():
            bar.lower = max(bar.lower, bar.last_n / epoch)


def _training_total(run: _Run) -> int | None:
    """The total of the training bar: a bar drawn among the train records (not only before or after
    them), whose count never goes back (eval bars restart at 0), at least as long as the number of
    train records; the longest such bar."""
    candidates = [
        total
        for total, bar in run.bars.items()
        if bar.monotone and bar.first_train < run.n_train and bar.last_train >= 1 and total >= run.n_train
    ]
    return max(candidates, default=None)


def _steps_per_epoch(run: _Run, total: int | None) -> float | None:
    """From the summary's epoch when the bar finished, else from the bounds the bar gives: a whole
    number inside them when there is one (it usually is whole), their middle otherwise."""
    if total is None:
        return None
    bar = run.bars[total]
    if run.summary_epoch and bar.max_n == total:
        return total / run.summary_epoch
    lower, upper = bar.lower, bar.upper
    if not math.isfinite(upper):
        return lower or None
    if not lower or lower > upper:
        return upper
    whole = round((lower + upper) / 2)
    inside = lower * (1 - 1e-9) <= whole <= upper * (1 + 1e-9)
    return float(whole) if inside else (lower + upper) / 2


def _to_runlog(run: _Run, source: str) -> RunLog:
    total = _training_total(run)
    per_epoch = _steps_per_epoch(run, total)
    log = RunLog(source=source, format=NAME)
    if total is not None:
        log.config.training_args["max_steps"] = total
    points = []
    step = 0
    ordinal = 0
    for kind, record in run.records:
        epoch = to_float(record.get("epoch"))
        if kind == "train":
            ordinal += 1
            if per_epoch is not None and epoch is not None:
                step = max(round(epoch * per_epoch), step + 1)
            else:
                step = ordinal if per_epoch is None else step + 1
        elif per_epoch is not None and epoch is not None:
            step = max(round(epoch * per_epoch), step)
        metrics = numeric_items(record, _SKIP)
        if metrics:
            points.append(point(step, epoch, metrics))
    log.extend(points)
    return log


FORMAT = LogFormat(NAME, claims, read)
