"""``tune study`` on the real SmolLM2-135M (QLoRA, NF4-emulated on CPU) and the built-in dataset."""

from __future__ import annotations

import math

import optuna
import pytest
from typer.testing import CliRunner

from tests._tuner_helpers import batch_space
from tuner.cli import app

pytestmark = pytest.mark.slow


def test_qlora_study_on_smollm2(tmp_path):
    space = batch_space(tmp_path, "qlora", batch=2)
    out = tmp_path / "study"
    args = ["study", "-q", "--method", "qlora", "--n-trials", "2", "--max-steps", "2", "--eval-every", "2"]
    args += ["--eval-examples", "4", "--max-examples", "60", "--space", str(space), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{out / 'study.db'}"
    (name,) = optuna.get_all_study_names(url)
    study = optuna.load_study(study_name=name, storage=url)
    attrs = study.user_attrs
    assert attrs["model"]["name"] == "SmolLM2-135M-Instruct"
    assert attrs["qlora_cpu_emulation"] is True and attrs["model"]["quantization"] == "nf4-emulated-cpu"
    # a pretrained instruct model on English docstrings: far below chance (ln 49152 = 10.8)
    assert 0.5 < study.best_value < 6.0
    assert math.isfinite(attrs["best_full_eval"]["eval_loss"])
    assert (out / "best_adapter" / "adapter_model.safetensors").is_file()
    assert "BitsAndBytesConfig(" in (out / "best_config.py").read_text()
