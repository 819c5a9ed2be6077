"""The log readers: each format on small fixtures written here and on real logs from public repositories."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from diagnostics.readers import FORMATS, ReadResult, read_file, read_runs
from diagnostics.readers._names import plan_names
from diagnostics.readers.hf_stdout import parse_dict
from tests._paths import REAL_LOGS

FIXTURES = Path(__file__).parent / "fixtures" / "readers"


@pytest.fixture(scope="module")
def real_logs() -> Path:
    if not REAL_LOGS.is_dir():
        pytest.skip(f"the real logs folder {REAL_LOGS} is not on this machine")
    return REAL_LOGS


def write_state(path: Path, history: list[dict], **top) -> Path:
    """A trainer_state.json the way the HF Trainer writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"global_step": max((r.get("step", 0) for r in history), default=0), "log_history": history}
    state.update(top)
    path.write_text(json.dumps(state, indent=2))
    return path


def train_records(steps, loss0=2.0, every=10, per_epoch=100) -> list[dict]:
    return [
        {"epoch": s / per_epoch, "grad_norm": 0.5, "learning_rate": 1e-4, "loss": loss0 - s / 1000, "step": s}
        for s in range(every, steps + 1, every)
    ]


def only(results: list[ReadResult]) -> ReadResult:
    assert len(results) == 1, [(r.source, r.error) for r in results]
    assert results[0].error is None, results[0].error
    return results[0]


# --- trainer_state.json -------------------------------------------------------------------------


def test_trainer_state_real_log_values_and_config(real_logs):
    result = read_file(real_logs / "001_trainer_state.json")
    run = result.run
    assert result.format == "trainer_state" and result.error is None
    loss = run.series("loss")
    assert len(loss) == 20 and len(run.series("eval_loss")) == 0
    assert loss.values[0] == pytest.approx(2.6428) and loss.values[-1] == pytest.approx(1.2845)
    assert loss.steps[0] == 10 and loss.steps[-1] == 200
    assert run.series("grad_norm").values[0] == pytest.approx(0.698065996170044)
    args = run.config.training_args
    assert args == {
        "max_steps": 201,
        "num_train_epochs": 3,
        "logging_steps": 10,
        "eval_steps": 500,
        "save_steps": 500,
        "train_batch_size": 16,
    }
    assert run.planned_steps == 201


def test_trainer_state_real_eval_records(real_logs):
    run = read_file(real_logs / "003_trainer_state.json").run
    evals = run.series("eval_loss")
    assert len(evals) == 11 and len(run.series("loss")) == 11
    best = int(np.argmin(evals.values))
    assert evals.steps[best] == 350 and evals.values[best] == pytest.approx(1.787011981010437)
    assert run.has("eval_runtime")


def test_trainer_state_skips_the_summary_record(real_logs):
    run = read_file(real_logs / "004_trainer_state.json").run
    assert len(run.series("loss")) == 100
    assert not run.has("train_loss") and not run.has("train_runtime")
    assert run.series("loss").values[-1] == 0.0 and run.last_step == 1000


def test_trainer_state_unset_epochs_dropped_and_predict_records_placed(real_logs):
    assert "num_train_epochs" not in read_file(real_logs / "037_trainer_state.json").run.config.training_args
    run = read_file(real_logs / "013_trainer_state.json").run
    predict = run.series("predict_loss")
    assert len(predict) == 10 and predict.steps[0] == 549  # the step of the eval record before it
    assert predict.values[0] == pytest.approx(0.6476863622665405)


def test_trainer_state_keeps_infinite_grad_norm(real_logs):
    grad = read_file(real_logs / "049_trainer_state.json").run.series("grad_norm")
    assert np.isinf(grad.values[0]) and grad.steps[0] == 10


def test_train_runtime_on_every_step_is_not_a_summary(tmp_path):
    history = [{**r, "train_runtime": 1.0, "train_loss": 9.9} for r in train_records(30)]
    history.append({"step": 30, "epoch": 0.3, "train_loss": 1.5, "train_runtime": 10.0, "total_flos": 1.0})
    run = read_file(write_state(tmp_path / "trainer_state.json", history)).run
    assert run.series("loss").steps.tolist() == [10, 20, 30]
    assert run.series("train_runtime").values.tolist() == [1.0, 1.0, 1.0]


