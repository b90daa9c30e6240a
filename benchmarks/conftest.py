"""pytest-benchmark suites: ``pytest benchmarks/ --benchmark-only`` (never in the default run,
whose ``testpaths`` is ``tests``).

The data is the default synthetic archive (503 symbols, 2010-2024, 1.89M price rows), built
once under ``BENCH_WORK`` (default ``.benchmarks/work`` in the checkout, git-ignored, shared
with ``python -m benchmarks``) or taken from ``BENCH_ARCHIVE``; its Parquet cache goes to
``BENCH_CACHE`` (default ``BENCH_WORK/cache``). ``bench_features.py`` reads the same two
variables, so every suite here measures the same data. Files named ``bench_*.py`` are
collected as test modules.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import harness, suite
from benchmarks.stages import Context

WORK = Path(os.environ.get("BENCH_WORK", harness.ROOT / ".benchmarks" / "work")).resolve()
USER_ARCHIVE = os.environ.get("BENCH_ARCHIVE")
ARCHIVE = Path(USER_ARCHIVE or WORK / "archives" / "1x").resolve()
CACHE = Path(os.environ.get("BENCH_CACHE", WORK / "cache")).resolve()
os.environ.setdefault("BENCH_ARCHIVE", str(ARCHIVE))  # for bench_features.py
os.environ.setdefault("BENCH_CACHE", str(CACHE))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """``bench_*.py`` files are test modules (pytest collects a file named on the command
    line by itself)."""
    named = parent.session.isinitpath(file_path)
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not named:
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """The environment of the fresh processes (see ``harness.child_env``)."""
    return harness.child_env()


@pytest.fixture(scope="session", autouse=True)
def bench_archive(child_env: dict[str, str]) -> Path:
    """The archive folder; generated once (deterministic) unless BENCH_ARCHIVE names one."""
    if USER_ARCHIVE is None:
        suite.ensure_archive(WORK, "1", child_env, echo=lambda line: None)
    return ARCHIVE


@pytest.fixture(scope="session")
def bench_context(bench_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Context:
    """Inputs for in-process stages: archive, warm caches, prepared model data."""
    context = Context(bench_archive, CACHE, tmp_path_factory.mktemp("bench"))
    context.prepared  # noqa: B018 - builds the Parquet and model-frame caches once
    return context
