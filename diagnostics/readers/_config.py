"""The configuration beside a log: training_args.json/.yaml, adapter_config.json, config.json, trainer_state.

A run directory written by the HF Trainer holds ``training_args.bin`` (a torch pickle: never
unpickled here), and often ``adapter_config.json`` (peft) and ``config.json`` (the model). Their
values go into ``RunConfig`` under their own names: transformers 4.x names such as ``warmup_ratio``
or ``evaluation_strategy`` are kept as written; translating them is the advice layer's job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from diagnostics.runlog import RunConfig

# num_train_epochs of a run driven by max_steps is stored as sys.maxsize.
UNSET_EPOCHS = 9223372036854775807
# Fields of trainer_state.json that are TrainingArguments values (train_batch_size is HF's own name).
STATE_ARGS = (
    "max_steps",
    "num_train_epochs",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "train_batch_size",
)
# LLaMA-Factory's training_args.yaml names -> LoraConfig names.
_LLAMAFACTORY_PEFT = {
    "lora_rank": "r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "lora_target": "target_modules",
    "use_dora": "use_dora",
    "use_rslora": "use_rslora",
}
_CONFIG_BYTES = 8 * 1024 * 1024
_LEVELS = 3


def state_config(state: Mapping[str, Any]) -> RunConfig:
    """The TrainingArguments values a trainer_state.json records."""
    args = {key: state[key] for key in STATE_ARGS if isinstance(state.get(key), int | float)}
    if args.get("num_train_epochs") == UNSET_EPOCHS:
        del args["num_train_epochs"]
    return RunConfig(training_args=args)


@dataclass
class _Evidence:
    """What the files say about the fine-tuning method, decided once all of them are read."""

    peft_type: str | None = None
    use_dora: bool = False
    four_bit: bool = False
    model_weights: bool = False  # a model config.json without any adapter: full fine-tuning
    finetuning_type: str | None = None  # LLaMA-Factory's own word


class ConfigFinder:
    """Finds and reads the configuration files of runs, caching per directory (1,000 runs in one folder
    share one lookup)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[Path, tuple[RunConfig, _Evidence]] = {}
        self._states: dict[Path, RunConfig] = {}

    def for_log(self, log_dir: Path, with_state: bool = True) -> RunConfig:
        """The configuration found in ``log_dir`` and its parents (at most 3 up, never above root).
        ``with_state=False`` leaves out trainer_state.json (a trainer_state run has read its own)."""
        config = RunConfig()
        evidence = _Evidence()
        directory = log_dir
        for _ in range(_LEVELS + 1):
            found, found_evidence = self._read_dir(directory)
            config.merge(found)
            _merge_evidence(evidence, found_evidence)
            if with_state:
                config.merge(self._read_state(directory))
            if directory == self.root or self.root not in directory.parents:
                break
            directory = directory.parent
        config.method = config.method or _method(evidence)
        return config

    def _read_dir(self, directory: Path) -> tuple[RunConfig, _Evidence]:
        cached = self._cache.get(directory)
        if cached is None:
            cached = self._cache[directory] = _read_dir(directory)
        return cached

    def _read_state(self, directory: Path) -> RunConfig:
        cached = self._states.get(directory)
        if cached is None:
            state = _load_json(directory / "trainer_state.json")
            cached = self._states[directory] = state_config(state) if state else RunConfig()
        return cached


def _read_dir(directory: Path) -> tuple[RunConfig, _Evidence]:
    config = RunConfig()
    evidence = _Evidence()
    adapter = _load_json(directory / "adapter_config.json")
    if adapter:
        peft = {k: v for k, v in adapter.items() if v is not None}
        config.peft.update(peft)
        evidence.peft_type = str(adapter.get("peft_type") or "LORA").upper()
        evidence.use_dora = bool(adapter.get("use_dora"))
        config.model = _text(adapter.get("base_model_name_or_path"))
    args = _load_json(directory / "training_args.json")
    if args:
        config.training_args.update(clean_args(args))
        evidence.four_bit |= _says_four_bit(args)
    llamafactory = _load_yaml(directory / "training_args.yaml")
    if llamafactory:
        _read_llamafactory(llamafactory, config, evidence)
    model = _load_json(directory / "config.json")
    if model and ("model_type" in model or "architectures" in model):
        config.model = config.model or _text(model.get("_name_or_path"))
        config.transformers_version = _text(model.get("transformers_version"))
        evidence.four_bit |= _says_four_bit(model)
        evidence.model_weights = True
    for found in (adapter, args, llamafactory):
        if found and not config.transformers_version:
            config.transformers_version = _text(found.get("transformers_version"))
    return config, evidence


def _read_llamafactory(data: Mapping[str, Any], config: RunConfig, evidence: _Evidence) -> None:
    rest = dict(data)
    for name, peft_name in _LLAMAFACTORY_PEFT.items():
        if name in rest:
            config.peft[peft_name] = rest.pop(name)
    config.model = config.model or _text(rest.get("model_name_or_path"))
    evidence.finetuning_type = _text(rest.get("finetuning_type"))
    evidence.use_dora |= bool(config.peft.get("use_dora"))
    evidence.four_bit |= _says_four_bit(rest)
    config.training_args.update(clean_args(rest))


def clean_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """TrainingArguments values as written, without the sentinels that mean 'not set'."""
    out = {k: v for k, v in args.items() if v is not None}
    if out.get("max_steps") == -1:
        del out["max_steps"]
    if out.get("num_train_epochs") == UNSET_EPOCHS:
        del out["num_train_epochs"]
    return out


def _says_four_bit(data: Mapping[str, Any]) -> bool:
    quant = data.get("quantization_config")
    if isinstance(quant, Mapping) and _says_four_bit(quant):
        return True
    if data.get("load_in_4bit") is True or "bnb_4bit_quant_type" in data:
        return True
    return data.get("quantization_bit") == 4 or (data.get("bits") == 4 and "quant_type" in data)


def _method(evidence: _Evidence) -> str | None:
    if evidence.peft_type == "IA3":
        return "ia3"
    lora_family = evidence.peft_type == "LORA" or evidence.finetuning_type == "lora"
    if lora_family:
        # QDoRA (4-bit + DoRA) is reported as dora: DoRA's own fixes are the ones that apply.
        if evidence.use_dora:
            return "dora"
        return "qlora" if evidence.four_bit else "lora"
    if evidence.peft_type is None and (evidence.finetuning_type == "full" or evidence.model_weights):
        return "full"
    return None


def _merge_evidence(into: _Evidence, other: _Evidence) -> None:
    into.peft_type = into.peft_type or other.peft_type
    into.use_dora |= other.use_dora
    into.four_bit |= other.four_bit
    into.model_weights |= other.model_weights
    into.finetuning_type = into.finetuning_type or other.finetuning_type


def _load_json(path: Path) -> dict[str, Any] | None:
    """A small JSON config file, or None when it is absent, too big or unreadable (configs are optional)."""
    try:
        if not path.is_file() or path.stat().st_size > _CONFIG_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _load_yaml(path: Path) -> dict[str, Any] | None:
    try:
        if not path.is_file() or path.stat().st_size > _CONFIG_BYTES:
            return None
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