def test_checkpoints_of_one_output_dir_are_one_run(tmp_path):
    out = tmp_path / "exp" / "output"
    write_state(out / "checkpoint-20" / "trainer_state.json", train_records(20))
    write_state(out / "checkpoint-100" / "trainer_state.json", train_records(100))
    write_state(out / "checkpoint-50" / "trainer_state.json", train_records(50))
    result = only(read_runs(tmp_path))
    assert result.source == str(out)
    assert result.run.last_step == 100 and len(result.run.series("loss")) == 10
    assert result.run.name == "exp/output"


def test_top_level_state_competes_with_checkpoints_by_global_step(tmp_path):
    stale = tmp_path / "stale"
    write_state(stale / "trainer_state.json", train_records(30))
    write_state(stale / "checkpoint-60" / "trainer_state.json", train_records(60))
    final = tmp_path / "final"
    write_state(final / "trainer_state.json", train_records(80))
    write_state(final / "checkpoint-60" / "trainer_state.json", train_records(60))
    results = read_runs(tmp_path)
    assert [(Path(r.source).name, r.run.last_step) for r in results] == [("final", 80), ("stale", 60)]


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    out = tmp_path / "out"
    write_state(out / "checkpoint-40" / "trainer_state.json", train_records(40))
    broken = write_state(out / "checkpoint-80" / "trainer_state.json", train_records(80))
    broken.write_text(broken.read_text()[:300])
    assert only(read_runs(tmp_path)).run.last_step == 40


def test_a_bare_log_history_list(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps([*train_records(30), {"step": 30, "epoch": 0.3, "eval_loss": 1.9}]))
    result = read_file(path)
    assert result.format == "trainer_state"
    assert result.run.series("loss").steps.tolist() == [10, 20, 30]
    assert result.run.series("eval_loss").values.tolist() == [1.9]


# --- configuration beside the log ---------------------------------------------------------------


def test_configuration_files_fill_the_run_config(tmp_path):
    out = tmp_path / "qlora-run"
    write_state(out / "checkpoint-30" / "trainer_state.json", train_records(30), max_steps=30)
    (out / "checkpoint-30" / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": 16,
                "lora_alpha": 32,
                "lora_dropout": 0.05,
                "target_modules": ["q_proj", "v_proj"],
                "use_dora": False,
                "base_model_name_or_path": "meta-llama/Llama-3.2-1B",
            }
        )
    )
    (out / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "_name_or_path": "/local/llama",
                "transformers_version": "4.46.3",
                "quantization_config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
            }
        )
    )
    (out / "training_args.json").write_text(
        json.dumps(
            {"learning_rate": 2e-4, "warmup_ratio": 0.03, "evaluation_strategy": "steps", "max_steps": -1}
        )
    )
    (out / "training_args.bin").write_bytes(b"\x80\x04 not to be unpickled")
    config = only(read_runs(tmp_path)).run.config
    assert config.method == "qlora"
    assert config.peft["r"] == 16 and config.peft["target_modules"] == ["q_proj", "v_proj"]
    assert config.model == "meta-llama/Llama-3.2-1B"
    assert config.transformers_version == "4.46.3"
    assert config.training_args["warmup_ratio"] == 0.03
    assert config.training_args["evaluation_strategy"] == "steps"
    assert config.training_args["max_steps"] == 30  # the state's own value, not training_args' -1


