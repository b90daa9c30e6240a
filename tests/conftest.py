"""Shared fixtures: small deterministic synthetic archives, made by the project itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from engine.data.synth import SynthSpec, synthesize

SMALL = SynthSpec(n_symbols=40, start=date(2013, 1, 1), end=date(2018, 12, 31), seed=7)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's engine/MLflow environment variables."""
    for var in (
        "DATA_PATH",
        "OUTPUT_PATH",
        "CACHE_PATH",
        "MODEL_TYPE",
        "TOP_STOCKS",
        "MLFLOW_TRACKING_URI",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _engine_log_level_restored() -> Iterator[None]:
    """A CLI call sets the ``engine`` logger's level for its process (-q, -v); tests calling
    the CLI in-process must not leave it to the next test."""
    yield
    logging.getLogger("engine").setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-symbol, 2013-2018 synthetic archive folder (read it, do not modify it)."""
    folder = tmp_path_factory.mktemp("small_archive")
    synthesize(folder, SMALL)
    return folder
