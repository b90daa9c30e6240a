"""The whole benchmark: every stage in a fresh process, the ``engine run`` commands and the
scale curve, as one JSON document (``python -m benchmarks`` is its command line).

Stages run in the order of ``stages.STAGES``, each pandas reference right after the engine
stage it is compared with, so both see about the same load on a busy machine; the load
average is recorded before every measurement. Memory is judged on each process's whole-life
peak RSS: above the 2 GB ceiling (2048 MiB) an engine stage or run fails the benchmark run;
pandas references, scale-path probes and archive generation are reported, never failed.

Layout of ``work``: ``archives/<scale>/`` (the CSVs and ``synth.json``), ``cache/`` (the
shared Parquet and model-frame cache), ``scratch/`` (per stage, deleted after it),
``runs/<scale>/`` (outputs and MLflow store of the ``engine run`` commands). Compiled imports
are cached in ``.benchmarks/pycache`` of the checkout.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.stages import ENGINE, KERNEL, RATIOS, REFERENCE, STAGES, spec_for
from engine.schema import ARCHIVE_FILES

SCHEMA_VERSION = 1
PREPARE_LIMIT_FACTOR = 2  # building the caches may use twice the stage limit (not judged)
REFERENCE_MAX_SCALE = 4.0  # pandas references beyond this scale would take minutes each
SCALE_SKIP = frozenset({"pandas_walkforward"})  # ~10 min at 4x: measured at 1x only
WARM_IMPORTS = (
    "engine.cli, engine.pipeline, engine.lifecycle.tracking.record, engine.views.database, mlflow, sklearn.ensemble, "
    "sklearn.linear_model, pandas, benchmarks.stages"
)
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """One ``engine run`` command measured in a fresh process."""

    name: str
    what: str
    model: str = "ridge"
    tracking: bool = True
    cold: bool = False  # fresh cache and output folders: a user's very first run
    warmup: bool = False  # one untimed run first (creates the MLflow store)
    repeat: bool = True  # else a single round
    target_s: float | None = None
    features: str = "core"  # the feature set (--features)


COLD_NO_TRACKING = Run(
    "run_ridge_cold_no_tracking", "cold: fresh cache, the whole pipeline from the CSVs, no MLflow",
    tracking=False, cold=True, repeat=False,
)  # fmt: skip
RUNS = (
    Run("run_ridge_cold", "cold: fresh cache and output (CSV ingest, features, new MLflow store)",
        cold=True, repeat=False),
    COLD_NO_TRACKING,
    Run("run_ridge_warm_no_tracking", "warm caches, no MLflow", tracking=False),
    Run("run_ridge_warm", "warm caches, MLflow logging (store exists)", warmup=True,
        target_s=3.0),
    Run("run_all_warm", "warm caches, 7 models, MLflow logging", model="all", repeat=False,
        target_s=120.0),
    Run("run_ridge_alpha158_no_tracking", "--features alpha158, warm price cache, no MLflow", tracking=False, repeat=False, features="alpha158"),
)  # fmt: skip
SCALE_RUNS = (  # the scale curve: the full run's time and peak at each size, no MLflow
    COLD_NO_TRACKING,
    Run("run_ridge_warm_no_tracking", "warm caches, no MLflow", tracking=False, repeat=False),
)
RUN_NAMES = frozenset(r.name for r in (*RUNS, *SCALE_RUNS))


@dataclass(frozen=True)
class Options:
    out: Path
    work: Path
    repeat: int = 3
    quick: bool = False
    scales: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    runs: bool = True
    rss_limit_mib: float = 8192.0
    command: str = "python -m benchmarks"

    def wants(self, name: str) -> bool:
        return self.only is None or name in self.only


def parse_scales(text: str) -> tuple[str, ...]:
    """``"0.25,1,4,10"`` -> ``("0.25", "1", "4", "10")``; each a positive number."""
    scales = tuple(part.strip() for part in text.split(",") if part.strip())
    for part in scales:
        try:
            ok = float(part) > 0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"scale {part!r} is not a positive number")
    return tuple(f"{float(s):g}" for s in scales)


def check_names(names: Sequence[str]) -> frozenset[str]:
    known = set(STAGES) | RUN_NAMES
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown stage or run {', '.join(unknown)}; known: {', '.join(known)}")
    return frozenset(names)


# --- one measurement -------------------------------------------------------------------------
def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _engine(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("engine")
    if script.is_file():
        return [str(script), *args]
    return _python("-c", "from engine.cli import main; main()", *args)


def _last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


def _error(proc: harness.ProcessRun, limit: float) -> str:
    if proc.killed:
        return f"killed by the benchmark watchdog at {limit:.0f} MiB RSS"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"[:300]


def measure_stage(name: str, archive: Path, cache: Path, scratch: Path, repeat: int, env: dict,
                  limit: float) -> dict:  # fmt: skip
    """Figures of one stage, measured by ``benchmarks.stage`` in a fresh process; its scratch
    folder ``scratch/<name>`` is deleted afterwards."""
    stage, folder = STAGES[name], scratch / name
    row: dict[str, Any] = {"name": name, "group": stage.group, "kind": stage.kind,
                           "what": stage.what, "target_s": stage.target_s,
                           "load_1m": harness.load_average()[0]}  # fmt: skip
    argv = _python("-m", "benchmarks.stage", name, "--archive", str(archive), "--cache",
                   str(cache), "--work", str(folder), "--repeat", str(repeat))  # fmt: skip
    proc = harness.run_process(argv, env, rss_limit_mib=limit)
    shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode == 0:
        row |= _last_json(proc.stdout)
    else:
        row |= {"error": _error(proc, limit), "killed": proc.killed}
    row["process_peak_mib"] = max(proc.tree_peak_mib, row.get("process_peak_mib", 0.0))
    row["process_wall_s"] = proc.wall_s
    return row


def run_command(run: Run, archive: Path, cache: Path, base: Path) -> list[str]:
    """The ``engine run`` command line of ``run``; a cold run gets (emptied) folders of its
    own under ``base``, a warm one the shared ``cache`` and ``base/output``."""
    output = base / "output"
    if run.cold:
        cache, output = base / "cold-cache", base / "cold-output"
        for folder in (cache, output):
            shutil.rmtree(folder, ignore_errors=True)
    flags = ["--model", run.model, "--features", run.features]
    flags += [] if run.tracking else ["--no-tracking"]
    return _engine("run", *flags, "--data-path", str(archive), "--output-path", str(output),
                   "--cache-path", str(cache))  # fmt: skip


def measure_run(run: Run, archive: Path, cache: Path, base: Path, repeat: int, env: dict,
                limit: float) -> dict:  # fmt: skip
    """Wall time, CPU time and peak RSS of an ``engine run`` command, each round a fresh
    process (a cold run starts from empty folders every round)."""
    flags = ["--model", run.model, "--features", run.features]
    flags += [] if run.tracking else ["--no-tracking"]
    row: dict[str, Any] = {"name": run.name, "what": run.what, "target_s": run.target_s,
                           "command": " ".join(["engine", "run", *flags]),
                           "load_1m": harness.load_average()[0]}  # fmt: skip
    walls, cpus, peaks, largest = [], [], [], []
    for i in range(int(run.warmup) + (max(repeat, 1) if run.repeat else 1)):
        argv = run_command(run, archive, cache, base)
        proc = harness.run_process(argv, env, rss_limit_mib=limit)
        peaks.append(proc.tree_peak_mib)
        largest.append(proc.peak_rss_mib)
        if proc.returncode != 0:
            row |= {"error": _error(proc, limit), "killed": proc.killed}
            break
        if i >= int(run.warmup):
            walls.append(proc.wall_s)
            cpus.append(proc.cpu_s)
    if run.cold:
        shutil.rmtree(base / "cold-cache", ignore_errors=True)
    if walls:
        row |= {"median_s": statistics.median(walls), "min_s": min(walls), "rounds": len(walls),
                "cpu_s": statistics.median(cpus)}  # fmt: skip
    row["process_peak_mib"] = max(peaks)  # the engine process and its MLflow worker, summed
    row["largest_process_mib"] = max(largest)
    return row


# --- one archive -----------------------------------------------------------------------------
def ensure_archive(work: Path, scale: str, env: dict, echo: Echo) -> tuple[Path, dict]:
    """The archive of ``scale`` under ``work/archives`` (generated once; deterministic), and
    how its generation went (time and peak RSS, from when it was generated)."""
    folder = work / "archives" / ("quick" if scale == "quick" else f"{scale}x")
    meta = folder / "synth.json"
    spec = repr(spec_for(scale))
    if meta.is_file() and all((folder / f).is_file() for f in ARCHIVE_FILES):
        found = json.loads(meta.read_text())
        if found.get("spec") == spec:
            return folder, found | {"reused": True}
    echo(f"generating the {folder.name} archive into {folder} ...")
    shutil.rmtree(folder, ignore_errors=True)
    proc = harness.run_process(
        _python("-m", "benchmarks.stage", "--synth", scale, "--out", str(folder)), env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"generating the {scale} archive failed: {_error(proc, 0)}")
    found = _last_json(proc.stdout)
    peak = max(found["process_peak_mib"], proc.tree_peak_mib)
    found |= {"spec": spec, "wall_s": proc.wall_s, "process_peak_mib": peak}
    meta.write_text(json.dumps(found, indent=1))
    return folder, found | {"reused": False}


def _stage_names(opts: Options, scale: str) -> list[str]:
    names = [n for n in STAGES if opts.wants(n)]
    if scale in ("quick", "1"):
        return names
    big = float(scale) > REFERENCE_MAX_SCALE
    return [n for n in names if n not in SCALE_SKIP and not (big and STAGES[n].kind == REFERENCE)]


def prepare(archive: Path, work: Path, env: dict, limit: float) -> dict:
    """Build the Parquet cache and the model frame in a fresh process: each step's seconds,
    the price rows, and ``frame_error`` when the model frame could not be built."""
    proc = harness.run_process(
        _python("-m", "benchmarks.stage", "--prepare", "--archive", str(archive), "--cache",
                str(work / "cache"), "--work", str(work / "scratch" / "prepare")), env,
        rss_limit_mib=limit,
    )  # fmt: skip
    steps = {}
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):
            found = json.loads(line)
            steps[found.pop("step")] = found
    if "cache" not in steps:
        raise RuntimeError(f"building the Parquet cache of {archive} failed: {_error(proc, limit)}")
    out = {"rows": steps["cache"]["rows"], "steps": steps, "process_peak_mib": proc.tree_peak_mib}
    if proc.returncode != 0:
        out["frame_error"] = _error(proc, limit)
    return out


def measure_point(opts: Options, scale: str, env: dict, echo: Echo, main: bool) -> dict:
    """Every stage (and run) on the archive of ``scale``."""
    work = opts.work
    archive, synth = ensure_archive(work, scale, env, echo)
    prepared = prepare(archive, work, env, PREPARE_LIMIT_FACTOR * opts.rss_limit_mib)
    spec = spec_for(scale)
    point = {"scale": scale, "label": archive.name, "symbols": spec.n_symbols,
             "start": str(spec.start), "end": str(spec.end), "rows": prepared["rows"],
             "csv_mib": synth["csv_bytes"] / 2**20, "synth": synth, "prepare": prepared,
             "stages": [], "runs": []}  # fmt: skip
    echo(f"{archive.name}: {prepared['rows']:,} price rows, {spec.n_symbols} symbols, "
         f"{spec.start} to {spec.end}")  # fmt: skip
    repeat = opts.repeat if main else min(opts.repeat, 1)
    for name in _stage_names(opts, scale):
        if STAGES[name].needs_frame and "frame_error" in prepared:
            row = {"name": name, "kind": STAGES[name].kind, "target_s": STAGES[name].target_s,
                   "load_1m": harness.load_average()[0],
                   "skipped": f"no model frame ({prepared['frame_error']})"}  # fmt: skip
        else:
            row = measure_stage(name, archive, work / "cache", work / "scratch", repeat, env,
                                opts.rss_limit_mib)  # fmt: skip
        point["stages"].append(row)
        echo(_progress(row))
    runs = RUNS if main else SCALE_RUNS
    for run in runs if opts.runs else ():
        if opts.wants(run.name):
            base = work / "runs" / archive.name
            row = measure_run(run, archive, work / "cache", base, repeat, env, opts.rss_limit_mib)
            point["runs"].append(row)
            echo(_progress(row))
    return point


def _progress(row: dict) -> str:
    if "skipped" in row:
        return f"  {row['name']:<28} not run: {row['skipped']}"
    if "error" in row:
        return f"  {row['name']:<28} ERROR {row['error']}"
    return (f"  {row['name']:<28} {row['median_s']:8.3f} s  {row['process_peak_mib']:6.0f} MiB"
            f"  (load {row['load_1m']:.2f})")  # fmt: skip


# --- the whole benchmark ---------------------------------------------------------------------
def ratios(stages: list[dict]) -> list[dict]:
    """pandas reference / engine stage, wall and CPU, from the same run."""
    by_name = {row["name"]: row for row in stages if "median_s" in row}
    out = []
    for engine, reference in RATIOS:
        if engine in by_name and reference in by_name:
            a, b = by_name[engine], by_name[reference]
            out.append({"stage": engine, "reference": reference, "engine_s": a["median_s"],
                        "reference_s": b["median_s"], "ratio": b["median_s"] / a["median_s"],
                        "cpu_ratio": b["cpu_s"] / a["cpu_s"] if a["cpu_s"] else None})  # fmt: skip
    return out


def verdicts(doc: dict) -> tuple[list[str], list[str], list[str], list[str]]:
    """(failures, target misses, engine peaks above the 1 GB goal, notes) over every
    measurement. A failure is an engine stage or run above the ceiling (an in-memory kernel:
    on the main archive only), or any measurement that broke; a pandas reference or probe
    killed by the watchdog, or a stage left out for want of a model frame, is a note."""
    failures, misses, above_goal, notes = [], [], [], []
    points = [doc["main"], *(p for p in doc["scale"] if p is not doc["main"])]
    for point in points:
        for row in [*point["stages"], *point["runs"]]:
            where = f"{point['label']} {row['name']}"
            kind = row.get("kind", ENGINE)
            # an in-memory kernel holds the whole panel: judged on the main archive only
            judged = kind == ENGINE or (kind == KERNEL and point is doc["main"])
            peak = row.get("process_peak_mib", 0.0)
            if "skipped" in row:
                notes.append(f"{where}: not run, {row['skipped']}")
                continue
            if "error" in row:
                (failures if judged or not row.get("killed") else notes).append(
                    f"{where}: {row['error']}"
                )
                continue
            if judged and peak > harness.CEILING_MIB:
                failures.append(f"{where}: peak RSS {peak:.0f} MiB > {harness.CEILING_MIB} MiB")
            elif judged and peak > harness.GOAL_MIB:
                above_goal.append(f"{where}: peak RSS {peak:.0f} MiB > {harness.GOAL_MIB} MiB")
            target = row.get("target_s")
            judge_time = point is doc["main"] and point["scale"] != "quick"
            if target is not None and judge_time and row["median_s"] > target:
                cpu = row.get("cpu_s", math.nan)
                note = "; its CPU time is within the target: the load" if cpu <= target else ""
                misses.append(f"{where}: {row['median_s']:.2f} s > {target:g} s "
                              f"(CPU {cpu:.2f} s, load {row['load_1m']:.2f}{note})")  # fmt: skip
    return failures, misses, above_goal, notes


def run_suite(opts: Options, echo: Echo = print) -> dict:
    """Measure everything ``opts`` asks for; the results document."""
    opts.work.mkdir(parents=True, exist_ok=True)
    env = harness.child_env()
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": opts.command, "options": {k: str(v) for k, v in asdict(opts).items()},
        "machine": harness.machine(),
        "limits": {"ceiling_mib": harness.CEILING_MIB, "goal_mib": harness.GOAL_MIB},
        "load_start": harness.load_average(),
        "probe_start": harness.speed_probe(env),
    }  # fmt: skip
    echo(f"benchmark: load average {doc['load_start']}, {doc['machine']['cores']} cores, "
         f"speed probe {doc['probe_start']}")  # fmt: skip
    if not opts.quick:  # compile imports once, so that no measured process compiles them
        harness.run_process(_python("-c", f"import {WARM_IMPORTS}"), env)
    main_scale = "quick" if opts.quick else "1"
    doc["main"] = measure_point(opts, main_scale, env, echo, main=True)
    doc["scale"] = []
    for scale in () if opts.quick else opts.scales:
        same = scale == main_scale
        doc["scale"].append(doc["main"] if same else measure_point(opts, scale, env, echo, False))
    doc["ratios"] = ratios(doc["main"]["stages"])
    doc["failures"], doc["misses"], doc["above_goal"], doc["notes"] = verdicts(doc)
    doc["load_end"] = harness.load_average()
    doc["probe_end"] = harness.speed_probe(env)
    echo(f"benchmark done: load average {doc['load_end']}, speed probe {doc['probe_end']}")
    return doc


def write(doc: dict, out: Path, update_doc: Path | None = None, data: bool = True) -> list[Path]:
    """``benchmarks.json`` (unless not ``data``) and ``benchmarks.md`` in ``out``; optionally
    the results section of ``update_doc`` (between the ``report.BEGIN`` and ``report.END``
    markers)."""
    from benchmarks import report

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if data:
        written.append(out / "benchmarks.json")
        written[0].write_text(json.dumps(doc, indent=1, default=str))
    text = report.render(doc)
    (out / "benchmarks.md").write_text(text)
    written.append(out / "benchmarks.md")
    if update_doc is not None:
        report.splice(update_doc, text)
        written.append(update_doc)
    return written
