"""How much memory a run needs and may use: refuse, clearly, what cannot fit.

Out of memory, Polars aborts the process (a Rust allocation failure: SIGABRT, no message)
and a machine with swap thrashes first. So before parsing the archive (and again before
scanning its cache) the engine estimates the memory the run will need from the size of
its input and compares it with what is available; when it cannot fit, the run stops with
one line saying how much it needs and how much there is.

The estimates are of the memory still to be taken when the check runs (the interpreter
and Polars are resident by then), with a margin over the peaks in docs/benchmarks.md.
Every stage is bounded: the CSV is parsed in batches, the model frame is normalised in
chunks of at most ``CHUNK_ROWS`` rows (``BYTES_PER_CHUNK_ROW`` each), and what a run keeps
for every price row (labels, rebalance periods, scores, the returns panel) is
``BYTES_PER_PRICE_ROW``. Available memory is ``MemAvailable`` (``/proc/meminfo``), capped by the process's cgroup memory limit (v2 or
v1) less what the cgroup already uses (page cache that can be dropped excepted; the
tracking process, already started, is counted). Where neither can be read, nothing is
refused.

Ad hoc SQL (``engine sql``, DuckDB) gets a budget of its own from the same figure
(``query_budget``): half the memory available for DuckDB's buffers, four times that of
temporary disk to spill to, so that one query can neither take the machine's memory nor
fill its disk.
"""

from __future__ import annotations

import math
from pathlib import Path

BASE_BYTES = 128 * 2**20  # imports still to come (sklearn, plotly) and small tables
CHUNK_ROWS = 2_000_000  # pipeline.frame.FRAME_CHUNK_ROWS (not imported: this runs first)
BYTES_PER_CHUNK_ROW = 250.0  # features, ranks and the frame of one chunk of dates
BYTES_PER_PRICE_ROW = 60.0  # kept by the run for every row: labels, periods, scores, returns
CSV_BYTES_PER_ROW = 70.0  # sp500_stocks.csv: ~76 bytes a row (fewer means more rows: safer)
_UNLIMITED = 2**60  # cgroup v1 reports "no limit" as a huge number
QUERY_MEMORY_SHARE = 0.5  # of the available memory, for a DuckDB connection's buffers
QUERY_MEMORY_FLOOR = 128 * 2**20  # never less: DuckDB needs some to run at all
QUERY_TEMP_PER_MEMORY = 4  # temporary disk a query may spill to, per byte of its memory


class InsufficientMemory(Exception):
    """The run would need more memory than is available (one line)."""


def available_bytes() -> int | None:
    """Memory this process may still take, in bytes; None when unknown."""
    found = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    return min(found) if found else None


def query_budget() -> tuple[int, int] | None:
    """(memory, temporary disk) in bytes that one DuckDB connection opened for a user may
    use, from the memory available now; None when that is unknown (DuckDB's defaults)."""
    available = available_bytes()
    if available is None:
        return None
    memory = max(int(available * QUERY_MEMORY_SHARE), QUERY_MEMORY_FLOOR)
    return memory, memory * QUERY_TEMP_PER_MEMORY


def parse_estimate(csv_bytes: int) -> int:
    """Peak memory of a run that parses ``csv_bytes`` of CSV, in bytes (the batched parse
    needs less than the run that follows it)."""
    return scan_estimate(math.ceil(csv_bytes / CSV_BYTES_PER_ROW))


def scan_estimate(price_rows: int) -> int:
    """Peak memory of a run from a cache holding ``price_rows`` daily prices, in bytes: one
    chunk of the model frame, plus what the run keeps for every row."""
    chunk = BYTES_PER_CHUNK_ROW * min(price_rows, CHUNK_ROWS)
    return int(BASE_BYTES + chunk + BYTES_PER_PRICE_ROW * price_rows)


def ensure_fits(needed: int, what: str) -> None:
    """Raise ``InsufficientMemory`` if ``needed`` bytes exceed the available memory."""
    available = available_bytes()
    if available is not None and needed > available:
        raise InsufficientMemory(
            f"{what} needs about {gigabytes(needed)} of memory and only {gigabytes(available)} is "
            "available: stopping now rather than swapping or being killed (free memory, "
            "raise the container's limit or use a smaller archive)"
        )


def gigabytes(n: float) -> str:
    """``n`` bytes for a message: GB with one decimal, or whole MB under 1 GB."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{math.ceil(n / 2**20)} MB"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """Limit minus usage (less inactive page cache) of this process's memory cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            found = _headroom(folder, "memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # cgroup v1
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            found = _headroom(
                folder, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
            )
        else:
            continue
        if found is not None:
            return found
    return None


def _headroom(folder: Path, limit_file: str, usage_file: str, inactive: str) -> int | None:
    try:
        raw = (folder / limit_file).read_text().strip()
        if raw == "max" or int(raw) >= _UNLIMITED:
            return None
        used = int((folder / usage_file).read_text())
        stat = dict(
            line.split() for line in (folder / "memory.stat").read_text().splitlines() if line
        )
        used -= int(stat.get(inactive, 0))
    except (OSError, ValueError):
        return None
    return max(int(raw) - used, 0)
