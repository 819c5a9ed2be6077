"""The README's example folder: four real LoRA runs of SmolLM2-135M-Instruct on the built-in data.

They were trained on CPU with `tune train` (80 steps at lr 2e-4; 60 steps at 1e-6; 60 steps at 3e-2,
stopped by the divergence guard at step 5; 10 epochs of a 48-example subset) and kept without their
weights. Their verdicts are what the README shows.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from diagnostics.cli import app
from diagnostics.engine import diagnose_path

EXAMPLES = Path(__file__).parent / "fixtures" / "example_runs"
EXPECTED = {"steady": "healthy", "too_cold": "stalled", "too_hot": "diverging", "small_data": "overfitting"}


def test_each_example_run_gets_its_verdict():
    got = {Path(d.run.source).parent.name: d.primary for d in diagnose_path(EXAMPLES)}
    assert got == EXPECTED


def test_example_advice_uses_the_runs_own_values():
    result = CliRunner().invoke(app, [str(EXAMPLES), "--format", "json"])
    runs = {Path(r["path"]).parent.name: r for r in json.loads(result.stdout)["runs"]}
    fixes = {f["param"]: f for f in runs["too_cold"]["findings"][0]["fixes"]}
    assert (fixes["learning_rate"]["from"], fixes["learning_rate"]["to"]) == (1e-6, 3e-6)
    overfit = next(f for f in runs["small_data"]["findings"] if f["code"] == "OVF001")
    epochs = {f["param"]: f for f in overfit["fixes"]}["num_train_epochs"]
    assert (epochs["from"], epochs["to"]) == (10, 3)
