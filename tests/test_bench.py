"""`python -m benchmarks`: the harness runs on a tiny archive and writes valid JSON and markdown.

No timing is ever asserted here: only that the figures exist and the documents hold them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks import pandas_reference, report, suite
from benchmarks.__main__ import bench
from benchmarks.stages import Context, scale_spec
from engine.pipeline import evaluate as ev
from engine.schema import ModelName

SUBSET = "csv_ingest,pandas_csv,walkforward_ridge,pandas_walkforward"


def _bench(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        bench,
        [
            "--quick",
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(tmp_path / "work"),
            *args,
        ],
    )
    return result.exit_code, result.stdout, result.stderr


def test_quick_bench_writes_json_and_markdown(tmp_path: Path) -> None:
    doc_file = tmp_path / "benchmarks.md"
    doc_file.write_text(
        f"# Benchmarks\n\nhand-written\n\n{report.BEGIN}\nOLD RESULTS\n{report.END}\n"
    )
    code, _, stderr = _bench(tmp_path, "--only", SUBSET, "--no-runs", "--update-doc", str(doc_file))
    assert code == 0, stderr
    doc = json.loads((tmp_path / "out" / "benchmarks.json").read_text())
    assert [row["name"] for row in doc["main"]["stages"]] == SUBSET.split(",")
    for row in doc["main"]["stages"]:
        assert "error" not in row, row
        assert row["median_s"] >= 0 and row["rounds"] == 1
        assert row["process_peak_mib"] > row["inputs_mib"] > 0
    assert doc["main"]["rows"] > 0 and doc["main"]["synth"]["csv_bytes"] > 0
    assert {r["reference"] for r in doc["ratios"]} == {"pandas_csv", "pandas_walkforward"}
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["libraries"]["polars"]
    assert doc["failures"] == [] and len(doc["load_start"]) == 3
    for probe in (doc["probe_start"], doc["probe_end"]):  # the machine's speed, start and end
        assert probe["sort_ms"] > 0 and probe["touch_480mb_ms"] > 0
    markdown = (tmp_path / "out" / "benchmarks.md").read_text()
    assert "| stage | median s |" in markdown and "| walkforward_ridge |" in markdown
    assert "pandas_walkforward (pandas)" in markdown and "Machine:" in markdown
    assert "Speed probe (fixed work in a fresh process) at start / end: numpy sort" in markdown
    spliced = doc_file.read_text()
    assert spliced.startswith("# Benchmarks\n\nhand-written") and "OLD RESULTS" not in spliced
    assert spliced.count(report.BEGIN) == 1 and "| walkforward_ridge |" in spliced
    again = CliRunner().invoke(bench, ["--from-json", str(tmp_path / "out" / "benchmarks.json"),
                                      "--out", str(tmp_path / "again")])  # fmt: skip
    assert again.exit_code == 0 and (tmp_path / "again" / "benchmarks.md").read_text() == markdown


def test_bench_lists_stages_and_rejects_unknown_names(tmp_path: Path) -> None:
    result = CliRunner().invoke(bench, ["--list"])
    assert result.exit_code == 0 and "walkforward_hist_gbm" in result.stdout
    code, _, stderr = _bench(tmp_path, "--only", "no_such_stage")
    assert code == 1 and "unknown stage or run no_such_stage" in stderr


def test_bench_exits_4_when_a_stage_passes_the_ceiling(tmp_path: Path, monkeypatch) -> None:
    document = _document()
    monkeypatch.setattr(suite, "run_suite", lambda options, echo: document)
    code, _, stderr = _bench(tmp_path)
    assert code == 4 and "2 GB ceiling" in stderr
    assert (tmp_path / "out" / "benchmarks.json").is_file()


def test_pandas_reference_scores_equal_the_engine_ridge(small_archive: Path, tmp_path: Path):
    """Same rows, penalty, purge and dates: the refit-every-rebalance reference does the
    engine's work, so their speeds are comparable."""
    ctx = Context(small_archive, tmp_path / "cache", tmp_path / "work")
    data = ctx.prepared.data
    spec = ctx.settings.with_model(ModelName.RIDGE)
    calendar = ctx.prepared.market.calendar
    engine = ev.score(data, spec.model, spec.walk_forward.rebalance, calendar).scores
    frame, rebalances = pandas_reference.inputs(ctx.archive, ctx.settings, data)
    reference = pandas_reference.walk_forward_ridge(frame, data.features, data.label, rebalances)
    assert np.isfinite(engine).sum() > 100
    np.testing.assert_allclose(reference.to_numpy(), engine, rtol=1e-6, atol=1e-9)


