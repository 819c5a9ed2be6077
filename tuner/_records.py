"""What a study records about how it was run, and what is read back from it.

The first worker writes the study's user attributes (model, data, space, sampler, pruner, budget,
hardware, versions); a resumed run is checked against them; :func:`best_config` turns the best
trial back into a configuration a user can paste.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from search_spaces import SearchSpace, TrialConfig
from tuner._export import BestConfig, installed_training_args
from tuner.methods import get_method

if TYPE_CHECKING:
    from tuner._study import StudySettings


def record_study_attrs(
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
        "qlora_cpu_emulation": model.get("quantization") == "nf4-emulated-cpu",
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)


def resume_conflict(study: optuna.Study, settings: StudySettings, space: SearchSpace) -> str | None:
    """Why ``settings`` can't resume ``study`` (its trials would not compare), or ``None``."""
    attrs = study.user_attrs
    if not attrs:
        return None
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
            return (
                f"study {study.study_name!r} was run with --{key} {value}, not {asked[key]}; "
                "use the same settings or another --study-name"
            )
    if attrs.get("search_space", {}).get("params") not in (None, space.to_dict()["params"]):
        return f"study {study.study_name!r} was run with another search space; use another --study-name"
    return None


def best_config(study: optuna.Study) -> BestConfig | None:
    """The best completed trial of ``study`` as a :class:`BestConfig` (``None`` before any)."""
    try:
        trial = study.best_trial
    except ValueError:
        return None
    attrs = study.user_attrs
    space = SearchSpace.from_dict(attrs["search_space"])
    config = config_of(space, trial.params)
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


def config_of(space: SearchSpace, params: dict[str, Any]) -> TrialConfig:
    """The TrialConfig a trial with ``params`` trained with (fixed values filled in)."""
    return space.sample(optuna.trial.FixedTrial(params))


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
