"""One worker's trials: the base model is loaded once, every trial trains on it and gives it back.

A :class:`Worker` holds the (quantised) base model, the tokenised data and the method. ``run``
attaches a fresh adapter (or makes the base trainable), trains with transformers' Trainer for a
few steps while evaluating a fixed subset of the eval split, and detaches again, whatever happened:
pruned, diverged, out of memory or interrupted. It never raises for a trial-level problem; the
outcome says what happened and the study decides what Optuna hears.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import math
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from diagnostics.runlog import RunLog
from tuner._callbacks import StepHook, TrialCallback
from tuner._export import installed_training_args
from tuner._pruning import DivergenceGuard
from tuner.methods import Method

#: Outcomes of a trial. "infeasible": out of memory even at micro batch 1.
OUTCOMES = ("complete", "pruned", "diverged", "nan", "infeasible", "interrupted", "failed")


@dataclass
class TrialSettings:
    """How every trial of a worker trains and evaluates."""

    #: Optimizer steps per trial; 0 trains ``epochs`` epochs instead (``tune train``).
    max_steps: int = 10
    epochs: float = 1.0
    #: Steps between evaluations; a float below 1 is a fraction of the run (``tune train``: 0.1).
    eval_every: float = 5
    #: Size of the fixed eval subset used during trials (``None``: the whole eval split).
    eval_examples: int | None = 32
    eval_batch_size: int = 16
    max_micro_batch: int = 16
    seed: int = 0
    use_rules: bool = True


@dataclass
class TrialOutcome:
    """What one trial did, in the terms the study records."""

    state: str
    reason: str
    run: RunLog
    steps_run: int = 0
    best_eval_loss: float | None = None
    best_step: int | None = None
    finding_code: str | None = None
    per_device_train_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Resident memory after the trial gave everything back, and the process's peak so far (MiB);
    #: on CUDA also the trial's peak of allocated GPU memory.
    memory: dict[str, float] = field(default_factory=dict)
    full_eval_loss: float | None = None

    def user_attrs(self) -> dict[str, Any]:
        """Compact, JSON-safe attributes for the Optuna trial."""
        attrs: dict[str, Any] = {
            "outcome": self.state,
            "reason": self.reason,
            "steps_run": self.steps_run,
            "best_eval_loss": _round(self.best_eval_loss),
            "best_step": self.best_step,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "memory_mb": {k: round(v, 1) for k, v in self.memory.items()},
            "curve": compact_curve(self.run),
        }
        if self.finding_code:
            attrs["finding_code"] = self.finding_code
        if self.full_eval_loss is not None:
            attrs["full_eval_loss"] = _round(self.full_eval_loss)
        return attrs


class _TimedTrainer(Trainer):
    """Trainer whose evaluation is the mean loss per completion token, without gradients, and
    timed (training time = the rest).

    HF's own evaluation averages per-batch means, so its number depends on how examples are
    batched; this one does not, which lets the eval set be batched by length (less padding) and a
    whole-split loss be assembled from the parts of the split (see ``nll``).
    """

    eval_seconds = 0.0
    #: (sum of token losses, number of tokens) of the last evaluation.
    nll: tuple[float, int] = (0.0, 0)

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        start = time.perf_counter()
        model, was_training = self.model, self.model.training
        model.eval()
        total, count = 0.0, 0
        try:
            with torch.no_grad():
                for batch in self.get_eval_dataloader(eval_dataset):
                    batch = self._prepare_inputs(batch)
                    with self.autocast_smart_context_manager():
                        loss = model(**batch).loss
                    # the model's loss is the mean over the shifted labels that are not -100
                    tokens = int((batch["labels"][..., 1:] != -100).sum())
                    total, count = total + float(loss) * tokens, count + tokens
        finally:
            model.train(was_training)
            self.eval_seconds += time.perf_counter() - start
        self.nll = (total, count)
        metrics = {f"{metric_key_prefix}_loss": total / max(count, 1)}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


@dataclass
class _Options:
    """How one call of ``Worker.run`` treats its trial (see there)."""

    trial: optuna.Trial | None = None
    name: str = "trial"
    pruner_name: str = "pruner"
    on_step: StepHook | None = None
    keep: Callable[[TrialOutcome], bool] | None = None
    evaluate_full: bool = False
    save_dir: Path | None = None


@dataclass
class _Kept:
    """The trained weights of this worker's best trial, kept to evaluate on the whole split later."""

    name: str
    peft: dict[str, Any]
    state: dict[str, torch.Tensor]
    trainer_state: str
    training_args: dict[str, Any]
    #: (sum of token losses, tokens) on the eval subset at the last step.
    subset_nll: tuple[float, int]


