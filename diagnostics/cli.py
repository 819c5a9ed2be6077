"""`diagnose`: a linter for fine-tuning runs. A thin layer over ``diagnostics.diagnose_path``."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from diagnostics.engine import RunFailure, diagnose_path
from diagnostics.findings import SEVERITIES, Diagnosis
from diagnostics.rules import ALL_RULES, RULES_BY_CODE, UnknownRuleError

app = typer.Typer(add_completion=False, rich_markup_mode="rich")


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    md = "md"
    html = "html"


class FailOn(StrEnum):
    warning = "warning"
    error = "error"
    never = "never"


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def _codes(values: list[str] | None) -> list[str]:
    return [code for value in values or [] for code in value.split(",") if code.strip()]


def _column_map(values: list[str] | None) -> dict[str, str]:
    mapping = {}
    for value in values or []:
        for pair in value.split(","):
            if "=" not in pair:
                raise typer.BadParameter(f"expected NAME=CANONICAL, got {pair!r}", param_hint="--column-map")
            name, canonical = pair.split("=", 1)
            mapping[name.strip()] = canonical.strip()
    return mapping


@app.command()
def main(
    path: Annotated[
        Path | None,
        typer.Argument(help="A log file or a folder of runs (searched recursively).", show_default=False),
    ] = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format", "-f", help="table (terminal), json (stdout), md or html (a report, see --out)."
        ),
    ] = OutputFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where md/html reports go: a folder for md, a file for html. "
            "Default: ./diagnose_report/ and ./diagnose_report.html.",
        ),
    ] = None,
    select: Annotated[
        list[str] | None, typer.Option(help="Only these rule codes or prefixes, e.g. DIV,OVF001.")
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="Skip these rule codes or prefixes.")] = None,
    fail_on: Annotated[
        FailOn, typer.Option(help="Exit 1 when a finding of this severity or worse is found (for CI).")
    ] = FailOn.never,
    column_map: Annotated[
        list[str] | None,
        typer.Option(
            help="Map your CSV/JSONL/TensorBoard column names to ours: 'train/loss=loss,val/loss=eval_loss'."
        ),
    ] = None,
    explain: Annotated[
        str | None, typer.Option(help="Print the explanation of one rule code and exit.", show_default=False)
    ] = None,
    list_rules: Annotated[bool, typer.Option("--list-rules", help="List every rule and exit.")] = False,
) -> None:
    """Diagnose fine-tuning runs from the logs you already have.

    Reads HF trainer_state.json (checkpoints included), the Trainer's printed log lines, TensorBoard
    event files, Lightning metrics.csv, LLaMA-Factory trainer_log.jsonl and generic JSONL/CSV logs,
    and says per run what is wrong (overfitting, oscillating, diverging, stalled, too_slow,
    memorizing, lr_schedule), the evidence, and which arguments to change.
    """
    console = Console()
    if explain:
        rule = RULES_BY_CODE.get(explain.strip().upper())
        if rule is None:
            _fail(f"unknown rule code {explain!r} (see `diagnose --list-rules`)")
        console.print(Text(f"{rule.code} {rule.name}  [{rule.condition}, {rule.severity}]", style="bold"))
        console.print(rule.explanation, markup=False, highlight=False)
        return
    if list_rules:
        table = Table("code", "name", "condition", "severity", box=None)
        for rule in ALL_RULES:
            table.add_row(rule.code, rule.name, rule.condition, rule.severity)
        console.print(table)
        return
    if path is None:
        _fail("give a log file or a folder of runs (or --explain CODE / --list-rules)")
    if not path.exists():
        _fail(f"{path} does not exist")
    try:
        results = diagnose_path(path, _codes(select), _codes(ignore), column_map=_column_map(column_map))
    except UnknownRuleError as error:
        _fail(str(error))
    if not results:
        _fail(f"no training logs found in {path}")

    if output_format is OutputFormat.json:
        json.dump({"runs": [r.to_json() for r in results]}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif output_format is OutputFormat.table:
        _print_table(console, results)
    else:
        written = _write_report(results, output_format, out)
        _print_table(console, results)
        console.print(f"report written to [bold]{written}[/bold]")
    raise typer.Exit(_exit_code(results, fail_on))


def _write_report(
    results: list[Diagnosis | RunFailure], output_format: OutputFormat, out: Path | None
) -> Path:
    from reports import render_diagnosis_html, render_diagnosis_markdown

    title = "Training-run diagnosis"
    if output_format is OutputFormat.html:
        target = out or Path("diagnose_report.html")
        if target.is_dir():
            target = target / "diagnose_report.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_text(render_diagnosis_html(results, title=title), encoding="utf-8")
        tmp.replace(target)
        return target
    return render_diagnosis_markdown(results, out or Path("diagnose_report"), title=title)


def _print_table(console: Console, results: list[Diagnosis | RunFailure]) -> None:
    for result in results:
        if isinstance(result, RunFailure):
            console.print(Text.assemble(("error ", "bold red"), (f"{result.source}: ", "bold"), result.error))
            continue
        primary = result.primary or "no verdict"
        console.print(
            Text.assemble(
                (f"{result.run.label}", "bold"),
                f"  [{result.run.format}]  ",
                (primary, "bold magenta"),
                (f"  ({', '.join(result.conditions)})" if len(result.conditions) > 1 else ""),
            )
        )
        table = Table(box=None, show_header=False, padding=(0, 1), expand=False)
        for finding in sorted(result.findings, key=lambda f: -SEVERITIES.index(f.severity)):
            fixes = "; ".join(str(fix) for fix in finding.fixes)
            table.add_row(
                Text(finding.severity, style=SEVERITY_STYLE[finding.severity]),
                Text(finding.code, style="cyan"),
                Text(finding.message + (f"\n-> {fixes}" if fixes else "")),
            )
        console.print(table)
    failures = sum(isinstance(r, RunFailure) for r in results)
    console.print(f"\n{len(results)} run(s), {failures} unreadable", style="dim")


def _exit_code(results: list[Diagnosis | RunFailure], fail_on: FailOn) -> int:
    if fail_on is FailOn.never:
        return 0
    threshold = SEVERITIES.index(fail_on.value)
    for result in results:
        if isinstance(result, Diagnosis) and any(
            SEVERITIES.index(f.severity) >= threshold for f in result.findings
        ):
            return 1
    return 0


def _fail(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(2)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
