"""Walk-forward and end-to-end run speed on the default archive (measured, never asserted).

Targets (2-core machine, default 1.89M-row synthetic archive, 2010-2024, monthly):
whole walk-forward of each linear model <= 0.5 s; ``engine run --model ridge`` with a
warm cache, MLflow logging included, <= 3 s wall; ``engine run --model all`` < 2 min;
peak memory <= 1 GB.

    .venv/bin/python benchmarks/bench_models.py --output /tmp/bench_out --repeat 3
    .venv/bin/python benchmarks/bench_models.py --output /tmp/bench_out --cli   # + CLI runs

Walk-forward timings are in-process (median of ``--repeat`` after one warm-up) on data
prepared once. CLI runs are fresh processes under ``/usr/bin/time -v`` (wall, peak RSS),
the first one warming the Parquet and model-frame caches. Note: when
PYTHONDONTWRITEBYTECODE=1 is set and the venv holds no .pyc files, every process
compiles its imports from source (~1-2 s more per run, ~3 s more with MLflow); set
PYTHONPYCACHEPREFIX to a writable folder and unset that variable to measure warm imports.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENGINE = [str(ROOT / ".venv" / "bin" / "engine")]


def default_archive(output: Path) -> Path:
    """The folder of the embedded default synthetic archive under ``output``'s cache,
    generated once."""
    from engine.config import Paths
    from engine.data.sources import default_spec, ensure_synthetic, synthetic_folder

    spec = default_spec()
    return ensure_synthetic(synthetic_folder(Paths(output=output), spec), spec)


def walk_forward_times(output: Path, repeat: int) -> dict[str, float]:
    """Median seconds of each model's whole walk-forward on the default archive."""
    from engine.config import Paths, RunSpec, TrackingSpec
    from engine.data.sources import resolve_archive
    from engine.pipeline import StageTimer, prepare
    from engine.pipeline import evaluate as ev
    from engine.schema import ModelName

    paths = Paths(data=default_archive(output), output=output)
    settings = RunSpec(paths=paths, tracking=TrackingSpec(enabled=False))
    archive = resolve_archive(settings.paths)
    prepared = prepare(archive, settings, StageTimer())
    calendar = prepared.market.calendar
    out = {}
    for model in ModelName:
        config = settings.with_model(model).model
        runs = 1 if model in {ModelName.RANDOM_FOREST, ModelName.HIST_GBM} else repeat
        if runs > 1:
            ev.score(prepared.data, config, settings.walk_forward.rebalance, calendar)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            ev.score(prepared.data, config, settings.walk_forward.rebalance, calendar)
            times.append(time.perf_counter() - start)
        out[model.value] = statistics.median(times)
    return out


def cli_run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one ``engine run`` in a fresh process."""
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *ENGINE, "run", *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    hours, minutes, seconds = (float(g or 0) for g in wall.groups())
    return hours * 3600 + minutes * 60 + seconds, int(rss.group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_models"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="also time engine run commands")
    opts = parser.parse_args()
    base = ["--data-path", str(default_archive(opts.output)), "--output-path", str(opts.output)]
    if opts.cli:
        cli_run(["--no-tracking", *base])  # warm the caches
    for model, seconds in walk_forward_times(opts.output, opts.repeat).items():
        print(f"walk-forward {model:<14} {seconds:7.2f} s")
    if not opts.cli:
        return
    for label, args in (
        ("run ridge --no-tracking", ["--no-tracking", *base]),
        ("run ridge (MLflow)", base),
        ("run all --no-tracking", ["--model", "all", "--no-tracking", *base]),
    ):
        wall, rss = cli_run(args)
        print(f"{label:<26} {wall:7.2f} s wall  {rss:7.0f} MB peak RSS")


if __name__ == "__main__":
    main()
