"""``python -m benchmarks``: measure speed and memory of every stage; JSON and a markdown
table. Run from a source checkout (the suite and its pandas references live here, not in
the installed package): ``python3 dev.py python -m benchmarks --help``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmarks import suite
from engine.cli import EngineError, friendly

EXIT_OVER_CEILING = 4
CHECKOUT = Path(__file__).resolve().parents[1]
PROG = "python -m benchmarks"


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("output/bench"),
    show_default=True,
    help="Folder for benchmarks.json and benchmarks.md.",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the synthetic archives, caches and scratch "
    "[default: .benchmarks/work in the checkout; ~10 GB with --scales up to 10].",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Timed calls per stage after the first one (slow stages: one call).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A tiny archive and one call per stage: checks the harness; the figures mean nothing.",
)
@click.option(
    "--scales",
    help="Also the scale curve at these multiples of the default rows, e.g. 0.25,1,4,10.",
)
@click.option("--only", help="Comma-separated stages and runs to measure [all; see --list].")
@click.option("--list", "show_list", is_flag=True, help="List the stages and runs, then exit.")
@click.option("--no-runs", is_flag=True, help="Skip the `engine run` commands.")
@click.option(
    "--update-doc",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also replace the generated results section of this file (docs/benchmarks.md).",
)
@click.option(
    "--from-json",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Measure nothing: render the markdown of a saved benchmarks.json (with --out, "
    "--update-doc).",
)
@click.option(
    "--rss-limit",
    type=click.IntRange(min=256),
    default=8192,
    show_default=True,
    help="MiB of RSS at which a stage process is killed (protects a shared machine); "
    "reported as over the ceiling.",
)
@friendly
def bench(out: Path, work: Path | None, repeat: int, quick: bool, scales: str | None,
          only: str | None, show_list: bool, no_runs: bool, update_doc: Path | None,
          from_json: Path | None, rss_limit: int) -> None:  # fmt: skip
    """Measure every stage of the engine, a pandas reference of the tutorial way on the same
    data in the same run, the `engine run` commands and (with --scales) the scale curve.

    Each stage runs in a fresh process: median and min wall time, CPU time and peak RSS.
    Exits with status 4 when an engine stage or run passes the 2 GB ceiling.
    """
    if from_json is not None:
        document = json.loads(from_json.read_text())
        for path in suite.write(document, out, update_doc, data=False):
            click.echo(str(path))
        return
    if show_list:
        for stage in suite.STAGES.values():
            click.echo(f"{stage.name:<28} {stage.kind:<9} {stage.what}")
        runs = {run.name: run for run in (*suite.RUNS, *suite.SCALE_RUNS)}
        for run in runs.values():
            click.echo(f"{run.name:<28} {'run':<9} {run.what}")
        return
    try:
        options = suite.Options(
            out=out, work=(work or CHECKOUT / ".benchmarks" / "work").resolve(),
            repeat=0 if quick else repeat, quick=quick,
            scales=suite.parse_scales(scales) if scales else (),
            only=suite.check_names(_names(only)) if only else None, runs=not no_runs,
            rss_limit_mib=float(rss_limit), command=_command_line(),
        )  # fmt: skip
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    document = suite.run_suite(options, echo=lambda line: click.echo(line, err=True))
    for path in suite.write(document, out, update_doc):
        click.echo(str(path))
    failures = document["failures"]
    if failures:
        shown = "; ".join(failures[:3]) + (
            f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        )
        raise EngineError(
            f"{len(failures)} measurement(s) failed or passed the 2 GB ceiling (see "
            f"{out / 'benchmarks.md'}): {shown}",
            EXIT_OVER_CEILING,
        )


def _command_line() -> str:
    """This command with the flags given (those that differ from their defaults)."""
    ctx = click.get_current_context()
    parts = [ctx.command_path]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value in (None, False) or value == param.default:
            continue
        parts.append(param.opts[0] if value is True else f"{param.opts[0]} {value}")
    return " ".join(parts)


if __name__ == "__main__":
    bench(prog_name=PROG)