@pytest.mark.parametrize(
    ("adapter", "method"),
    [
        ({"peft_type": "LORA", "r": 8, "use_dora": True}, "dora"),
        ({"peft_type": "IA3", "target_modules": ["k_proj"]}, "ia3"),
        ({"peft_type": "LORA", "r": 8}, "lora"),
        (None, "full"),
    ],
)
def test_method_from_adapter_config(tmp_path, adapter, method):
    write_state(tmp_path / "run" / "trainer_state.json", train_records(20))
    if adapter is None:
        (tmp_path / "run" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    else:
        (tmp_path / "run" / "adapter_config.json").write_text(json.dumps(adapter))
    assert only(read_runs(tmp_path)).run.config.method == method


def test_no_configuration_means_unknown_method(real_logs):
    assert read_file(real_logs / "002_trainer_state.json").run.config.method is None


def test_llamafactory_yaml_configuration(tmp_path):
    out = tmp_path / "saves"
    lines = [
        {"current_steps": s, "total_steps": 30, "loss": 2 - s / 100, "lr": 1e-4, "epoch": s / 10}
        for s in (10, 20, 30)
    ]
    out.mkdir()
    (out / "trainer_log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (out / "training_args.yaml").write_text(
        "model_name_or_path: Qwen/Qwen2.5-0.5B\nfinetuning_type: lora\nlora_rank: 8\nlora_target: all\n"
        "quantization_bit: 4\nlearning_rate: 1.0e-4\nwarmup_ratio: 0.1\n"
    )
    config = only(read_runs(tmp_path)).run.config
    assert (config.method, config.model, config.peft["r"], config.peft["target_modules"]) == (
        "qlora",
        "Qwen/Qwen2.5-0.5B",
        8,
        "all",
    )
    assert config.training_args["warmup_ratio"] == 0.1 and "lora_rank" not in config.training_args


# --- printed Trainer dicts ----------------------------------------------------------------------


def test_console_log_steps_from_the_progress_bar():
    result = read_file(FIXTURES / "console_train.log")
    run = result.run
    assert result.format == "hf_stdout"
    loss = run.series("loss")
    assert loss.steps.tolist() == [10, 20, 30, 40]
    assert loss.values[0] == pytest.approx(2.345) and math.isnan(loss.values[2])
    assert np.isinf(run.series("grad_norm").values[2])
    assert run.series("eval_loss").steps.tolist() == [20, 40]
    assert run.planned_steps == 40
    assert not run.has("train_loss")


def test_console_log_without_summary_uses_the_redrawn_bar(tmp_path):
    data = (FIXTURES / "console_train.log").read_bytes()
    path = tmp_path / "nohup.out"
    path.write_bytes(data[: data.index(b"{'train_runtime'")])
    run = read_file(path).run
    assert run.series("loss").steps.tolist() == [10, 20, 30, 40]
    assert run.series("eval_loss").steps.tolist() == [20, 40]


def test_real_colab_markdown_with_string_values(real_logs):
    run = read_file(real_logs / "021_hf_stdout.md").run
    loss = run.series("loss")
    assert loss.steps.tolist() == list(range(10, 201, 10))
    assert loss.values[0] == pytest.approx(19.85) and loss.values[-1] == pytest.approx(18.3)
    assert run.series("eval_loss").steps.tolist() == [34, 68, 102, 136, 170, 204]
    assert run.series("eval_loss").values[-1] == pytest.approx(8.942)
    assert run.planned_steps == 204
    assert run.series("learning_rate").values[1] == pytest.approx(0.000181)


def test_dicts_without_progress_bars_get_ordinal_steps(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text(
        "# My run\n\nTraining output:\n\n```\n"
        "{'loss': 2.5, 'learning_rate': 1e-4, 'epoch': 0.1}\n"
        "Step 2 >>> {'loss': 2.25, 'learning_rate': 1e-4, 'epoch': 0.2}\n"
        "{'eval_loss': 2.4, 'epoch': 0.2}\n"
        "`{'loss': tensor(2.0, device='cuda:0'), 'learning_rate': np.float64(1e-4), 'epoch': 0.3}`\n"
        "```\nThe config was {'r': 8, 'lora_alpha': 16}.\n"
    )
    run = read_file(path).run
    assert run.series("loss").steps.tolist() == [1, 2, 3]
    assert run.series("loss").values.tolist() == [2.5, 2.25, 2.0]
    assert run.series("eval_loss").steps.tolist() == [2]
    assert not run.has("r")


def test_two_trainings_in_one_file_are_two_runs(tmp_path):
    first = "\n".join(f"{{'loss': {3 - i / 10}, 'epoch': {i / 4}}}" for i in range(1, 5))
    second = "\n".join(f"{{'loss': {2 - i / 10}, 'epoch': {i / 4}}}" for i in range(1, 4))
    summary = "{'train_runtime': 5.0, 'train_loss': 2.8, 'epoch': 1.0}"
    path = tmp_path / "notebook.txt"
    path.write_text(f"{first}\n{summary}\n{second}\n")
    results = read_runs(path)
    assert [r.source for r in results] == [f"{path}#run1", f"{path}#run2"]
    assert [len(r.run.series("loss")) for r in results] == [4, 3]
    assert read_file(path).run.series("loss").values[0] == pytest.approx(1.9)


def test_notebook_outputs(tmp_path):
    bar = "\r{}%|#####     | {}/20 [00:05<00:05,  2.00it/s]"
    outputs = [
        {"output_type": "stream", "name": "stderr", "text": [bar.format(" 50", 10)]},
        {"output_type": "stream", "name": "stdout", "text": ["{'loss': 2.5, 'epoch': 0.5}\n"]},
        {"output_type": "stream", "name": "stderr", "text": [bar.format(" 50", 10) + bar.format("100", 20)]},
        {"output_type": "stream", "name": "stdout", "text": ["{'loss': 2.0, 'epoch': 1.0}\n"]},
    ]
    path = tmp_path / "finetune.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}, indent=1))
    run = read_file(path).run
    assert run.series("loss").steps.tolist() == [10, 20] and run.planned_steps == 20


def test_markdown_without_trainer_lines_is_not_a_log(tmp_path):
    (tmp_path / "README.md").write_text("# Notes\n{'r': 8}\nnothing to see\n")
    assert read_runs(tmp_path) == []
    assert "holds no Trainer log lines" in read_file(tmp_path / "README.md").error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'loss': 1.5, 'epoch': 0.5}", {"loss": 1.5, "epoch": 0.5}),
        ("{'loss': '4.189', 'epoch': '0.29'}", {"loss": "4.189", "epoch": "0.29"}),
        ("{'loss': nan, 'grad_norm': inf, 'x': -inf}", {"loss": "nan", "grad_norm": "inf", "x": "-inf"}),
        ("{'loss': tensor(0.5, device='cuda:0')}", {"loss": 0.5}),
        ("{'eval_acc': np.float64(0.75)}", {"eval_acc": 0.75}),
        ("{'loss': __import__('os').getcwd()}", None),
    ],
)
def test_parse_dict_never_evaluates_code(text, expected):
    assert parse_dict(text) == expected


