"""Training data: reading the user's ``--dataset``, the train / eval split, completion-only tokenising.

``--dataset`` may be nothing (the built-in "stdlib-docs"), a JSON / JSONL / CSV / Parquet file, a
folder of them, or a hub name. Rows may hold ``prompt``/``completion``,
``instruction``/(``input``)/``output``, ``question``/``answer``, or a chat ``messages`` list.

The held-out split is decided by a hash of each prompt, so an example stays on its side when
others are added, and both splits are ordered by that hash, so any prefix of the eval split (the
subset evaluated during trials) is a fair sample. Tokenised splits are cached on disk, keyed by
the data's content, the tokenizer and ``max_length``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner._stdlib_docs import build_stdlib_docs, source_description

DEFAULT_DATASET = "stdlib-docs"
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
EVAL_SPLIT_NAMES = ("eval", "validation", "valid", "dev", "test")
_FORMAT_VERSION = "1"  # bump when tokenisation changes, to invalidate old caches


class DataError(ValueError):
    """A dataset that can't be found or read; ``str(e)`` is one line."""


@dataclass(frozen=True)
class Example:
    """One instruction example. ``context`` holds the chat turns before the answer when the row was
    a ``messages`` list (the prompt is then rendered with the tokenizer's chat template)."""

    prompt: str
    completion: str
    context: tuple[Mapping[str, str], ...] | None = None

    def messages(self) -> list[dict[str, str]]:
        """The conversation up to (not including) the completion."""
        if self.context is not None:
            return [dict(turn) for turn in self.context]
        return [{"role": "user", "content": self.prompt}]


@dataclass
class DataInfo:
    name: str
    n_train: int
    n_eval: int
    source: str
    fingerprint: str  # a hash of the examples of both splits


