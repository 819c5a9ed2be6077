"""One searchable (or fixed) hyperparameter: parsing and validation of its YAML entry, Optuna calls.

Each kind is a small class with the same four abilities: the Optuna distribution it samples from
(``None`` when nothing is sampled), ``suggest`` (one value for a trial), ``optuna_value`` (the
inverse: the Optuna parameter value that reproduces a given value, for ``enqueue_trial``) and
``describe`` (a display string of its range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


class SpaceError(ValueError):
    """A search space that can't be used; ``str(e)`` is one line naming the file and the key."""


KINDS = ("float", "int", "categorical", "fixed", "ratio_of")
GROUPS = ("training_args", "peft", "quantization")

# Names the loader knows without importing anything heavy. Other TrainingArguments fields are
# checked against transformers lazily (see ``infer_group``).
LORA_NAMES = frozenset(
    {
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "exclude_modules",
        "use_dora",
        "use_rslora",
        "bias",
        "init_lora_weights",
        "modules_to_save",
        "layers_to_transform",
        "layers_pattern",
        "rank_pattern",
        "alpha_pattern",
        "fan_in_fan_out",
    }
)
IA3_NAMES = frozenset(
    {
        "target_modules",
        "exclude_modules",
        "feedforward_modules",
        "init_ia3_weights",
        "modules_to_save",
        "fan_in_fan_out",
    }
)
TRAINING_NAMES = frozenset(
    {
        "learning_rate",
        "lr_scheduler_type",
        "max_grad_norm",
        "weight_decay",
        "warmup_ratio",  # our name for the fraction; written as a float `warmup_steps` on transformers 5.x
        "warmup_steps",
        "effective_batch_size",  # split into per_device_train_batch_size x gradient_accumulation_steps
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
        "optim",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "label_smoothing_factor",
        "neftune_noise_alpha",
        "seed",
    }
)


def _is_quantization_name(name: str) -> bool:
    return name.startswith(("bnb_", "llm_int8_")) or name in {"load_in_4bit", "load_in_8bit"}


def _is_training_arguments_field(name: str) -> bool:
    from dataclasses import fields

    from transformers import TrainingArguments

    return name in {f.name for f in fields(TrainingArguments)}


