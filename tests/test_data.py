"""Data: the built-in stdlib-docs set, every file format, the split, completion-only labels, the cache."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from tuner._data import (
    DEFAULT_DATASET,
    DataError,
    Example,
    load_examples,
    load_tokenized,
    split_examples,
    tokenize_examples,
)

ROWS = [{"prompt": f"Question number {i}?", "completion": f"Answer number {i}."} for i in range(40)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def completion_text(tokenizer, row: dict) -> str:
    return tokenizer.decode([t for t in row["labels"] if t != -100])


# --- the default dataset -------------------------------------------------------------------------


def test_stdlib_docs_is_big_real_and_deterministic():
    train, held, info = load_examples(None)
    assert info.name == DEFAULT_DATASET and "standard library" in info.source
    assert 800 <= info.n_train + info.n_eval <= 2000
    assert 0.05 < info.n_eval / (info.n_train + info.n_eval) < 0.15
    assert len({e.prompt for e in train + held}) == len(train) + len(held)  # no duplicate questions
    assert len({e.completion for e in train + held}) == len(train) + len(held)
    assert all(len(e.completion.split()) >= 5 for e in train)
    assert any("os.path.join" in e.prompt for e in train + held)
    again = load_examples(DEFAULT_DATASET)
    assert again[2].fingerprint == info.fingerprint and again[0] == train


def test_eval_split_is_stable_when_examples_are_added():
    examples = [Example(f"prompt {i}", f"completion {i}") for i in range(200)]
    _, held = split_examples(examples, 0.1)
    more = examples + [Example(f"new prompt {i}", "x") for i in range(100)]
    _, held_more = split_examples(more, 0.1)
    assert set(held) <= set(held_more)
    assert 5 <= len(held) <= 40


def test_examples_sharing_a_prompt_stay_on_one_side():
    examples = [Example(f"p{i % 20}", f"c{i}") for i in range(100)]
    train, held = split_examples(examples, 0.2)
    assert not {e.prompt for e in train} & {e.prompt for e in held}


def test_max_examples_caps_both_splits():
    train, held, info = load_examples(None, max_examples=50)
    assert (len(train), len(held)) == (45, 5) == (info.n_train, info.n_eval)


# --- file formats --------------------------------------------------------------------------------


def test_jsonl_prompt_completion(tmp_path):
    train, held, info = load_examples(str(write_jsonl(tmp_path / "d.jsonl", ROWS)))
    assert len(train) + len(held) == 40 and held
    assert {e.prompt for e in train + held} == {r["prompt"] for r in ROWS}
    assert info.source == str(tmp_path / "d.jsonl")


def test_json_list_and_wrapped(tmp_path):
    rows = [{"instruction": "Add", "input": "2 and 3", "output": "5"}] * 1 + [
        {"instruction": f"Say {i}", "input": "", "output": str(i)} for i in range(9)
    ]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"data": rows}))
    a = load_examples(str(tmp_path / "a.json"))
    b = load_examples(str(tmp_path / "b.json"))
    assert a[2].fingerprint == b[2].fingerprint
    assert Example("Add\n\n2 and 3", "5") in a[0] + a[1]
    assert Example("Say 4", "4") in a[0] + a[1]


def test_csv_question_answer(tmp_path):
    rows = [{"question": f"Q{i}", "answer": f"A{i}", "extra": "x"} for i in range(10)]
    train, held, _ = load_examples(str(write_csv(tmp_path / "d.csv", rows)))
    assert Example("Q3", "A3") in train + held


def test_parquet_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Hi {i}"},
                {"role": "assistant", "content": f"Hello {i}"},
                {"role": "user", "content": f"Bye {i}"},
                {"role": "assistant", "content": f"Goodbye {i}"},
            ]
        }
        for i in range(10)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    train, held, _ = load_examples(str(tmp_path / "d.parquet"))
    example = next(e for e in train + held if e.completion == "Goodbye 3")
    assert example.prompt == "Bye 3"
    assert [t["role"] for t in example.messages()] == ["system", "user", "assistant", "user"]


def test_sharegpt_conversations_in_csv(tmp_path):
    chat = [{"from": "human", "value": "Ping"}, {"from": "gpt", "value": "Pong"}]
    rows = [
        {"conversations": json.dumps(chat)},
        {"conversations": json.dumps([chat[0], {"role": "assistant", "content": "Pong"}])},
    ]
    train, held, _ = load_examples(str(write_csv(tmp_path / "d.csv", rows)))
    assert (train + held)[0].messages() == [{"role": "user", "content": "Ping"}]


def test_folder_with_train_and_validation(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", ROWS[:30])
    write_jsonl(tmp_path / "validation.jsonl", ROWS[30:])
    _, held, info = load_examples(str(tmp_path))
    assert {e.prompt for e in held} == {r["prompt"] for r in ROWS[30:]}
    assert (info.n_train, info.n_eval) == (30, 10)


def test_folder_with_one_file_is_split(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", ROWS)
    train, held, _ = load_examples(str(tmp_path), eval_fraction=0.25)
    assert len(train) + len(held) == 40 and 3 <= len(held) <= 20


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.jsonl", None, "dataset file not found: {d}/x.jsonl"),
        ("x.csv", "a,b\n1,2\n", "{d}/x.csv: no prompt/completion or messages columns (found: a, b)"),
        ("x.jsonl", '{"prompt": "a"}\nnot json\n', "{d}/x.jsonl: line 2: not JSON"),
        ("x.json", "[1, 2]", "{d}/x.json: expected one object per row"),
        ("x.json", '{"a": 1}', "{d}/x.json: expected a list of rows"),
        ("x.parquet", "garbage", "{d}/x.parquet: cannot read"),
        ("x.jsonl", "", "{d}/x.jsonl: no rows"),
        (
            "x.jsonl",
            '{"prompt": "", "completion": "b"}\n',
            "{d}/x.jsonl: no row has both a prompt and a completion",
        ),
        ("x.txt", "hi", "{d}/x.txt: unsupported file type"),
        ("", None, "no .jsonl/.json/.csv/.parquet files in dataset folder"),
    ],
)
def test_errors_are_one_line(tmp_path, name, content, expected):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(DataError) as info:
        load_examples(str(tmp_path / name))
    message = str(info.value)
    assert "\n" not in message
    assert expected.format(d=tmp_path) in message


def test_unreachable_hub_dataset_is_one_line():
    with pytest.raises(DataError) as info:
        load_examples("finetune-doctor-tests/no-such-dataset")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("dataset 'finetune-doctor-tests/no-such-dataset': not a local file")


# --- tokenising ----------------------------------------------------------------------------------


def test_labels_cover_the_completion_only(tiny_tokenizer):
    examples = [Example("What is 2 + 2?", "Four."), Example("Name a colour.", "Blue, for instance.")]
    dataset = tokenize_examples(examples, tiny_tokenizer, max_length=128)
    assert dataset.column_names == ["input_ids", "attention_mask", "labels"]
    for row, example in zip(dataset, examples, strict=True):
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["attention_mask"])
        assert completion_text(tiny_tokenizer, row) == example.completion + "<|im_end|>\n"
        first = next(i for i, t in enumerate(row["labels"]) if t != -100)
        assert all(t == -100 for t in row["labels"][:first])
        assert row["labels"][first:] == row["input_ids"][first:]
        prompt = tiny_tokenizer.decode(row["input_ids"][:first])
        assert prompt.endswith("<|im_start|>assistant\n") and example.prompt in prompt


def test_multi_turn_context_goes_through_the_chat_template(tiny_tokenizer):
    context = (
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    )
    (row,) = tokenize_examples([Example("Bye", "Goodbye", context)], tiny_tokenizer)
    text = tiny_tokenizer.decode(row["input_ids"])
    assert text.startswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n")
    assert completion_text(tiny_tokenizer, row) == "Goodbye<|im_end|>\n"


def test_without_a_chat_template(tiny_tokenizer):
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    (row,) = tokenize_examples([Example("Q?", "A.")], tokenizer)
    assert tokenizer.decode(row["input_ids"]).startswith("### Instruction:\nQ?\n\n### Response:\n")
    assert completion_text(tokenizer, row) == "A.<|im_end|>"


def test_long_rows_keep_room_for_the_completion(tiny_tokenizer):
    long_prompt = "word " * 200
    (row,) = tokenize_examples([Example(long_prompt, "short answer")], tiny_tokenizer, max_length=64)
    assert len(row["input_ids"]) == 64
    assert completion_text(tiny_tokenizer, row) == "short answer<|im_end|>\n"
    (row,) = tokenize_examples([Example("Q?", "long " * 200)], tiny_tokenizer, max_length=64)
    assert len(row["input_ids"]) == 64 and sum(t != -100 for t in row["labels"]) >= 32


def test_load_tokenized_is_cached(tmp_path, tiny_tokenizer):
    cache = tmp_path / "cache"
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    train, held, info = load_tokenized(str(data), tiny_tokenizer, max_length=64, cache_dir=cache)
    assert (len(train), len(held)) == (info.n_train, info.n_eval)
    (entry,) = cache.iterdir()
    start = time.perf_counter()
    again, _, _ = load_tokenized(str(data), tiny_tokenizer, max_length=64, cache_dir=cache)
    assert time.perf_counter() - start < 2
    assert again["input_ids"] == train["input_ids"] and again["labels"] == train["labels"]
    assert list(cache.iterdir()) == [entry]
    load_tokenized(str(data), tiny_tokenizer, max_length=32, cache_dir=cache)  # another key
    write_jsonl(data, ROWS[:-1])  # other content: another key
    load_tokenized(str(data), tiny_tokenizer, max_length=64, cache_dir=cache)
    assert len(list(cache.iterdir())) == 3


@pytest.mark.slow
def test_default_dataset_with_smollm2_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    from tuner._model import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    start = time.perf_counter()
    train, _, info = load_tokenized(None, tokenizer, max_length=128, cache_dir=tmp_path)
    assert time.perf_counter() - start < 30
    assert len(train) == info.n_train > 800
    completion_tokens = [sum(t != -100 for t in labels) for labels in train["labels"]]
    assert min(completion_tokens) > 0 and sum(completion_tokens) / len(completion_tokens) > 10
    assert completion_text(tokenizer, train[0]).endswith("<|im_end|>\n")
