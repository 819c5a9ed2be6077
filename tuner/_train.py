"""``tune train --config best_config.yaml``: the full-length training of a study's best configuration.

The same worker machinery as a trial (so out-of-memory handling, the divergence guard and the
RunLog behave the same), trained for whole epochs (or ``max_steps``), evaluated on the whole eval
split, and saved: the adapter (or the whole model for full fine-tuning), the tokenizer,
``trainer_state.json`` (which ``diagnose`` reads) and the run as ``run_log.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner._export import BestConfig
from tuner._live import NullView
from tuner._trial import TrialOutcome, TrialSettings, load_worker
from tuner.methods import get_method

RUN_LOG_FILE = "run_log.json"


@dataclass
class TrainResult:
    outcome: TrialOutcome
    out: Path
    config: BestConfig

    @property
    def saved(self) -> bool:
        return self.outcome.state == "complete"


def train_best(
    config_path: Path,
    *,
    out: Path | None = None,
    max_steps: int = 0,
    epochs: float = 1.0,
    eval_every: int | None = None,
    model: str | None = None,
    dataset: str | None = None,
    device: str | None = None,
    seed: int = 0,
    view: Any = None,
) -> TrainResult:
    """Train ``config_path``'s configuration for ``epochs`` (or ``max_steps``) and save it."""
    view = view or NullView()
    config = BestConfig.load(config_path)
    out = Path(out) if out else Path(config_path).parent / "trained"
    settings = TrialSettings(
        max_steps=max_steps, epochs=epochs, eval_every=eval_every or 0.1, eval_examples=None, seed=seed
    )
    worker, _, _ = load_worker(
        get_method(config.method),
        settings,
        model=model or config.model,
        dataset=dataset or config.dataset,
        device=device,
        quantization=config.quantization,
        max_length=config.max_length,
    )
    training_args = _with_effective_batch(config.training_args)
    view.trial_started("train", training_args | config.peft)
    outcome = worker.run(
        training_args, config.peft, name="train", on_step=view.step, evaluate_full=True, save_dir=out
    )
    view.trial_finished("train", outcome)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_LOG_FILE).write_text(json.dumps(outcome.run.to_dict(), indent=1))
    return TrainResult(outcome, out, config)


def _with_effective_batch(training_args: dict[str, Any]) -> dict[str, Any]:
    """Per-device batch x accumulation back to one effective batch, so the worker can re-split it
    to fit this machine's memory."""
    values = dict(training_args)
    micro = values.pop("per_device_train_batch_size", None)
    accumulation = values.pop("gradient_accumulation_steps", 1)
    if micro is not None and "effective_batch_size" not in values:
        values["effective_batch_size"] = int(micro) * int(accumulation)
    return values
