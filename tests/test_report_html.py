"""The HTML report: rendered from a run's files alone, self-contained, and opened in a
real headless Chromium (Debian's package) with the network blocked. Without
/usr/bin/chromium the browser tests skip and say why, unless ENGINE_REQUIRE_CHROMIUM=1
(CI) makes that a failure."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from markupsafe import escape

from engine.cli import main
from engine.config import RunSpec
from engine.data.archive import load_archive
from engine.pipeline import StageTimer, evaluate_model, prepare
from engine.pipeline.compare import comparison_table, deflate
from engine.report import comparison_files, output_files, publish_outputs, rebuild
from engine.report.errors import ReportError
from engine.report.sections import COMPARISON_SECTIONS, SECTIONS
from engine.schema import ModelName

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MODELS = (ModelName.RIDGE, ModelName.MOMENTUM, ModelName.EQUAL_WEIGHT)
CHARTS = 11  # Plotly charts of a model's page


@pytest.fixture(scope="module")
def outputs(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every output of a three-model run and its reports, written as
    ``engine run`` writes them."""
    archive = load_archive(small_archive, tmp_path_factory.mktemp("html-cache"))
    folder = tmp_path_factory.mktemp("html-out")
    spec = RunSpec().replace(**{"paths.output": folder, "tracking.enabled": False})
    prepared = prepare(archive, spec, StageTimer())
    results = deflate(
        [evaluate_model(archive, spec.with_model(m), prepared, StageTimer()) for m in MODELS]
    )
    groups = [output_files(result) for result in results]
    groups.append(comparison_files(comparison_table(results), groups))
    publish_outputs(folder, groups, MODELS)
    return folder


def test_the_page_is_self_contained(outputs: Path):
    html = (outputs / "report_ridge.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)
    assert "<style>" in html
    assert html.count('class="plotly-graph-div"') == CHARTS
    for section in SECTIONS:
        assert f'<section id="{section.id}"' in html and escape(section.how) in html


def test_the_page_is_rebuilt_from_the_files_alone(outputs: Path, tmp_path: Path):
    """Copy only the files the page reads to a new folder: the same page comes out."""
    names = ["metrics_ridge.json", "report_ridge.json", "report_ridge.parquet",
             "portfolio_ridge.csv", "attribution_ridge.csv"]  # fmt: skip
    for name in names:
        shutil.copy(outputs / name, tmp_path / name)
    (page,) = rebuild(tmp_path, "ridge")
    rebuilt = page.read_text()
    original = (outputs / "report_ridge.html").read_text()
    strip = re.compile(r'id="[0-9a-f-]{36}"|"[0-9a-f-]{36}"')  # no random ids expected, but safe
    assert strip.sub("", rebuilt) == strip.sub("", original)


def test_a_missing_file_is_a_one_line_error(outputs: Path, tmp_path: Path):
    shutil.copy(outputs / "metrics_ridge.json", tmp_path)
    with pytest.raises(ReportError, match=r"report_ridge\.json not found .*engine run"):
        rebuild(tmp_path, "ridge")


def test_engine_report_rebuilds_every_page_from_the_outputs(outputs: Path, tmp_path: Path):
    for path in outputs.iterdir():
        if path.is_file() and not path.name.endswith(".html"):
            shutil.copy(path, tmp_path / path.name)
    done = CliRunner().invoke(main, ["report", "--output-path", str(tmp_path)])
    assert done.exit_code == 0, done.output
    pages = sorted(p.name for p in outputs.glob("report_*.html"))
    assert sorted(p.name for p in tmp_path.glob("report_*.html")) == pages
    assert len(pages) == len(MODELS) + 1
    for name in pages:
        assert (tmp_path / name).read_bytes() == (outputs / name).read_bytes(), name
    one = CliRunner().invoke(main, ["report", "-m", "momentum", "--output-path", str(tmp_path)])
    assert one.exit_code == 0 and one.stdout.strip().endswith("report_momentum.html")


@pytest.mark.parametrize("model", [None, "ridge"])
def test_engine_report_without_outputs_is_a_one_line_error(tmp_path: Path, model):
    flags = ["-m", model] if model else []
    for folder in (tmp_path / "absent", tmp_path):
        done = CliRunner().invoke(main, ["report", *flags, "--output-path", str(folder)])
        assert done.exit_code == 1
        assert done.stderr.startswith("engine: error: ") and done.stderr.count("\n") == 1
        assert "run `engine run` first" in done.stderr


def test_a_truncated_report_file_is_a_one_line_error(outputs: Path, tmp_path: Path):
    for path in outputs.glob("*_ridge.*"):
        shutil.copy(path, tmp_path / path.name)
    data = (tmp_path / "report_ridge.json").read_bytes()
    (tmp_path / "report_ridge.json").write_bytes(data[: len(data) // 2])
    done = CliRunner().invoke(main, ["report", "-m", "ridge", "--output-path", str(tmp_path)])
    assert done.exit_code == 1 and done.stderr.count("\n") == 1
    assert "output files of ridge" in done.stderr and "unreadable" in done.stderr


def test_the_verdict_of_the_comparison_names_the_trials(outputs: Path):
    html = (outputs / "report_comparison.html").read_text()
    metrics = json.loads((outputs / "metrics_ridge.json").read_text())["metrics"]
    assert metrics["trials"] == len(MODELS)
    assert all(f'href="report_{m.value}.html"' in html for m in MODELS)
    assert "deflated Sharpe" in html


# --- in a real browser ------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is absent (apt-get install chromium gives it)"
        if os.environ.get("ENGINE_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}; ENGINE_REQUIRE_CHROMIUM=1 requires it")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_offline(browser, page_file: Path):
    """Open ``page_file`` from disk with every non-file request aborted; return the page,
    the console errors and the requests that tried the network."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    network: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            network.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(page_file.as_uri(), wait_until="load")
    return page, errors, network


def rendered_traces(page) -> list[int]:
    """Traces drawn in each Plotly chart (each must hold an SVG)."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map("
        "g => g.querySelector('svg.main-svg') ? g.data.length : -1)"
    )


def test_the_report_opens_offline_with_every_section_and_chart(browser, outputs, tmp_path):
    page, errors, network = open_offline(browser, outputs / "report_ridge.html")
    for section in SECTIONS:
        assert page.locator(f"section#{section.id}").is_visible(), section.id
    traces = rendered_traces(page)
    assert len(traces) == CHARTS and min(traces) >= 1, traces
    assert "forecasting skill" in page.inner_text("#headline")
    assert page.locator("#holdings-table tr").count() == 11  # header + top 10
    page.screenshot(path=tmp_path / "report_ridge.png", full_page=True)
    assert (tmp_path / "report_ridge.png").stat().st_size > 50_000
    assert errors == [] and network == []


def test_a_model_without_ic_still_renders(browser, outputs):
    page, errors, network = open_offline(browser, outputs / "report_equal_weight.html")
    traces = rendered_traces(page)
    assert len(traces) == CHARTS and errors == [] and network == []
    assert "No forecasting skill to judge" in page.inner_text("#verdict")


def test_the_comparison_page_opens_offline(browser, outputs, tmp_path):
    page, errors, network = open_offline(browser, outputs / "report_comparison.html")
    for section in COMPARISON_SECTIONS:
        assert page.locator(f"section#{section.id}").is_visible(), section.id
    assert rendered_traces(page) == [len(MODELS) + 1]  # every model and the universe
    assert page.locator("#verdict-table tr").count() == len(MODELS) + 1
    page.screenshot(path=tmp_path / "report_comparison.png", full_page=True)
    assert errors == [] and network == []
