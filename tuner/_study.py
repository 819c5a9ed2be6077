"""An Optuna study of short real fine-tuning trials, for one method.

``run_study(StudySettings(method="qlora"))`` is the whole of ``tune study``: it opens (or resumes)
the study in its storage, loads the base model and data once, runs trials until the study holds
``n_trials`` finished ones, and writes the best configuration. Several processes, on several
machines, can run it against one PostgreSQL study: Optuna's RDB storage hands out the trials and
its heartbeats give a dead worker's trial to someone else.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import SearchSpace, load_space
from tuner._export import BestConfig, write_best_config
from tuner._live import NullView, StudyCounts
from tuner._pruning import build_pruner
from tuner._records import best_config, hardware, record_study_attrs, resume_conflict
from tuner._report import ReportKeeper
from tuner._storage import DB_FILE, RUNS_DIR, existing_trials, find_study, open_storage
from tuner._trial import TrialOutcome, TrialSettings, Worker, load_worker
from tuner.methods import Method, get_method

ADAPTER_DIR = "best_adapter"
#: Consecutive trials failing with an unexpected error before the study gives up.
MAX_CONSECUTIVE_FAILURES = 3


class StudyError(RuntimeError):
    """A study that cannot go on; ``str(e)`` is one line for the user."""


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C: the running trial was ended and recorded; rerunning the command resumes."""

    def __init__(self, result: StudyResult) -> None:
        super().__init__("interrupted")
        self.result = result


class _TrialFailed(Exception):
    """A trial that raised something unexpected (recorded as FAIL; the study goes on)."""


@dataclass
class StudySettings:
    """Everything ``tune study`` takes; field names are its option names."""

    method: str = "lora"
    model: str | None = None
    dataset: str | None = None
    space: Path | None = None
    n_trials: int = 8
    timeout: float | None = None
    max_steps: int = 8
    eval_every: int = 4
    eval_examples: int = 32
    eval_batch_size: int = 16
    max_length: int = 128
    max_examples: int | None = None
    seed: int = 0
    pruner: str = "hyperband"
    storage: str | None = None
    study_name: str | None = None
    out: Path | None = None
    device: str | None = None
    baseline: bool = False
    max_micro_batch: int = 16
    heartbeat_interval: int = 30
    grace_period: int = 120

    def resolved_study_name(self) -> str:
        if self.study_name:
            return self.study_name
        from tuner._data import DEFAULT_DATASET
        from tuner._model import DEFAULT_MODEL

        parts = [self.method, _slug(self.model or DEFAULT_MODEL), _slug(self.dataset or DEFAULT_DATASET)]
        return "-".join(parts)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else RUNS_DIR / self.resolved_study_name()

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out_dir() / DB_FILE).resolve()}"

    def trial_settings(self) -> TrialSettings:
        return TrialSettings(
            max_steps=self.max_steps,
            eval_every=self.eval_every,
            eval_examples=self.eval_examples,
            eval_batch_size=self.eval_batch_size,
            max_micro_batch=self.max_micro_batch,
            seed=self.seed,
        )


@dataclass
class StudyResult:
    study_name: str
    storage: str
    out: Path
    counts: StudyCounts
    best: BestConfig | None = None
    files: list[Path] = field(default_factory=list)
    wall_seconds: float = 0.0