class Worker:
    """The shared base model, data and method of one process, and the trials run on them."""

    def __init__(
        self,
        *,
        method: Method,
        base: nn.Module,
        tokenizer: Any,
        train_dataset: Any,
        eval_dataset: Any,
        settings: TrialSettings,
        scratch_dir: Path | None = None,
    ) -> None:
        self.method = method
        self.base = base
        self.tokenizer = tokenizer
        self.train_dataset = train_dataset
        self.settings = settings
        # The trials' subset is a prefix of the eval split (ordered by a hash: a fair sample); the
        # rest completes it to the whole split. Both are batched by length: less padding.
        self.eval_dataset = eval_dataset
        n_eval = (
            len(eval_dataset)
            if settings.eval_examples is None
            else min(settings.eval_examples, len(eval_dataset))
        )
        self.eval_subset = _by_length(eval_dataset.select(range(n_eval)))
        rest = range(n_eval, len(eval_dataset))
        self.eval_rest = _by_length(eval_dataset.select(rest)) if len(rest) else None
        # Learned from out-of-memory errors: the largest micro batch known to fit.
        self.max_micro_batch = settings.max_micro_batch
        self.kept: _Kept | None = None
        if getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        if scratch_dir is None:  # the Trainer wants an output_dir; trials save nothing there
            scratch_dir = Path(tempfile.mkdtemp(prefix="tune-trainer-"))
            weakref.finalize(self, shutil.rmtree, scratch_dir, True)
        self._scratch = scratch_dir
        method.prepare(base)

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def run(self, training_args: dict[str, Any], peft: dict[str, Any], **options: Any) -> TrialOutcome:
        """Train one configuration for ``settings.max_steps`` steps (or ``epochs``).

        Options: ``trial`` (Optuna trial to report eval losses to and ask the pruner), ``name``,
        ``pruner_name``, ``on_step(step, max_steps, loss)``; ``keep(outcome)``, asked when training
        completed: yes keeps the trained weights for :meth:`evaluate_kept`; ``evaluate_full``
        evaluates them on the whole eval split now; ``save_dir`` saves them there.

        An out-of-memory error halves the micro batch (same effective batch) and starts again;
        only at micro batch 1 is the trial infeasible.
        """
        opts = _Options(**options)
        while True:
            outcome = self._attempt(training_args, peft, opts)
            micro = outcome.per_device_train_batch_size or 1
            if outcome.state != "infeasible" or micro <= 1 or "effective_batch_size" not in training_args:
                return outcome
            self.max_micro_batch = micro // 2

    def evaluate_kept(self, save_dir: Path | None = None) -> tuple[str, float] | None:
        """(name, eval loss on the whole eval split) of the kept trial, saving it to ``save_dir``."""
        kept = self.kept
        if kept is None:
            return None
        model = self.method.attach(self.base, kept.peft)
        trainer = None
        try:
            self.method.restore(model, kept.state)
            trainer = self._trainer(model, self._arguments({}), self.eval_subset)
            loss = self._whole_split_loss(trainer, kept.subset_nll)
            if save_dir is not None:
                self._save(model, save_dir, kept.trainer_state, kept.training_args)
        finally:
            del trainer
            self.method.detach(self.base, model)
            del model
            release_memory()
        return kept.name, loss

    def _attempt(self, training_args: dict[str, Any], peft: dict[str, Any], opts: _Options) -> TrialOutcome:
        start = time.perf_counter()
        run = RunLog(source=opts.name, format="tune")
        run.config.method = self.method.name
        run.config.peft = self.method.peft_values(peft)
        guard = DivergenceGuard(use_rules=self.settings.use_rules)
        callback = TrialCallback(
            run, trial=opts.trial, guard=guard, pruner_name=opts.pruner_name, on_step=opts.on_step
        )
        outcome = TrialOutcome(state="failed", reason="", run=run)
        seconds = outcome.seconds
        set_seed(self.settings.seed)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        model = self.method.attach(self.base, peft)
        trainer: _TimedTrainer | None = None
        train_start = None
        try:
            values = installed_training_args(training_args, max_micro_batch=self.max_micro_batch)
            args = self._arguments(values)
            run.config.training_args = {**values, **_schedule(args)}
            outcome.per_device_train_batch_size = args.per_device_train_batch_size
            outcome.gradient_accumulation_steps = args.gradient_accumulation_steps
            trainer = self._trainer(model, args, self.eval_subset, callback)
            train_start = time.perf_counter()
            seconds["setup"] = train_start - start
            trainer.train()
            self._finish(outcome, callback)
            seconds["eval"] = trainer.eval_seconds
            seconds["train"] = time.perf_counter() - train_start - trainer.eval_seconds
            if outcome.state == "complete":
                self._after_training(outcome, model, trainer, peft, opts)
        except KeyboardInterrupt:
            self._finish(outcome, callback)
            outcome.state, outcome.reason = "interrupted", f"interrupted at step {callback.steps_run}"
        except Exception as exc:  # a trial-level failure must not end the study
            self._finish(outcome, callback)
            if is_out_of_memory(exc):
                micro = outcome.per_device_train_batch_size
                outcome.state, outcome.reason = (
                    "infeasible",
                    f"out of memory at micro batch {micro}: {_one_line(exc)}",
                )
            else:
                outcome.state, outcome.reason = "failed", f"{type(exc).__name__}: {_one_line(exc)}"
        finally:
            if train_start is not None and "train" not in seconds:
                eval_seconds = trainer.eval_seconds if trainer is not None else 0.0
                seconds["eval"] = eval_seconds
                seconds["train"] = time.perf_counter() - train_start - eval_seconds
            cleanup_start = time.perf_counter()
            # Drop the Trainer (optimizer state, gradients, dataloaders) before giving the base back.
            del trainer
            self.method.detach(self.base, model)
            del model
            release_memory()
            seconds["cleanup"] = time.perf_counter() - cleanup_start
            outcome.memory = memory_use(self.device)
        return outcome

    def _after_training(
        self,
        outcome: TrialOutcome,
        model: nn.Module,
        trainer: _TimedTrainer,
        peft: dict[str, Any],
        opts: _Options,
    ) -> None:
        if opts.keep is not None and opts.keep(outcome):
            state = self.method.snapshot(model)
            self.kept = _Kept(
                opts.name, dict(peft), state, _state_json(trainer), trainer.args.to_dict(), trainer.nll
            )
        if not (opts.evaluate_full or opts.save_dir):
            return
        start = time.perf_counter()
        if opts.evaluate_full:
            outcome.full_eval_loss = self._whole_split_loss(trainer, trainer.nll)
        if opts.save_dir is not None:
            self._save(model, opts.save_dir, _state_json(trainer), trainer.args.to_dict())
        outcome.seconds["full_eval"] = time.perf_counter() - start

    def _whole_split_loss(self, trainer: _TimedTrainer, subset_nll: tuple[float, int]) -> float:
        """Loss per token on the whole eval split, given the subset's sums from the evaluation at
        the last step: only the rest of the split is evaluated."""
        total, count = subset_nll
        if self.eval_rest is not None:
            trainer.evaluate(eval_dataset=self.eval_rest, metric_key_prefix="rest")
            total, count = total + trainer.nll[0], count + trainer.nll[1]
        return total / max(count, 1)

    def _save(
        self, model: nn.Module, folder: Path, trainer_state: str, training_args: dict[str, Any]
    ) -> None:
        """The adapter (or model), its tokenizer, and ``trainer_state.json`` + ``training_args.json``
        (``diagnose`` reads the run's log and configuration from them)."""
        self.method.save(model, folder)
        self.tokenizer.save_pretrained(folder)
        (Path(folder) / "trainer_state.json").write_text(trainer_state)
        # The trainer ran in a scratch folder; the arguments' output_dir is where the run now lies.
        args = {**training_args, "output_dir": str(folder)}
        (Path(folder) / "training_args.json").write_text(json.dumps(args, indent=2, sort_keys=True) + "\n")

    def _trainer(
        self,
        model: nn.Module,
        args: TrainingArguments,
        eval_dataset: Any,
        callback: TrialCallback | None = None,
    ) -> _TimedTrainer:
        trainer = _TimedTrainer(
            model=model,
            args=args,
            train_dataset=self.train_dataset,
            eval_dataset=eval_dataset,
            data_collator=self.collator,
            callbacks=[callback] if callback else None,
        )
        # The Trainer prints every log dict when tqdm is off; the live view shows progress instead.
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        return trainer

    def _arguments(self, values: dict[str, Any]) -> TrainingArguments:
        """TrainingArguments of a trial: the searched ``values`` (installed names) plus ours."""
        settings = self.settings
        micro = values.get("per_device_train_batch_size", 1)
        on_cuda = self.device.type == "cuda"
        fixed = {
            "output_dir": str(self._scratch),
            "max_steps": settings.max_steps if settings.max_steps > 0 else -1,
            "num_train_epochs": settings.epochs,
            "eval_strategy": "steps",
            "eval_steps": settings.eval_every
            if 0 < settings.eval_every < 1
            else max(1, int(settings.eval_every)),
            "logging_strategy": "steps",
            "logging_steps": 1,
            # HF replaces NaN / inf losses by the window mean by default; the guard must see them.
            "logging_nan_inf_filter": False,
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": True,
            # Evaluation is a large share of a short trial: no logits kept, a larger batch.
            "prediction_loss_only": True,
            "per_device_eval_batch_size": max(micro, min(settings.eval_batch_size, 2 * self.max_micro_batch)),
            "seed": settings.seed,
            "data_seed": settings.seed,
            "use_cpu": not on_cuda,
            "bf16": on_cuda and torch.cuda.is_bf16_supported(),
            "dataloader_num_workers": 0,
        }
        return TrainingArguments(**{**values, **fixed})

    def _finish(self, outcome: TrialOutcome, callback: TrialCallback) -> None:
        outcome.steps_run = callback.steps_run
        outcome.best_eval_loss, outcome.best_step = callback.best_eval_loss, callback.best_step
        stop = callback.stop
        if stop is None and callback.best_eval_loss is None:
            outcome.state, outcome.reason = "failed", f"no evaluation in {callback.steps_run} steps"
        elif stop is None:
            outcome.state, outcome.reason = "complete", f"completed {callback.steps_run} steps"
        else:
            outcome.state, outcome.reason, outcome.finding_code = stop.kind, str(stop), stop.code


