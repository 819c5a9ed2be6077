"""2-fold cross-validation of the rule thresholds on labelled real logs.

Fitting thresholds to 50 logs says little about logs nobody has seen. This script splits the
labelled logs in two halves (alternating in file order), chooses each rule's threshold on one half
from a grid around its documented value (coordinate ascent on macro-F1, two passes, ties keep the
documented value), scores the other half with those thresholds, and does the same the other way
round. It prints the held-out scores next to the score of the documented thresholds, so the gap
between "fitted here" and "seen fresh" is visible.

    python tests/benchmarks/cross_validate_rules.py [LOGDIR]

Scoring is that of ../shared/tools/score_diagnose.py: per-condition F1 averaged over the conditions
present in the scored set, and the share of correct primary conditions.
"""

from __future__ import annotations

import csv
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from diagnostics import diagnose  # noqa: E402
from diagnostics.findings import CONDITIONS  # noqa: E402
from diagnostics.readers import read_runs  # noqa: E402

# (rule module, constant, grid). The documented value is always in its grid.
GRID: list[tuple[str, str, Sequence[float]]] = [
    ("still_falling", "STEEP_SLOPE", (-0.01, -0.015, -0.02, -0.03, -0.04)),
    ("still_falling", "UNCONVERGED_SHARE", (0.1, 0.15, 0.2, 0.25)),
    ("still_falling", "CHECKPOINT_SLOPE", (-0.005, -0.0075, -0.01, -0.015)),
    ("still_falling", "MIN_SHARE", (0.02, 0.03, 0.05, 0.08, 0.1)),
    ("still_falling", "ANNEALED", (0.05, 0.1, 0.2)),
    ("no_progress", "MAX_TOTAL_DROP", (0.05, 0.08, 0.1, 0.15, 0.2)),
    ("no_progress", "MAX_EARLY_DROP", (0.02, 0.05, 0.08)),
    ("no_progress", "MAX_EVAL_MOVE", (0.005, 0.01, 0.02)),
    ("epoch_staircase", "MIN_DROP", (0.03, 0.05, 0.08, 0.12)),
    ("epoch_staircase", "MIN_Z", (1.5, 2.0, 3.0)),
    ("eval_loss_rising", "MIN_RISE", (0.005, 0.01, 0.02, 0.04)),
    ("eval_loss_rising", "CLEAR_RISE", (0.03, 0.05, 0.08)),
    ("loss_oscillating", "MIN_RELATIVE_NOISE", (0.05, 0.1, 0.15, 0.2)),
    ("loss_oscillating", "MIN_NOISE_TO_PROGRESS", (0.25, 0.5, 1.0)),
    ("loss_collapse", "MAX_END_FRACTION", (0.05, 0.1, 0.15, 0.2)),
    ("loss_collapse", "EVAL_GAP", (3.0, 5.0, 10.0)),
    ("rising_loss", "RISE_FACTOR", (1.25, 1.5, 2.0)),
]


def score(items: list[tuple[str, object, set[str], str]]) -> tuple[float, float]:
    """(macro-F1, primary accuracy) of the current thresholds on ``items``."""
    tp = dict.fromkeys(CONDITIONS, 0)
    fp, fn = dict(tp), dict(tp)
    primary_ok = 0
    for _, run, want, want_primary in items:
        diagnosis = diagnose(run)
        got = set(diagnosis.conditions)
        for c in CONDITIONS:
            tp[c] += c in got and c in want
            fp[c] += c in got and c not in want
            fn[c] += c in want and c not in got
        primary_ok += diagnosis.primary == want_primary
    f1s = []
    for c in CONDITIONS:
        if tp[c] + fn[c] == 0:
            continue
        precision = tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else 0.0
        recall = tp[c] / (tp[c] + fn[c])
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return (sum(f1s) / len(f1s) if f1s else 0.0), primary_ok / max(len(items), 1)


def fit(items, modules, defaults) -> dict[tuple[str, str], float]:
    """Coordinate ascent on macro-F1 over GRID; ties keep the documented value."""
    chosen = dict(defaults)
    for _ in range(2):
        for module, name, grid in GRID:
            best_value, best_score = chosen[(module, name)], -1.0
            for value in sorted(grid, key=lambda v: v != defaults[(module, name)]):
                setattr(modules[module], name, value)
                macro, _ = score(items)
                if macro > best_score + 1e-9:
                    best_value, best_score = value, macro
            chosen[(module, name)] = best_value
            setattr(modules[module], name, best_value)
    return chosen


def apply(values, modules) -> None:
    for (module, name), value in values.items():
        setattr(modules[module], name, value)


def main() -> None:
    logdir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "real_logs"
    with open(logdir / "labels.tsv") as handle:
        labels = list(csv.DictReader(handle, delimiter="\t"))
    items = []
    for row in sorted(labels, key=lambda r: r["file"]):
        read = read_runs(logdir / row["file"])[0]
        if read.run is None:
            print(f"unreadable: {row['file']}: {read.error}")
            continue
        want = {c.strip() for c in row["conditions"].split(",") if c.strip()}
        items.append((row["file"], read.run, want, row["primary"]))
    modules = {m: importlib.import_module(f"diagnostics.rules.{m}") for m, _, _ in GRID}
    defaults = {(m, n): getattr(modules[m], n) for m, n, _ in GRID}

    full_macro, full_primary = score(items)
    print(
        f"documented thresholds, all {len(items)} logs: "
        f"macro_F1={full_macro:.3f} primary_acc={full_primary:.3f}"
    )
    halves = (items[0::2], items[1::2])
    held_out = []
    for k, (train, test) in enumerate((halves, halves[::-1])):
        apply(defaults, modules)
        documented_test = score(test)
        chosen = fit(train, modules, defaults)
        fitted_train = score(train)
        fitted_test = score(test)
        held_out.append(fitted_test)
        changed = {f"{m}.{n}": v for (m, n), v in chosen.items() if v != defaults[(m, n)]}
        print(
            f"fold {k + 1}: fit on {len(train)} logs macro_F1={fitted_train[0]:.3f}; "
            f"held-out {len(test)} logs: fitted macro_F1={fitted_test[0]:.3f} primary={fitted_test[1]:.3f}, "
            f"documented macro_F1={documented_test[0]:.3f} primary={documented_test[1]:.3f}"
        )
        print(f"        thresholds moved by the fit: {changed or 'none'}")
    apply(defaults, modules)
    mean_macro = sum(h[0] for h in held_out) / 2
    mean_primary = sum(h[1] for h in held_out) / 2
    print(
        f"cross-validated (mean of held-out halves): "
        f"macro_F1={mean_macro:.3f} primary_acc={mean_primary:.3f}; "
        f"gap to the full-set score: {full_macro - mean_macro:+.3f}"
    )


if __name__ == "__main__":
    main()
