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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import SearchSpace, TrialConfig, load_space
from tuner._export import BestConfig, installed_training_args, write_best_config
from tuner._live import NullView, StudyCounts
from tuner._pruning import build_pruner
from tuner._trial import TrialOutcome, TrialSettings, Worker
from tuner.methods import Method, get_method

DB_FILE = "study.db"
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
        return Path(self.out) if self.out else Path("tune_runs") / self.resolved_study_name()

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


def open_storage(url: str, settings: StudySettings | None = None) -> optuna.storages.BaseStorage:
    """Optuna RDB storage with heartbeats: a trial whose worker died is failed after the grace
    period and re-queued once (``RetryHeartbeatStaleTrialCallback``, Optuna >= 4.9's name for
    ``RetryFailedTrialCallback``)."""
    settings = settings or StudySettings()
    url = _with_installed_driver(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=settings.heartbeat_interval,
                grace_period=settings.grace_period,
                heartbeat_stale_trial_callback=retry,
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
            )
    except Exception as exc:  # sqlalchemy / driver errors: one line
        raise StudyError(f"cannot open storage {url}: {' '.join(str(exc).split())[:200]}") from None


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is installed."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    only_psycopg2 = (
        importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None
    )
    if scheme in ("postgresql", "postgres") and sep and only_psycopg2:
        return f"postgresql+psycopg2://{rest}"
    return url


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
    storage = open_storage(url, settings)
    existing = _existing_trials(storage, name)
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
    _check_resume(study, settings, space)
    worker, model_info, data_info = load_worker(settings, method, space)
    _record_study_attrs(study, settings, space, sampler_text, model_info, data_info)
    result = StudyResult(name, url, out, counts=StudyCounts.of(study, settings.n_trials))
    objective = _Objective(study, space, worker, settings, view)
    view.start(name, settings.n_trials, result.counts)
    # The base model, the data and the libraries are hundreds of thousands of long-lived objects:
    # frozen, they are left out of every garbage collection (~0.5 s each, several per trial).
    gc.collect()
    gc.freeze()
    try:
        if settings.baseline and "baseline" not in study.user_attrs:
            _measure_baseline(study, space, worker, view)
        _optimize(study, objective, settings, view)
        _evaluate_best_on_whole_split(study, worker, out, view)
    except KeyboardInterrupt:
        _finish(study, settings, out, result, started, objective.worker_id)
        raise StudyInterrupted(result) from None
    finally:
        gc.unfreeze()
    _finish(study, settings, out, result, started, objective.worker_id)
    return result


def load_worker(settings: StudySettings, method: Method, space: SearchSpace) -> tuple[Worker, Any, Any]:
    """Load the base model (quantised for QLoRA) and the tokenised data, once per process."""
    from tuner._data import load_tokenized
    from tuner._model import load_base_model

    quantization = space.defaults().quantization
    searched = sorted(set(quantization) & set(space.distributions()))
    if searched:
        raise StudyError(
            f"{space.label}: {searched[0]}: quantization settings must be fixed (the base is quantised "
            "once per worker); run one study per setting"
        )
    base, tokenizer, model_info = load_base_model(
        settings.model, method=settings.method, device=settings.device, quantization=quantization or None
    )
    train, evaluation, data_info = load_tokenized(
        settings.dataset,
        tokenizer,
        max_length=settings.max_length,
        seed=settings.seed,
        max_examples=settings.max_examples,
    )
    worker = Worker(
        method=method,
        base=base,
        tokenizer=tokenizer,
        train_dataset=train,
        eval_dataset=evaluation,
        settings=settings.trial_settings(),
    )
    return worker, model_info, data_info


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
        trial.set_constraint("memory", 1.0)
        raise optuna.TrialPruned(outcome.reason)
    if outcome.state in ("pruned", "diverged", "nan"):
        raise optuna.TrialPruned(outcome.reason)
    if outcome.state == "interrupted":
        raise KeyboardInterrupt
    raise _TrialFailed(outcome.reason)


def _optimize(study: optuna.Study, objective: _Objective, settings: StudySettings, view: Any) -> None:
    """Run trials one at a time until the study holds ``n_trials`` finished ones (any worker's)."""
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    failures = 0
    while True:
        counts = StudyCounts.of(study, settings.n_trials)
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


def best_config(study: optuna.Study) -> BestConfig | None:
    """The best completed trial of ``study`` as a :class:`BestConfig` (``None`` before any)."""
    try:
        trial = study.best_trial
    except ValueError:
        return None
    attrs = study.user_attrs
    space = SearchSpace.from_dict(attrs["search_space"])
    config = _config_of(space, trial.params)
    method = get_method(config.method)
    training_args = installed_training_args(config.training_args)
    if trial.user_attrs.get("per_device_train_batch_size"):
        training_args["per_device_train_batch_size"] = trial.user_attrs["per_device_train_batch_size"]
        training_args["gradient_accumulation_steps"] = trial.user_attrs["gradient_accumulation_steps"]
    model, dataset = attrs.get("model", {}), attrs.get("dataset", {})
    baseline = attrs.get("baseline") or {}
    full = attrs.get("best_full_eval") or {}
    return BestConfig(
        method=config.method,
        model=model.get("spec") or model.get("name", ""),
        dataset=dataset.get("spec") or dataset.get("name", ""),
        training_args=training_args,
        peft=method.peft_values(config.peft),
        quantization=dict(config.quantization),
        max_length=attrs.get("budget", {}).get("max_length", 128),
        provenance={
            "study": study.study_name,
            "trial": trial.number,
            "eval_loss": trial.value,
            "eval_loss_full_split": full.get("eval_loss") if full.get("trial") == trial.number else None,
            "best_step": trial.user_attrs.get("best_step"),
            "steps_per_trial": attrs.get("budget", {}).get("max_steps"),
            "baseline_eval_loss": baseline.get("eval_loss"),
            "versions": attrs.get("versions", {}),
        },
    )