def run_study(settings: StudySettings, view: Any = None) -> StudyResult:
    """Run (or resume) the study described by ``settings``; see the module docstring."""
    view = view or NullView()
    started = time.perf_counter()
    method = get_method(settings.method)
    space = load_space(settings.method, settings.space)
    pruner = build_pruner(settings.pruner, eval_every=settings.eval_every, max_steps=settings.max_steps)
    if settings.n_trials < 0 or settings.max_steps < 1 or settings.eval_every < 1:
        raise StudyError("--n-trials must be >= 0, --max-steps and --eval-every >= 1")
    if not 0 < settings.heartbeat_interval < settings.grace_period:
        raise StudyError("--grace-period must be longer than --heartbeat-interval (and both > 0)")
    name, url, out = settings.resolved_study_name(), settings.storage_url(), settings.out_dir()
    storage = open_storage(
        url, heartbeat_interval=settings.heartbeat_interval, grace_period=settings.grace_period
    )
    existing = existing_trials(storage, name)
    n_startup = max(2, min(10, settings.n_trials // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate
        sampler = optuna.samplers.TPESampler(
            seed=_sampler_seed(settings, existing),
            n_startup_trials=n_startup,
            multivariate=True,
            constant_liar=True,
        )
    sampler_text = f"TPESampler(multivariate=True, constant_liar=True, n_startup_trials={n_startup})"
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )
    conflict = resume_conflict(study, settings, space)
    if conflict:
        raise StudyError(conflict)
    worker, model_info, data_info = _load_worker(settings, method, space)
    record_study_attrs(study, settings, space, sampler_text, model_info, data_info)
    result = StudyResult(name, url, out, counts=StudyCounts.of(study, settings.n_trials))
    objective = _Objective(study, space, worker, settings, view)
    reports = ReportKeeper(study, out, url, view.message)
    view.start(name, settings.n_trials, result.counts)
    # The base model, the data and the libraries are hundreds of thousands of long-lived objects:
    # frozen, they are left out of every garbage collection (~0.5 s each, several per trial).
    gc.collect()
    gc.freeze()
    try:
        if settings.baseline and "baseline" not in study.user_attrs:
            _measure_baseline(study, space, worker, view)
        _optimize(study, objective, settings, view, reports)
        _evaluate_best_on_whole_split(study, worker, out, view)
    except KeyboardInterrupt:
        _finish(study, settings, out, result, started, objective.worker_id, reports)
        raise StudyInterrupted(result) from None
    finally:
        gc.unfreeze()
    _finish(study, settings, out, result, started, objective.worker_id, reports)
    return result


def _load_worker(settings: StudySettings, method: Method, space: SearchSpace) -> tuple[Worker, Any, Any]:
    quantization = space.defaults().quantization
    searched = sorted(set(quantization) & set(space.distributions()))
    if searched:
        raise StudyError(
            f"{space.label}: {searched[0]}: quantization settings must be fixed (the base is quantised "
            "once per worker); run one study per setting"
        )
    return load_worker(
        method,
        settings.trial_settings(),
        model=settings.model,
        dataset=settings.dataset,
        device=settings.device,
        quantization=quantization,
        max_length=settings.max_length,
        max_examples=settings.max_examples,
    )


class _Objective:
    """One trial: sample a configuration, train it on the shared base, tell Optuna what happened."""

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        worker: Worker,
        settings: StudySettings,
        view: Any,
    ) -> None:
        self.study, self.space, self.worker, self.settings, self.view = study, space, worker, settings, view
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, trial: optuna.Trial) -> float:
        start = time.perf_counter()
        config = self.space.sample(trial)
        trial.set_user_attr("worker", self.worker_id)
        self.view.trial_started(trial.number, config)
        outcome = self.worker.run(
            config.training_args,
            config.peft,
            trial=trial,
            name=f"trial-{trial.number}",
            pruner_name=self.settings.pruner,
            on_step=self.view.step,
            keep=self._is_new_best,
        )
        attrs = outcome.user_attrs()
        attrs["seconds"]["wall"] = round(time.perf_counter() - start, 3)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self.view.trial_finished(trial.number, outcome)
        if outcome.state == "interrupted":
            # Run the same configuration first when the study is resumed.
            self.study.enqueue_trial(trial.params, user_attrs={"resumes_trial": trial.number})
        return _tell(trial, outcome)

    def _is_new_best(self, outcome: TrialOutcome) -> bool:
        try:
            return outcome.best_eval_loss is not None and outcome.best_eval_loss < self.study.best_value
        except ValueError:  # no completed trial yet
            return outcome.best_eval_loss is not None


def _tell(trial: optuna.Trial, outcome: TrialOutcome) -> float:
    """Map a trial outcome onto Optuna: COMPLETE with the best eval loss, PRUNED (stopped early,
    diverged, or out of memory with a violated constraint), or FAIL."""
    if outcome.state == "complete":
        return outcome.best_eval_loss
    if outcome.state == "infeasible":
        # The TPE sampler only learns from COMPLETE and PRUNED trials; a violated constraint puts
        # this one among the worst, so the sampler stops proposing its neighbourhood (optuna#2864).
        # Optuna 5 deprecates TPESampler(constraints_func=...) for Trial.set_constraint, which TPE
        # reads from every finished trial without a constraints_func.
        trial.set_constraint("memory", 1.0)
        raise optuna.TrialPruned(outcome.reason)
    if outcome.state in ("pruned", "diverged", "nan"):
        raise optuna.TrialPruned(outcome.reason)
    if outcome.state == "interrupted":
        raise KeyboardInterrupt
    raise _TrialFailed(outcome.reason)


