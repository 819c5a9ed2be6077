"""Bad input never costs the user the other runs: each bad file is one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

import pytest

from diagnostics.readers import read_file, read_runs
from diagnostics.readers._base import MAX_JSON_BYTES
from tests._paths import REAL_LOGS


def good_state(path: Path, steps: int = 50) -> Path:
    history = [
        {"step": s, "epoch": s / 100, "loss": 2.0 - s / 100, "learning_rate": 1e-4}
        for s in range(10, steps + 1, 10)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"global_step": steps, "max_steps": steps, "log_history": history}, indent=2))
    return path


def error_of(path: Path) -> str:
    result = read_file(path)
    assert result.run is None, f"{path.name} was read"
    assert result.error and "\n" not in result.error and "Traceback" not in result.error
    return result.error


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """One good run and one of every kind of broken log, each in its own run folder."""
    good_state(tmp_path / "good" / "trainer_state.json")
    text = good_state(tmp_path / "x.json").read_text()
    (tmp_path / "x.json").unlink()

    def put(name: str, content: bytes) -> None:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    put("corrupt/trainer_state.json", text.replace('"loss":', '"loss"', 1).encode())
    put("empty/trainer_state.json", b"")
    put("truncated/trainer_state.json", text[: len(text) // 2].encode())
    put("garbage/trainer_state.json", os.urandom(4096))
    put("garbage_tb/events.out.tfevents.1700000000.host.1.0", os.urandom(4096))
    put("empty_tb/events.out.tfevents.1700000000.host.1.0", b"")
    put(
        "noloss/trainer_state.json", json.dumps({"log_history": [{"step": 1, "eval_accuracy": 0.5}]}).encode()
    )
    put("notastate/trainer_state.json", b"[1, 2, 3]")
    put("lightning/metrics.csv", b"")
    put("lightning_noloss/metrics.csv", b"epoch,step,train_acc_step\n0,9,0.5\n0,19,0.6\n")
    put("llamafactory/trainer_log.jsonl", b"")
    put("llamafactory_bad/trainer_log.jsonl", b"not json\nnor this\n{\n")
    put("console/train.log", os.urandom(2048))
    put("console_empty/train.log", b"")
    # Not logs: skipped without a word.
    put("docs/README.md", b"# nothing here\n")
    put("docs/labels.tsv", b"file\tprimary\n001\thealthy\n")
    put("docs/script.py", b"print({'loss': 1})\n")
    put("good/training_args.bin", os.urandom(512))
    return tmp_path


EXPECTED_ERRORS = {
    "corrupt": "trainer_state.json is not valid JSON (corrupt: Expecting ':' delimiter at line",
    "empty": "trainer_state.json is empty",
    "truncated": "trainer_state.json is not valid JSON (truncated:",
    "garbage": "trainer_state.json is not",
    "garbage_tb": "holds no scalar summaries (empty, corrupt or not a TensorBoard event file)",
    "empty_tb": "holds no scalar summaries",
    "notastate": "trainer_state.json is not a trainer state (no 'log_history' list)",
    "lightning": "metrics.csv is empty",
    "llamafactory": "trainer_log.jsonl is empty",
    "llamafactory_bad": "trainer_log.jsonl is not valid JSON lines (3 bad lines, first at line 1:",
    "console": "train.log is binary data, not a text log",
    "console_empty": "train.log is empty",
}


def test_each_bad_file_is_one_clear_error_and_the_good_run_survives(bad_folder):
    results = read_runs(bad_folder)
    by_folder = {Path(r.source).relative_to(bad_folder).parts[0]: r for r in results}
    assert set(by_folder) == {"good", "noloss", "lightning_noloss", *EXPECTED_ERRORS}, sorted(by_folder)
    assert by_folder["good"].run is not None and len(by_folder["good"].run.series("loss")) == 5
    for folder, expected in EXPECTED_ERRORS.items():
        error = by_folder[folder].error
        assert error is not None and expected in error, (folder, error)
        assert "\n" not in error and len(error) < 200, (folder, error)


def test_a_log_without_any_loss_is_read_and_judged_insufficient(bad_folder):
    """LABELING.md: "no loss at all" is `insufficient`, a verdict, not an unreadable file."""
    from diagnostics import diagnose

    for folder, metric in (("noloss", "eval_accuracy"), ("lightning_noloss", "train_acc_step")):
        (result,) = read_runs(bad_folder / folder)
        assert result.error is None and result.run is not None
        diagnosis = diagnose(result.run)
        assert diagnosis.conditions == ["insufficient"]
        assert metric in next(f.message for f in diagnosis.findings if f.code == "INS001")


def test_corrupt_json_names_line_and_column(bad_folder):
    message = error_of(bad_folder / "corrupt" / "trainer_state.json")
    assert message.startswith(
        "trainer_state.json is not valid JSON (corrupt: Expecting ':' delimiter at line 8, column 14)"
    )


def test_a_truncated_text_log_is_read_up_to_the_cut(tmp_path):
    lines = [f"{{'loss': {2 - i / 10}, 'learning_rate': 0.0001, 'epoch': {i / 10}}}" for i in range(1, 8)]
    text = "\n".join(lines)
    path = tmp_path / "train.log"
    path.write_text(text[: text.index("'epoch': 0.7") + 4])  # the last dict is cut in the middle
    assert len(read_file(path).run.series("loss")) == 6


def test_a_jsonl_log_cut_in_its_last_line_is_read(tmp_path):
    lines = [json.dumps({"current_steps": s, "total_steps": 50, "loss": 1.0 / s}) for s in range(1, 6)]
    path = tmp_path / "trainer_log.jsonl"
    path.write_text("\n".join(lines)[:-10])
    assert len(read_file(path).run.series("loss")) == 4


def test_a_reader_bug_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    from diagnostics.readers import trainer_state

    def broken(state, what):
        raise KeyError("surprise")

    monkeypatch.setattr(trainer_state, "_points", broken)
    good_state(tmp_path / "run" / "trainer_state.json")
    (tmp_path / "other.csv").write_text("step,loss\n1,2.0\n2,1.5\n")
    results = read_runs(tmp_path)
    assert [r.format for r in results] == ["csv", "trainer_state"]
    assert results[1].error == "trainer_state.json could not be read (KeyError: 'surprise')"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.slow
def test_huge_console_log_is_streamed(tmp_path):
    """~100 MB of tqdm redraws and Trainer dicts (a 1.5M-step run logging every 10 steps)."""
    path = tmp_path / "huge.log"
    total = 1_500_000
    with path.open("w", newline="") as handle:
        chunk = []
        for step in range(1, total + 1):
            chunk.append(f"\r{step * 100 // total:3d}%|#####     | {step}/{total} [10:00<10:00,  3.00it/s]")
            if step % 10 == 0:
                chunk.append(f"\r{' ' * 40}\r{{'loss': {2 + 1 / step:.4f}, 'grad_norm': 0.5, ")
                chunk.append(f"'learning_rate': 0.0001, 'epoch': {step / 150_000}}}\n")
            if len(chunk) > 30_000:
                handle.write("".join(chunk))
                chunk = []
        handle.write("".join(chunk))
    assert path.stat().st_size > 95 * 2**20
    before = _peak_rss_mb()
    start = time.perf_counter()
    result = read_file(path)
    elapsed = time.perf_counter() - start
    assert result.error is None
    loss = result.run.series("loss")
    assert len(loss) == 150_000 and loss.steps[0] == 10 and loss.steps[-1] == total
    assert result.run.planned_steps == total
    assert elapsed < 60, f"{elapsed:.1f} s"
    assert _peak_rss_mb() - before < 600


def test_huge_trainer_state_is_refused_at_once(tmp_path):
    path = tmp_path / "trainer_state.json"
    record = json.dumps({"step": 1, "epoch": 0.1, "loss": 1.0, "learning_rate": 1e-4, "grad_norm": 0.5})
    count = MAX_JSON_BYTES // len(record) + 40_000
    with path.open("w") as handle:
        handle.write('{"global_step": 1, "log_history": [')
        handle.write(",\n".join([record] * count))
        handle.write("]}")
    assert path.stat().st_size > 64 * 2**20
    start = time.perf_counter()
    message = error_of(path)
    assert time.perf_counter() - start < 1
    assert message.startswith("trainer_state.json is 6") and "over the 64 MB limit" in message


def test_too_many_records_is_refused(tmp_path, monkeypatch):
    from diagnostics.readers import _base

    monkeypatch.setattr(_base, "MAX_POINTS", 100)
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n" + "".join(f"{s},{1 / s}\n" for s in range(1, 200)))
    assert error_of(path) == "log.csv holds more than 100 log records; refusing to read it whole"


def test_reading_1000_trainer_states_is_fast(tmp_path):
    if not REAL_LOGS.is_dir():
        pytest.skip(f"the real logs folder {REAL_LOGS} is not on this machine")
    sources = sorted(REAL_LOGS.glob("*_trainer_state.json"))
    for index in range(1000):
        run_dir = tmp_path / f"run{index:04d}"
        run_dir.mkdir()
        shutil.copy(sources[index % len(sources)], run_dir / "trainer_state.json")
    start = time.perf_counter()
    results = read_runs(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(results) == 1000 and all(r.ok for r in results)
    assert elapsed < 10, f"{elapsed:.1f} s"