# --- TensorBoard --------------------------------------------------------------------------------


def tb_write(directory: Path, scalars: list[tuple[str, float, int]]) -> None:
    from tensorboard.summary import Writer

    writer = Writer(str(directory))
    for tag, value, step in scalars:
        writer.add_scalar(tag, value, step=step)
    writer.close()


def test_tensorboard_hf_tags(tmp_path):
    run_dir = tmp_path / "output" / "runs" / "Nov28_host"
    scalars = []
    for step in range(5, 55, 5):
        scalars += [("train/loss", 2 - step / 100, step), ("train/learning_rate", 1e-4, step)]
        scalars += [("train/grad_norm", 0.5, step), ("train/epoch", step / 25, step)]
        if step % 25 == 0:
            scalars += [("eval/loss", 2.1 - step / 200, step), ("eval/accuracy", 0.5, step)]
    scalars += [("train/train_loss", 1.7, 50), ("train/train_runtime", 12.0, 50)]
    tb_write(run_dir, scalars)
    result = only(read_runs(tmp_path))
    run = result.run
    assert (result.format, result.source) == ("tensorboard", str(run_dir))
    assert run.series("loss").steps.tolist() == list(range(5, 55, 5))
    assert run.series("loss").values[0] == pytest.approx(1.95)
    assert run.series("eval_loss").steps.tolist() == [25, 50]
    assert run.series("eval_accuracy").values.tolist() == [0.5, 0.5]
    assert run.series("loss").epochs[-1] == pytest.approx(2.0)
    assert not run.has("train/train_loss") and not run.has("epoch")


def test_tensorboard_several_event_files_one_run_per_directory(tmp_path):
    tb_write(tmp_path / "a", [("train_loss", 1.0, 1), ("val_loss", 1.5, 1)])
    tb_write(tmp_path / "a", [("train_loss", 0.5, 2), ("lr-AdamW", 1e-3, 2)])
    tb_write(
        tmp_path / "b", [("train_loss_step", 2.0, s) for s in range(1, 8)] + [("train_loss_epoch", 1.8, 7)]
    )
    results = read_runs(tmp_path)
    assert [Path(r.source).name for r in results] == ["a", "b"]
    first, second = (r.run for r in results)
    assert first.series("loss").values.tolist() == [1.0, 0.5]
    assert first.series("eval_loss").values.tolist() == [1.5]
    assert first.series("learning_rate").values[0] == pytest.approx(1e-3)
    assert len(second.series("loss")) == 7 and second.has("train_loss_epoch")


def test_tensorboard_trainer_args_text(tmp_path):
    pytest.importorskip("torch")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_text("args", json.dumps({"learning_rate": 3e-4, "warmup_ratio": 0.05, "max_steps": -1}))
    writer.add_text("model_config", json.dumps({"_name_or_path": "HuggingFaceTB/SmolLM2-135M"}))
    for step in (1, 2, 3):
        writer.add_scalar("train/loss", 3.0 - step, step)
    writer.close()
    run = only(read_runs(tmp_path)).run
    assert run.config.training_args == {"learning_rate": 3e-4, "warmup_ratio": 0.05}
    assert run.config.model == "HuggingFaceTB/SmolLM2-135M"
    assert run.series("loss").values.tolist() == [2.0, 1.0, 0.0]


