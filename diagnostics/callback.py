"""``DiagnosticsCallback``: the same rules, live, inside a transformers Trainer.

>>> from transformers import Trainer                                  # doctest: +SKIP
>>> from diagnostics.callback import DiagnosticsCallback              # doctest: +SKIP
>>> trainer = Trainer(..., callbacks=[DiagnosticsCallback()])         # doctest: +SKIP

Every log the Trainer writes is appended to a RunLog; the rules run on it after each log and each
new finding at warning level or worse is logged once, as it appears. At the end of training the
whole rule set runs and its verdict is logged. With ``stop_on=("diverging",)`` a run that diverges
is stopped at once (``control.should_training_stop``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from transformers import TrainerCallback

from diagnostics.engine import diagnose
from diagnostics.findings import Diagnosis, Finding
from diagnostics.rules import select_rules
from diagnostics.runlog import RunConfig, RunLog

logger = logging.getLogger("diagnostics")

# Mid-run, a loss that is still falling is expected and a verdict of "healthy" is premature: those
# rules run only at the end.
LIVE_IGNORE = ("SLW001", "HLT001", "EVL001", "INS001")

TRAINING_ARGS = (
    "learning_rate", "max_grad_norm", "weight_decay", "num_train_epochs", "warmup_steps", "warmup_ratio",
    "lr_scheduler_type", "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps",
    "eval_steps", "eval_strategy", "bf16", "fp16", "load_best_model_at_end", "optim",
)  # fmt: skip
PEFT_FIELDS = ("r", "lora_alpha", "lora_dropout", "target_modules", "use_dora", "peft_type")


class DiagnosticsCallback(TrainerCallback):
    """Run the diagnosis rules on the Trainer's logs as they are written.

    Args:
        select: rule codes or prefixes to run live (default: all but ``LIVE_IGNORE``).
        ignore: rule codes or prefixes to skip.
        stop_on: conditions that stop training at once (e.g. ``("diverging",)``); default none.
        on_finding: called with each new finding, e.g. to report it to an experiment tracker;
            the default logs it with the ``diagnostics`` logger.
        run_name: the name the RunLog carries (default: ``args.run_name`` or the output dir).
    """

    def __init__(
        self,
        select: Iterable[str] | None = None,
        ignore: Iterable[str] | None = LIVE_IGNORE,
        stop_on: Iterable[str] = (),
        on_finding: Callable[[Finding], None] | None = None,
        run_name: str | None = None,
    ) -> None:
        self.live_rules = select_rules(select, ignore)
        self.stop_on = set(stop_on)
        self.on_finding = on_finding or _log_finding
        self.run_name = run_name
        self.run: RunLog | None = None
        self.reported: set[str] = set()
        self.final: Diagnosis | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        name = self.run_name or getattr(args, "run_name", None) or str(args.output_dir)
        self.run = RunLog(source=name, format="live", name=name, config=_config_of(args, state, model))
        self.reported.clear()
        self.final = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return
        if "train_runtime" in logs and "loss" not in logs:
            return  # the end-of-run summary, not a step
        metrics = {k: float(v) for k, v in logs.items() if _is_number(v) and k != "epoch"}
        if not metrics:
            return
        self.run.add(state.global_step, epoch=state.epoch, **metrics)
        diagnosis = diagnose(self.run, rules=self.live_rules)
        for finding in diagnosis.findings:
            if finding.severity == "info" or finding.code in self.reported:
                continue
            self.reported.add(finding.code)
            self.on_finding(finding)
            if finding.condition in self.stop_on:
                control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self.run is None:
            return
        self.final = diagnose(self.run)
        logger.info("diagnosis at the end of training: %s", ", ".join(self.final.conditions) or "no verdict")


def _log_finding(finding: Finding) -> None:
    fixes = "; ".join(str(fix) for fix in finding.fixes)
    logger.warning(
        "%s %s: %s%s", finding.code, finding.condition, finding.message, f" -> {fixes}" if fixes else ""
    )


def _is_number(value: Any) -> bool:
    """Numbers, NaN and inf included (a NaN loss is exactly what the rules must see)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _config_of(args, state, model) -> RunConfig:
    import transformers

    training_args = {
        name: getattr(args, name) for name in TRAINING_ARGS if getattr(args, name, None) is not None
    }
    training_args = {k: (v.value if hasattr(v, "value") else v) for k, v in training_args.items()}
    if getattr(state, "max_steps", 0):
        training_args["max_steps"] = state.max_steps
    peft: dict[str, Any] = {}
    method = "full"
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        config = next(iter(peft_config.values()))
        peft = {f: _plain(getattr(config, f)) for f in PEFT_FIELDS if getattr(config, f, None) is not None}
        kind = str(peft.get("peft_type", "")).lower()
        method = "ia3" if "ia3" in kind else ("dora" if peft.get("use_dora") else "lora")
        if getattr(model, "is_loaded_in_4bit", False) or getattr(
            getattr(model, "base_model", None), "is_loaded_in_4bit", False
        ):
            method = "qlora"
    model_name = getattr(getattr(model, "config", None), "_name_or_path", None)
    return RunConfig(training_args, peft, method, model_name, transformers.__version__)


def _plain(value: Any) -> Any:
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, set):
        return sorted(value)
    return value
