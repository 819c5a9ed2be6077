"""``tune``: Optuna studies of short real fine-tuning trials, per method.

    tune study --method qlora            # search, then write best_config.yaml / best_config.py
    tune space --method lora             # what is searched, and where each range comes from
    tune best tune_runs/<study>          # the best trial of a study (any storage) as config + code
    tune report tune_runs/<study>        # report.html + report.md of a study (any storage)
    tune train --config best_config.yaml # full-length training with it; saves the adapter

A thin layer over ``tuner.run_study``, ``tuner.best_config`` and ``tuner.train_best``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="tune",
    help="Optuna studies of short real fine-tuning trials (full, LoRA, QLoRA, DoRA, (IA)^3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

MethodOpt = Annotated[
    str, typer.Option("--method", "-m", help="Fine-tuning method: full, lora, qlora, dora or ia3.")
]
StudyArg = Annotated[
    str,
    typer.Argument(metavar="STUDY", help="A study folder (holding study.db), a .db file, or a study name."),
]
StorageOpt = Annotated[str | None, typer.Option(help="Storage URL when STUDY is a study name.")]
SpaceOpt = Annotated[
    Path | None,
    typer.Option(help="Your own search-space YAML (schema: search_spaces/README.md; `extends: lora` works)."),
]


# The errors a user can cause, matched by name, not imported: importing the modules that define them
# loads torch and transformers, which `tune space` never needs.
_USER_ERRORS = frozenset(
    {
        ("search_spaces._params", "SpaceError"),
        ("tuner._model", "ModelError"),
        ("tuner._data", "DataError"),
        ("tuner._study", "StudyError"),
        ("tuner._storage", "StorageError"),
        ("tuner.methods", "UnknownMethodError"),
        ("tuner._pruning", "PrunerError"),
        ("tuner._export", "ConfigError"),
    }
)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can cause end the command with one line and exit status 2, never a traceback."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
        err.print(f"[red]tune: error:[/red] {error.strerror}: {error.filename}", highlight=False)
        raise typer.Exit(2) from None
    except Exception as error:
        if not any((c.__module__, c.__name__) in _USER_ERRORS for c in type(error).__mro__):
            raise
        err.print(f"[red]tune: error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None


def _quiet_libraries() -> None:
    import optuna
    import transformers

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        import datasets

        datasets.disable_progress_bars()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _view(quiet: bool):  # -> LiveView | NullView
    from tuner._live import LiveView, NullView

    return NullView() if quiet else LiveView(console=err)


@app.command()
def study(
    method: MethodOpt = "lora",
    model: Annotated[
        str | None,
        typer.Option(
            help="Base model: a folder, a .gguf file, a hub name, or tiny-llama. Default: SmolLM2-135M."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="JSON/JSONL/CSV/Parquet file, folder or hub name. Default: the built-in stdlib set."
        ),
    ] = None,
    space: SpaceOpt = None,
    n_trials: Annotated[
        int, typer.Option(help="Finished trials the study should hold (resuming counts earlier ones).")
    ] = 8,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps per trial (the pruner's resource).")] = 8,
    eval_every: Annotated[int, typer.Option(help="Evaluate (and report to the pruner) every N steps.")] = 4,
    eval_examples: Annotated[
        int,
        typer.Option(help="Fixed eval subset used during trials; the best is evaluated on the whole split."),
    ] = 32,
    eval_batch_size: Annotated[int, typer.Option(help="Batch size of the (gradient-free) evaluation.")] = 16,
    max_length: Annotated[int, typer.Option(help="Tokens per example (longer ones are truncated).")] = 128,
    max_examples: Annotated[
        int | None, typer.Option(help="Use at most this many examples of the dataset.")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the sampler, the data order and adapter initialisation.")
    ] = 0,
    pruner: Annotated[
        str,
        typer.Option(
            help="hyperband (default), halving, median or none; NaN / diverging trials stop anyway."
        ),
    ] = "hyperband",
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL, e.g. postgresql://user@host/db to share the study between processes "
            "and machines. Default: sqlite:///<out>/study.db."
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study name. Default: <method>-<model>-<dataset>.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder. Default: tune_runs/<study-name>.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N]. Default: cuda when available.")] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also train the method's common defaults for the same steps, for comparison.")
    ] = False,
    max_micro_batch: Annotated[
        int, typer.Option(help="Largest per-device batch tried; halved automatically on out-of-memory.")
    ] = 16,
    heartbeat_interval: Annotated[
        int, typer.Option(help="Seconds between a running trial's heartbeats in the storage.")
    ] = 30,
    grace_period: Annotated[
        int,
        typer.Option(
            help="Seconds without a heartbeat after which a trial's worker counts as dead (retried)."
        ),
    ] = 120,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view.")] = False,
) -> None:
    """Search hyperparameters with short real trials; write the best as best_config.yaml and .py.

    Run the same command again to resume (an interrupted trial is re-run); run it in several
    processes or machines with one --storage to share the study.
    """
    from tuner._study import StudyInterrupted, StudySettings, run_study

    _quiet_libraries()
    settings = StudySettings(
        method=method,
        model=model,
        dataset=dataset,
        space=space,
        n_trials=n_trials,
        timeout=timeout,
        max_steps=max_steps,
        eval_every=eval_every,
        eval_examples=eval_examples,
        eval_batch_size=eval_batch_size,
        max_length=max_length,
        max_examples=max_examples,
        seed=seed,
        pruner=pruner,
        storage=storage,
        study_name=study_name,
        out=out_dir,
        device=device,
        baseline=baseline,
        max_micro_batch=max_micro_batch,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
    )
    with _user_errors():
        try:
            with _view(quiet) as view:
                result = run_study(settings, view)
        except StudyInterrupted as stop:
            _print_result(stop.result)
            err.print("[yellow]interrupted[/yellow]: run the same command again to resume the study")
            raise typer.Exit(130) from None
    _print_result(result)


def _print_result(result) -> None:  # StudyResult
    err.print(f"study [cyan]{result.study_name}[/cyan] ({result.storage}): {result.counts.summary()}")
    best = result.best
    if best is None:
        err.print("no completed trial yet")
        return
    source = best.provenance
    full = source.get("eval_loss_full_split")
    full_text = f", {full:.4f} on the whole eval split" if full is not None else ""
    err.print(f"best: trial {source['trial']}, eval loss {source['eval_loss']:.4f}{full_text}")
    if source.get("baseline_eval_loss") is not None:
        err.print(f"common defaults (same steps): eval loss {source['baseline_eval_loss']:.4f}")
    for path in result.files:
        out.print(str(path), highlight=False)


@app.command()
def space(
    method: MethodOpt = "lora",
    space_file: Annotated[Path | None, typer.Option("--space", help="Show this YAML instead.")] = None,
) -> None:
    """Show a method's search space: every parameter, its range and the source of the range."""
    from search_spaces import load_space

    with _user_errors():
        loaded = load_space(method, space_file)
    table = Table(title=f"{loaded.method}: {loaded.description}", title_justify="left")
    table.add_column("parameter", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("range", ratio=1)
    table.add_column("default", ratio=1, overflow="fold")
    table.add_column("source", ratio=3)
    for row in loaded.describe():
        kind = row["kind"] + (" (log)" if row["log"] else "")
        table.add_row(row["name"], kind, str(row["range"]), str(row["default"]), row["source"])
    out.print(table)


@app.command()
def best(
    study_ref: StudyArg,
    storage: StorageOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write best_config.yaml/.py. Default: the study folder."),
    ] = None,
) -> None:
    """Write the best trial of a study as best_config.yaml and a Python snippet, and print them."""
    from tuner._export import write_best_config
    from tuner._study import StudyError, best_config, find_study

    _quiet_libraries()
    with _user_errors():
        found, folder = find_study(study_ref, storage)
        chosen = best_config(found)
        if chosen is None:
            raise StudyError(f"study {found.study_name!r} has no completed trial yet")
        paths = write_best_config(chosen, out_dir or folder)
    out.print(paths[1].read_text(), highlight=False)
    for path in paths:
        err.print(f"wrote {path}")


