#!/usr/bin/env python3
"""Set up the project environment, then run a command inside it.

    python3 dev.py engine run --model ridge     # the engine (runtime packages only)
    python3 dev.py pytest                       # the whole test suite (every extra)
    python3 dev.py python -m benchmarks --help  # any other command: every extra

Needs only Python 3.11+ with pip and venv, and the network to reach the package index
(PyPI) the first time. It installs uv (the fast installer) into ``.tools/``, syncs
``.venv/`` to the committed ``uv.lock`` with the extras the command needs (the first
sync downloads ~0.3 GB and takes ~1.2 GB of disk with every extra), then runs the
command with ``.venv/bin`` first on PATH. A later call whose lock and extras are already
installed starts the command at once. If uv cannot be installed it falls back to plain
pip (unlocked, and says so). Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TOOLS = ROOT / ".tools"
STAMP = VENV / ".dev-py-synced"  # lock and project hash + extras of the last sync
ALL_EXTRAS = ("test", "bench", "postgres", "auth", "spark")
# Extras each command needs; any command not listed gets every extra.
EXTRAS = {"engine": (), "mlflow": ()}


def say(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def bin_path(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_uv() -> Path | None:
    uv = bin_path(TOOLS, "uv")
    if uv.exists():
        return uv
    say("installing uv into .tools/ (once) ...")
    venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    pip = [str(bin_path(TOOLS, "python")), "-m", "pip", "install",
           "--disable-pip-version-check", "--progress-bar", "on", "uv"]  # fmt: skip
    if subprocess.run(pip).returncode != 0 or not uv.exists():
        say("could not install uv; falling back to pip (versions not locked)")
        return None
    return uv


def wanted(extras: tuple[str, ...]) -> str:
    """What a sync must have installed: the lock's and the project's content (its entry
    points live in pyproject.toml), and the extras."""
    digest = hashlib.sha256()
    for name in ("uv.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return f"{digest.hexdigest()} {' '.join(extras)}\n"


def synced(extras: tuple[str, ...]) -> bool:
    """True if a sync with these extras (or more) from this lock already succeeded."""
    try:
        lock, *have = STAMP.read_text().split()
    except OSError:
        return False
    return lock == wanted(())[:64] and set(extras) <= set(have)


def sync(extras: tuple[str, ...]) -> None:
    if synced(extras):
        return
    uv = ensure_uv()
    shown = ", ".join(extras) or "none"
    if uv is not None:
        say(f"syncing .venv/ to uv.lock (extras: {shown}) ...")
        # --inexact: packages of other extras stay installed (no flip-flop between commands).
        # --compile-bytecode: imports of mlflow/sklearn cost seconds more without .pyc files.
        cmd = [str(uv), "sync", "--locked", "--inexact", "--compile-bytecode",
               "--python", sys.executable, *(f"--extra={e}" for e in extras)]  # fmt: skip
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV)}
        if subprocess.run(cmd, cwd=ROOT, env=env).returncode != 0:
            sys.exit("dev.py: uv sync failed (see above)")
    else:
        pip_install(extras)
    previous = STAMP.read_text().split()[1:] if synced(()) else []
    STAMP.write_text(wanted(tuple(sorted({*extras, *previous}))))
    say("environment ready")


def pip_install(extras: tuple[str, ...]) -> None:
    if not bin_path(VENV, "python").exists():
        say("creating .venv/ ...")
        venv.EnvBuilder(with_pip=True).create(VENV)
    target = f".[{','.join(extras)}]" if extras else "."
    say(f"installing {target} with pip (unlocked) ...")
    pip = [str(bin_path(VENV, "python")), "-m", "pip", "install", "--compile",
           "--disable-pip-version-check", "-e", target]  # fmt: skip
    if subprocess.run(pip, cwd=ROOT).returncode != 0:
        sys.exit("dev.py: pip install failed (see above)")


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run under any python3
        sys.exit("dev.py: Python 3.11 or newer is required")
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    sync(EXTRAS.get(argv[0], ALL_EXTRAS))
    env = {**os.environ, "VIRTUAL_ENV": str(VENV)}
    env["PATH"] = os.pathsep.join([str(bin_path(VENV, "")), env.get("PATH", "")])
    program = bin_path(VENV, argv[0])
    command = [str(program) if program.exists() else argv[0], *argv[1:]]
    return subprocess.run(command, cwd=Path.cwd(), env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