def infer_group(name: str) -> str | None:
    """Which TrialConfig dict a parameter belongs to, from its name; ``None`` if the name is unknown."""
    if name in LORA_NAMES or name in IA3_NAMES:
        return "peft"
    if _is_quantization_name(name):
        return "quantization"
    if name in TRAINING_NAMES or _is_training_arguments_field(name):
        return "training_args"
    return None


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _number(raw: Mapping[str, Any], key: str, where: str, *, integer: bool = False) -> float | int:
    """A numeric field; numbers written as strings ("3e-5": YAML 1.1 reads that as text) are accepted."""
    if key not in raw:
        raise SpaceError(f"{where}: missing key '{key}'")
    value = raw[key]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SpaceError(f"{where}: {key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(f"{where}: {key} must be a number, got {value!r}")
    if integer:
        if value != int(value):
            raise SpaceError(f"{where}: {key} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _check_range(raw: Mapping[str, Any], where: str, *, integer: bool) -> tuple[Any, Any, bool]:
    low = _number(raw, "low", where, integer=integer)
    high = _number(raw, "high", where, integer=integer)
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise SpaceError(f"{where}: low ({fmt_value(low)}) > high ({fmt_value(high)})")
    if log and low <= 0:
        raise SpaceError(f"{where}: a log range needs low > 0, got low = {fmt_value(low)}")
    return low, high, log


def _check_choices(raw: Mapping[str, Any], where: str) -> tuple[Any, ...]:
    if "choices" not in raw:
        raise SpaceError(f"{where}: missing key 'choices'")
    choices = raw["choices"]
    if not isinstance(choices, list) or not choices:
        raise SpaceError(f"{where}: choices must be a non-empty list, got {choices!r}")
    for choice in choices:
        if choice is not None and not isinstance(choice, bool | int | float | str):
            raise SpaceError(f"{where}: choices may hold numbers, strings, booleans or null, got {choice!r}")
    if len({repr(c) for c in choices}) != len(choices):
        raise SpaceError(f"{where}: choices repeat a value: {choices!r}")
    return tuple(choices)


@dataclass(frozen=True)
class Param:
    """Common fields of every kind: its name, which TrialConfig dict it goes to, and where it comes from."""

    name: str
    group: str
    source: str
    note: str

    kind = "?"

    @property
    def optuna_name(self) -> str:
        return self.name

    def distribution(self) -> BaseDistribution | None:
        return None

    def suggest(self, trial: optuna.Trial, values: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def optuna_value(self, value: Any, values: Mapping[str, Any]) -> Any:
        """The Optuna parameter value that makes ``suggest`` return ``value``; SpaceError if none does."""
        distribution = self.distribution()
        if distribution is not None and not _contains(distribution, value):
            raise SpaceError(f"{self.name}: {fmt_value(value)} is outside {self.describe_range()}")
        return value

    def describe_range(self) -> str:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The YAML entry this parameter was parsed from (normalised), so that it round-trips."""
        entry: dict[str, Any] = {"kind": self.kind, "group": self.group, "source": self.source}
        if self.note:
            entry["note"] = self.note
        return entry


_NO_MATCH = object()


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _match_choice(choices: tuple[Any, ...], value: Any) -> Any:
    """The choice equal to ``value`` (16 matches 16.0, True matches only True), or ``_NO_MATCH``."""
    for choice in choices:
        if is_number(choice) and is_number(value):
            if math.isclose(choice, value, rel_tol=1e-9):
                return choice
        elif type(choice) is type(value) and choice == value:
            return choice
    return _NO_MATCH


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return _match_choice(distribution.choices, value) is not _NO_MATCH
    return is_number(value) and distribution.low <= value <= distribution.high


@dataclass(frozen=True)
class FloatParam(Param):
    low: float
    high: float
    log: bool
    kind = "float"

    def distribution(self) -> FloatDistribution:
        return FloatDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial: optuna.Trial, values: Mapping[str, Any]) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe_range(self) -> str:
        return f"[{fmt_value(self.low)}, {fmt_value(self.high)}]"

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class IntParam(Param):
    low: int
    high: int
    log: bool
    step: int
    kind = "int"

    def distribution(self) -> IntDistribution:
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial, values: Mapping[str, Any]) -> int:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step)

    def describe_range(self) -> str:
        step = f" step {self.step}" if self.step != 1 else ""
        return f"[{self.low}, {self.high}]{step}"

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass(frozen=True)
class CategoricalParam(Param):
    choices: tuple[Any, ...]
    kind = "categorical"

    def distribution(self) -> CategoricalDistribution:
        return CategoricalDistribution(self.choices)

    def suggest(self, trial: optuna.Trial, values: Mapping[str, Any]) -> Any:
        return trial.suggest_categorical(self.name, self.choices)

    def optuna_value(self, value: Any, values: Mapping[str, Any]) -> Any:
        super().optuna_value(value, values)
        return _match_choice(self.choices, value)  # the choice itself: enqueue_trial wants 16, not 16.0

    def describe_range(self) -> str:
        return "{" + ", ".join(fmt_value(c) for c in self.choices) + "}"

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "choices": list(self.choices)}


@dataclass(frozen=True)
class FixedParam(Param):
    value: Any
    kind = "fixed"

    def suggest(self, trial: optuna.Trial, values: Mapping[str, Any]) -> Any:
        return self.value

    def optuna_value(self, value: Any, values: Mapping[str, Any]) -> Any:
        if value != self.value:
            fixed = fmt_value(self.value)
            raise SpaceError(f"{self.name}: {fmt_value(value)} differs from the fixed value {fixed}")
        return None

    def describe_range(self) -> str:
        return f"= {self.value}" if self.value is not None else "= (library default)"

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "value": self.value}


@dataclass(frozen=True)
class RatioParam(Param):
    """A value sampled as a multiple of another parameter: ``lora_alpha = ratio * r``.

    Optuna samples the ratio, under the name ``<name>_ratio``, from ``choices`` or from
    ``[low, high]``; the TrialConfig gets the product, rounded to an int when ``of`` is an int.
    """

    of: str
    ratio: CategoricalParam | FloatParam
    kind = "ratio_of"

    @property
    def optuna_name(self) -> str:
        return self.ratio.name

    def distribution(self) -> BaseDistribution:
        return self.ratio.distribution()

    def suggest(self, trial: optuna.Trial, values: Mapping[str, Any]) -> Any:
        return self._times(self.ratio.suggest(trial, values), values[self.of])

    @staticmethod
    def _times(ratio: float, base: Any) -> Any:
        product = ratio * base
        if isinstance(base, int) and float(product).is_integer():
            return int(product)
        return product

    def optuna_value(self, value: Any, values: Mapping[str, Any]) -> Any:
        base = values[self.of]
        ratio = value / base
        try:
            return self.ratio.optuna_value(ratio, values)
        except SpaceError:
            message = f"{fmt_value(value)} is {fmt_value(ratio)} x {self.of}, outside {self.describe_range()}"
            raise SpaceError(f"{self.name}: {message}") from None

    def describe_range(self) -> str:
        return f"{self.of} x {self.ratio.describe_range()}"

    def spec(self) -> dict[str, Any]:
        ratio_spec = self.ratio.spec()
        for key in ("kind", "group", "source", "note"):
            ratio_spec.pop(key, None)
        return {**super().spec(), "of": self.of, **ratio_spec}


def parse_param(name: str, raw: Any, where: str) -> Param:
    """Build one parameter from its YAML mapping; ``where`` prefixes every error ("my.yaml: lr")."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{where}: expected a mapping with a 'kind', got {raw!r}")
    kind = raw.get("kind")
    if kind is None:
        raise SpaceError(f"{where}: missing key 'kind' (one of {', '.join(KINDS)})")
    if kind not in KINDS:
        raise SpaceError(f"{where}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise SpaceError(f"{where}: missing key 'source' (say where the range comes from)")
    note = raw.get("note", "")
    group = raw.get("group") or infer_group(name)
    if group is None:
        raise SpaceError(
            f"{where}: unknown parameter (not a TrainingArguments, LoraConfig / IA3Config or "
            f"BitsAndBytesConfig name); add 'group: training_args|peft|quantization' to use it anyway"
        )
    if group not in GROUPS:
        raise SpaceError(f"{where}: unknown group {group!r} (one of {', '.join(GROUPS)})")
    known = {"kind", "group", "source", "note"} | _KIND_KEYS[kind]
    unknown = sorted(set(raw) - known)
    if unknown:
        allowed = ", ".join(sorted(known))
        raise SpaceError(f"{where}: unknown key '{unknown[0]}' for kind {kind} (allowed: {allowed})")
    common = {"name": name, "group": group, "source": source.strip(), "note": str(note).strip()}
    if kind == "float":
        low, high, log = _check_range(raw, where, integer=False)
        return FloatParam(**common, low=low, high=high, log=log)
    if kind == "int":
        low, high, log = _check_range(raw, where, integer=True)
        step = int(_number(raw, "step", where, integer=True)) if "step" in raw else 1
        if step < 1 or (log and step != 1):
            raise SpaceError(f"{where}: step must be >= 1 (and 1 on a log range), got {step}")
        return IntParam(**common, low=low, high=high, log=log, step=step)
    if kind == "categorical":
        return CategoricalParam(**common, choices=_check_choices(raw, where))
    if kind == "fixed":
        if "value" not in raw:
            raise SpaceError(f"{where}: missing key 'value'")
        return FixedParam(**common, value=raw["value"])
    of = raw.get("of")
    if not isinstance(of, str):
        raise SpaceError(f"{where}: missing key 'of' (the parameter this one is a multiple of, e.g. r)")
    ratio_common = {**common, "name": f"{name}_ratio"}
    if "choices" in raw:
        choices = _check_choices(raw, where)
        if any(not is_number(c) or c <= 0 for c in choices):
            raise SpaceError(f"{where}: ratio choices must be positive numbers, got {list(choices)!r}")
        ratio: CategoricalParam | FloatParam = CategoricalParam(**ratio_common, choices=choices)
    else:
        low, high, log = _check_range(raw, where, integer=False)
        ratio = FloatParam(**ratio_common, low=low, high=high, log=log)
    return RatioParam(**common, of=of, ratio=ratio)


_KIND_KEYS: dict[str, set[str]] = {
    "float": {"low", "high", "log"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
    "fixed": {"value"},
    "ratio_of": {"of", "choices", "low", "high", "log"},
}
