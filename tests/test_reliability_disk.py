"""Issue 18, items 1 and 9: a full disk, for real, on a small tmpfs.

Each test mounts its own tmpfs (``mount -t tmpfs``, so it needs root; skipped with the
reason otherwise) sized, or remounted, so that a write of the engine meets ENOSPC at a
chosen point: the Parquet cache of the archive (in pyarrow's writer, then in Polars'),
the model frame, and the outputs of a run on top of an earlier run's. Each must end in
one ``engine: error:`` line saying the disk is full and naming the folder, with nothing
half-written left behind, and (the outputs) the earlier run's result set intact.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.data.archive import load_archive
from tests.reliability_helpers import (
    TINY_RUN,
    assert_one_error_line,
    comparable_outputs,
    invoke,
    is_temporary,
    output_names,
    tiny_archive,
)

PAGE = os.sysconf("SC_PAGE_SIZE")


class Disk:
    """A tmpfs mounted at ``path``; ``resize`` remounts it with a new size or inode cap."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, options: str) -> None:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def resize(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def used(self) -> tuple[int, int]:
        """(pages, inodes) in use."""
        st = os.statvfs(self.path)
        return st.f_blocks - st.f_bfree, st.f_files - st.f_ffree


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "disk"
    path.mkdir()
    disk = Disk(path)
    yield disk
    subprocess.run(["umount", "-l", str(path)], check=False)


def left_on(folder: Path) -> list[str]:
    """Every file under ``folder`` but lock files (which hold no data)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix != ".lock")  # fmt: skip


def assert_disk_full(outcome, folder: Path) -> None:
    line = assert_one_error_line(outcome, "the disk is full", "No space left on device")
    assert f"writing {folder}/" in line, line


# --- item 9: the Parquet cache -----------------------------------------------------------------
@pytest.mark.parametrize("fails_in", ["prices", "index"])
def test_a_full_disk_while_caching_the_archive_is_one_line(disk, tmp_path, fails_in):
    archive = tiny_archive(tmp_path / "archive")
    entry = load_archive(archive, tmp_path / "reference").cache_dir
    prices_pages = math.ceil((entry / "prices.parquet").stat().st_size / PAGE)
    # no room at all: pyarrow's writer of the prices fails; room for the prices only:
    # Polars' writer of the index fails (a ComputeError, not an OSError, from Polars)
    disk.mount(f"size={PAGE * (0 if fails_in == 'prices' else prices_pages) or PAGE // 2}")
    cache = disk.path / "cache"
    outcome = invoke("data", "validate", "--data-path", str(archive), "--cache-path", str(cache))
    assert_disk_full(outcome, cache / entry.name)
    assert left_on(cache) == [], "a half-built cache entry was left"
    disk.resize(f"size={4 * 2**20}")
    assert invoke("data", "validate", "--data-path", str(archive), "--cache-path",
                  str(cache)).code == 0  # fmt: skip


def test_a_full_disk_while_caching_the_model_frame_is_one_line(disk, tmp_path):
    archive = tiny_archive(tmp_path / "archive")
    cache = disk.path / "cache"
    disk.mount(f"size={8 * 2**20}")
    args = ("run", *TINY_RUN, "--data-path", str(archive), "--output-path", str(tmp_path / "out"),
            "--cache-path", str(cache))  # fmt: skip
    assert invoke("data", "validate", "--data-path", str(archive), "--cache-path",
                  str(cache)).code == 0  # fmt: skip
    pages, _ = disk.used()
    disk.resize(f"size={PAGE * pages}")  # the archive's tables fit; nothing more does
    before = left_on(cache)
    outcome = invoke(*args)
    assert_disk_full(outcome, cache / "frames")
    assert left_on(cache) == before, "a half-built model frame was left"
    assert not [p for p in cache.rglob("*") if is_temporary(p)]


# --- item 1: the outputs ----------------------------------------------------------------------
def run_args(archive: Path, out: Path, cache: Path, top: int) -> tuple[str, ...]:
    return ("run", *TINY_RUN[:-2], "--top-stocks", str(top), "--data-path", str(archive),
            "--output-path", str(out), "--cache-path", str(cache))  # fmt: skip


def outputs_of(out: Path) -> dict[str, bytes]:
    """The run's files as ``comparable_outputs`` gives them, the metrics JSON also without
    the folders of its settings (the cache folder differs between tests)."""
    files = comparable_outputs(out, output_names())
    document = json.loads(files["metrics_ridge.json"])
    document["settings"] = {
        k: v for k, v in document["settings"].items() if not k.startswith("paths.")
    }
    return files | {"metrics_ridge.json": json.dumps(document, sort_keys=True).encode()}


@pytest.fixture(scope="module")
def reference_outputs(tmp_path_factory) -> dict[int, dict[str, bytes]]:
    """The outputs of two uninterrupted runs (top 2 and top 3), folder named ``<out>``."""
    root = tmp_path_factory.mktemp("reference")
    archive = tiny_archive(root / "archive")
    found = {}
    for top in (2, 3):
        out = root / f"out{top}"
        assert invoke(*run_args(archive, out, root / "cache", top)).code == 0
        found[top] = outputs_of(out)
    return found


@pytest.mark.parametrize("limit", ["size", "nr_inodes"])
@pytest.mark.parametrize("spare", [0, 1, 3, 6, 7, 8, 12])
def test_a_full_disk_while_publishing_keeps_the_previous_result_set(
    disk, tmp_path, reference_outputs, limit, spare
):
    archive = tiny_archive(tmp_path / "archive")
    out, cache = disk.path / "out", tmp_path / "cache"
    disk.mount(f"size={8 * 2**20}")
    assert invoke(*run_args(archive, out, cache, 2)).code == 0
    pages, inodes = disk.used()
    # ``spare`` pages (or inodes) beyond the first run's: the second run's files,
    # folders and links run out of room at a different step for each
    disk.resize(
        f"size={PAGE * (pages + spare)}" if limit == "size" else f"nr_inodes={inodes + spare}"
    )
    outcome = invoke(*run_args(archive, out, cache, 3))
    if outcome.code == 0:  # room enough after all (the set shares the unchanged files)
        assert outputs_of(out) == reference_outputs[3]
        return
    assert_disk_full(outcome, out)
    assert outputs_of(out) == reference_outputs[2]
    assert not [p for p in out.rglob("*") if is_temporary(p)], "temporary files left"
    disk.resize(f"size={8 * 2**20},nr_inodes=10000")
    assert invoke(*run_args(archive, out, cache, 3)).code == 0
    assert outputs_of(out) == reference_outputs[3]
