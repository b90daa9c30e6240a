"""Which archive a run uses: the real Kaggle files when present, else the embedded
synthetic default, generated once into a cache folder of its own (never into a folder
that could hold real files)."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.config import Paths
from engine.data.archive import Archive, archive_present, load_archive
from engine.data.synth import SynthSpec, synthesize
from engine.schema import ARCHIVE_FILES, DataSource

log = logging.getLogger(__name__)

DEFAULT_SPEC = SynthSpec()  # the embedded default: the real archive's size and calendar

SYNTHETIC_BANNER = (
    "No Kaggle archive in {data}: using the SYNTHETIC default archive ({rows}) in {where}. "
    "Results describe simulated data with a planted signal, not the S&P 500. "
    "Put sp500_stocks.csv, sp500_companies.csv and sp500_index.csv in {data} to use real data."
)


def synthetic_folder(paths: Paths, spec: SynthSpec) -> Path:
    """Folder of the synthetic archive ``spec``, named after every field of the spec."""
    name = (
        f"synthetic-{spec.n_symbols}x{spec.start}-{spec.end}-seed{spec.seed}"
        f"-ic{spec.signal:g}-late{spec.late_listing_fraction:g}"
    )
    return paths.cache_dir / name


def ensure_synthetic(folder: Path, spec: SynthSpec) -> Path:
    """Generate the synthetic archive ``spec`` into ``folder`` unless already there."""
    if not all((folder / name).is_file() for name in ARCHIVE_FILES):
        log.info("generating the default synthetic archive into %s ...", folder)
        synthesize(folder, spec, overwrite=True)  # the engine's own folder
    return folder


def resolve_archive(paths: Paths, *, strict: bool = False) -> Archive:
    """Load the real archive from ``paths.data``, or the synthetic default when none of
    the three Kaggle files is there (loudly: a warning names it synthetic). ``strict``
    refuses a real archive with implausible prices (``archive.quality``) instead of
    warning."""
    cache = paths.cache_dir
    if archive_present(paths.data):
        return load_archive(paths.data, cache, DataSource.REAL, strict=strict)
    spec = DEFAULT_SPEC
    folder = ensure_synthetic(synthetic_folder(paths, spec), spec)
    size = f"{spec.n_symbols} symbols, {spec.start} to {spec.end}"
    log.warning(SYNTHETIC_BANNER.format(data=paths.data, where=folder, rows=size))
    return load_archive(folder, cache, DataSource.SYNTHETIC)
