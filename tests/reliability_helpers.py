"""Shared helpers of the reliability tests (``tests/test_reliability_*.py``): tiny
archives, running ``engine`` in-process and as a real process, and the checks every
reliability test makes (one error line and no traceback; no partial file visible)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc
from click.testing import CliRunner

from engine.cli import main
from engine.data.synth import SynthSpec, synthesize

VENV_BIN = Path(sys.executable).parent
ENGINE = str(VENV_BIN / "engine")
# Tiny: 4 symbols x ~2.5 years (one listing late), enough for a real walk-forward with
# --min-train-periods 3; a run takes ~0.1 s in-process.
TINY = SynthSpec(
    n_symbols=4, start=date(2015, 1, 1), end=date(2017, 6, 30), seed=11, late_listing_fraction=0.25
)
TINY_RUN = ("--no-tracking", "--no-plots", "--min-train-periods", "3", "--top-stocks", "2")
MODEL_OUTPUTS = ("portfolio", "holdings", "equity", "ic", "attribution")
ERROR_PREFIX = "engine: error: "


def tiny_archive(folder: Path, spec: SynthSpec = TINY) -> Path:
    """Write the tiny synthetic archive into ``folder`` (or reuse it)."""
    if not (folder / "sp500_stocks.csv").exists():
        synthesize(folder, spec)
    return folder


def output_names(model: str = "ridge", report: bool = False) -> list[str]:
    """The files ``engine run --model <model>`` writes into OUTPUT_PATH (``report``: also
    the research report's data and page)."""
    names = [f"{kind}_{model}.csv" for kind in MODEL_OUTPUTS] + [f"metrics_{model}.json"]
    if report:
        names += [f"report_{model}.{kind}" for kind in ("parquet", "json", "html")]
    return names


_STORE_TEMPLATE: list[Path] = []


def empty_sqlite_store(folder: Path) -> Path:
    """Put an empty, fully migrated MLflow SQLite store at ``folder/mlflow.db`` (the
    default store of OUTPUT_PATH = ``folder``): a copy of one made once per session, so
    that each test does not pay MLflow's ~4 s of schema migrations again."""
    if not _STORE_TEMPLATE:
        import mlflow

        folder_of_template = Path(tempfile.mkdtemp(prefix="engine-store-"))
        atexit.register(shutil.rmtree, folder_of_template, True)
        template = folder_of_template / "mlflow.db"
        uri = f"sqlite:///{template}"
        mlflow.MlflowClient(uri, registry_uri=uri).search_registered_models(max_results=1)
        _STORE_TEMPLATE.append(template)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_STORE_TEMPLATE[0], folder / "mlflow.db")
    return folder / "mlflow.db"


# --- running the engine -----------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How one ``engine`` invocation ended."""

    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None  # in-process only: what escaped the command
    seconds: float = 0.0


def invoke(*args: str) -> Outcome:
    """``engine <args>`` in this process (click's CliRunner); exceptions are caught and
    returned, so a test can tell a clean exit from an escaped exception (a traceback)."""
    start = time.perf_counter()
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    escaped = result.exception
    if isinstance(escaped, SystemExit):
        escaped = None
    return Outcome(
        result.exit_code, result.stdout, result.stderr, escaped, time.perf_counter() - start
    )


