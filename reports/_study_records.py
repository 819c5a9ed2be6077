"""A tuning study as plain records: the one place where ``reports`` reads Optuna.

``study_record(study)`` turns an ``optuna.Study`` (any storage) into a :class:`StudyRecord`: the
study's user attributes as ``tune study`` writes them, the searched parameters, one
:class:`TrialRecord` per trial (its outcome and reason, losses, steps, curve, timings) and the
parameter importances. Everything after this module works on these records, so a report can also
be drawn from records built by hand. Old studies may lack any attribute: every field is optional.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from diagnostics.runlog import RunLog

#: What became of a trial, in the words of ``tune``'s trial outcomes (plus Optuna's live states).
OUTCOMES = (
    "complete",
    "pruned",
    "diverged",
    "nan",
    "infeasible",
    "failed",
    "interrupted",
    "running",
    "waiting",
)
#: Fewer complete trials than this and importances say nothing (PED-ANOVA needs a top group of
#: at least two trials and a rest to compare it with).
MIN_TRIALS_FOR_IMPORTANCE = 6
IMPORTANCE_METHOD = "PED-ANOVA (Optuna's PedAnovaImportanceEvaluator)"


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter as Optuna samples it (``lora_alpha_ratio``, not ``lora_alpha``)."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    #: How a reader knows it: "lora_alpha / r" for a ratio.
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass
class TrialRecord:
    """One trial: what it tried, how far it got and what became of it."""

    number: int
    outcome: str
    params: dict[str, Any] = field(default_factory=dict)
    #: The objective (best eval loss) of a complete trial.
    value: float | None = None
    #: Best eval loss seen, for any outcome (a pruned trial has one too).
    best_eval_loss: float | None = None
    best_step: int | None = None
    steps_run: int | None = None
    reason: str = ""
    finding_code: str | None = None
    full_eval_loss: float | None = None
    curve: RunLog | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    started: datetime | None = None
    completed: datetime | None = None
    worker: str | None = None
    per_device_train_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None

    @property
    def loss(self) -> float | None:
        """The number this trial is ranked by: its objective, else the best eval loss it saw."""
        value = self.value if self.value is not None else self.best_eval_loss
        return value if value is not None and math.isfinite(value) else None


@dataclass
class StudyRecord:
    """A study and its trials, as ``reports`` draws them."""

    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: list[ParamSpec] = field(default_factory=list)
    trials: list[TrialRecord] = field(default_factory=list)
    direction: str = "minimize"
    importances: dict[str, float] | None = None
    importance_method: str = IMPORTANCE_METHOD
    #: Why there are no importances (too few trials, ...), shown instead of the plot.
    importance_note: str | None = None

    @property
    def complete(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.outcome == "complete" and t.value is not None]

    @property
    def best(self) -> TrialRecord | None:
        complete = self.complete
        return min(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type,return-value]


def study_record(study: Any, *, importances: bool = True) -> StudyRecord:
    """The plain record of an ``optuna.Study`` (see the module docstring)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    attrs = dict(study.user_attrs)
    record = StudyRecord(
        name=str(study.study_name),
        attrs=attrs,
        params=_param_specs(trials, attrs.get("search_space")),
        trials=[_trial_record(t, TrialState) for t in trials],
        direction=_direction(study),
    )
    if importances:
        record.importances, record.importance_note = param_importances(study, record)
    return record


def param_importances(study: Any, record: StudyRecord) -> tuple[dict[str, float] | None, str | None]:
    """PED-ANOVA importances of the searched parameters, or ``None`` and the reason why not.

    PED-ANOVA (Optuna's default evaluator) needs no scikit-learn and takes milliseconds. It asks
    which values the top trials share; on small studies the top group is widened so it holds at
    least three trials.
    """
    import optuna

    n_complete = len(record.complete)
    if n_complete < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (
            f"Parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials; "
            f"this study has {n_complete}."
        )
    searched = [p.name for p in record.params if _varies(p, record.complete)]
    if len(searched) < 2:
        return None, "Importances compare parameters; fewer than two of them varied across complete trials."
    quantile = min(0.5, max(0.1, 3 / n_complete))
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study, evaluator=evaluator, params=searched)
    except Exception as error:  # an evaluator edge case must not cost the user the report
        return None, f"Parameter importances could not be computed: {type(error).__name__}: {error}"
    cleaned = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    if not cleaned or sum(cleaned.values()) <= 0:
        return None, "The top trials share no parameter values that set them apart (all importances are 0)."
    return dict(sorted(cleaned.items(), key=lambda kv: -kv[1])), None


def _direction(study: Any) -> str:
    try:
        return "maximize" if study.direction.name == "MAXIMIZE" else "minimize"
    except (RuntimeError, AttributeError):
        return "minimize"


