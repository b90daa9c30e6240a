"""Run models on an archive, write their outputs and HTML reports, and time the report.

Until ``engine run`` writes the report itself, this is how to get one:

    .venv/bin/python scripts/report_demo.py --data /work/wt/report-data/1x --out /tmp/out \\
        --model ridge --model momentum [--screenshot docs/img/report.png]

It prints the seconds each report step adds to the run (factor returns once per run; per
model: the report's tables, writing them, rendering the page) and, with
``--screenshot``, saves the top of the first model's report as seen by headless Chromium.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from engine.config import Settings
from engine.data.archive import load_archive
from engine.pipeline import StageTimer, evaluate_model, prepare
from engine.pipeline.compare import comparison_table, deflate
from engine.report import write_comparison, write_outputs
from engine.report.html import render_comparison, render_report
from engine.report.tables import report_tables, run_factors, write_report_tables
from engine.schema import DataSource, ModelName

log = logging.getLogger("report_demo")


class Clock:
    """Seconds spent per named step, summed over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def time(self, name: str, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return out


def _imports() -> None:
    """The report's libraries, imported lazily by the engine (timed on their own)."""
    import jinja2  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    from statsmodels.regression.linear_model import OLS  # noqa: F401


def build(args: argparse.Namespace) -> tuple[Path, Clock]:
    """Run the models and write every output and report; return the folder and timings."""
    archive = load_archive(args.data, args.cache, DataSource(args.source))
    settings = Settings(output_path=args.out, cache_path=args.cache, tracking=False)
    prepared = prepare(archive, settings, StageTimer())
    models = [ModelName(m) for m in args.model]
    runs = [
        evaluate_model(archive, settings.replace(model=m), prepared, StageTimer()) for m in models
    ]
    results = deflate(runs) if len(runs) > 1 else runs
    if len(results) > 1:
        write_comparison(comparison_table(results), results, args.out, plots=False)
    clock = Clock()
    clock.time("imports", _imports)
    factors = clock.time(
        "factor returns", run_factors, prepared.data, prepared.market, settings.execution_lag
    )
    for result in results:
        write_outputs(result, args.out, plots=False)
        tables = clock.time("report tables", report_tables, result, prepared.market, factors)
        clock.time("write tables", write_report_tables, tables, args.out)
        clock.time("render html", render_report, args.out, result.settings.model.value)
    if len(results) > 1:
        clock.time("render comparison", render_comparison, args.out)
    return args.out, clock


def screenshot(page: Path, target: Path, height: int) -> None:
    """The top ``height`` pixels of ``page`` at 1280 px wide, opened offline in Chromium."""
    from playwright.sync_api import sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        view = browser.new_page(viewport={"width": 1280, "height": height})
        view.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
        )
        view.goto(page.resolve().as_uri(), wait_until="load")
        target.parent.mkdir(parents=True, exist_ok=True)
        view.screenshot(path=target)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the three CSVs")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cache", type=Path, help="cache folder [OUT/cache]")
    parser.add_argument("--source", default="synthetic", choices=[s.value for s in DataSource])
    parser.add_argument("--model", action="append", help="model (repeatable) [ridge]")
    parser.add_argument("--screenshot", type=Path, help="save the first report's top here")
    parser.add_argument("--height", type=int, default=1500, help="screenshot height, px")
    args = parser.parse_args()
    args.model = args.model or ["ridge"]
    args.cache = args.cache or args.out / "cache"
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    folder, clock = build(args)
    for name, seconds in clock.seconds.items():
        log.info("%-18s %.2f s", name, seconds)
    log.info("%-18s %.2f s", "report, total", sum(clock.seconds.values()))
    if args.screenshot:
        screenshot(folder / f"report_{args.model[0]}.html", args.screenshot, args.height)


if __name__ == "__main__":
    main()
