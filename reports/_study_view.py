"""What the study report shows, prepared once for HTML and Markdown alike.

Like ``_view`` for the diagnosis report: templates get strings and small records, every number is
formatted here, and the figures are drawn once whatever the number of output formats.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from diagnostics import diagnose
from diagnostics.findings import Diagnosis
from reports._figures import figure_to_png_bytes, styled
from reports._run_plot import _short_number
from reports._study_plots import (
    curves_figure,
    history_figure,
    importance_figure,
    parallel_figure,
    slice_figure,
)
from reports._study_records import StudyRecord, TrialRecord, curve_of
from reports._view import RunError, RunView, format_value, run_views

OUTCOME_LABELS = {
    "complete": "complete",
    "pruned": "pruned",
    "diverged": "diverged",
    "nan": "NaN loss",
    "infeasible": "out of memory",
    "failed": "failed",
    "interrupted": "interrupted",
    "running": "running",
    "waiting": "queued",
}
#: Trials whose curves are diagnosed besides the best one: those that went wrong, not those the
#: pruner stopped for being merely worse.
FAILED_OUTCOMES = ("diverged", "nan", "failed", "infeasible")
MAX_FAILED_DIAGNOSES = 3
VERSION_PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "optuna")
QLORA_EMULATION_NOTE = (
    "QLoRA ran with CPU NF4 emulation: there is no CUDA here, so the frozen base was quantised to NF4 "
    "and dequantised again with bitsandbytes' own functions, and LoRA trained on top at full speed. "
    "The loss trajectory matches bitsandbytes 4-bit; the memory saving does not happen on CPU."
)
FIGURE_NOTES = {
    "history": "Each dot is a trial's best eval loss; hollow grey dots are trials stopped early, at the "
    "loss they had reached. The line is the best so far; the dashed line the method's common defaults.",
    "curves": "Every trial's curves over its steps: complete trials in blue, trials stopped early in grey, "
    "the best in red. A curve far above the rest is cut at the top edge.",
    "importance": "How much each parameter set the top trials apart from the rest (PED-ANOVA). It says "
    "what mattered in this study's range, not in general.",
    "slices": "Best eval loss of each complete trial against each parameter (log axes where the space is "
    "searched on a log scale); the star is the best trial.",
    "parallel": "One line per complete trial through its parameter values to its loss.",
}


@dataclass(frozen=True)
class FigureView:
    key: str
    title: str
    png: bytes | None
    note: str
    alt: str
    #: Shown instead of the figure when there is none (too few trials, nothing logged).
    missing: str = ""
    image_path: str | None = None  # set by the Markdown writer


@dataclass(frozen=True)
class ParamRow:
    name: str
    best: str
    default: str
    changed: bool


@dataclass(frozen=True)
class LeaderRow:
    rank: str
    number: int
    outcome: str
    outcome_label: str
    loss: str
    best_step: str
    steps: str
    params: list[str]
    reason: str
    time: str
    is_best: bool

    @property
    def compact(self) -> bool:
        return self.outcome != "complete"

    @property
    def reason_tail(self) -> str:
        """The reason without the words its badge already says ("pruned" by Hyperband ...)."""
        label = self.outcome_label.lower()
        if self.reason.lower().startswith(label + " "):
            return self.reason[len(label) :].lstrip(" :")
        return self.reason


@dataclass(frozen=True)
class SpaceRow:
    name: str
    range: str
    default: str
    source: str


@dataclass
class Answer:
    found: bool
    loss: str = ""
    trial: str = ""
    step: str = ""
    full_split: str = ""
    comparison: str = ""
    better: bool | None = None
    params: list[ParamRow] = field(default_factory=list)
    snippet: str | None = None
    config_yaml: str | None = None
    train_command: str | None = None
    export_note: str = ""


@dataclass
class TrialDiagnosis:
    title: str
    role: str  # "best" | outcome
    reason: str
    run: RunView

    @property
    def role_label(self) -> str:
        return OUTCOME_LABELS.get(self.role, self.role)


@dataclass
class StudyView:
    title: str
    name: str
    subtitle: list[str]
    answer: Answer
    facts: list[tuple[str, str]]
    emulation_note: str | None
    space: list[SpaceRow]
    space_note: str
    counts: list[tuple[str, str, int]]
    param_headers: list[str]
    leaderboard: list[LeaderRow]
    figures: list[FigureView]
    diagnoses: list[TrialDiagnosis]
    diagnoses_omitted: list[int]
    generated: str = ""


def study_view(
    record: StudyRecord,
    *,
    title: str | None = None,
    snippet: str | None = None,
    config_yaml: str | None = None,
    train_command: str | None = None,
    storage: str | None = None,
    export_note: str = "",
) -> StudyView:
    attrs = record.attrs
    baseline = attrs.get("baseline") if isinstance(attrs.get("baseline"), Mapping) else None
    counts = Counter(t.outcome for t in record.trials)
    return StudyView(
        title=title or f"Tuning report: {record.name}",
        name=record.name,
        subtitle=_subtitle(record, counts),
        answer=_answer(record, baseline, snippet, config_yaml, train_command, export_note),
        facts=study_facts(record, storage),
        emulation_note=QLORA_EMULATION_NOTE if attrs.get("qlora_cpu_emulation") else None,
        space=_space_rows(attrs.get("search_space")),
        space_note=_text(_get(attrs, "search_space", "description")),
        counts=[(o, OUTCOME_LABELS[o], counts[o]) for o in OUTCOME_LABELS if counts[o]],
        param_headers=[p.display for p in record.params],
        leaderboard=_leaderboard(record),
        figures=_figures(record, baseline),
        **_diagnoses(record),
    )


# --- the answer --------------------------------------------------------------------------------------


def _answer(
    record: StudyRecord,
    baseline: Mapping[str, Any] | None,
    snippet: str | None,
    config_yaml: str | None,
    train_command: str | None,
    export_note: str,
) -> Answer:
    best = record.best
    if best is None:
        return Answer(found=False, export_note=export_note)
    answer = Answer(
        found=True,
        loss=_loss(best.value),
        trial=str(best.number),
        step=_step_text(best),
        full_split=_loss(best.full_eval_loss) if best.full_eval_loss is not None else "",
        snippet=snippet,
        config_yaml=config_yaml,
        train_command=train_command,
        export_note=export_note,
    )
    base_loss = _finite(baseline.get("eval_loss")) if baseline else None
    if base_loss is not None and best.value is not None:
        change = (base_loss - best.value) / abs(base_loss) if base_loss else 0.0
        answer.better = best.value < base_loss
        steps = _get(record.attrs, "budget", "max_steps")
        same = f" in the same {steps} steps" if steps else ""
        if answer.better:
            answer.comparison = (
                f"{100 * change:.1f}% lower than the method's common defaults{same} "
                f"({_loss(base_loss)} → {_loss(best.value)})."
            )
        else:
            answer.comparison = (
                f"The method's common defaults did as well or better{same}: {_loss(base_loss)} against "
                f"{_loss(best.value)}. Run more trials, or keep the defaults."
            )
    elif baseline is None:
        answer.comparison = (
            "Not compared with the common defaults (run tune study with --baseline to measure them)."
        )
    else:
        answer.comparison = "The common defaults were measured but reached no eval loss."
    answer.params = _param_rows(record, best, baseline)
    return answer


def _param_rows(record: StudyRecord, best: TrialRecord, baseline: Mapping[str, Any] | None) -> list[ParamRow]:
    defaults = _flat_config(baseline.get("config")) if baseline else {}
    if not defaults:
        defaults = dict(_get(record.attrs, "search_space", "defaults", "values") or {})
    rows = []
    for param in record.params:
        if param.name not in best.params:
            continue
        default = _default_of(param.name, param.label, defaults)
        value = best.params[param.name]
        rows.append(
            ParamRow(
                param.display,
                param_text(value),
                "—" if default is None else param_text(default),
                default is not None and param_text(default) != param_text(value),
            )
        )
    return rows


def _default_of(name: str, label: str, defaults: Mapping[str, Any]) -> Any:
    if name in defaults:
        return defaults[name]
    if " / " in label:  # a ratio: lora_alpha / r
        top, bottom = label.split(" / ", 1)
        a, b = _finite(defaults.get(top)), _finite(defaults.get(bottom))
        if a is not None and b:
            ratio = a / b
            return int(ratio) if ratio.is_integer() else ratio
    return None


def _flat_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        return {}
    flat: dict[str, Any] = {}
    for group in ("training_args", "peft", "quantization"):
        if isinstance(config.get(group), Mapping):
            flat.update(config[group])
    return flat


# --- the study ---------------------------------------------------------------------------------------


def study_facts(record: StudyRecord, storage: str | None = None) -> list[tuple[str, str]]:
    """(label, text) rows describing how the study was run; unknown rows are left out."""
    attrs = record.attrs
    rows = [
        ("Model", _model_text(attrs.get("model"))),
        ("Dataset", _dataset_text(attrs.get("dataset"))),
        ("Method", _text(attrs.get("method"))),
        ("Sampler", _text(attrs.get("sampler"))),
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
        return _text(model)
    parts = [_text(model.get("spec") or model.get("name"))]
    if model.get("name") and model.get("spec") and model["name"] != model["spec"]:
        parts[0] += f" ({model['name']})"
    n_params = _finite(model.get("n_params"))
    if n_params:
        parts.append(f"{_count(n_params)} parameters")
    where = " on ".join(_text(model.get(k)) for k in ("dtype", "device") if model.get(k))
    if where:
        parts.append(where)
    if model.get("quantization") not in (None, "", "none"):
        parts.append(f"quantization {model['quantization']}")
    return " · ".join(p for p in parts if p)


def _dataset_text(dataset: Any) -> str:
    if not isinstance(dataset, Mapping):
        return _text(dataset)
    name = _text(dataset.get("spec") or dataset.get("name"))
    extra = [
        f"{k.replace('_', ' ')} {format_value(v)}"
        for k, v in dataset.items()
        if k not in ("spec", "name", "path") and isinstance(v, int | float | str) and not isinstance(v, bool)
    ]
    return " · ".join([name, *extra[:6]]) if name else " · ".join(extra[:6])


def _pruner_text(pruner: Any) -> str:
    names = {"hyperband": "Hyperband", "halving": "successive halving", "median": "median", "none": "none"}
    text = names.get(str(pruner), _text(pruner))
    if text and text != "none":
        text += " on eval loss, plus the diagnostics rules (a diverging or NaN trial stops at once)"
    return text


def _budget_text(budget: Any) -> str:
    if not isinstance(budget, Mapping):
        return _text(budget)
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
        parts.append(_text(hardware))
    if len(workers) > 1:
        parts.append(f"{len(workers)} workers (hardware of the first shown)")
    return " · ".join(parts)


def _versions_text(versions: Any) -> str:
    if not isinstance(versions, Mapping):
        return _text(versions)
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


def _space_rows(space: Any) -> list[SpaceRow]:
    params = space.get("params") if isinstance(space, Mapping) else None
    if not isinstance(params, Mapping):
        return []
    defaults = _get(space, "defaults", "values") or {}
    rows = []
    for name, spec in params.items():
        if not isinstance(spec, Mapping):
            continue
        rows.append(
            SpaceRow(
                str(name),
                _range_text(spec),
                param_text(defaults[name]) if name in defaults else "—",
                _text(spec.get("source")),
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


# --- leaderboard -------------------------------------------------------------------------------------


def leaderboard_order(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Complete trials by loss, then the ones stopped early by the loss they reached, then trials
    without any loss (failed, out of memory), then live ones, each group by trial number."""

    def key(trial: TrialRecord) -> tuple[int, float, int]:
        live = trial.outcome in ("running", "waiting")
        group = 3 if live else 0 if trial.outcome == "complete" else 1 if trial.loss is not None else 2
        return group, trial.loss if trial.loss is not None else math.inf, trial.number

    return sorted(trials, key=key)


