"""The best configuration as YAML and as Python for the installed transformers (and for 4.x)."""

from __future__ import annotations

import pytest
import torch
import yaml

from tuner._export import (
    BestConfig,
    ConfigError,
    installed_training_args,
    python_snippet,
    split_batch,
    write_best_config,
)


@pytest.mark.parametrize(
    ("effective", "cap", "expected"),
    [(16, 16, (16, 1)), (16, 4, (4, 4)), (32, 5, (4, 8)), (12, 8, (6, 2)), (7, 4, (1, 7)), (8, 1, (1, 8))],
)
def test_split_batch_keeps_the_effective_batch(effective, cap, expected):
    assert split_batch(effective, cap) == expected


def test_search_vocabulary_to_transformers_5():
    args = installed_training_args(
        {"learning_rate": 1e-4, "warmup_ratio": 0.03, "effective_batch_size": 16, "group_by_length": True},
        max_micro_batch=8,
        major=5,
    )
    assert args == {
        "learning_rate": 1e-4,
        "warmup_steps": 0.03,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "train_sampling_strategy": "group_by_length",
    }


def test_search_vocabulary_to_transformers_4():
    assert installed_training_args({"warmup_steps": 0.05, "evaluation_strategy": "steps"}, major=4) == {
        "warmup_ratio": 0.05,
        "eval_strategy": "steps",
    }
    assert installed_training_args({"warmup_ratio": 0.1}, major=4) == {"warmup_ratio": 0.1}
    # an integer warm-up is steps in both versions
    assert installed_training_args({"warmup_steps": 10}, major=4) == {"warmup_steps": 10}
    assert installed_training_args({"warmup_steps": 10}, major=5) == {"warmup_steps": 10}


def _best(method: str = "qlora") -> BestConfig:
    return BestConfig(
        method=method,
        model="SmolLM2-135M-Instruct",
        dataset="stdlib-docstrings",
        training_args=installed_training_args(
            {
                "learning_rate": 3.1234567e-4,
                "warmup_ratio": 0.05,
                "effective_batch_size": 16,
                "max_grad_norm": 0.3,
            },
            max_micro_batch=4,
        ),
        peft={"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"},
        quantization={
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": "bfloat16",
        }
        if method == "qlora"
        else {},
        provenance={"study": "s", "trial": 3, "eval_loss": 1.2345678, "eval_loss_full_split": 1.25},
    )


def test_snippet_builds_the_configs_it_names(tmp_path):
    namespace: dict = {}
    exec(python_snippet(_best("qlora")), namespace)  # the snippet a user pastes must run as is
    args, lora, bnb = namespace["training_args"], namespace["peft_config"], namespace["bnb_config"]
    assert args.learning_rate == pytest.approx(3.12346e-4)
    assert args.per_device_train_batch_size == 4 and args.gradient_accumulation_steps == 4
    assert args.max_grad_norm == 0.3
    assert args.warmup_steps == pytest.approx(0.05)  # transformers 5.x: a float below 1 is a ratio
    assert lora.r == 16 and lora.lora_alpha == 32 and lora.task_type == "CAUSAL_LM"
    assert (
        bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_compute_dtype == torch.bfloat16
    )


def test_snippet_for_ia3_and_full():
    ia3 = _best("ia3")
    ia3.peft = {"target_modules": None, "feedforward_modules": None}
    namespace: dict = {}
    exec(python_snippet(ia3), namespace)
    assert type(namespace["peft_config"]).__name__ == "IA3Config"
    full = _best("full")
    full.peft = {}
    namespace = {}
    exec(python_snippet(full), namespace)
    assert "peft_config" not in namespace and "bnb_config" not in namespace


def test_yaml_round_trip(tmp_path):
    best = _best("lora")
    yaml_path, py_path = write_best_config(best, tmp_path)
    assert py_path.read_text().startswith('"""Best trial 3')
    text = yaml_path.read_text()
    assert text.startswith("# Best configuration of study 's' (trial 3)")
    loaded = BestConfig.load(yaml_path)
    assert loaded.training_args == yaml.safe_load(text)["training_args"]
    assert loaded.training_args["learning_rate"] == pytest.approx(3.12346e-4)
    assert loaded.peft == best.peft and loaded.method == "lora"


def test_load_rejects_other_yaml(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"not a best_config\.yaml"):
        BestConfig.load(path)
    path.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read"):
        BestConfig.load(path)


def test_a_hand_written_config_reads_scientific_notation_as_numbers(tmp_path):
    # PyYAML reads "2e-4" as a string; a hand-edited learning rate must still train.
    path = tmp_path / "best_config.yaml"
    path.write_text(
        "method: lora\nmodel: m\ndataset: d\n"
        "training_args: {learning_rate: 2e-4, lr_scheduler_type: cosine, warmup_steps: 5}\n"
        "peft: {r: 8, lora_alpha: 16, lora_dropout: 1E-1}\n"
    )
    config = BestConfig.load(path)
    assert config.training_args == {"learning_rate": 2e-4, "lr_scheduler_type": "cosine", "warmup_steps": 5}
    assert config.peft["lora_dropout"] == 0.1


def test_a_config_section_that_is_not_a_mapping_is_one_error(tmp_path):
    path = tmp_path / "best_config.yaml"
    path.write_text("method: lora\nmodel: m\ndataset: d\ntraining_args: [1, 2]\n")
    with pytest.raises(ConfigError, match="training_args must be a mapping"):
        BestConfig.load(path)
