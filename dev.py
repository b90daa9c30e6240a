#!/usr/bin/env python3
"""Set up the project environment, then run a command inside it.

    python3 dev.py engine run --model ridge     # the engine
    python3 dev.py pytest                       # the whole test suite

Needs only Python 3.11+ with pip and venv. It installs uv (the fast installer) into
``.tools/``, syncs ``.venv/`` exactly to the committed ``uv.lock`` (every extra), and
then runs the command with ``.venv/bin`` first on PATH. If uv cannot be installed it
falls back to plain pip (unlocked, and says so). Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TOOLS = ROOT / ".tools"


def say(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def bin_path(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_uv() -> Path | None:
    uv = bin_path(TOOLS, "uv")
    if uv.exists():
        return uv
    say("installing uv into .tools/ ...")
    venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    pip = [
        str(bin_path(TOOLS, "python")),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "uv",
    ]
    if subprocess.run(pip).returncode != 0 or not uv.exists():
        say("could not install uv; falling back to pip (versions not locked)")
        return None
    return uv


def sync() -> None:
    uv = ensure_uv()
    if uv is not None:
        # --compile-bytecode: imports of mlflow/sklearn cost seconds more without .pyc files,
        # and environments with PYTHONDONTWRITEBYTECODE=1 would never write them.
        cmd = [
            str(uv),
            "sync",
            "--locked",
            "--all-extras",
            "--compile-bytecode",
            "--quiet",
            "--python",
            sys.executable,
        ]
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV)}
        if subprocess.run(cmd, cwd=ROOT, env=env).returncode == 0:
            return
        sys.exit("dev.py: uv sync failed (see above)")
    if not bin_path(VENV, "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [
        str(bin_path(VENV, "python")),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--compile",
        "-e",
        ".[test,bench]",
    ]
    if subprocess.run(pip, cwd=ROOT).returncode != 0:
        sys.exit("dev.py: pip install failed (see above)")


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run under any python3
        sys.exit("dev.py: Python 3.11 or newer is required")
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    sync()
    env = {**os.environ, "VIRTUAL_ENV": str(VENV)}
    env["PATH"] = os.pathsep.join([str(bin_path(VENV, "")), env.get("PATH", "")])
    program = bin_path(VENV, argv[0])
    command = [str(program) if program.exists() else argv[0], *argv[1:]]
    return subprocess.run(command, cwd=Path.cwd(), env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