def _leaderboard(record: StudyRecord) -> list[LeaderRow]:
    best = record.best
    rows = []
    rank = 0
    for trial in leaderboard_order(record.trials):
        if trial.outcome == "complete":
            rank += 1
        rows.append(
            LeaderRow(
                rank=str(rank) if trial.outcome == "complete" else "",
                number=trial.number,
                outcome=trial.outcome,
                outcome_label=OUTCOME_LABELS.get(trial.outcome, trial.outcome),
                loss=_loss(trial.loss) if trial.loss is not None else "—",
                best_step="" if trial.best_step is None else str(trial.best_step),
                steps="" if trial.steps_run is None else str(trial.steps_run),
                params=[
                    param_text(trial.params[p.name]) if p.name in trial.params else "" for p in record.params
                ],
                reason=trial.reason,
                time=duration_text(trial.duration_s) if trial.duration_s is not None else "",
                is_best=best is not None and trial.number == best.number,
            )
        )
    return rows


# --- figures -----------------------------------------------------------------------------------------


def _figures(record: StudyRecord, baseline: Mapping[str, Any] | None) -> list[FigureView]:
    base_loss = _finite(baseline.get("eval_loss")) if baseline else None
    base_curve = curve_of(baseline.get("curve")) if baseline else None
    best = record.best
    labels = {p.name: p.display for p in record.params}
    few_complete = f"Needs at least two complete trials; this study has {len(record.complete)}."
    with styled():
        drawn = [
            ("history", "Optimisation history", history_figure(record.trials, base_loss), ""),
            (
                "curves",
                "Every trial's curves",
                curves_figure(record.trials, best, base_curve),
                "No trial logged a curve yet.",
            ),
            (
                "importance",
                "Parameter importances",
                importance_figure(record.importances, labels) if record.importances else None,
                record.importance_note or "No importances.",
            ),
            (
                "slices",
                "Eval loss against each parameter",
                slice_figure(record.params, record.trials),
                few_complete,
            ),
            ("parallel", "Parallel coordinates", parallel_figure(record.params, record.trials), few_complete),
        ]
        return [
            FigureView(
                key=key,
                title=title,
                png=figure_to_png_bytes(figure) if figure is not None else None,
                note=FIGURE_NOTES[key],
                alt=f"{title} of study {record.name}",
                missing=missing if figure is None else "",
            )
            for key, title, figure, missing in drawn
        ]


