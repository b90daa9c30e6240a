"""Real MLflow processes for tests, on 127.0.0.1 only: a tracking server (``mlflow
server``) and a model server (``mlflow models serve``).

Each is started in its own process group on a free port, waited for on ``/health`` with a
deadline (its log is shown if it dies or never answers) and stopped by killing that
process group, so no worker outlives the test session.
"""

from __future__ import annotations

import atexit
import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
START_DEADLINE_S = 120.0  # a 2-core machine under load takes ~15 s to start a server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child MLflow process: the venv's tools first on PATH, no
    telemetry, no job runner (it forks dozens of workers), nothing inherited that points
    at another tracking store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.update(extra)
    return env


@dataclass
class Service:
    """A started MLflow process group and the URL it answers on."""

    proc: subprocess.Popen
    url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, deadline_s: float = START_DEADLINE_S) -> Service:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.url} exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/health", timeout=2) as response,
            ):
                if response.status == 200:
                    return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"{self.url} not healthy after {deadline_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Kill the whole process group started for this service (and only it)."""
        if self.proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


def _start(args: list[str], log: Path, env: dict[str, str], port: int) -> Service:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Service(proc, f"http://127.0.0.1:{port}", log)


def start_tracking_server(root: Path) -> Service:
    """``mlflow server`` on a SQLite backend and proxied artifacts under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}", "--workers", "1",
    ]  # fmt: skip
    return _start(args, root / "server.log", child_env(), port).wait_healthy()


def start_model_server(model_uri: str, tracking_uri: str, root: Path) -> Service:
    """``mlflow models serve -m <model_uri> --env-manager local`` against ``tracking_uri``."""
    port = free_port()
    args = [
        str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = child_env(MLFLOW_TRACKING_URI=tracking_uri)
    return _start(args, root / "serve.log", env, port).wait_healthy()


_shared: Service | None = None


def shared_tracking_server(root: Path) -> Service:
    """One tracking server for the whole test session (starting one costs ~5-15 s);
    stopped when the session's process exits."""
    global _shared
    if _shared is None or _shared.proc.poll() is not None:
        _shared = start_tracking_server(root)
        atexit.register(_shared.stop)
    return _shared


# --- helpers for tests that drive the engine ---------------------------------------
def engine(*args: str) -> Any:
    """``engine <args>`` through click's CliRunner; returns the click Result."""
    from click.testing import CliRunner

    from engine.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_args(archive: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "run", "--no-plots", "--data-path", str(archive), "--output-path", str(out),
            *extra]  # fmt: skip


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def client_for(uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(uri, registry_uri=uri)


@contextlib.contextmanager
def fake_http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stand-in HTTP server on 127.0.0.1 answering with ``handler``; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
