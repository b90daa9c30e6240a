"""``engine report``: rebuild the HTML research report from a run's outputs."""

from __future__ import annotations

from typing import Any

import click

from engine.cli import friendly, main, spec_from, spec_options
from engine.schema import ModelName


@main.command()
@click.option(
    "--model",
    "-m",
    type=click.Choice([m.value for m in ModelName], case_sensitive=False),
    help="Rebuild only this model's page [every model with report data in OUTPUT_PATH, "
    "and the comparison page after `engine run --model all`].",
)
@spec_options("paths.output")
@friendly
def report(model: str | None, **flags: Any) -> None:
    """Rebuild report_<model>.html in OUTPUT_PATH from the run's output files (metrics,
    holdings, sector attribution and the report data), without recomputing anything:
    open an old run's report with the engine of today."""
    from engine.report import rebuild

    for page in rebuild(spec_from(flags).paths.output, model):
        click.echo(str(page))