def test_scale_spec_scales_symbols_and_days_by_the_square_root() -> None:
    for factor in (0.25, 4, 10):
        spec, base = scale_spec(factor), scale_spec(1)
        assert spec.end == base.end and spec.n_symbols == round(503 * math.sqrt(factor))
    with pytest.raises(ValueError, match="scale"):
        suite.parse_scales("1,-4")


def _row(name: str, kind: str, peak: float, **more) -> dict:
    return {"name": name, "kind": kind, "target_s": None, "median_s": 1.0, "min_s": 0.9,
            "cpu_s": 1.5, "rounds": 3, "process_peak_mib": peak, "inputs_mib": 100.0,
            "load_1m": 1.0, **more}  # fmt: skip


def _point(label: str, rows: list[dict]) -> dict:
    return {"scale": label.rstrip("x"), "label": label, "symbols": 503, "start": "2010-01-04",
            "end": "2024-12-20", "rows": 1_887_348, "csv_mib": 137.0, "runs": [],
            "synth": {"wall_s": 5.0, "process_peak_mib": 470.0, "csv_bytes": 1},
            "stages": rows}  # fmt: skip


def _document() -> dict:
    main_point = _point("1x", [_row("model_frame", "engine", 900.0, target_s=0.5),
                               _row("pandas_normalise", "reference", 2100.0),
                               _row("polars_normalise", "kernel", 2050.0)])  # fmt: skip
    big = _point("10x", [_row("model_frame", "engine", 5000.0),
                         _row("polars_normalise", "kernel", 7000.0),
                         _row("walkforward_ridge", "engine", 0, error="killed at 8192 MiB")])  # fmt: skip
    doc = {"schema": 1, "created": "now", "command": "engine bench --scales 1,10",
           "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24, "os": "linux",
                       "python": "3.11", "libraries": {"polars": "2"}, "commit": "abc"},
           "limits": {"ceiling_mib": 2048, "goal_mib": 1024}, "load_start": [1, 1, 1],
           "load_end": [1, 1, 1], "main": main_point, "scale": [main_point, big],
           "ratios": []}  # fmt: skip
    doc["failures"], doc["misses"], doc["above_goal"], doc["notes"] = suite.verdicts(doc)
    return doc


def test_verdicts_fail_engine_stages_only_and_render_the_scale_curve() -> None:
    doc = _document()
    assert doc["failures"] == [  # a kernel holds the whole panel: judged on the main archive
        "1x polars_normalise: peak RSS 2050 MiB > 2048 MiB",
        "10x model_frame: peak RSS 5000 MiB > 2048 MiB",
        "10x walkforward_ridge: killed at 8192 MiB",
    ]
    assert doc["misses"] == ["1x model_frame: 1.00 s > 0.5 s (CPU 1.50 s, load 1.00)"]
    assert doc["above_goal"] == []  # 900 MiB; the 2100 MiB pandas reference is not judged
    markdown = report.render(doc)
    assert "| model_frame | 1.00 s, 900 MiB | 1.00 s, 5,000 MiB **> 2 GB** |" in markdown
    assert "failed, 0 MiB" in markdown and "Scale curve" in markdown
    assert "| polars_normalise (in memory) | 1.00 s, 2,050 MiB **> 2 GB** |" in markdown


def test_the_speed_probe_line_is_left_out_of_documents_without_one() -> None:
    doc = _document()
    assert "Speed probe" not in report.render(doc)
    doc |= {"probe_start": {"sort_ms": 1.0, "touch_480mb_ms": 200.0}, "probe_end": {}}
    assert "numpy sort 1 ms / ?, touching 480 MB of new memory 200 ms / ?" in report.render(doc)