def load_worker(
    method: Method,
    settings: TrialSettings,
    *,
    model: str | None,
    dataset: str | None,
    device: str | None = None,
    quantization: dict[str, Any] | None = None,
    max_length: int = 128,
    max_examples: int | None = None,
) -> tuple[Worker, Any, Any]:
    """Load the base model (quantised for QLoRA) and the tokenised data, once per process, and the
    worker that trains on them; with the model's and the data's descriptions."""
    from tuner._data import load_tokenized
    from tuner._model import load_base_model

    base, tokenizer, model_info = load_base_model(
        model, method=method.name, device=device, quantization=quantization or None
    )
    train, evaluation, data_info = load_tokenized(
        dataset, tokenizer, max_length=max_length, seed=settings.seed, max_examples=max_examples
    )
    worker = Worker(
        method=method,
        base=base,
        tokenizer=tokenizer,
        train_dataset=train,
        eval_dataset=evaluation,
        settings=settings,
    )
    return worker, model_info, data_info


def _schedule(args: TrainingArguments) -> dict[str, Any]:
    """What diagnose needs to judge a log besides the hyperparameters: the planned steps, and when
    the run evaluates and logs (in steps: a fraction below 1 is a share of the planned steps)."""
    out: dict[str, Any] = {"max_steps": args.max_steps, "eval_strategy": str(args.eval_strategy.value)}
    for key in ("eval_steps", "logging_steps"):
        every = getattr(args, key)
        if every and every < 1 and args.max_steps > 0:
            every = math.ceil(every * args.max_steps)
        if every and every >= 1:
            out[key] = int(every)
    return out