# --- Lightning metrics.csv ----------------------------------------------------------------------


def test_lightning_real_step_and_epoch_variants(real_logs):
    run = read_file(real_logs / "010_lightning_metrics.csv").run
    assert len(run.series("loss")) == 114 and len(run.series("eval_loss")) == 20
    assert run.series("loss").values[0] == pytest.approx(8.620475769042969)
    assert run.series("eval_loss").steps[0] == 286 and run.series("eval_loss").values[-1] == pytest.approx(
        5.5522327
    )
    assert len(run.series("train_loss_epoch")) == 20


def test_lightning_real_learning_rate_monitor(real_logs):
    run = read_file(real_logs / "042_lightning_metrics.csv").run
    lr = run.series("learning_rate")
    assert len(lr) == 80 and lr.values[-1] == pytest.approx(9.879809365882063e-05)
    assert len(run.series("loss")) == 80 and len(run.series("eval_loss")) == 20


@pytest.mark.parametrize(
    ("name", "n_loss", "n_eval", "first_loss"),
    [
        ("011_lightning_metrics.csv", 50, 0, 2.369102716445923),
        ("029_lightning_metrics.csv", 80, 0, 0.6388602256774902),
        ("040_lightning_metrics.csv", 39, 30, 0.9273712635040283),
        ("041_lightning_metrics.csv", 23, 50, 0.003243175335228443),
    ],
)
def test_lightning_real_logs(real_logs, name, n_loss, n_eval, first_loss):
    result = read_file(real_logs / name)
    assert result.format == "lightning_csv"
    assert len(result.run.series("loss")) == n_loss and len(result.run.series("eval_loss")) == n_eval
    assert result.run.series("loss").values[0] == pytest.approx(first_loss)


def test_lightning_epoch_variant_when_steps_are_few(tmp_path):
    path = tmp_path / "version_0" / "metrics.csv"
    path.parent.mkdir()
    rows = [
        {"epoch": 0, "step": 9, "train_loss_step": 2.0},
        {"epoch": 0, "step": 19, "val_loss": 1.9},
        {"epoch": 0, "step": 19, "train_loss_epoch": 2.1},
        {"epoch": 1, "step": 29, "train_loss_step": 1.5},
        {"epoch": 1, "step": 39, "val_loss": 1.7},
        {"epoch": 1, "step": 39, "train_loss_epoch": 1.6},
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["epoch", "step", "train_loss_step", "train_loss_epoch", "val_loss"])
        writer.writeheader()
        writer.writerows(rows)
    run = only(read_runs(tmp_path)).run
    assert run.series("loss").values.tolist() == [2.1, 1.6]  # 2 per-step points are too few
    assert run.series("train_loss_step").values.tolist() == [2.0, 1.5]
    assert run.series("eval_loss").steps.tolist() == [19, 39]


# --- LLaMA-Factory and generic JSONL / CSV ------------------------------------------------------


def test_llamafactory_real_log(real_logs):
    result = read_file(real_logs / "008_llamafactory_trainer_log.jsonl")
    run = result.run
    assert result.format == "llamafactory_jsonl"
    loss = run.series("loss")
    assert len(loss) == 37 and loss.steps[0] == 10 and loss.steps[-1] == 370
    assert loss.values[0] == pytest.approx(122.1416) and loss.values[-1] == 0.0
    assert run.planned_steps == 375
    assert run.series("learning_rate").values[0] == pytest.approx(2.368421052631579e-05)
    assert not run.has("percentage") and not run.has("total_steps")


def test_generic_jsonl_with_column_map_and_nesting(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"it": 100 * i, "train/loss": 3 - i / 10, "val": {"loss": 3.1 - i / 20}} for i in range(1, 6)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    run = read_file(path, column_map={"it": "step", "val/loss": "eval_loss"}).run
    assert run.series("loss").steps.tolist() == [100, 200, 300, 400, 500]
    assert run.series("eval_loss").values[0] == pytest.approx(3.05)


