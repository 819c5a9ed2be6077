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
from reports._param_plots import parallel_figure, slice_figure
from reports._study_facts import SpaceRow, dig, duration_text, one_line, param_text, space_rows, study_facts
from reports._study_plots import curves_figure, history_figure, importance_figure
from reports._study_records import StudyRecord, TrialRecord, curve_of, finite_number
from reports._view import RunError, RunView, run_views

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
    def outcome_text(self) -> str:
        """The outcome and its reason in one phrase: "pruned by Hyperband at step 4"."""
        if not self.reason:
            return self.outcome_label
        if self.reason.lower().startswith(self.outcome_label.lower() + " "):
            return self.reason
        return f"{self.outcome_label}: {self.reason}"

    @property
    def reason_tail(self) -> str:
        """The reason without the words its badge already says ("pruned" by Hyperband ...)."""
        label = self.outcome_label.lower()
        if self.reason.lower().startswith(label + " "):
            return self.reason[len(label) :].lstrip(" :")
        return self.reason


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
        space=space_rows(attrs.get("search_space")),
        space_note=one_line(dig(attrs, "search_space", "description")),
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
    base_loss = finite_number(baseline.get("eval_loss")) if baseline else None
    if base_loss is not None and best.value is not None:
        change = (base_loss - best.value) / abs(base_loss) if base_loss else 0.0
        answer.better = best.value < base_loss
        steps = dig(record.attrs, "budget", "max_steps")
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
        defaults = dict(dig(record.attrs, "search_space", "defaults", "values") or {})
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
        a, b = finite_number(defaults.get(top)), finite_number(defaults.get(bottom))
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
    base_loss = finite_number(baseline.get("eval_loss")) if baseline else None
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


def _subtitle(record: StudyRecord, counts: Counter[str]) -> list[str]:
    parts = [p for p in (one_line(record.attrs.get("method")), _model_name(record.attrs.get("model"))) if p]
    finished = sum(counts[o] for o in OUTCOME_LABELS if o not in ("running", "waiting"))
    parts.append(f"{finished} trial{'s' if finished != 1 else ''} finished")
    if counts["running"]:
        parts.append(f"{counts['running']} running")
    return parts


def _model_name(model: Any) -> str:
    if isinstance(model, Mapping):
        return one_line(model.get("name") or model.get("spec"))
    return one_line(model)


def _step_text(trial: TrialRecord) -> str:
    if trial.best_step is None:
        return ""
    of = f" of {trial.steps_run}" if trial.steps_run else ""
    return f"step {trial.best_step}{of}"


def _loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"
