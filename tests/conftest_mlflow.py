"""Fixtures for the MLflow tests (tracking, registry, serving). A test module loads them
with ``pytest_plugins = ("tests.conftest_mlflow",)``; helper functions live in
``tests.mlflow_server``, and ``small_archive`` comes from ``conftest.py``."""

from __future__ import annotations

import uuid

import pytest

from tests import mlflow_server
from tests.mlflow_server import Service


@pytest.fixture(scope="session")
def mlflow_service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts), shared
    by the session and stopped at its end."""
    return mlflow_server.shared_tracking_server(tmp_path_factory.mktemp("mlflow-server"))


@pytest.fixture
def server_uri(mlflow_service: Service) -> str:
    return mlflow_service.url


@pytest.fixture
def model_name() -> str:
    """A registered-model name of this test alone (server stores are shared)."""
    return f"sp500-test-{uuid.uuid4().hex[:8]}"
