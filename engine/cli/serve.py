"""``engine ui`` and ``engine serve``: MLflow's own UI and scoring server, started on the
tracking store the engine's runs went to (MLflow's CLI alone would look in ``./mlflow.db``)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from engine.cli import EngineError, friendly, main, spec_options
from engine.cli.registry import store_spec

STORE = ("paths.output", "tracking.uri")
UI_PORT, SERVE_PORT = 5000, 5001  # MLflow's own default, and the next one for scoring


def _mlflow(args: list[str], uri: str) -> None:
    """Become MLflow's command line (this environment's) on the store ``uri``: the process
    is replaced, so Ctrl-C and other signals reach MLflow's server directly."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    # MLflow starts its servers' programs (uvicorn) by name: this environment's.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # a local UI runs no jobs
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "mlflow", *args], env)


@main.command()
@spec_options(*STORE)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=UI_PORT, show_default=True,
              help="Port of the UI.")  # fmt: skip
@friendly
def ui(host: str, port: int, **flags: Any) -> None:
    """Start MLflow's UI on the engine's runs (Ctrl-C stops it): every run, its metrics,
    artifacts (the report, the outputs) and the registered models with their aliases."""
    uri = store_spec(flags).mlflow_uri
    if uri.startswith(("http://", "https://")):
        raise EngineError(f"the runs are on the MLflow server {uri}: open it in a browser")
    click.echo(f"MLflow UI on {uri}: http://{host}:{port}", err=True)
    _mlflow(["ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
             "--workers", "1"], uri)  # fmt: skip


@main.command()
@click.option("--model-uri", help="Model to serve [models:/sp500-<model>@champion].")
@spec_options("model.name", "tracking.registered_model", *STORE)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=SERVE_PORT, show_default=True,
              help="Port of the scoring server.")  # fmt: skip
@friendly
def serve(model_uri: str | None, host: str, port: int, **flags: Any) -> None:
    """Serve a registered model (the champion by default) with MLflow's scoring server,
    in this environment (Ctrl-C stops it). POST per-date normalised features to
    /invocations; see the README for a request."""
    spec = store_spec(flags)
    uri = spec.mlflow_uri
    model = model_uri or f"models:/{spec.registered_model_name}@champion"
    click.echo(f"serving {model} from {uri}: http://{host}:{port}/invocations", err=True)
    _mlflow(["models", "serve", "-m", model, "--env-manager", "local", "--host", host,
             "--port", str(port)], uri)  # fmt: skip
