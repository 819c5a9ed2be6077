"""How a study was run, in words: model, dataset, budget, hardware, versions, time, search space;
and the formatting of parameter values and durations that every part of the study report uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports._run_plot import _short_number
from reports._study_records import StudyRecord, TrialRecord, finite_number
from reports._view import format_value

VERSION_PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "optuna")


@dataclass(frozen=True)
class SpaceRow:
    name: str
    range: str
    default: str
    source: str


def study_facts(record: StudyRecord, storage: str | None = None) -> list[tuple[str, str]]:
    """(label, text) rows describing how the study was run; unknown rows are left out."""
    attrs = record.attrs
    rows = [
        ("Model", _model_text(attrs.get("model"))),
        ("Dataset", _dataset_text(attrs.get("dataset"))),
        ("Method", one_line(attrs.get("method"))),
        ("Sampler", one_line(attrs.get("sampler"))),
        ("Pruner", _pruner_text(attrs.get("pruner"))),
        ("Budget", _budget_text(attrs.get("budget"))),
        ("Hardware", _hardware_text(attrs.get("hardware"), record.trials)),
        ("Versions", _versions_text(attrs.get("versions"))),
        ("Total time", _time_text(record.trials)),
        ("Storage", storage or ""),
    ]
    return [(label, text) for label, text in rows if text]


def _model_text(model: Any) -> str:
    if not isinstance(model, Mapping):
        return one_line(model)
    parts = [one_line(model.get("spec") or model.get("name"))]
    if model.get("name") and model.get("spec") and model["name"] != model["spec"]:
        parts[0] += f" ({model['name']})"
    n_params = finite_number(model.get("n_params"))
    if n_params:
        parts.append(f"{_count(n_params)} parameters")
    where = " on ".join(one_line(model.get(k)) for k in ("dtype", "device") if model.get(k))
    if where:
        parts.append(where)
    if model.get("quantization") not in (None, "", "none"):
        parts.append(f"quantization {model['quantization']}")
    return " · ".join(p for p in parts if p)


def _dataset_text(dataset: Any) -> str:
    if not isinstance(dataset, Mapping):
        return one_line(dataset)
    name = one_line(dataset.get("spec") or dataset.get("name"))
    extra = [
        f"{k.replace('_', ' ')} {format_value(v)}"
        for k, v in dataset.items()
        if k not in ("spec", "name", "path") and isinstance(v, int | float | str) and not isinstance(v, bool)
    ]
    return " · ".join([name, *extra[:6]]) if name else " · ".join(extra[:6])


def _pruner_text(pruner: Any) -> str:
    names = {"hyperband": "Hyperband", "halving": "successive halving", "median": "median", "none": "none"}
    text = names.get(str(pruner), one_line(pruner))
    if text and text != "none":
        text += " on eval loss, plus the diagnostics rules (a diverging or NaN trial stops at once)"
    return text


def _budget_text(budget: Any) -> str:
    if not isinstance(budget, Mapping):
        return one_line(budget)
    parts = []
    if budget.get("n_trials") is not None:
        parts.append(f"{budget['n_trials']} trials")
    if budget.get("max_steps") is not None:
        parts.append(f"{budget['max_steps']} steps each")
    if budget.get("eval_every") is not None:
        examples = f" on {budget['eval_examples']} examples" if budget.get("eval_examples") else ""
        parts.append(f"eval every {budget['eval_every']} steps{examples}")
    if budget.get("max_length") is not None:
        parts.append(f"{budget['max_length']} tokens per example")
    if budget.get("timeout"):
        parts.append(f"timeout {duration_text(float(budget['timeout']))}")
    return " · ".join(parts)


def _hardware_text(hardware: Any, trials: Sequence[TrialRecord]) -> str:
    workers = {t.worker for t in trials if t.worker}
    parts = []
    if isinstance(hardware, Mapping):
        if hardware.get("gpu"):
            memory = f" ({hardware['gpu_memory_gb']} GB)" if hardware.get("gpu_memory_gb") else ""
            parts.append(f"{hardware['gpu']}{memory}")
        elif hardware.get("cuda") is False:
            parts.append("no GPU")
        if hardware.get("cpu_count"):
            parts.append(f"{hardware['cpu_count']} CPU cores")
        if hardware.get("memory_gb"):
            parts.append(f"{hardware['memory_gb']} GB RAM")
        if hardware.get("host"):
            parts.append(f"host {hardware['host']}")
    elif hardware:
        parts.append(one_line(hardware))
    if len(workers) > 1:
        parts.append(f"{len(workers)} workers (hardware of the first shown)")
    return " · ".join(parts)


def _versions_text(versions: Any) -> str:
    if not isinstance(versions, Mapping):
        return one_line(versions)
    known = [p for p in VERSION_PACKAGES if p in versions] + sorted(set(versions) - set(VERSION_PACKAGES))
    return " · ".join(f"{p} {versions[p]}" for p in known)


def _time_text(trials: Sequence[TrialRecord]) -> str:
    starts = [t.started for t in trials if t.started is not None]
    ends = [t.completed for t in trials if t.completed is not None]
    if not starts or not ends:
        return ""
    wall = (max(ends) - min(starts)).total_seconds()
    busy = sum(t.duration_s or 0.0 for t in trials)
    text = f"{duration_text(wall)} from the first trial's start to the last one's end"
    if busy > wall * 1.05:
        text += f" ({duration_text(busy)} of trial time across workers)"
    return text


def space_rows(space: Any) -> list[SpaceRow]:
    params = space.get("params") if isinstance(space, Mapping) else None
    if not isinstance(params, Mapping):
        return []
    defaults = dig(space, "defaults", "values") or {}
    rows = []
    for name, spec in params.items():
        if not isinstance(spec, Mapping):
            continue
        rows.append(
            SpaceRow(
                str(name),
                _range_text(spec),
                param_text(defaults[name]) if name in defaults else "—",
                one_line(spec.get("source")),
            )
        )
    return rows


def _range_text(spec: Mapping[str, Any]) -> str:
    kind = spec.get("kind")
    if kind == "fixed":
        return f"fixed: {param_text(spec.get('value'))}"
    if "choices" in spec:
        choices = "{" + ", ".join(param_text(c) for c in spec.get("choices") or []) + "}"
        return f"{spec.get('of')} × {choices}" if kind == "ratio_of" else choices
    low, high = param_text(spec.get("low")), param_text(spec.get("high"))
    text = f"[{low}, {high}]" + (" log" if spec.get("log") else "")
    return f"{spec.get('of')} × {text}" if kind == "ratio_of" else text


# --- formatting --------------------------------------------------------------------------------------


def param_text(value: Any) -> str:
    """A parameter value as short as a TrainingArguments value is written (``2e-4``, ``0.05``)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0.0"
        if value.is_integer() and abs(value) < 1e4:
            return f"{value:.1f}"  # 1.0: a float argument stays a float
        if 1e-3 <= abs(value) < 1e4:
            return f"{value:.3g}"
        return _short_number(float(f"{value:.2e}"))
    return format_value(value)


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _count(n: float) -> str:
    for size, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f}"


def dig(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def one_line(value: Any) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split())