def _trial_record(trial: Any, states: Any) -> TrialRecord:
    user = trial.user_attrs
    outcome = _outcome(trial, user, states)
    value = trial.value if trial.state == states.COMPLETE and trial.value is not None else None
    duration = None
    if trial.datetime_start and trial.datetime_complete:
        duration = (trial.datetime_complete - trial.datetime_start).total_seconds()
    seconds = user.get("seconds") if isinstance(user.get("seconds"), Mapping) else {}
    return TrialRecord(
        number=int(trial.number),
        outcome=outcome,
        params=dict(trial.params),
        value=finite_number(value),
        best_eval_loss=finite_number(user.get("best_eval_loss", value)),
        best_step=_int(user.get("best_step")),
        steps_run=_int(user.get("steps_run")),
        reason=_reason(outcome, user, trial),
        finding_code=user.get("finding_code"),
        full_eval_loss=finite_number(user.get("full_eval_loss")),
        curve=curve_of(user.get("curve")),
        seconds={str(k): float(v) for k, v in seconds.items() if finite_number(v) is not None},
        duration_s=duration,
        started=trial.datetime_start,
        completed=trial.datetime_complete,
        worker=user.get("worker"),
        per_device_train_batch_size=_int(user.get("per_device_train_batch_size")),
        gradient_accumulation_steps=_int(user.get("gradient_accumulation_steps")),
    )


def _outcome(trial: Any, user: Mapping[str, Any], states: Any) -> str:
    if trial.state == states.RUNNING:
        return "running"
    if trial.state == states.WAITING:
        return "waiting"
    stored = user.get("outcome")
    if stored in OUTCOMES:
        # a FAIL trial whose attrs still say "complete" (it raised after training) failed
        return "failed" if stored == "complete" and trial.state != states.COMPLETE else stored
    return {states.COMPLETE: "complete", states.PRUNED: "pruned"}.get(trial.state, "failed")


_STORED_PRUNE = re.compile(r"^pruned at step (\d+): (.*)$")
_PRUNER_NAMES = {"hyperband": "Hyperband", "halving": "successive halving", "median": "the median pruner"}
_EVAL_LOSS = re.compile(r"eval loss ([-+0-9.eE]+|nan|inf)")


def _reason(outcome: str, user: Mapping[str, Any], trial: Any) -> str:
    """One line saying why a trial ended (empty for complete and live trials)."""
    if outcome in ("complete", "running", "waiting"):
        return ""
    text = " ".join(str(user.get("reason") or "").split())
    if outcome == "pruned":
        text = _pruned_text(text, trial)
    if not text:
        text = str(trial.system_attrs.get("fail_reason") or "") if hasattr(trial, "system_attrs") else ""
        text = " ".join(text.split())
    if not text and outcome == "failed":
        text = "failed (no reason recorded; its worker may have died)"
    return text


def _pruned_text(stored: str, trial: Any) -> str:
    """ "pruned by Hyperband at step 4 (eval loss 2.31)", whichever way the tuner worded it
    ("pruned at step 4: by the hyperband pruner (eval loss 2.31)", "... pruned by hyperband at step 4")."""
    match = _STORED_PRUNE.match(stored)
    if match is None:
        if stored:
            return stored
        step = max(trial.intermediate_values, default=None)
        return "pruned" + (f" at step {step}" if step is not None else "")
    step, rest = match.groups()
    pruner = next((nice for raw, nice in _PRUNER_NAMES.items() if raw in rest.lower()), None)
    if pruner is None:
        return stored
    loss = _EVAL_LOSS.search(rest)
    return f"pruned by {pruner} at step {step}" + (f" (eval loss {loss.group(1)})" if loss else "")


def curve_of(stored: Any) -> RunLog | None:
    """The trial's curve from its ``curve`` attribute (``RunLog.to_dict()`` as JSON or a dict)."""
    if not stored:
        return None
    try:
        data = json.loads(stored) if isinstance(stored, str) else stored
        run = RunLog.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return run if run.points else None


def _param_specs(trials: list[Any], space: Any) -> list[ParamSpec]:
    """The searched parameters in the search space's order (then any others, by first use)."""
    distributions: dict[str, Any] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            distributions.setdefault(name, distribution)
    ratio_labels, order = _space_hints(space)
    names = sorted(distributions, key=lambda n: (order.get(n, len(order)), n))
    return [_spec(name, distributions[name], ratio_labels.get(name, "")) for name in names]


def _space_hints(space: Any) -> tuple[dict[str, str], dict[str, int]]:
    labels: dict[str, str] = {}
    order: dict[str, int] = {}
    params = space.get("params") if isinstance(space, Mapping) else None
    if not isinstance(params, Mapping):
        return labels, order
    for index, (name, spec) in enumerate(params.items()):
        if isinstance(spec, Mapping) and spec.get("kind") == "ratio_of":
            labels[f"{name}_ratio"] = f"{name} / {spec.get('of')}"
            order[f"{name}_ratio"] = index
        else:
            order[str(name)] = index
    return labels, order


def _spec(name: str, distribution: Any, label: str) -> ParamSpec:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return ParamSpec(name, "categorical", choices=tuple(distribution.choices), label=label)
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    if isinstance(distribution, IntDistribution | FloatDistribution):
        return ParamSpec(
            name, kind, float(distribution.low), float(distribution.high), bool(distribution.log), label=label
        )
    return ParamSpec(name, "categorical", label=label)


def _varies(param: ParamSpec, trials: list[TrialRecord]) -> bool:
    values = {repr(t.params.get(param.name)) for t in trials if param.name in t.params}
    return len(values) > 1


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None else int(number)
