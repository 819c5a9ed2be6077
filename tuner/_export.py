"""The best configuration as a user takes it away: ``best_config.yaml`` and a Python snippet.

Search spaces speak one vocabulary (``warmup_ratio`` as a fraction, ``effective_batch_size``);
TrainingArguments speaks another that changed between transformers 4.x and 5.x. Everything the
tool writes or trains with goes through :func:`installed_training_args`, so the output can be
pasted into a script for the transformers that is installed.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuner.methods import get_method

CONFIG_FILE = "best_config.yaml"
SNIPPET_FILE = "best_config.py"


class ConfigError(ValueError):
    """A best_config.yaml that can't be read; ``str(e)`` is one line."""


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def split_batch(effective: int, max_micro_batch: int) -> tuple[int, int]:
    """(per_device_train_batch_size, gradient_accumulation_steps) with the largest micro batch
    that divides ``effective`` and is at most ``max_micro_batch``."""
    effective = max(1, int(effective))
    micro = max(d for d in range(1, min(effective, max(1, max_micro_batch)) + 1) if effective % d == 0)
    return micro, effective // micro


def installed_training_args(
    values: dict[str, Any], *, max_micro_batch: int = 1 << 30, major: int | None = None
) -> dict[str, Any]:
    """``values`` (search-space, 4.x or 5.x names) as TrainingArguments keywords of the installed
    transformers (or of ``major``)."""
    major = transformers_major() if major is None else major
    out = dict(values)
    effective = out.pop("effective_batch_size", None)
    if effective is not None:
        micro, accumulation = split_batch(effective, max_micro_batch)
        out["per_device_train_batch_size"] = micro
        out["gradient_accumulation_steps"] = accumulation
    if "evaluation_strategy" in out:
        out.setdefault("eval_strategy", out.pop("evaluation_strategy"))
    ratio = out.pop("warmup_ratio", None)
    steps = out.get("warmup_steps")
    if major >= 5:
        # 5.x dropped warmup_ratio: a float warmup_steps below 1 is read as a ratio.
        if ratio is not None and not steps:
            out["warmup_steps"] = float(ratio)
        if out.pop("group_by_length", False):
            out["train_sampling_strategy"] = "group_by_length"
    else:
        if isinstance(steps, float) and 0 < steps < 1:
            ratio = out.pop("warmup_steps")
        if ratio is not None:
            out["warmup_ratio"] = float(ratio)
        if out.pop("train_sampling_strategy", None) == "group_by_length":
            out["group_by_length"] = True
    return out


@dataclass
class BestConfig:
    """The best trial's configuration, in the names of the installed libraries."""

    method: str
    model: str
    dataset: str
    training_args: dict[str, Any]
    peft: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    max_length: int = 128
    #: Where it came from: study name, trial number, eval losses, versions.
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BestConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: Path) -> BestConfig:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read: {' '.join(str(error).split())[:200]}") from None
        if not isinstance(data, dict) or not {"method", "model", "dataset", "training_args"} <= set(data):
            raise ConfigError(f"{path}: not a best_config.yaml (needs method, model, dataset, training_args)")
        for section in ("training_args", "peft", "quantization"):
            if not isinstance(data.get(section) or {}, dict):
                raise ConfigError(f"{path}: {section} must be a mapping of argument names to values")
            data[section] = {key: _yaml_number(value) for key, value in (data.get(section) or {}).items()}
        return cls.from_dict(data)


# YAML 1.1 (PyYAML) reads ``2e-4`` as a string: only ``2.0e-4`` is a float there. People write the
# former by hand, so a value that looks like a number in scientific notation is taken as one.
_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _yaml_number(value: Any) -> Any:
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


def write_best_config(best: BestConfig, out_dir: Path) -> tuple[Path, Path]:
    """Write ``best_config.yaml`` and ``best_config.py`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = best.provenance
    header = (
        f"# Best configuration of study {source.get('study')!r} (trial {source.get('trial')}), "
        f"written by `tune`.\n# Train it: tune train --config {CONFIG_FILE}\n"
    )
    yaml_path = out_dir / CONFIG_FILE
    yaml_path.write_text(header + yaml.safe_dump(_plain(best.to_dict()), sort_keys=False))
    py_path = out_dir / SNIPPET_FILE
    py_path.write_text(python_snippet(best))
    return yaml_path, py_path


def python_snippet(best: BestConfig) -> str:
    """Python that builds the TrainingArguments / peft config / BitsAndBytesConfig of ``best``."""
    import transformers

    method = get_method(best.method)
    source = best.provenance
    lines = [
        f'"""Best trial {source.get("trial")} of study {source.get("study")!r}: '
        f"eval loss {_fmt(source.get('eval_loss'))}"
        + (
            f" ({_fmt(source.get('eval_loss_full_split'))} on the whole eval split)"
            if source.get("eval_loss_full_split") is not None
            else ""
        )
        + f".\n\nWritten for transformers {transformers.__version__}; "
        f"method {best.method}, model {best.model}.\n"
        '"""',
        "",
    ]
    imports = ["from transformers import TrainingArguments"]
    if best.quantization:
        imports = ["import torch", "from transformers import BitsAndBytesConfig, TrainingArguments"]
    if method.peft_config_class:
        imports.append(f"from peft import {method.peft_config_class}")
    lines += [*sorted(imports), ""]
    args = {"output_dir": "outputs", **best.training_args}
    lines.append(_call("training_args", "TrainingArguments", args, _training_arg_comments()))
    if method.peft_config_class:
        peft_values = {**best.peft, "task_type": "CAUSAL_LM"}
        lines.append(_call("peft_config", method.peft_config_class, peft_values, {}))
    if best.quantization:
        lines.append(_call("bnb_config", "BitsAndBytesConfig", best.quantization, {}))
    return "\n".join(lines)


def _training_arg_comments() -> dict[str, str]:
    if transformers_major() >= 5:
        return {"warmup_steps": "a float below 1 is a ratio of the total steps (transformers 5.x)"}
    return {}


def _call(variable: str, callee: str, kwargs: dict[str, Any], comments: dict[str, str]) -> str:
    rows = [f"{variable} = {callee}("]
    for key, value in kwargs.items():
        comment = f"  # {comments[key]}" if key in comments else ""
        rows.append(f"    {key}={_python_value(key, value)},{comment}")
    rows.append(")\n")
    return "\n".join(rows)


def _python_value(key: str, value: Any) -> str:
    if key.endswith("_dtype") and isinstance(value, str) and value not in ("auto",):
        return f"torch.{value.removeprefix('torch.')}"
    if isinstance(value, float):
        return _fmt(value)
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return repr(float(f"{value:.6g}"))
    return str(value)


def _plain(value: Any) -> Any:
    """YAML-safe: tuples as lists, floats rounded to 6 significant digits, numpy scalars unwrapped."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value
