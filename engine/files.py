"""Crash-safe files: the cache, the outputs, the synthetic archive and `engine sql --out`
are written through ``atomic_write`` (the DuckDB database, which DuckDB itself writes, takes
the same steps in ``sqlviews.ensure_database``).

A reader (another run, `engine sql`, a user) sees the old file or the new one, never half of
one: the bytes go to a hidden temporary file in the same folder (``.<name>.<random>.tmp``),
are fsynced, renamed over the target, and the folder is fsynced so the rename survives a
crash. A write that fails or is interrupted removes its temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(binary file object)``, atomically; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync(path.parent)
    return path


def fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder after a rename in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