# --- diagnoses ---------------------------------------------------------------------------------------


def _diagnoses(record: StudyRecord) -> dict[str, Any]:
    best = record.best
    failed = [t for t in sorted(record.trials, key=lambda t: t.number) if t.outcome in FAILED_OUTCOMES]
    # one of each way of going wrong first: ten diagnoses of the same divergence teach nothing new
    # (and a curve says more than a one-line error)
    firsts: dict[str, TrialRecord] = {}
    for trial in sorted(failed, key=lambda t: (t.curve is None, t.number)):
        firsts.setdefault(trial.outcome, trial)
    ranked = sorted(failed, key=lambda t: (t.curve is None, firsts.get(t.outcome) is not t, t.number))
    chosen = sorted(ranked[:MAX_FAILED_DIAGNOSES], key=lambda t: t.number)
    subjects: list[tuple[TrialRecord, str]] = [(best, "best")] if best is not None else []
    subjects += [(t, t.outcome) for t in chosen]
    results: list[Diagnosis | RunError] = []
    for trial, _role in subjects:
        if trial.curve is not None:
            trial.curve.name = f"trial {trial.number}"
            results.append(diagnose(trial.curve))
        else:
            results.append(RunError(f"trial {trial.number}", "tune", trial.reason or "no curve was recorded"))
    views = run_views(results)
    diagnoses = []
    for (trial, role), view in zip(subjects, views, strict=True):
        view.anchor = f"trial-{trial.number}"
        title = f"Trial {trial.number}" + (" — the best" if role == "best" else "")
        reason = "" if role == "best" else trial.reason
        diagnoses.append(TrialDiagnosis(title, role, reason, view))
    shown = {t.number for t in chosen}
    omitted = [t.number for t in failed if t.number not in shown]
    return {"diagnoses": diagnoses, "diagnoses_omitted": omitted}


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


def _subtitle(record: StudyRecord, counts: Counter[str]) -> list[str]:
    parts = [p for p in (_text(record.attrs.get("method")), _model_name(record.attrs.get("model"))) if p]
    finished = sum(counts[o] for o in OUTCOME_LABELS if o not in ("running", "waiting"))
    parts.append(f"{finished} trial{'s' if finished != 1 else ''} finished")
    if counts["running"]:
        parts.append(f"{counts['running']} running")
    return parts


def _model_name(model: Any) -> str:
    if isinstance(model, Mapping):
        return _text(model.get("name") or model.get("spec"))
    return _text(model)


def _step_text(trial: TrialRecord) -> str:
    if trial.best_step is None:
        return ""
    of = f" of {trial.steps_run}" if trial.steps_run else ""
    return f"step {trial.best_step}{of}"


def _loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _count(n: float) -> str:
    for size, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f}"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _text(value: Any) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split())
