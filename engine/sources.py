"""Which archive a run uses: the real Kaggle files when present, else the embedded
synthetic default, generated once into a cache folder of its own (never into a folder
that could hold real files)."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.archive import Archive, archive_present, load_archive
from engine.config import Settings
from engine.schema import ARCHIVE_FILES, DataSource
from engine.synth import SynthSpec, synthesize

log = logging.getLogger(__name__)

SYNTHETIC_BANNER = (
    "No Kaggle archive in {data}: using the SYNTHETIC default archive ({rows}) in {where}. "
    "Results describe simulated data with a planted signal, not the S&P 500. "
    "Put sp500_stocks.csv, sp500_companies.csv and sp500_index.csv in {data} to use real data."
)


def synthetic_folder(settings: Settings) -> Path:
    return Path(settings.cache_path) / "synthetic-default"


def ensure_synthetic(folder: Path, spec: SynthSpec = SynthSpec()) -> Path:
    """Generate the default synthetic archive into ``folder`` unless already there."""
    if not all((folder / name).is_file() for name in ARCHIVE_FILES):
        log.info("generating the default synthetic archive into %s ...", folder)
        synthesize(folder, spec)
    return folder


def resolve_archive(settings: Settings) -> Archive:
    """Load the real archive from ``data_path``, or the synthetic default when none of
    the three Kaggle files is there (loudly: a warning names it synthetic)."""
    cache = Path(settings.cache_path)
    if archive_present(settings.data_path):
        return load_archive(settings.data_path, cache, DataSource.REAL)
    folder = ensure_synthetic(synthetic_folder(settings))
    spec = SynthSpec()
    log.warning(
        SYNTHETIC_BANNER.format(
            data=settings.data_path, where=folder, rows=f"{spec.n_symbols} symbols"
        )
    )
    return load_archive(folder, cache, DataSource.SYNTHETIC)
