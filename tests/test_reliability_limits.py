"""Issue 8, item 7: the default archive runs in under 2 GB; one too large is refused clearly.

How the 2 GB limit is applied. ``prlimit --as`` (and ``--data``) cannot be used: they cap
*virtual* memory, and Polars reserves far more address space than it touches, so even a
warm run that stays near 0.6 GB resident aborts in the allocator under ``--as=2G``. A
cgroup would do, but the test machine's cgroups belong to the machinery running it. So
the limit is enforced on what a cgroup counts, resident memory, by measurement: the
command's whole process tree (the engine and its tracking child) is watched every 20 ms,
killed the moment its summed resident size passes 2 GiB (as the kernel's OOM killer
would), and at the end the sum of every process's peak (``VmHWM``, the kernel's own
high-water mark, and ``ru_maxrss`` of the engine) must be below 2 GiB.

"Too large for memory": ``engine.io.memory`` estimates a run's peak from the archive's size
before parsing it (and from the cache's row count before scanning it) and refuses, with
one line, when the estimate exceeds the available memory (``MemAvailable`` capped by the
cgroup's limit). The tests make the available memory small and check the refusal: exit 1,
one error line, nothing written, no time spent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.io import memory
from tests.reliability_helpers import (
    TINY_RUN,
    assert_one_error_line,
    child_env,
    invoke,
    output_names,
    tiny_archive,
)

LIMIT = 2 * 2**30  # 2 GiB


# --- the default archive under 2 GB ---------------------------------------------------------------
def _group_peaks(pgid: int) -> dict[int, tuple[int, int, str]]:
    """VmRSS and VmHWM (bytes) and the command of every process in process group ``pgid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            status = Path(f"/proc/{entry}/status").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue
        values = {}
        for line in status.splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
        if "VmHWM" in values:
            found[int(entry)] = (values.get("VmRSS", 0), values["VmHWM"], command.decode()[:100])
    return found


@dataclass
class Peak:
    """The peak resident memory of a process tree: the sum of each process's own peak."""

    processes: dict[int, tuple[int, str]] = field(default_factory=dict)  # pid -> (peak, command)

    def add(self, pid: int, peak: int, command: str = "") -> None:
        before, known = self.processes.get(pid, (0, ""))
        self.processes[pid] = (max(before, peak), known or command)

    @property
    def total(self) -> int:
        return sum(peak for peak, _ in self.processes.values())

    def __str__(self) -> str:
        parts = [f"{p / 2**30:.2f} GiB {c}" for p, c in self.processes.values()]
        return f"{self.total / 2**30:.2f} GiB in all: " + "; ".join(parts)