# ---------------------------------------------------------------------------------------------
# rows -> examples


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _turns(value: Any, label: str) -> list[dict[str, str]]:
    """A chat as role/content dicts (ShareGPT's from/value accepted; JSON strings from CSV decoded)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{label}: messages is a string that isn't a JSON list") from None
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise DataError(f"{label}: messages must be a list of {{role, content}} turns")
    roles = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
    turns = []
    for turn in value:
        if not isinstance(turn, Mapping):
            raise DataError(f"{label}: messages must be a list of {{role, content}} turns")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        turns.append({"role": roles.get(str(role), str(role)), "content": _text(content)})
    return turns


def _from_turns(turns: list[dict[str, str]]) -> Example | None:
    """All turns before the last assistant turn -> prompt, the last assistant turn -> completion."""
    last = max((i for i, turn in enumerate(turns) if turn["role"] == "assistant"), default=None)
    if last is None or last == 0 or not turns[last]["content"]:
        return None
    context = tuple(turns[:last])
    prompt = next((t["content"] for t in reversed(context) if t["role"] == "user"), context[-1]["content"])
    return Example(prompt=prompt, completion=turns[last]["content"], context=context)


def _row_converter(columns: Iterable[str], label: str) -> Any:
    """A function row -> Example | None for the first column layout the rows match."""
    cols = set(columns)
    if {"prompt", "completion"} <= cols:

        def convert(row: Mapping[str, Any]) -> Example | None:
            prompt, completion = row["prompt"], row["completion"]
            if isinstance(prompt, list):  # trl's conversational prompt-completion format
                completion_turns = completion if isinstance(completion, list) else []
                return _from_turns(_turns(prompt, label) + _turns(completion_turns, label))
            return Example(_text(prompt), _text(completion))

        return convert
    if {"instruction", "output"} <= cols:
        return lambda row: Example(
            "\n\n".join(t for t in (_text(row["instruction"]), _text(row.get("input"))) if t),
            _text(row["output"]),
        )
    if {"question", "answer"} <= cols:
        return lambda row: Example(_text(row["question"]), _text(row["answer"]))
    for name in ("messages", "conversations"):
        if name in cols:
            return lambda row, name=name: _from_turns(_turns(row[name], label))
    found = ", ".join(sorted(cols)) or "none"
    raise DataError(f"{label}: no prompt/completion or messages columns (found: {found})")


def rows_to_examples(rows: list[Mapping[str, Any]], label: str) -> list[Example]:
    """Examples from the rows; rows without a prompt or a completion are skipped."""
    if not rows:
        raise DataError(f"{label}: no rows")
    convert = _row_converter(rows[0].keys(), label)
    examples = []
    for row in rows:
        example = convert(row)
        if example is not None and example.prompt and example.completion:
            examples.append(example)
    if not examples:
        raise DataError(f"{label}: no row has both a prompt and a completion")
    return examples


# ---------------------------------------------------------------------------------------------
# files, folders, hub


def _read_rows(path: Path) -> list[Mapping[str, Any]]:
    label = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8").splitlines()
            rows = []
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise DataError(f"{label}: line {number}: not JSON ({error.msg})") from None
        elif suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise DataError(f"{label}: line {error.lineno}: not JSON ({error.msg})") from None
            rows = _json_rows(data, label)
        elif suffix == ".csv":
            import csv

            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        else:
            raise DataError(f"{label}: unsupported file type (use {', '.join(FILE_SUFFIXES)})")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{label}: cannot read: {error}") from None
    except Exception as error:  # pyarrow's many errors for a corrupt file
        if isinstance(error, DataError):
            raise
        from tuner._model import one_line

        raise DataError(f"{label}: cannot read: {one_line(error)}") from None
    if not all(isinstance(row, Mapping) for row in rows):
        raise DataError(f"{label}: expected one object per row")
    return rows


def _json_rows(data: Any, label: str) -> list[Any]:
    """A list of rows, a {"data"|"train"|...: [rows]} wrapper, or columns of equal length."""
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if len(lists) == 1:
            return next(iter(lists.values()))
        if lists and len(lists) == len(data) and len({len(v) for v in lists.values()}) == 1:
            return [dict(zip(lists, values, strict=True)) for values in zip(*lists.values(), strict=True)]
    raise DataError(f"{label}: expected a list of rows")


def _split_files(folder: Path) -> tuple[Path | None, Path | None]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
    if not files:
        raise DataError(f"no .jsonl/.json/.csv/.parquet files in dataset folder: {folder}")
    by_stem = {p.stem.lower(): p for p in files}
    train = by_stem.get("train")
    eval_file = next((by_stem[name] for name in EVAL_SPLIT_NAMES if name in by_stem), None)
    if train is None:
        if len(files) > 1:
            names = ", ".join(p.name for p in files)
            raise DataError(f"{folder}: several data files but none named train.* (found: {names})")
        train = files[0]
    return train, eval_file


def _hub_examples(name: str) -> tuple[list[Example], list[Example] | None]:
    import datasets

    from tuner._model import hub_access, one_line

    with hub_access() as online:
        try:
            loaded = datasets.load_dataset(name)
        except Exception as error:  # no such dataset, gated, offline...: many exception types
            reason = one_line(error) if online else "offline: the hub is unreachable and it isn't cached"
            raise DataError(
                f"dataset {name!r}: not a local file or folder, and the hub can't provide it ({reason})"
            ) from None
    splits = dict(loaded)
    train_name = "train" if "train" in splits else next(iter(splits))
    eval_name = next((n for n in ("validation", "valid", "eval", "dev", "test") if n in splits), None)

    def take(split: str) -> list[Example]:
        return rows_to_examples(list(splits[split]), f"{name}[{split}]")

    return take(train_name), take(eval_name) if eval_name else None


# ---------------------------------------------------------------------------------------------
# split


def _hash_unit(text: str, seed: int) -> float:
    """A stable number in [0, 1) for ``text``: decides the split and the order."""
    digest = hashlib.sha256(f"{seed}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _by_hash(examples: list[Example], seed: int) -> list[Example]:
    return sorted(examples, key=lambda e: (_hash_unit(e.prompt, seed), e.prompt, e.completion))


def split_examples(
    examples: list[Example], eval_fraction: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Held-out split by a hash of the prompt (examples sharing a prompt stay together)."""
    if not 0 < eval_fraction < 1:
        raise DataError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    ordered = _by_hash(examples, seed)
    train = [e for e in ordered if _hash_unit(e.prompt, seed + 1) >= eval_fraction]
    held = [e for e in ordered if _hash_unit(e.prompt, seed + 1) < eval_fraction]
    if not held and len(train) > 1:  # a tiny dataset: still hold one prompt out
        held, train = [train[0]], train[1:]
    if not train:
        raise DataError(f"too few examples ({len(examples)}) to split off an eval set")
    return train, held


