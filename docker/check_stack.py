#!/usr/bin/env python3
"""Check, through the MLflow REST API only, that a stack did its job.

    check_stack.py [URL] [REGISTERED_MODEL] [EXPERIMENT]
        # default http://127.0.0.1:5001 sp500-ridge sp500-engine

Checks, each printed as ok/FAIL:

1. /health answers 200;
2. the Host-header allowlist: a request sent as ``Host: mlflow-server:5000`` (what the
   optimizer container sends) is accepted, one sent as ``Host: attacker.invalid`` is
   refused (403), so ``--allowed-hosts`` is both set and effective;
3. the experiment holds a FINISHED run whose artifact root is ``mlflow-artifacts:``
   (artifacts go through the server: ``--artifacts-destination``) and whose artifacts
   can be listed through the server;
4. the registered model has a ``champion`` alias (and a ``challenger``).

With basic auth, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are sent.
Standard library only; exit 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

SERVICE_HOST = "mlflow-server:5000"
FOREIGN_HOST = "attacker.invalid"


class Api:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        self.auth = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if user and password
            else None
        )

    def request(
        self, path: str, body: dict[str, Any] | None = None, host: str | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.auth:
            req.add_header("Authorization", self.auth)
        if host:
            req.add_header("Host", host)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, payload = self.request(f"{path}{query}")
        if status != 200:
            raise CheckFailed(f"GET {path}{query} -> {status} {payload}")
        return payload

    def post(self, path: str, body: dict[str, Any]) -> Any:
        status, payload = self.request(path, body)
        if status != 200:
            raise CheckFailed(f"POST {path} -> {status} {payload}")
        return payload


class CheckFailed(RuntimeError):
    pass


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return raw.decode(errors="replace")[:200]


def check_health(api: Api) -> str:
    status, _ = api.request("/health")
    if status != 200:
        raise CheckFailed(f"/health -> {status}")
    return "/health 200"


def check_hosts(api: Api) -> str:
    path = "/api/2.0/mlflow/experiments/search"
    body = {"max_results": 1}
    status, payload = api.request(path, body, host=SERVICE_HOST)
    if status != 200:
        raise CheckFailed(f"Host {SERVICE_HOST} refused: {status} {payload}")
    status, payload = api.request(path, body, host=FOREIGN_HOST)
    if status != 403:
        raise CheckFailed(f"Host {FOREIGN_HOST} not refused: {status} (no host allowlist?)")
    return f"Host {SERVICE_HOST} accepted, Host {FOREIGN_HOST} refused (403)"


def check_run(api: Api, experiment: str) -> str:
    found = api.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=experiment)
    exp_id = found["experiment"]["experiment_id"]
    runs = api.post(
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [exp_id],
            "filter": "attributes.status = 'FINISHED'",
            "max_results": 1,
            "order_by": ["attributes.start_time DESC"],
        },
    ).get("runs", [])
    if not runs:
        raise CheckFailed(f"no FINISHED run in experiment {experiment!r}")
    info = runs[0]["info"]
    if not info["artifact_uri"].startswith("mlflow-artifacts:"):
        raise CheckFailed(f"artifacts not proxied by the server: {info['artifact_uri']}")
    listed = api.get("/api/2.0/mlflow/artifacts/list", run_id=info["run_id"]).get("files", [])
    if not listed:
        raise CheckFailed(f"run {info['run_id']} has no artifacts listed through the server")
    return (
        f"run {info['run_id']} FINISHED in {experiment!r}; {len(listed)} artifact entries "
        f"served from {info['artifact_uri']}"
    )


def check_champion(api: Api, model: str) -> str:
    aliases = {}
    for alias in ("champion", "challenger"):
        query = urllib.parse.urlencode({"name": model, "alias": alias})
        status, payload = api.request(f"/api/2.0/mlflow/registered-models/alias?{query}")
        if status == 200:
            aliases[alias] = payload["model_version"]["version"]
        elif status != 404:
            raise CheckFailed(f"alias {alias} of {model!r}: {status} {payload}")
    if "champion" not in aliases:
        raise CheckFailed(f"registered model {model!r} has no champion alias (aliases {aliases})")
    return f"{model}: champion v{aliases['champion']}, challenger v{aliases.get('challenger', '-')}"


def main(argv: list[str]) -> int:
    url = argv[0] if argv else "http://127.0.0.1:5001"
    model = argv[1] if len(argv) > 1 else "sp500-ridge"
    experiment = argv[2] if len(argv) > 2 else "sp500-engine"
    api = Api(url)
    checks = (
        lambda: check_health(api),
        lambda: check_hosts(api),
        lambda: check_run(api, experiment),
        lambda: check_champion(api, model),
    )
    failed = 0
    for check in checks:
        try:
            print(f"check_stack: ok   {check()}")
        except (CheckFailed, OSError, KeyError) as exc:
            failed += 1
            print(f"check_stack: FAIL {exc}")
    print(
        f"check_stack: {'all checks passed' if not failed else f'{failed} check(s) failed'} ({url})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