def _state_json(trainer: Trainer) -> str:
    """``trainer_state.json`` as ``TrainerState.save_to_json`` writes it."""
    return json.dumps(dataclasses.asdict(trainer.state), indent=2, sort_keys=True) + "\n"


def _by_length(dataset: Any) -> Any:
    lengths = [len(ids) for ids in dataset["input_ids"]]
    return dataset.select(sorted(range(len(lengths)), key=lambda i: -lengths[i]))


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA, CPU-allocator and bitsandbytes out-of-memory errors all count."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def release_memory() -> None:
    """Give back what a trial held: Python garbage, the CUDA cache, and glibc's free heap pages
    (without the last, a CPU worker's resident memory creeps up trial after trial)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def memory_use(device: torch.device) -> dict[str, float]:
    """Resident memory now and the process's peak, in MiB (and the CUDA peak since the last reset)."""
    import resource

    import psutil

    usage = {
        "rss": psutil.Process().memory_info().rss / 2**20,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,  # KiB on Linux
    }
    if device.type == "cuda":
        usage["cuda_peak"] = torch.cuda.max_memory_allocated(device) / 2**20
    return usage


def compact_curve(run: RunLog, digits: int = 5) -> str:
    """The run as ``RunLog.to_dict()`` JSON, numbers rounded and epochs dropped to keep it small."""
    data = run.to_dict()
    data["points"] = [
        {k: (_round(v, digits) if isinstance(v, float) else v) for k, v in point.items() if k != "epoch"}
        for point in data["points"]
    ]
    return json.dumps(data, separators=(",", ":"))


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