def run_under_rss_limit(
    args: list[str], env: dict[str, str], limit: int, cwd: Path | None = None
) -> tuple[int, Peak, str]:
    """Run ``args`` (in ``cwd``) with the process tree's resident memory capped at ``limit``
    (killed past it); (exit code, peak, stderr)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=cwd)  # fmt: skip
    peak, over, stderr = Peak(), [], []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps it: keeps ru_maxrss
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            peak.add(pid, usage.ru_maxrss * 1024)
            break
        now = _group_peaks(proc.pid)
        for child, (_, hwm, command) in now.items():
            peak.add(child, hwm, command)
        resident = sum(rss for rss, _, _ in now.values())
        if resident > limit:
            over.append(resident)
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.02)
    reader.join(timeout=10)
    assert not over, f"resident memory passed the limit ({max(over) / 2**30:.2f} GiB): {peak}"
    return proc.returncode, peak, "".join(stderr)


@pytest.mark.slow
def test_the_default_run_completes_in_under_2_gb(tmp_path: Path):
    """``engine run`` exactly as a new user runs it: no archive, so the default synthetic
    one (503 symbols, 2010-2024, 1.89M rows) is generated, parsed, cached, and the run is
    tracked in SQLite with the report: the coldest, largest path."""
    (tmp_path / "archive").mkdir()
    out = tmp_path / "output"
    args = [str(Path(sys.executable).parent / "engine"), "-q", "run"]
    code, peak, stderr = run_under_rss_limit(args, child_env(), LIMIT, cwd=tmp_path)
    assert code == 0, stderr[-3000:]
    assert peak.total < LIMIT, f"peak resident memory {peak}"
    for name in output_names(report=True):
        assert (out / name).is_file(), name
    print(f"default run: peak resident memory {peak}")


# --- an archive too large for the memory there is -----------------------------------------------
@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tiny_archive(tmp_path / "data")


def _small_machine(monkeypatch: pytest.MonkeyPatch, available: int) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: available)


def test_an_archive_too_large_to_parse_is_refused_before_parsing(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    out = tmp_path / "out"
    _small_machine(monkeypatch, 64 * 2**20)
    outcome = invoke("run", *TINY_RUN, "--data-path", str(archive), "--output-path", str(out))
    line = assert_one_error_line(outcome, "needs about", "only 64 MB is available", "MB of CSV")
    assert str(archive) in line
    assert outcome.code == 1 and outcome.seconds < 30
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert [p for p in written if p.suffix in (".parquet", ".csv", ".json")] == [], written


def test_a_cached_archive_too_large_to_run_is_refused_before_scanning(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    out = tmp_path / "out"
    first = invoke("-q", "run", *TINY_RUN, "--data-path", str(archive), "--output-path", str(out))
    assert first.code == 0, first.stderr
    for name in output_names():
        (out / name).unlink()
    # The cache is there: only a run's need from the cache is checked, and even an empty
    # one's is more than this machine has.
    _small_machine(monkeypatch, memory.scan_estimate(0) - 1)
    outcome = invoke("run", *TINY_RUN, "--data-path", str(archive), "--output-path", str(out))
    assert_one_error_line(outcome, "needs about", "rows)", "is available")
    assert not any((out / name).exists() for name in output_names())


def test_the_refusal_as_a_real_process_is_one_line_on_stderr(archive: Path, tmp_path: Path):
    code = (
        "import sys\n"
        "from engine.io import memory\n"
        "memory.available_bytes = lambda: 32 * 2**20  # a machine with 32 MB to spare\n"
        "from engine.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    args = ["run", *TINY_RUN, "--data-path", str(archive), "--output-path", str(tmp_path / "o")]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=child_env(), timeout=300)  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("engine: error: "), proc.stderr
    assert "only 32 MB is available" in lines[0]


def test_the_estimates_admit_ten_times_the_default_archive_under_2_gb():
    """The estimates admit 10x the default archive on a 2 GB machine (every stage is
    bounded: tests/test_frame.py, tests/test_archive_stream.py; docs/benchmarks.md measures
    it) and refuse forty times it."""
    from engine.pipeline.frame import FRAME_CHUNK_ROWS

    assert memory.CHUNK_ROWS == FRAME_CHUNK_ROWS
    csv_bytes, rows = 144_140_762, 1_891_536  # the default synthetic archive
    assert memory.parse_estimate(csv_bytes) < 1024 * 2**20
    assert memory.scan_estimate(10 * rows) < LIMIT - 200 * 2**20  # imports already resident
    assert memory.parse_estimate(10 * csv_bytes) < LIMIT - 200 * 2**20
    assert memory.parse_estimate(40 * csv_bytes) > LIMIT


# --- reading the limits -------------------------------------------------------------------------
def test_cgroup_limits_are_read_v2_and_v1(tmp_path: Path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("2147483648\n")
    (v2 / "memory.current").write_text(str(900 * 2**20))
    (v2 / "memory.stat").write_text(f"anon 1\ninactive_file {100 * 2**20}\n")
    assert (
        memory._headroom(v2, "memory.max", "memory.current", "inactive_file") == 2**31 - 800 * 2**20
    )
    (v2 / "memory.max").write_text("max\n")
    assert memory._headroom(v2, "memory.max", "memory.current", "inactive_file") is None
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # unlimited
    (v1 / "memory.usage_in_bytes").write_text("1")
    (v1 / "memory.stat").write_text("total_inactive_file 0\n")
    assert memory._headroom(v1, "memory.limit_in_bytes", "memory.usage_in_bytes",
                            "total_inactive_file") is None  # fmt: skip
    available = memory.available_bytes()
    assert available is None or available > 0
