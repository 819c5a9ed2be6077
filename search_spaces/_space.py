"""SearchSpace and TrialConfig: a method's YAML file turned into Optuna calls and trial configurations."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution

from ._params import (
    GROUPS,
    IA3_NAMES,
    LORA_NAMES,
    CategoricalParam,
    FixedParam,
    Param,
    RatioParam,
    SpaceError,
    fmt_value,
    is_number,
    parse_param,
)

METHODS = ("full", "lora", "qlora", "dora", "ia3")
SHIPPED_DIR = Path(__file__).parent
TOP_LEVEL_KEYS = {"method", "description", "extends", "params", "defaults"}
_MAX_EXTENDS_DEPTH = 8


@dataclass
class TrialConfig:
    """What one trial trains with, in the user's vocabulary.

    ``training_args`` holds TrainingArguments names plus two of ours: ``warmup_ratio`` (a fraction
    of the steps; transformers 5.x spells it as a float ``warmup_steps``) and
    ``effective_batch_size`` (per_device_train_batch_size x gradient_accumulation_steps).
    ``peft`` holds LoraConfig / IA3Config names, ``quantization`` BitsAndBytesConfig names, with the
    compute dtype as a string ("bfloat16").
    """

    method: str
    training_args: dict[str, Any] = field(default_factory=dict)
    peft: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "training_args": dict(self.training_args),
            "peft": dict(self.peft),
            "quantization": dict(self.quantization),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialConfig:
        return cls(
            method=d["method"],
            training_args=dict(d.get("training_args") or {}),
            peft=dict(d.get("peft") or {}),
            quantization=dict(d.get("quantization") or {}),
        )

    def values(self) -> dict[str, Any]:
        """All settings in one flat dict (names never clash between the three groups)."""
        return {**self.training_args, **self.peft, **self.quantization}


@dataclass
class SearchSpace:
    """One method's search space: its parameters (sampled or fixed) and its common defaults.

    >>> import optuna
    >>> space = load_space("lora")
    >>> study = optuna.create_study()
    >>> config = space.sample(study.ask())
    >>> config.peft["lora_alpha"] / config.peft["r"] in (0.5, 1, 2)
    True
    """

    method: str
    source_path: Path
    params: tuple[Param, ...]
    default_values: dict[str, Any]
    defaults_source: str = ""
    description: str = ""

    def sample(self, trial: optuna.Trial) -> TrialConfig:
        """Ask ``trial`` for every searched parameter (``trial.suggest_*`` under the param's name;
        a ratio_of parameter is suggested as ``<name>_ratio``) and return the trial's config."""
        values: dict[str, Any] = {}
        for param in self._in_dependency_order():
            values[param.name] = param.suggest(trial, values)
        return self._config(values)

    def defaults(self) -> TrialConfig:
        """The method's common defaults: the baseline a tuned result is compared with."""
        return self._config(self.default_values)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna parameter name -> distribution, for every sampled (not fixed) parameter."""
        return {p.optuna_name: d for p in self.params if (d := p.distribution()) is not None}

    def optuna_params(self, config: TrialConfig) -> dict[str, Any]:
        """The Optuna parameter values that reproduce ``config`` (for ``study.enqueue_trial``).

        SpaceError if a value lies outside the space (e.g. a baseline that isn't in the search
        range); run such a config outside the search instead.
        """
        values = config.values()
        params: dict[str, Any] = {}
        for param in self.params:
            if param.name not in values:
                raise SpaceError(f"{self.label}: {param.name}: missing from the config")
            try:
                optuna_value = param.optuna_value(values[param.name], values)
            except SpaceError as error:
                raise SpaceError(f"{self.label}: {error}") from None
            if not isinstance(param, FixedParam):
                params[param.optuna_name] = optuna_value
        return params

    def describe(self) -> list[dict[str, Any]]:
        """One row per parameter (name, kind, group, range, log, default, source, note), for `tune space`."""
        return [
            {
                "name": p.name,
                "kind": p.kind,
                "group": p.group,
                "range": p.describe_range(),
                "log": bool(getattr(p, "log", False) or getattr(getattr(p, "ratio", None), "log", False)),
                "default": self.default_values.get(p.name),
                "source": p.source,
                "note": p.note,
            }
            for p in self.params
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (stored in the study's user attrs); ``SearchSpace.from_dict`` reads it back."""
        return {
            "method": self.method,
            "source_path": str(self.source_path),
            "description": self.description,
            "params": {p.name: p.spec() for p in self.params},
            "defaults": {"source": self.defaults_source, "values": dict(self.default_values)},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        path = Path(d.get("source_path", "<stored space>"))
        raw = {k: v for k, v in d.items() if k != "source_path"}
        return _build(raw, path, label=path.name)

    @property
    def label(self) -> str:
        return self.source_path.name

    def _in_dependency_order(self) -> list[Param]:
        plain = [p for p in self.params if not isinstance(p, RatioParam)]
        return plain + [p for p in self.params if isinstance(p, RatioParam)]

    def _config(self, values: Mapping[str, Any]) -> TrialConfig:
        groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for param in self.params:
            groups[param.group][param.name] = values[param.name]
        return TrialConfig(method=self.method, **groups)


def available_methods() -> list[str]:
    """The methods with a shipped search space, sorted."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml") if p.stem in METHODS)


def load_space(method: str | None = None, path: str | Path | None = None) -> SearchSpace:
    """The shipped space of ``method``, or the user's YAML at ``path`` (whose method must agree)."""
    if path is None:
        if method is None:
            raise SpaceError("no search space: give a method or a path to a YAML file")
        if method not in available_methods():
            raise SpaceError(f"unknown method {method!r} (known: {', '.join(available_methods())})")
        path = SHIPPED_DIR / f"{method}.yaml"
        label = path.name
    else:
        path = Path(path)
        label = str(path)
    raw = _read_with_extends(path, label, depth=0)
    if method is not None:
        if raw.get("method") is None:
            raw["method"] = method
        elif raw["method"] != method:
            asked = f"the file is for {raw['method']!r}, but {method!r} was asked for"
            raise SpaceError(f"{label}: method: {asked}")
    return _build(raw, path, label)


def _read_yaml(path: Path, label: str) -> dict[str, Any]:
    if not path.is_file():
        raise SpaceError(f"{label}: search space file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(error, "problem", None) or str(error)
        raise SpaceError(f"{label}: {where}: {' '.join(str(problem).split())}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpaceError(f"{label}: cannot read: {error}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{label}: expected a mapping with 'method', 'params' and 'defaults'")
    return raw


def _read_with_extends(path: Path, label: str, depth: int) -> dict[str, Any]:
    """The file's mapping with any ``extends:`` base merged in (params replaced one by one, a
    param set to null removed, default values merged)."""
    raw = _read_yaml(path, label)
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    if depth >= _MAX_EXTENDS_DEPTH:
        raise SpaceError(f"{label}: extends: chain deeper than {_MAX_EXTENDS_DEPTH} files (a cycle?)")
    if not isinstance(base_name, str):
        raise SpaceError(f"{label}: extends: expected a method name or a YAML path, got {base_name!r}")
    if base_name in available_methods():
        base_path = SHIPPED_DIR / f"{base_name}.yaml"
        base_label = base_path.name
    else:
        base_path = path.parent / base_name
        base_label = str(base_path)
    if not base_path.is_file():
        known = ", ".join(available_methods())
        raise SpaceError(f"{label}: extends: {base_label} not found (a YAML path or one of: {known})")
    base = _read_with_extends(base_path, base_label, depth + 1)
    merged = copy.deepcopy(base)
    for key, value in raw.items():
        if key not in ("params", "defaults"):
            merged[key] = value
    params = dict(merged.get("params") or {})
    for name, spec in _mapping(raw, "params", label).items():
        if spec is None:
            params.pop(name, None)
        else:
            params[name] = spec
    merged["params"] = params
    defaults = dict(_mapping(merged, "defaults", base_label))
    override = _mapping(raw, "defaults", label)
    values = {**_mapping(defaults, "values", base_label), **_mapping(override, "values", label)}
    merged["defaults"] = {
        "source": override.get("source", defaults.get("source", "")),
        "values": {k: v for k, v in values.items() if k in params},
    }
    return merged


def _mapping(raw: Mapping[str, Any], key: str, label: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpaceError(f"{label}: {key}: expected a mapping, got {type(value).__name__}")
    return value


def _build(raw: Mapping[str, Any], path: Path, label: str) -> SearchSpace:
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise SpaceError(f"{label}: {unknown[0]}: unknown key (allowed: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    method = raw.get("method")
    if method is None:
        raise SpaceError(f"{label}: method: missing key (one of {', '.join(METHODS)})")
    if method not in METHODS:
        raise SpaceError(f"{label}: method: unknown method {method!r} (known: {', '.join(sorted(METHODS))})")
    raw_params = _mapping(raw, "params", label)
    if not raw_params:
        raise SpaceError(f"{label}: params: missing key (the parameters to search)")
    params = tuple(parse_param(str(name), spec, f"{label}: {name}") for name, spec in raw_params.items())
    by_name = {p.name: p for p in params}
    for param in params:
        _check_fits_method(param, method, label)
        if isinstance(param, RatioParam):
            _check_ratio_target(param, by_name, label)
    _check_method_requirements(method, by_name, label)
    defaults = _mapping(raw, "defaults", label)
    values = dict(_mapping(defaults, "values", label))
    default_values = _check_defaults(values, params, label)
    return SearchSpace(
        method=method,
        source_path=path,
        params=params,
        default_values=default_values,
        defaults_source=str(defaults.get("source", "")),
        description=str(raw.get("description", "")),
    )


def _check_fits_method(param: Param, method: str, label: str) -> None:
    where = f"{label}: {param.name}"
    if param.group == "quantization" and method != "qlora":
        raise SpaceError(f"{where}: quantization settings apply to method qlora only, not {method}")
    if param.group == "peft":
        if method == "full":
            raise SpaceError(f"{where}: adapter setting in a full fine-tuning space (method: full)")
        names = IA3_NAMES if method == "ia3" else LORA_NAMES
        config = "IA3Config" if method == "ia3" else "LoraConfig"
        if param.name not in names:
            raise SpaceError(f"{where}: not a {config} setting, so method {method} can't use it")


def _check_ratio_target(param: RatioParam, by_name: Mapping[str, Param], label: str) -> None:
    target = by_name.get(param.of)
    where = f"{label}: {param.name}: of"
    if target is None:
        raise SpaceError(f"{where}: unknown parameter {param.of!r} (known: {', '.join(by_name)})")
    if isinstance(target, RatioParam):
        raise SpaceError(f"{where}: {param.of!r} is itself a ratio_of parameter")
    if isinstance(target, FixedParam):
        numeric = is_number(target.value)
    elif isinstance(target, CategoricalParam):
        numeric = all(is_number(c) for c in target.choices)
    else:
        numeric = True
    if not numeric:
        raise SpaceError(f"{where}: {param.of!r} is not numeric")


def _check_method_requirements(method: str, by_name: Mapping[str, Param], label: str) -> None:
    if method == "dora":
        use_dora = by_name.get("use_dora")
        if not (isinstance(use_dora, FixedParam) and use_dora.value is True):
            raise SpaceError(f"{label}: use_dora: a dora space must fix use_dora to true")
    if method == "qlora":
        load_in_4bit = by_name.get("load_in_4bit")
        if not (isinstance(load_in_4bit, FixedParam) and load_in_4bit.value is True):
            raise SpaceError(f"{label}: load_in_4bit: a qlora space must fix load_in_4bit to true")


def _check_defaults(values: dict[str, Any], params: tuple[Param, ...], label: str) -> dict[str, Any]:
    """Every searched parameter needs a default; a fixed one defaults to its value."""
    names = {p.name for p in params}
    for name in values:
        if name not in names:
            raise SpaceError(f"{label}: defaults: {name}: not a parameter of this space")
    complete: dict[str, Any] = {}
    for param in params:
        if param.name in values:
            value = values[param.name]
        elif isinstance(param, FixedParam):
            value = param.value
        else:
            raise SpaceError(f"{label}: defaults: {param.name}: missing (the baseline needs every parameter)")
        if param.kind in ("float", "int", "ratio_of") and not is_number(value):
            raise SpaceError(f"{label}: defaults: {param.name}: must be a number, got {fmt_value(value)!r}")
        complete[param.name] = value
    return complete
