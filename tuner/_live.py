"""What a person watching ``tune study`` sees: a rich live view of the study and its running trial.

The study talks to a *view* through six calls (``start``, ``update``, ``trial_started``, ``step``,
``trial_finished``, ``message``); :class:`NullView` ignores them, :class:`LiveView` draws them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


@dataclass
class StudyCounts:
    """Trials of a study by what became of them. ``finished`` ones count toward ``n_trials``:
    interrupted trials and trials of dead workers (re-queued by the heartbeat) do not."""

    n_trials: int
    complete: int = 0
    pruned: int = 0
    infeasible: int = 0
    failed: int = 0
    interrupted: int = 0
    running: int = 0
    waiting: int = 0
    best_value: float | None = None
    best_trial: int | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.infeasible + self.failed

    @classmethod
    def of(cls, study: optuna.Study, n_trials: int) -> StudyCounts:
        counts = cls(n_trials)
        for trial in study.get_trials(deepcopy=False):
            outcome = trial.user_attrs.get("outcome")
            if trial.state == TrialState.COMPLETE:
                counts.complete += 1
                if trial.value is not None and (counts.best_value is None or trial.value < counts.best_value):
                    counts.best_value, counts.best_trial = trial.value, trial.number
            elif trial.state == TrialState.PRUNED:
                if outcome == "infeasible":
                    counts.infeasible += 1
                else:
                    counts.pruned += 1
            elif trial.state == TrialState.FAIL:
                if outcome == "failed":
                    counts.failed += 1
                elif outcome == "interrupted":
                    counts.interrupted += 1
            elif trial.state == TrialState.RUNNING:
                counts.running += 1
            elif trial.state == TrialState.WAITING:
                counts.waiting += 1
        return counts

    def summary(self) -> str:
        parts = [f"{self.complete} complete", f"{self.pruned} pruned", f"{self.infeasible} out of memory"]
        parts.append(f"{self.failed} failed")
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted")
        if self.running:
            parts.append(f"{self.running} running")
        return ", ".join(parts)


class NullView:
    """Draws nothing (library use, tests)."""

    def start(self, study_name: str, n_trials: int, counts: StudyCounts) -> None: ...

    def update(self, counts: StudyCounts) -> None: ...

    def trial_started(self, number: int | str, config: Any) -> None: ...

    def step(self, step: int, max_steps: int, loss: float | None) -> None: ...

    def trial_finished(self, number: int | str, outcome: Any) -> None: ...

    def message(self, text: str) -> None: ...

    def __enter__(self) -> NullView:
        return self

    def __exit__(self, *exc: object) -> None: ...


@dataclass
class _Running:
    number: int | str
    params: str
    step: int = 0
    max_steps: int = 0
    loss: float | None = None


@dataclass
class LiveView(NullView):
    """A live panel: trial n/N, the current best, the running trial's steps, outcome counts, and
    the last finished trials."""

    console: Console = field(default_factory=lambda: Console(stderr=True))
    history: int = 8

    def __post_init__(self) -> None:
        self._name = ""
        self._counts = StudyCounts(0)
        self._running: _Running | None = None
        self._rows: list[tuple[str, str, str, str, str]] = []
        self._live = Live(console=self.console, refresh_per_second=4, get_renderable=self._render)

    def __enter__(self) -> LiveView:
        # Not a terminal (a CI log, a pipe): one line per finished trial instead of a live panel.
        if self.console.is_terminal:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = None
        if self._live.is_started:
            self._live.stop()

    def start(self, study_name: str, n_trials: int, counts: StudyCounts) -> None:
        self._name, self._counts = study_name, counts

    def update(self, counts: StudyCounts) -> None:
        self._counts = counts

    def trial_started(self, number: int | str, config: Any) -> None:
        values = dict(config) if isinstance(config, dict) else config.values()  # a TrialConfig
        shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items() if k in _SHOWN)
        self._running = _Running(number, shown)

    def step(self, step: int, max_steps: int, loss: float | None) -> None:
        if self._running is not None:
            self._running.step, self._running.max_steps, self._running.loss = step, max_steps, loss

    def trial_finished(self, number: int | str, outcome: Any) -> None:
        params = self._running.params if self._running else ""
        self._running = None
        value = "-" if outcome.best_eval_loss is None else f"{outcome.best_eval_loss:.4f}"
        self._rows.append(
            (str(number), outcome.state, value, str(outcome.steps_run), f"{params}  {outcome.reason}")
        )
        self._rows = self._rows[-self.history :]
        if not self._live.is_started:
            self.console.print("trial " + "  ".join(self._rows[-1]), highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text)

    def _render(self) -> Group:
        counts = self._counts
        current = min(counts.finished + 1, max(counts.n_trials, 1))
        best = (
            "none yet"
            if counts.best_value is None
            else f"{counts.best_value:.4f} (trial {counts.best_trial})"
        )
        head = Text.assemble(
            ("tune study ", "bold"),
            (self._name, "cyan"),
            f"  trial {current}/{counts.n_trials}  best eval loss ",
            (best, "green"),
        )
        parts: list[Any] = [head, Text(counts.summary(), style="dim")]
        if self._running is not None:
            run = self._running
            loss = "" if run.loss is None or not math.isfinite(run.loss) else f"  loss {run.loss:.4f}"
            parts.append(
                Text(f"running trial {run.number}: step {run.step}/{run.max_steps}{loss}  {run.params}")
            )
        if self._rows:
            table = Table(box=None, pad_edge=False, show_edge=False)
            for column in ("trial", "outcome", "best eval", "steps", "configuration / reason"):
                table.add_column(column, overflow="fold")
            for row in self._rows:
                table.add_row(*row, style=_STYLE.get(row[1], ""))
            parts.append(table)
        return Group(*parts)


_SHOWN = ("learning_rate", "r", "lora_alpha", "lora_dropout", "effective_batch_size", "warmup_ratio")
_STYLE = {"complete": "green", "pruned": "yellow", "diverged": "red", "nan": "red", "infeasible": "magenta"}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
