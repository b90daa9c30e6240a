"""Measuring processes: wall time and peak RSS of a fresh subprocess, the RSS of this one,
the load on the machine and what the machine is. Linux only (``/proc``, ``wait4``).

Memory is in MiB (1 MiB = 1024 KiB, the kernel's unit / 1024). The engine's budget is a
**ceiling of 2 GB = 2048 MiB** (a stage or run above it fails the benchmark run) and a
**goal of 1 GB = 1024 MiB**.

Peaks are high-water marks of the process's own memory (``VmHWM``), never ``ru_maxrss``:
Linux carries the parent's peak into a child's ``ru_maxrss`` across ``vfork``/``exec``, so a
child of a large process (pytest after an in-process benchmark) would report the parent's
size.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CEILING_MIB = 2048
GOAL_MIB = 1024
LIBRARIES = (
    "engine", "polars", "duckdb", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy",
    "mlflow", "pytest-benchmark",
)  # fmt: skip
# Engine settings read from the environment: benchmark children never inherit them.
ENGINE_ENV = ("DATA_PATH", "OUTPUT_PATH", "CACHE_PATH", "MODEL_TYPE", "TOP_STOCKS")
ENGINE_ENV += ("MLFLOW_TRACKING_URI",)


# --- this process ----------------------------------------------------------------------------
def status_mib(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak since start or the last reset) of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Start a new RSS high-water mark (``VmHWM``) for this process (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (what ``uptime`` prints)."""
    return [round(x, 2) for x in os.getloadavg()]


# A fixed workload, timed in a fresh process at the start and the end of every benchmark run.
# This machine's speed for allocation-heavy work drifted up to 2.5x within a day while pure
# computation did not (2026-11-26: a warm run 1.7 s -> 4.3 s, the system time tripled, a numpy
# sort unchanged), so the probe times both: a change between runs, or within one, is the
# machine's, not the code's.
_PROBE = """
import json, time
import numpy as np
block = np.random.default_rng(0).normal(size=(256, 482))
started = time.perf_counter()
for _ in range(50):
    np.argsort(block, axis=1)
sort_ms = (time.perf_counter() - started) / 50 * 1e3
started = time.perf_counter()
for _ in range(5):
    touched = np.ones(60_000_000)  # 480 MB of new pages: page faults and zeroing
    del touched
touch_ms = (time.perf_counter() - started) / 5 * 1e3
print(json.dumps({"sort_ms": round(sort_ms, 3), "touch_480mb_ms": round(touch_ms, 1)}))
"""


def speed_probe(env: dict[str, str] | None = None) -> dict[str, float]:
    """{"sort_ms": numpy argsort of a 256 x 482 block, "touch_480mb_ms": allocating and
    touching 480 MB}, in a fresh process; {} if the probe could not run."""
    import json

    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


# --- a fresh subprocess ----------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessRun:
    """One finished subprocess.

    Attributes
    ----------
    wall_s : seconds from start to exit.
    cpu_s : user + system CPU seconds of the child and the descendants it waited for.
    peak_rss_mib : the largest high-water mark (``VmHWM``) of any process of the tree,
        sampled every ``SAMPLE_S`` (growth in a process's last ``SAMPLE_S`` is missed).
    tree_peak_mib : the larger of ``peak_rss_mib`` and the largest sum of the RSS of the
        child and its live descendants, sampled every ``SAMPLE_S`` (processes running side
        by side, e.g. ``engine run`` and its MLflow worker, add up; shared library pages
        count once per process, so the sum errs high).
    killed : the watchdog killed it for passing ``rss_limit_mib`` (on the sampled sum).
    """

    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    tree_peak_mib: float
    stdout: str
    stderr: str
    killed: bool = False


SAMPLE_S = 0.05


def child_env(pycache: Path = ROOT / ".benchmarks" / "pycache") -> dict[str, str]:
    """The environment of benchmark children: no engine or MLflow settings inherited, and
    compiled imports cached in ``pycache`` (an installed package has .pyc files; with
    ``PYTHONDONTWRITEBYTECODE`` set and no cache, every import would compile from source,
    which is not what a user's run costs)."""
    env = {k: v for k, v in os.environ.items() if k not in ENGINE_ENV}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(pycache).resolve())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _memory_mib(pid: int) -> tuple[float, float]:
    """(``VmRSS``, ``VmHWM``) of process ``pid`` in MiB; zeros once it is gone."""
    found = {}
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line[:5]] = int(line.split()[1]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (from ``/proc/<pid>/task/<tid>/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


class _Sampler(threading.Thread):
    """Samples the memory of a process tree; kills the tree past ``limit_mib`` of summed
    RSS (this protects a shared machine from a stage that would take all its memory)."""

    def __init__(self, pid: int, limit_mib: float | None) -> None:
        super().__init__(daemon=True)
        self.pid, self.limit, self.killed = pid, limit_mib, False
        self.peak_sum, self.high_water = 0.0, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_S):
            memory = [_memory_mib(p) for p in _tree(self.pid)]
            total = sum(rss for rss, _ in memory)
            self.peak_sum = max(self.peak_sum, total)
            self.high_water = max(self.high_water, *(hwm for _, hwm in memory), 0.0)
            if self.limit and total > self.limit and not self.killed:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)


def run_process(
    argv: list[str], env: dict[str, str], *, cwd: Path = ROOT, rss_limit_mib: float | None = None
) -> ProcessRun:
    """Run ``argv`` to completion in a new session (its own process group, so the watchdog
    can kill the whole tree); wall and CPU time (``wait4``), sampled peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        sampler = _Sampler(proc.pid, rss_limit_mib)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            sampler.done.set()
            sampler.join()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return ProcessRun(
            argv=tuple(argv),
            returncode=proc.returncode,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mib=sampler.high_water,
            tree_peak_mib=max(sampler.high_water, sampler.peak_sum),
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            killed=sampler.killed,
        )


# --- the machine -----------------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    return float("nan")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes); read-only git calls."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never touch the index
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, env=env, capture_output=True, text=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def machine() -> dict[str, object]:
    """CPU, cores, memory, OS, Python and library versions, the commit."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": {name: _version(name) for name in LIBRARIES},
        "commit": _commit(),
    }
