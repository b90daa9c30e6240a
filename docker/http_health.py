#!/usr/bin/env python3
"""Container health probe: exit 0 when ``GET <url>`` answers 200 within the timeout.

    http-health [URL] [TIMEOUT_S]      # default http://127.0.0.1:5000/health, 5 s

The slim base image has no curl; this needs only the standard library. MLflow exempts
``/health`` from both the Host-header check and basic auth, so the probe works in every
configuration of the server. (It cannot tell whether other containers are accepted:
docker/check_stack.py tests that with a real ``Host: mlflow-server:5000`` request.)
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:5000/health"


def healthy(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    url = argv[0] if argv else DEFAULT_URL
    timeout = float(argv[1]) if len(argv) > 1 else 5.0
    ok = healthy(url, timeout)
    print(f"http-health: {url} {'ok' if ok else 'NOT healthy'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