def find_study(ref: str, storage: str | None = None) -> tuple[optuna.Study, Path]:
    """The study ``ref`` names: a study folder or ``.db`` file, or a study name (in ``storage``, else
    under ``tune_runs/``); and the folder its outputs belong in."""
    name: str | None = None
    if storage is not None:
        url, name, folder = storage, ref, Path("tune_runs") / ref
    else:
        path = Path(ref)
        if path.is_file() and path.suffix == ".db":
            db, folder = path, path.parent
        elif path.is_dir():
            db, folder = path / DB_FILE, path
        elif (Path("tune_runs") / ref / DB_FILE).is_file():
            db, folder = Path("tune_runs") / ref / DB_FILE, Path("tune_runs") / ref
        else:
            raise StudyError(
                f"no study at {ref!r}: give a study folder, a .db file, or a name with --storage"
            )
        if not db.is_file():
            raise StudyError(f"{folder}: no {DB_FILE} in this folder")
        url = f"sqlite:///{db.resolve()}"
    url = _with_installed_driver(url)
    try:
        names = optuna.get_all_study_names(storage=url)
    except Exception as exc:  # sqlalchemy / driver errors: one line
        raise StudyError(f"cannot open storage {url}: {' '.join(str(exc).split())[:200]}") from None
    if name is None:
        if len(names) != 1:
            raise StudyError(f"{url} holds {len(names)} studies; name one: tune best NAME --storage {url}")
        name = names[0]
    elif name not in names:
        raise StudyError(f"no study {name!r} in {url} (it has: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=url), folder


def _config_of(space: SearchSpace, params: dict[str, Any]) -> TrialConfig:
    """The TrialConfig a trial with ``params`` trained with (fixed values filled in)."""
    return space.sample(optuna.trial.FixedTrial(params))


def _existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _sampler_seed(settings: StudySettings, existing: int) -> int:
    """``seed`` for a fresh study; shifted on resume (so the startup trials are not proposed
    again) and per process on a shared storage (so two workers don't propose the same ones)."""
    seed = settings.seed + existing
    if settings.storage:
        mix = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
        seed = int(hashlib.sha256(mix).hexdigest()[:8], 16)
    return seed


def _check_resume(study: optuna.Study, settings: StudySettings, space: SearchSpace) -> None:
    """A resumed study must train the way its earlier trials did, or their losses don't compare."""
    attrs = study.user_attrs
    if not attrs:
        return
    budget = attrs.get("budget", {})
    stored = {
        "method": attrs.get("method"),
        "max-steps": budget.get("max_steps"),
        "eval-examples": budget.get("eval_examples"),
        "max-length": budget.get("max_length"),
    }
    asked = {
        "method": settings.method,
        "max-steps": settings.max_steps,
        "eval-examples": settings.eval_examples,
        "max-length": settings.max_length,
    }
    for key, value in stored.items():
        if value is not None and value != asked[key]:
            raise StudyError(
                f"study {study.study_name!r} was run with --{key} {value}, not {asked[key]}; "
                "use the same settings or another --study-name"
            )
    if attrs.get("search_space", {}).get("params") not in (None, space.to_dict()["params"]):
        raise StudyError(
            f"study {study.study_name!r} was run with another search space; use another --study-name"
        )


def _record_study_attrs(
    study: optuna.Study,
    settings: StudySettings,
    space: SearchSpace,
    sampler: str,
    model_info: Any,
    data_info: Any,
) -> None:
    """What the report needs to say how the study was run (written by the first worker)."""
    if "method" in study.user_attrs:
        return
    from tuner._data import DEFAULT_DATASET
    from tuner._model import DEFAULT_MODEL

    model = {**_as_dict(model_info), "spec": settings.model or DEFAULT_MODEL}
    dataset = {**_as_dict(data_info), "spec": settings.dataset or DEFAULT_DATASET}
    attrs = {
        "method": settings.method,
        "model": model,
        "dataset": {**dataset, "eval_examples_per_trial": settings.eval_examples},
        "search_space": space.to_dict(),
        "sampler": sampler,
        "pruner": settings.pruner,
        "budget": {
            "n_trials": settings.n_trials,
            "max_steps": settings.max_steps,
            "eval_every": settings.eval_every,
            "eval_examples": settings.eval_examples,
            "max_length": settings.max_length,
            "timeout": settings.timeout,
        },
        "hardware": hardware(),
        "versions": versions(),
        "qlora_cpu_emulation": model["quantization"] == "nf4-emulated-cpu"
        if "quantization" in model
        else False,
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)


def hardware() -> dict[str, Any]:
    import psutil
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "peft", "trl", "bitsandbytes", "optuna"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _as_dict(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if hasattr(info, "__dataclass_fields__"):
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}
    return dict(info)


def _slug(spec: str) -> str:
    name = Path(str(spec).rstrip("/")).name or str(spec)
    return re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-").lower()[:40] or "x"