def child_env(**extra: str) -> dict[str, str]:
    """Environment of an ``engine`` child process: nothing of the caller's engine/MLflow
    settings, the venv first on PATH."""
    drop = ("MLFLOW_", "DATA_PATH", "OUTPUT_PATH", "CACHE_PATH", "MODEL_TYPE", "TOP_STOCKS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


def spawn(args: Sequence[str], env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen:
    """Start ``engine <args>`` as a real process in its own process group."""
    return subprocess.Popen(
        [ENGINE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or child_env(),
        start_new_session=True,
        **kw,  # type: ignore[arg-type]
    )


def run_process(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300
) -> Outcome:
    """``engine <args>`` as a real process; killed (and the test failed) after ``timeout``."""
    start = time.perf_counter()
    proc = spawn(args, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(
            f"engine {' '.join(args)} hung for {timeout} s:\n{err[-2000:]}"
        ) from None
    return Outcome(proc.returncode, out, err, None, time.perf_counter() - start)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group started for ``proc`` (and only it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


# --- checks -----------------------------------------------------------------------------------
def assert_one_error_line(outcome: Outcome, *fragments: str, debug: bool = False) -> str:
    """A non-zero exit, no traceback, and exactly one ``engine: error:`` line, the last
    one on stderr; returns it. ``debug``: the run had ``-vv``, whose debug log may show
    the traceback of a failure it reports (the error line must still be the last)."""
    assert outcome.exception is None, f"escaped {outcome.exception!r}\n{outcome.stderr}"
    assert outcome.code != 0, outcome.stdout + outcome.stderr
    if not debug:
        assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1 and lines[-1] == errors[0], outcome.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def is_temporary(path: Path) -> bool:
    """Files the engine writes before renaming them into place: ``.<name>.<...>.tmp``."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` a reader could take for a result (temporaries, and files
    in a temporary folder, excluded)."""
    if not folder.exists():
        return []
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(is_temporary(q) for q in (p, *p.relative_to(folder).parents))
    )  # fmt: skip


def check_complete(path: Path) -> None:
    """Parse ``path`` fully by its type; raise if it is truncated or corrupt."""
    suffix = path.suffix
    if suffix == ".csv":
        pl.read_csv(path, infer_schema_length=None)
        assert path.read_bytes().endswith(b"\n"), f"{path} does not end with a newline"
    elif suffix == ".json":
        json.loads(path.read_text(), parse_constant=_refuse_constant)
    elif suffix == ".parquet":
        pl.read_parquet(path)
    elif suffix == ".html":
        assert path.read_bytes().rstrip().endswith(b"</html>"), f"{path} ends early"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"not strict JSON: {name}")


def assert_no_partial_files(folder: Path) -> list[Path]:
    """Every visible CSV, JSON, Parquet and HTML file under ``folder`` parses completely."""
    checked = []
    for path in visible_files(folder):
        if path.suffix in {".csv", ".json", ".parquet", ".html"}:
            try:
                check_complete(path)
            except FileNotFoundError:  # renamed away while we looked (a rebuild): fine
                continue
            except Exception as exc:
                raise AssertionError(f"partial or corrupt file visible: {path}: {exc}") from exc
            checked.append(path)
    return checked


def assert_valid_cache(cache: Path) -> None:
    """Every table directory of the cache has a manifest matching its Parquet files, and
    every model-frame file (``engine.pipeline.store``) reads whole with the rows its
    metadata says; a directory without a manifest holds no file a reader uses (it is
    rebuilt)."""
    for manifest in cache.rglob("manifest.json"):
        meta = json.loads(manifest.read_text())
        for name, table in meta.get("tables", {}).items():
            path = manifest.parent / f"{name}.parquet"
            assert path.stat().st_size == table["bytes"], path
            assert pl.read_parquet(path).height == table["rows"], path
    for path in cache.glob("frames/*.arrow"):
        with pa.OSFile(str(path)) as source:
            reader = pa.ipc.open_file(source)
            assert reader.read_all().num_rows == int(reader.schema.metadata[b"rows"]), path


def comparable_outputs(folder: Path, names: Sequence[str]) -> dict[str, bytes]:
    """The output files' bytes, comparable between two identical runs in two folders: the
    metrics JSON without its wall-clock timings, and the folder itself named ``<out>``."""
    out = {}
    for name in names:
        data = (folder / name).read_bytes()
        if name.endswith(".json"):
            document = json.loads(data)
            document.pop("timings_s", None)
            data = json.dumps(document, sort_keys=True).encode()
        out[name] = data.replace(str(folder).encode(), b"<out>")
    return out


class Hang(BaseException):
    """Raised by ``time_limit``; a BaseException, so that no ``except Exception`` (or the
    engine's own OSError handling: TimeoutError is an OSError) can turn it into an answer."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "the case") -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``.
    Uses SIGALRM: main thread only, which is where pytest runs tests."""

    def expired(signum: int, frame: object) -> None:
        raise Hang(f"{what} did not finish within {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- signalling a running engine at a chosen point ---------------------------------------------
@dataclass
class Watch:
    """A running engine process, its stderr lines so far, and a parser of visible files."""

    out: Path
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def read_stdout(self, stream) -> None:
        self.stdout.extend(stream)

    def inspect(self) -> None:
        """Keep parsing every visible file while the process runs (a torn file would show)."""
        while not self.stop.is_set():
            try:
                assert_no_partial_files(self.out)
            except AssertionError as exc:
                self.problems.append(str(exc))
            except FileNotFoundError:  # a folder renamed away while it was walked: look again
                pass
            time.sleep(0.01)

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))


Trigger = Callable[[Watch], bool]


def signal_when(
    args: Sequence[str],
    out: Path,
    trigger: Trigger,
    sig: int,
    delay: float = 0.0,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> tuple[Watch, int, bool]:
    """Start ``engine <args>`` and send ``sig`` to its process group (as a terminal sends
    Ctrl-C) ``delay`` s after ``trigger`` holds; wait for it to end. Returns the watch, the
    exit code, and whether every process of its group (the tracking worker included) had
    ended by itself within ``timeout`` s. The test fails if the process ended before the
    signal (the point was never reached) or did not end within ``timeout`` s of it."""
    # Python dumps every thread's stack on SIGABRT (``stacks_of``): a hang explains itself.
    proc = spawn(args, {**(env or child_env()), "PYTHONFAULTHANDLER": "1"})
    watch = Watch(out)
    threads = [
        threading.Thread(target=watch.read, args=(proc.stderr,), daemon=True),
        threading.Thread(target=watch.read_stdout, args=(proc.stdout,), daemon=True),
        threading.Thread(target=watch.inspect, daemon=True),
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not trigger(watch):
            if proc.poll() is not None:
                raise AssertionError(
                    f"the run ended (exit {proc.returncode}) before the signal point:\n"
                    + "\n".join(watch.lines[-20:])
                )
            if time.monotonic() > deadline:
                raise AssertionError("signal point never reached")
            time.sleep(0.001)
        time.sleep(delay)
        kill_group(proc, sig)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the run did not end within {timeout} s of the signal; its processes' "
                f"stacks:\n{stacks_of(proc, watch)}"
            ) from None
        ended = group_ends(proc.pid, timeout)
    finally:
        kill_group(proc)
        proc.wait(timeout=30)
        for thread in threads[:2]:
            thread.join(timeout=10)
        watch.stop.set()
        threads[2].join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    return watch, code, ended


def stacks_of(proc: subprocess.Popen, watch: Watch) -> str:
    """The last lines of the run's stderr after SIGABRT to every process of its group:
    each Python process started with ``PYTHONFAULTHANDLER`` writes its threads' stacks
    there first (a child's stderr is the run's)."""
    kill_group(proc, signal.SIGABRT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    time.sleep(1.0)  # the readers take the last lines
    return "\n".join(list(watch.lines)[-150:])


def group_ends(proc_or_pid: int, timeout: float = 30) -> bool:
    """Whether every process of the process group ``proc_or_pid`` ends within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc_or_pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def table_written_in(cache: Path) -> Trigger:
    """A table of a cache entry ``cache/<key>/`` is being (or has just been) written: its
    temporary file or folder, or its Parquet or Arrow file, appeared."""

    def seen(_: Watch) -> bool:
        return any(
            (is_temporary(p) or is_temporary(p.parent) or p.suffix in {".parquet", ".arrow"})
            and p.parent.name != "frames"
            for p in cache.glob("*/*")
        )

    return seen


def line(pattern: str) -> Trigger:
    return lambda watch: watch.saw(pattern)


def after(seconds: float) -> Trigger:
    start = time.monotonic()
    return lambda _: time.monotonic() - start >= seconds


def first_output(out: Path, model: str) -> Trigger:
    """The run has begun writing its outputs: a result set is being staged
    (``engine.io.resultset``), or one of the model's files is there."""
    names = output_names(model, report=True)
    return lambda _: (
        any(is_temporary(p) for p in out.glob(".engine-sets/*"))
        or any((out / n).exists() for n in names)
    )


# --- memory of a real process -----------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """How a process ended and the most memory it held (``peak``: bytes resident, its own
    high-water mark; ``capped``: it was killed for passing the cap)."""

    outcome: Outcome
    peak: int
    capped: bool


def run_with_rss_cap(
    args: Sequence[str], cap: int, env: dict[str, str] | None = None, timeout: float = 300
) -> Measured:
    """``engine <args>`` as a real process, killed as soon as it holds more than ``cap``
    bytes resident (polled every 20 ms), so that a regression cannot take the shared
    machine's memory. Its peak is its own high-water mark (``VmHWM``), read at each poll:
    the kernel's ``ru_maxrss`` of a child is no use here, as it counts the memory of the
    (large) test process the child was forked from. Output goes to files: nothing blocks
    on a full pipe. Fails the test after ``timeout``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([ENGINE, *args], stdout=out, stderr=err, text=True,
                                env=env or child_env(), start_new_session=True)  # fmt: skip
        capped, peak, deadline = False, 0, time.monotonic() + timeout
        while True:
            resident, high = _memory(proc.pid)
            peak = max(peak, high)
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            capped, hung = resident > cap, time.monotonic() > deadline
            if capped or hung:
                kill_group(proc)
                _, status, _ = os.wait4(proc.pid, 0)
                assert not hung, f"engine {' '.join(args)} hung for {timeout} s"
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measured(Outcome(proc.returncode, out.read(), err.read()), peak, capped)


def _memory(pid: int) -> tuple[int, int]:
    """(resident, high-water mark) bytes of process ``pid`` (VmRSS, VmHWM); 0 once gone."""
    found = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(maxsplit=1)[0] if line else ""
            if key in found:
                found[key] = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return found["VmRSS:"], found["VmHWM:"]