def _optimize(
    study: optuna.Study, objective: _Objective, settings: StudySettings, view: Any, reports: ReportKeeper
) -> None:
    """Run trials one at a time until the study holds ``n_trials`` finished ones (any worker's)."""
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    failures = 0
    counts = StudyCounts.of(study, settings.n_trials)
    while True:
        view.update(counts)
        if counts.finished + counts.running >= settings.n_trials:
            if counts.running and counts.finished < settings.n_trials:
                view.message(
                    f"{counts.running} trial(s) still running in other workers (a dead worker's trial is "
                    f"retried by the next worker that starts after {settings.grace_period} s)"
                )
            return
        if deadline is not None and time.monotonic() >= deadline:
            view.message(f"timeout of {settings.timeout:g} s reached")
            return
        before = len(study.get_trials(deepcopy=False))
        study.optimize(objective, n_trials=1, catch=(_TrialFailed,))
        counts = StudyCounts.of(study, settings.n_trials)
        if counts.finished + counts.running < settings.n_trials:  # else the final report follows at once
            reports.after_trial()
        last = study.get_trials(deepcopy=False)[before:]
        failed = [
            t
            for t in last
            if t.state == TrialState.FAIL and t.user_attrs.get("worker") == objective.worker_id
        ]
        failures = failures + 1 if failed else 0
        if failures >= MAX_CONSECUTIVE_FAILURES:
            reason = failed[-1].user_attrs.get("reason", "see the log")
            raise StudyError(f"{failures} trials in a row failed; last: {reason}")


def _measure_baseline(study: optuna.Study, space: SearchSpace, worker: Worker, view: Any) -> None:
    """Train the method's common defaults for the same steps: the number a tuned result must beat."""
    defaults = space.defaults()
    view.trial_started("baseline", defaults)
    outcome = worker.run(
        defaults.training_args, defaults.peft, name="baseline", on_step=view.step, evaluate_full=True
    )
    view.trial_finished("baseline", outcome)
    study.set_user_attr(
        "baseline",
        {"config": defaults.to_dict(), "eval_loss": outcome.best_eval_loss, **outcome.user_attrs()},
    )


def _evaluate_best_on_whole_split(study: optuna.Study, worker: Worker, out: Path, view: Any) -> None:
    """Trials evaluate a fixed subset; the study's best is evaluated once on the whole eval split,
    by the worker that trained it (it kept the weights), and its adapter saved in ``out``."""
    try:
        best = study.best_trial
    except ValueError:
        return
    kept = worker.kept
    done = study.user_attrs.get("best_full_eval", {}).get("trial")
    if kept is None or kept.name != f"trial-{best.number}" or done == best.number:
        return
    view.message(
        f"evaluating trial {best.number} on the whole eval split ({len(worker.eval_dataset)} examples)"
    )
    start = time.perf_counter()
    save_dir = out / ADAPTER_DIR if worker.method.peft_config_class else None
    _, loss = worker.evaluate_kept(save_dir)
    study.set_user_attr(
        "best_full_eval",
        {
            "trial": best.number,
            "eval_loss": loss,
            "n_examples": len(worker.eval_dataset),
            "seconds": round(time.perf_counter() - start, 3),
        },
    )


def _finish(
    study: optuna.Study,
    settings: StudySettings,
    out: Path,
    result: StudyResult,
    started: float,
    worker_id: str,
    reports: ReportKeeper,
) -> None:
    result.counts = StudyCounts.of(study, settings.n_trials)
    result.wall_seconds = time.perf_counter() - started
    mine = [t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker_id]
    # One key per worker process (no read-modify-write between workers): who ran what, how long.
    study.set_user_attr(
        f"worker:{worker_id}", {"trials": mine, "wall_seconds": round(result.wall_seconds, 3), **hardware()}
    )
    result.best = best_config(study)
    if result.best is not None:
        result.files = list(write_best_config(result.best, out))
    result.files += reports.write()


def _sampler_seed(settings: StudySettings, existing: int) -> int:
    """``seed`` for a fresh study; shifted on resume (so the startup trials are not proposed
    again) and per process on a shared storage (so two workers don't propose the same ones)."""
    seed = settings.seed + existing
    if settings.storage:
        mix = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
        seed = int(hashlib.sha256(mix).hexdigest()[:8], 16)
    return seed


def _slug(spec: str) -> str:
    name = Path(str(spec).rstrip("/")).name or str(spec)
    return re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-").lower()[:40] or "x"


__all__ = [
    "StudyError",
    "StudyInterrupted",
    "StudyResult",
    "StudySettings",
    "best_config",
    "find_study",
    "load_worker",
    "open_storage",
    "run_study",
]
