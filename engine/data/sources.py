"""Which archive a run uses: the real Kaggle files when present, else the embedded
synthetic default, generated once into a cache folder of its own (never into a folder
that could hold real files)."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.config import Paths
from engine.data.archive import Archive, ArchiveError, load_archive
from engine.data.synth import SynthSpec, synthesize
from engine.schema import ARCHIVE_FILES, DataSource

log = logging.getLogger(__name__)

FOLDER_README = "README.md"  # the repository's archive/ folder holds one

SYNTHETIC_BANNER = (
    "No Kaggle archive in {data}: using the SYNTHETIC default archive ({rows}) in {where}. "
    "Results describe simulated data with a planted signal, not the S&P 500. "
    "Put sp500_stocks.csv, sp500_companies.csv and sp500_index.csv in {data} to use real data."
)


def default_spec() -> SynthSpec:
    """The embedded default archive's spec: the real archive's size and calendar (made
    when asked for: its check reads the NYSE calendar of the ``holidays`` package)."""
    return SynthSpec()


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


def resolve_archive(paths: Paths) -> Archive:
    """Load the archive in ``paths.data_dir``, or the synthetic default.

    The synthetic default is used only when DATA_PATH was not given and ``./archive``
    holds nothing (its README aside): loudly, a warning names it synthetic. A given
    DATA_PATH, or a ``./archive`` holding anything else, must hold the three Kaggle files;
    if it does not, the error lists what it holds instead. With ``paths.strict_data`` an
    archive with implausible prices (``archive.quality``) is refused instead of warned of.
    """
    folder = paths.data_dir
    if paths.data is not None or not _holds_nothing(folder):
        missing = [name for name in ARCHIVE_FILES if not (folder / name).is_file()]
        if missing:
            raise ArchiveError(missing_files(folder, missing))
        return load_archive(folder, paths.cache_dir, DataSource.REAL, strict=paths.strict_data)
    spec = default_spec()
    where = ensure_synthetic(synthetic_folder(paths, spec), spec)
    size = f"{spec.n_symbols} symbols, {spec.start} to {spec.end}"
    log.warning(SYNTHETIC_BANNER.format(data=folder, where=where, rows=size))
    return load_archive(where, paths.cache_dir, DataSource.SYNTHETIC)


def _holds_nothing(folder: Path) -> bool:
    """True if ``folder`` is absent or holds only hidden files and its README."""
    if not folder.is_dir():
        return not folder.exists()
    return all(p.name.startswith(".") or p.name == FOLDER_README for p in folder.iterdir())


def missing_files(folder: Path, missing: list[str]) -> str:
    """One line: which archive files ``folder`` lacks, what it holds instead, and the
    likely fix (unzip the Kaggle download, rename a file, point DATA_PATH elsewhere)."""
    what = f"{', '.join(missing)} not found in {folder}"
    if not folder.exists():
        return f"{what}: the folder does not exist"
    if not folder.is_dir():
        return f"{what}: it is not a folder"
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
                  if not p.name.startswith("."))  # fmt: skip
    hints = [hint for hint in (_hint(folder, name, missing) for name in held) if hint]
    shown = ", ".join(held[:8]) + (", ..." if len(held) > 8 else "") if held else "nothing"
    return f"{what} (it holds {shown})" + "".join(f"; {hint}" for hint in hints[:2])


def _hint(folder: Path, name: str, missing: list[str]) -> str | None:
    if name.lower().endswith(".zip"):
        return f"{name} looks like the Kaggle download: unzip it into {folder}"
    if name.lower() in missing and name not in missing:
        return f"{name}: file names are case-sensitive, rename it {name.lower()}"
    inner = folder / name.rstrip("/")
    if name.endswith("/") and any((inner / f).is_file() for f in ARCHIVE_FILES):
        return f"the archive is in the subfolder {name}: point DATA_PATH at {inner}"
    return None
