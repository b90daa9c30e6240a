"""``engine data``: synthesize and validate archives."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import click

from engine.cli import PATHS, EngineError, friendly, main, spec_from, spec_options


@main.group(name="data")
def data_group() -> None:
    """Inspect, validate or synthesize input archives."""


@data_group.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to write the three CSVs into [default: DATA_PATH].",
)
@click.option(
    "--symbols",
    type=click.IntRange(min=1),
    default=503,
    show_default=True,
    help="Number of symbols.",
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2010-01-04",
    show_default=True,
    help="First calendar day (rows are NYSE trading days).",
)
@click.option(
    "--end",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2024-12-20",
    show_default=True,
    help="Last calendar day.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace the archive files already in the folder (never done without it).",
)
@click.option(
    "--signal",
    type=click.FloatRange(-0.5, 0.5),
    default=0.04,
    show_default=True,
    help="Planted rank IC of 12-1 momentum vs forward 21-day return; 0 = null data.",
)
@friendly
def synth(
    out: Path | None, symbols: int, start: Any, end: Any, seed: int, signal: float, force: bool
) -> None:
    """Write a deterministic synthetic archive in the exact Kaggle format, with a planted
    momentum signal of known strength.

    A folder that already holds any of the three archive files (real data, say) is never
    written to without --force."""
    from engine.config import RunSpec
    from engine.data.synth import ArchiveExists, SynthSpec, synthesize

    folder = out or RunSpec.from_env().paths.data_dir
    try:
        spec = SynthSpec(
            n_symbols=symbols, start=_as_date(start), end=_as_date(end), seed=seed, signal=signal
        )
        paths = synthesize(folder, spec, overwrite=force)
    except ArchiveExists as exc:
        raise EngineError(f"{exc} (give --out for another folder, or --force)") from exc
    except (ValueError, OSError) as exc:
        raise EngineError(str(exc)) from exc
    for path in paths.values():
        click.echo(str(path))


@data_group.command()
@spec_options(*PATHS, "paths.strict_data")
@friendly
def validate(**flags: Any) -> None:
    """Validate the archive in DATA_PATH, build its Parquet cache, print its fingerprint.

    Problems that are not errors (symbols without a companies row, implausible prices)
    are warnings, each one line; --strict makes implausible prices an error."""
    from engine.data.archive import load_archive

    paths = spec_from(flags).paths
    archive = load_archive(paths.data_dir, paths.cache_dir, strict=paths.strict_data)
    rows = archive.prices.select("symbol").collect().height
    warned = f", {len(archive.warnings)} warning(s)" if archive.warnings else ""
    click.echo(f"ok: {rows} price rows{warned}; fingerprint {archive.fingerprint}")


def _as_date(value: Any) -> date:
    return value.date() if hasattr(value, "date") else value