@app.command()
def report(
    study_ref: StudyArg,
    storage: StorageOpt = None,
    formats: Annotated[
        list[str] | None, typer.Option("--format", "-f", help="html and/or md (default: both).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the report. Default: the study folder.")
    ] = None,
) -> None:
    """Render a study (any storage) as report.html (one self-contained file) and report.md."""
    from tuner._report import FORMATS, write_study_report
    from tuner._study import find_study

    _quiet_libraries()
    with _user_errors():
        found, folder = find_study(study_ref, storage)
        chosen = formats or list(FORMATS)
        unknown = [f for f in chosen if f not in FORMATS]
        if unknown:
            raise typer.BadParameter(
                f"{unknown[0]!r}: choose from {', '.join(FORMATS)}", param_hint="--format"
            )
        paths = write_study_report(found, out_dir or folder, formats=chosen, storage_url=storage)
    for path in paths:
        out.print(str(path), highlight=False)


@app.command()
def train(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="A best_config.yaml written by `tune study`.")
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder. Default: <config folder>/trained.")
    ] = None,
    epochs: Annotated[float, typer.Option(help="Epochs over the training split.")] = 1.0,
    max_steps: Annotated[
        int, typer.Option(help="Train this many steps instead of --epochs (0: use epochs).")
    ] = 0,
    eval_every: Annotated[
        int | None, typer.Option(help="Evaluate every N steps. Default: 10 times a run.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Override the config's model.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Override the config's dataset.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N]. Default: cuda when available.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of data order and adapter initialisation.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view.")] = False,
) -> None:
    """Train a best configuration for full length and save the adapter (or model) and its logs."""
    from tuner._train import train_best

    _quiet_libraries()
    with _user_errors():
        if not config.is_file():
            raise FileNotFoundError(2, "config file not found", str(config))
        with _view(quiet) as view:
            result = train_best(
                config,
                out=out_dir,
                max_steps=max_steps,
                epochs=epochs,
                eval_every=eval_every,
                model=model,
                dataset=dataset,
                device=device,
                seed=seed,
                view=view,
            )
    outcome = result.outcome
    if not result.saved:
        err.print(f"[red]training stopped[/red]: {outcome.reason}")
        raise typer.Exit(130 if outcome.state == "interrupted" else 1)
    err.print(f"trained {outcome.steps_run} steps; eval loss on the whole split {outcome.full_eval_loss:.4f}")
    out.print(str(result.out), highlight=False)


def main() -> None:
    """Console-script entry point (``tune``)."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