def test_generic_csv_aliases_and_tsv(tmp_path):
    (tmp_path / "log.csv").write_text(
        "global_step,train_loss,validation_loss,lr,gradient_norm\n1,2.0,,0.001,3.0\n2,1.8,1.9,0.001,2.5\n"
    )
    (tmp_path / "log.tsv").write_text("train_loss\tnote\n2.0\ta\n1.5\tb\n")
    csv_run, tsv_run = (r.run for r in read_runs(tmp_path))
    assert csv_run.series("loss").values.tolist() == [2.0, 1.8]
    assert csv_run.series("eval_loss").steps.tolist() == [2]
    assert csv_run.series("learning_rate").values[0] == 0.001 and csv_run.has("grad_norm")
    assert tsv_run.series("loss").steps.tolist() == [1, 2]  # no step column: the row number


def test_files_that_are_not_logs_are_skipped(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"instruction": "Explain json.dumps", "output": "..."}\n')
    (tmp_path / "labels.tsv").write_text("file\tprimary\n001\thealthy\n")
    (tmp_path / "train.py").write_text("print({'loss': 1.0})\n")
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    assert read_runs(tmp_path) == []


# --- the whole folder ---------------------------------------------------------------------------


def _expected_counts(real_logs: Path) -> dict[str, tuple[int, int]]:
    with (real_logs / "SOURCES.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    # SOURCES counts Lightning's step and epoch variants together; we keep one of them as the loss.
    return {
        r["file"]: (int(r["n_train_points"]), int(r["n_eval_points"]))
        for r in rows
        if r["format"] != "lightning_csv"
    }


def test_real_logs_folder(real_logs):
    results = read_runs(real_logs)
    assert len(results) == 50 and all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.source for r in results] == sorted(r.source for r in results)
    formats = [r.format for r in results]
    assert formats.count("trainer_state") == 38 and formats.count("lightning_csv") == 10
    assert formats.count("hf_stdout") == 1 and formats.count("llamafactory_jsonl") == 1
    for result in results:
        expected = _expected_counts(real_logs).get(Path(result.source).name)
        if expected is not None:
            got = (len(result.run.series("loss")), len(result.run.series("eval_loss")))
            assert got == expected, result.source


def test_one_output_dir_logged_several_ways_is_one_run(tmp_path):
    out = tmp_path / "output"
    write_state(out / "trainer_state.json", train_records(50))
    tb_write(out / "runs" / "Nov28", [("train/loss", 1.0, s) for s in (10, 20, 30, 40, 50)])
    lines = [{"current_steps": s, "total_steps": 50, "loss": 1.0} for s in (10, 20)]
    (out / "trainer_log.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    result = only(read_runs(tmp_path))
    assert result.format == "trainer_state" and result.source == str(out / "trainer_state.json")


def test_missing_path_is_one_error():
    results = read_runs("/nonexistent/run_logs")
    assert len(results) == 1 and "does not exist" in results[0].error


def test_registry_names():
    assert [f.name for f in FORMATS] == [
        "trainer_state",
        "runlog",
        "tensorboard",
        "llamafactory_jsonl",
        "lightning_csv",
        "jsonl",
        "csv",
        "hf_stdout",
    ]


def test_plan_names_prefers_exact_names_and_the_user_map():
    counts = {"loss": 3, "train_loss": 3, "val/loss": 2, "lr-AdamW/pg1": 3, "lr-AdamW/pg2": 3, "acc": 2}
    plan = plan_names(counts, {"acc": "eval_accuracy"})
    assert plan == {
        "loss": "loss",
        "train_loss": "train_loss",
        "val/loss": "eval_loss",
        "lr-AdamW/pg1": "learning_rate",
        "lr-AdamW/pg2": "lr-AdamW/pg2",
        "acc": "eval_accuracy",
    }


def test_runlog_json_reads_back_exactly(tmp_path):
    """`tune train` writes run_log.json (RunLog.to_dict); diagnose reads it back as it was."""
    from diagnostics import RunLog

    run = RunLog(source="x", format="live", trained_steps=30)
    run.config.training_args["learning_rate"] = 2e-4
    run.config.method = "lora"
    for step in (10, 20, 30):
        run.add(step, epoch=step / 30, loss=2.0 / step, grad_norm=float("nan") if step == 30 else 0.5)
    path = tmp_path / "run_log.json"
    path.write_text(json.dumps(run.to_dict()))
    (result,) = read_runs(tmp_path)
    assert result.format == "runlog" and result.error is None
    back = result.run
    assert back.series("loss").values.tolist() == run.series("loss").values.tolist()
    assert np.isnan(back.series("grad_norm").values[-1])
    assert back.config.method == "lora" and back.config.training_args["learning_rate"] == 2e-4
    assert back.trained_steps == 30
    path.write_text('{"source": "x", "points": [{"epoch": 1}]}')
    assert "malformed point" in read_runs(path)[0].error
