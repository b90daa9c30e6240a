"""Run one benchmark stage in this (fresh) process and print its figures as one JSON line.

    python -m benchmarks.stage NAME --archive DIR --cache DIR --work DIR [--repeat N]
    python -m benchmarks.stage --prepare --archive DIR --cache DIR --work DIR
    python -m benchmarks.stage --synth SCALE --out DIR     (SCALE: quick, or 0.25, 1, 4, ...)

Timing: one first call, then ``--repeat`` timed calls; their median and min are reported.
A stage marked slow, or whose first call takes over ``LONG_S``, is called once and that
call is the figure. CPU seconds are user + system over all threads of the timed calls.

Memory (MiB): ``inputs_mib`` is the RSS once the imports and the stage's inputs are loaded;
``peak_mib`` is the RSS high-water mark from that point (inputs resident + the stage's own
work), i.e. what the stage needs when it runs inside a pipeline holding only its inputs;
``process_peak_mib`` is the whole process's peak, loading included (``VmHWM`` before and
after the reset; see ``harness`` on why not ``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness
from benchmarks.stages import STAGES, Context, Stage, spec_for

LONG_S = 20.0


def measure(stage: Stage, ctx: Context, repeat: int) -> dict[str, object]:
    """Figures of ``stage`` run in this process (see the module docstring)."""
    task = stage.build(ctx)
    gc.collect()
    inputs, loading_peak = harness.status_mib("VmRSS"), harness.status_mib("VmHWM")
    harness.reset_peak_rss()
    walls, cpus = [], []
    for call in range(1 + repeat):
        task.setup()
        gc.collect()
        started, cpu = time.perf_counter(), harness.cpu_seconds()
        out = task.run()
        walls.append(time.perf_counter() - started)
        cpus.append(harness.cpu_seconds() - cpu)
        del out
        if call == 0 and (stage.slow or walls[0] > LONG_S or repeat == 0):
            break
    timed, peak = walls[1:] or walls, harness.status_mib("VmHWM")
    return {
        "name": stage.name,
        "median_s": statistics.median(timed),
        "min_s": min(timed),
        "first_s": walls[0],
        "rounds": len(timed),
        "cpu_s": statistics.median(cpus[1:] or cpus),
        "inputs_mib": inputs,
        "peak_mib": peak,
        "process_peak_mib": max(peak, loading_peak),
        "extra": task.extra,
    }


def prepare(ctx: Context) -> None:
    """Build the Parquet cache, the cached model frame and the date-sorted feature panel
    (what the stages read); print
    one JSON line after each step, so a caller learns how far it got."""
    import polars as pl

    started = time.perf_counter()
    rows = pl.scan_parquet(ctx.table("prices")).select(pl.len()).collect().item()
    print(json.dumps({"step": "cache", "seconds": time.perf_counter() - started, "rows": rows,
                      "cache_dir": str(ctx.archive.cache_dir)}), flush=True)  # fmt: skip
    started = time.perf_counter()
    _ = ctx.prepared
    print(json.dumps({"step": "frame", "seconds": time.perf_counter() - started}), flush=True)
    from benchmarks.bench_features import panel_by_date  # the normalisation stages' input

    started = time.perf_counter()
    panel_by_date(ctx.table("prices"), ctx.table("index"), load=False)
    print(json.dumps({"step": "panel", "seconds": time.perf_counter() - started}), flush=True)


def synth(scale: str, out: Path) -> dict[str, object]:
    """Generate the archive ``scale`` (``quick`` or a multiple of the default rows)."""
    from engine.data.synth import synthesize

    spec = spec_for(scale)
    started = time.perf_counter()
    paths = synthesize(out, spec)
    return {
        "seconds": time.perf_counter() - started,
        "symbols": spec.n_symbols,
        "start": str(spec.start),
        "end": str(spec.end),
        "csv_bytes": sum(p.stat().st_size for p in paths.values()),
        "process_peak_mib": harness.status_mib("VmHWM"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=sorted(STAGES))
    parser.add_argument("--archive", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prepare", action="store_true", help="build the caches only")
    parser.add_argument("--synth", metavar="SCALE", help="generate an archive: quick or x rows")
    parser.add_argument("--out", type=Path, help="folder of --synth")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if args.synth is not None:
        print(json.dumps(synth(args.synth, args.out)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.archive, args.cache, args.work)
    if args.prepare:
        prepare(ctx)
        return
    if args.name is None:
        parser.error("a stage name, --prepare or --synth is required")
    print(json.dumps(measure(STAGES[args.name], ctx, args.repeat)))


if __name__ == "__main__":
    main()