def fingerprint(train: list[Example], held: list[Example]) -> str:
    digest = hashlib.sha256()
    for split, examples in (("train", train), ("eval", held)):
        for example in examples:
            record = [split, example.prompt, example.completion, example.messages()]
            digest.update(json.dumps(record, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def default_examples() -> list[Example]:
    return [Example(question, answer) for question, answer in build_stdlib_docs()]


def load_examples(
    spec: str | None,
    *,
    eval_fraction: float = 0.1,
    seed: int = 0,
    max_examples: int | None = None,
) -> tuple[list[Example], list[Example], DataInfo]:
    """(train, eval, info) for ``--dataset``. A dataset that brings its own eval split keeps it;
    otherwise ``eval_fraction`` of the prompts are held out. ``max_examples`` caps each split at
    its share of that many examples (handy for quick studies)."""
    held: list[Example] | None = None
    if spec is None or spec == DEFAULT_DATASET:
        name, source = DEFAULT_DATASET, source_description()
        examples = default_examples()
    else:
        path = Path(spec).expanduser()
        name, source = spec, str(path)
        if path.is_file():
            examples = rows_to_examples(_read_rows(path), str(path))
        elif path.is_dir():
            train_file, eval_file = _split_files(path)
            examples = rows_to_examples(_read_rows(train_file), str(train_file))
            if eval_file is not None:
                held = rows_to_examples(_read_rows(eval_file), str(eval_file))
        elif path.suffix.lower() in FILE_SUFFIXES or spec.startswith(("/", ".", "~")):
            raise DataError(f"dataset file not found: {spec}")
        else:
            source = f"hub dataset {spec}"
            examples, held = _hub_examples(spec)
    if held is None:
        train, held = split_examples(examples, eval_fraction, seed)
    else:
        train, held = _by_hash(examples, seed), _by_hash(held, seed)
    if max_examples is not None:
        n_eval = max(1, round(max_examples * eval_fraction))
        train, held = train[: max(1, max_examples - n_eval)], held[:n_eval]
    info = DataInfo(name, len(train), len(held), source, fingerprint(train, held))
    return train, held, info


# ---------------------------------------------------------------------------------------------
# tokenising


def _plain_prompt(example: Example) -> str:
    """For a tokenizer without a chat template: an Alpaca-style layout."""
    if example.context is not None and len(example.context) > 1:
        body = "\n".join(f"{t['role']}: {t['content']}" for t in example.context)
    else:
        body = example.prompt
    return f"### Instruction:\n{body}\n\n### Response:\n"


def _prompt_and_completion(example: Example, tokenizer: Any) -> tuple[str, str]:
    """The prompt text (with the generation prompt) and the completion text (with its end token)."""
    eos = tokenizer.eos_token or ""
    if getattr(tokenizer, "chat_template", None):
        messages = example.messages()
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": example.completion}], tokenize=False
        )
        if full.startswith(prompt):
            return prompt, full[len(prompt) :]
        return prompt, example.completion + eos
    return _plain_prompt(example), example.completion + eos


def tokenize_examples(examples: Sequence[Example], tokenizer: Any, *, max_length: int = 128) -> Any:
    """A ``datasets.Dataset`` of input_ids, attention_mask and labels, loss on completions only.

    Labels are -100 on the prompt tokens. Rows are not padded: a collator such as
    ``DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)`` pads each batch (labels with
    -100). Over-long rows keep at least half of ``max_length`` for the completion; the prompt loses
    its beginning, the completion its end.
    """
    import datasets

    pairs = [_prompt_and_completion(example, tokenizer) for example in examples]
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    needs_bos = bos is not None and not getattr(tokenizer, "chat_template", None) and _adds_bos(tokenizer)
    columns: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for prompt_ids, completion_ids in zip(prompts, completions, strict=True):
        if needs_bos:
            prompt_ids = [bos, *prompt_ids]
        if not completion_ids:
            continue
        if len(prompt_ids) + len(completion_ids) > max_length:
            keep_prompt = max(max_length - len(completion_ids), max_length // 2)
            prompt_ids = prompt_ids[-keep_prompt:] if keep_prompt else []
            completion_ids = completion_ids[: max_length - len(prompt_ids)]
        ids = list(prompt_ids) + list(completion_ids)
        columns["input_ids"].append(ids)
        columns["attention_mask"].append([1] * len(ids))
        columns["labels"].append([-100] * len(prompt_ids) + list(completion_ids))
    return datasets.Dataset.from_dict(columns)


def _adds_bos(tokenizer: Any) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def tokenizer_fingerprint(tokenizer: Any) -> str:
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(tokenizer.get_vocab()).encode())
    digest.update(repr((tokenizer.chat_template, tokenizer.all_special_tokens, tokenizer.eos_token)).encode())
    return digest.hexdigest()[:16]


def load_tokenized(
    spec: str | None,
    tokenizer: Any,
    *,
    max_length: int = 128,
    eval_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    max_examples: int | None = None,
) -> tuple[Any, Any, DataInfo]:
    """(train dataset, eval dataset, info), tokenised; cached on disk under
    ``<cache>/data/<key>`` where the key covers the examples' content, the tokenizer and max_length."""
    import datasets

    train, held, info = load_examples(spec, eval_fraction=eval_fraction, seed=seed, max_examples=max_examples)
    key = hashlib.sha256(
        f"{_FORMAT_VERSION}|{info.fingerprint}|{tokenizer_fingerprint(tokenizer)}|{max_length}".encode()
    ).hexdigest()[:20]
    root = Path(cache_dir) if cache_dir is not None else _default_cache()
    folder = root / key
    if (folder / "train").is_dir() and (folder / "eval").is_dir():
        try:
            return datasets.load_from_disk(folder / "train"), datasets.load_from_disk(folder / "eval"), info
        except Exception:  # a damaged cache entry: rebuild it
            shutil.rmtree(folder, ignore_errors=True)
    train_set = tokenize_examples(train, tokenizer, max_length=max_length)
    eval_set = tokenize_examples(held, tokenizer, max_length=max_length)
    _save_atomically(folder, {"train": train_set, "eval": eval_set})
    return train_set, eval_set, info


def _default_cache() -> Path:
    from tuner._model import cache_dir

    return cache_dir() / "data"


def _save_atomically(folder: Path, splits: Mapping[str, Any]) -> None:
    """Write the splits to a temporary folder and rename it into place (a crash leaves no half
    entry; a failure to write the cache never fails the caller)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
        try:
            for name, dataset in splits.items():
                dataset.save_to_disk(str(tmp / name))
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass
