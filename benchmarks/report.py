"""The benchmark results document as markdown: the machine, the stage table, the pandas
ratios, the ``engine run`` commands, the scale curve and the verdict."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.stage import LONG_S
from benchmarks.stages import KERNEL, REFERENCE

BEGIN = "<!-- engine bench: begin generated results -->"
END = "<!-- engine bench: end generated results -->"
KINDS = {REFERENCE: " (pandas)", "probe": " (probe)", KERNEL: " (in memory)"}


def _s(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{3 if value < 1 else digits}f}"


def _mib(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:,.0f}"


def _rows_label(rows: int) -> str:
    return f"{rows / 1e6:.2f}M" if rows >= 1e5 else f"{rows:,}"


def _memory(row: dict, ceiling: float, goal: float, unit: str = "") -> str:
    peak = row.get("process_peak_mib", math.nan)
    mark = " **> 2 GB**" if peak > ceiling else (" > 1 GB" if peak > goal else "")
    return _mib(peak) + unit + mark


def _time(row: dict) -> str:
    if "skipped" in row:
        return f"not run: {row['skipped']}"
    if "error" in row:
        return f"**failed**: {row['error']}"
    target, median = row.get("target_s"), row["median_s"]
    return f"**{_s(median)}**" if target is not None and median > target else _s(median)


def machine_lines(doc: dict) -> list[str]:
    m, libs = doc["machine"], doc["machine"]["libraries"]
    versions = ", ".join(f"{k} {v}" for k, v in libs.items())
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; {m['os']}; "
        f"Python {m['python']}; commit {m['commit']}.",
        "",
        f"Libraries: {versions}.",
        "",
        f"Load average (1, 5, 15 min) at start {doc['load_start']}, at end "
        f"{doc.get('load_end', '?')}; on {m['cores']} cores, a load above {m['cores']} means "
        "other processes shared the CPU: compare ratios and CPU seconds, not single wall times.",
        "",
        *_probe_lines(doc),
        f"Command: `{doc['command']}` ({doc['created']}).",
    ]


def _probe_lines(doc: dict) -> list[str]:
    """The machine speed probe at start and end (``harness.speed_probe``), when recorded."""
    start, end = doc.get("probe_start") or {}, doc.get("probe_end") or {}
    if not start:
        return []
    shown = lambda p, k: f"{p[k]:g} ms" if k in p else "?"  # noqa: E731
    return [
        f"Speed probe (fixed work in a fresh process) at start / end: numpy sort "
        f"{shown(start, 'sort_ms')} / {shown(end, 'sort_ms')}, touching 480 MB of new memory "
        f"{shown(start, 'touch_480mb_ms')} / {shown(end, 'touch_480mb_ms')}; compare runs "
        "only when these agree.",
        "",
    ]


def stage_table(point: dict, limits: dict) -> list[str]:
    lines = [
        f"Archive: {point['label']}, {point['rows']:,} price rows ({point['symbols']} symbols, "
        f"{point['start']} to {point['end']}), {point['csv_mib']:.0f} MiB of CSV.",
        "",
        "| stage | median s | min s | CPU s | rounds | target s | peak RSS MiB | inputs MiB "
        "| load 1m |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in point["stages"]:
        lines.append(
            f"| {row['name']}{KINDS.get(row['kind'], '')} | {_time(row)} | "
            f"{_s(row.get('min_s'))} | {_s(row.get('cpu_s'))} | {row.get('rounds', '')} | "
            f"{_s(row['target_s'])} | {_memory(row, limits['ceiling_mib'], limits['goal_mib'])} "
            f"| {_mib(row.get('inputs_mib'))} | {row['load_1m']:.2f} |"
        )
    return [*lines, "", *LEGEND]


LEGEND = (
    "median s, min s: wall time of the timed calls, after one untimed first call (stages "
    f"marked slow, or whose first call passes {LONG_S:g} s: that one call). CPU s: user + system "
    "seconds over all threads (Polars and DuckDB use both cores: CPU above wall is "
    "parallelism, CPU well below wall is waiting for a busy CPU). Bold: slower than the "
    "target. peak RSS: the whole life of the stage's fresh process (interpreter, imports, "
    "inputs and the stage); that is the figure judged against the 2 GB ceiling. inputs: the "
    "RSS once imports and inputs are loaded, before the stage runs; peak minus inputs is "
    "what the stage itself adds.",
)


def run_table(point: dict, limits: dict) -> list[str]:
    if not point["runs"]:
        return []
    lines = ["| command | what | median s | min s | CPU s | rounds | target s | peak RSS MiB "
             "| load 1m |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for row in point["runs"]:
        lines.append(
            f"| `{row['command']}` | {row['what']} | {_time(row)} | {_s(row.get('min_s'))} | "
            f"{_s(row.get('cpu_s'))} | {row.get('rounds', '')} | {_s(row['target_s'])} | "
            f"{_memory(row, limits['ceiling_mib'], limits['goal_mib'])} | {row['load_1m']:.2f} |"
        )
    return [*lines, "", RUN_LEGEND]


RUN_LEGEND = (
    "Each round is a fresh `engine run` process (warm: the Parquet and model-frame caches "
    "exist; with MLflow, so does the store). CPU s and peak RSS include the process MLflow "
    "logging runs in: the peak is the sum of the RSS of both processes, sampled every 50 ms."
)


def ratio_table(doc: dict) -> list[str]:
    if not doc["ratios"]:
        return []
    lines = ["| engine stage | engine s | pandas reference | pandas s | pandas / engine (wall) "
             "| pandas / engine (CPU) |", "|---|--:|---|--:|--:|--:|"]  # fmt: skip
    for r in doc["ratios"]:
        cpu = f"{r['cpu_ratio']:.1f}x" if r.get("cpu_ratio") else ""
        lines.append(f"| {r['stage']} | {_s(r['engine_s'])} | {r['reference']} | "
                     f"{_s(r['reference_s'])} | {r['ratio']:.1f}x | {cpu} |")  # fmt: skip
    return lines


def scale_table(doc: dict) -> list[str]:
    points = doc["scale"]
    if not points:
        return []
    head = " | ".join(f"{p['label']} ({_rows_label(p['rows'])} rows)" for p in points)
    lines = [f"| stage | {head} |", "|---|" + "--:|" * len(points)]
    synth = " | ".join(
        f"{_s(p['synth'].get('wall_s'))} s, {_mib(p['synth'].get('process_peak_mib'))} MiB"
        for p in points
    )
    lines.append(f"| archive generation (synth; not judged) | {synth} |")
    names = list(dict.fromkeys(r["name"] for p in points for r in [*p["stages"], *p["runs"]]))
    for name in names:
        cells = []
        for p in points:
            row = next((r for r in [*p["stages"], *p["runs"]] if r["name"] == name), None)
            if row is None:
                cells.append("")
            elif "skipped" in row:
                cells.append("not run (no model frame)")
            elif "error" in row:
                cells.append(f"failed, {_mib(row.get('process_peak_mib'))} MiB")
            else:
                peak = _memory(row, doc["limits"]["ceiling_mib"], doc["limits"]["goal_mib"], " MiB")
                cells.append(f"{_s(row['median_s'])} s, {peak}")
        kind = next((r.get("kind") for p in points for r in p["stages"] if r["name"] == name), None)
        lines.append(f"| {name}{KINDS.get(kind, '')} | {' | '.join(cells)} |")
    return lines


def verdict_lines(doc: dict) -> list[str]:
    lines = []
    for title, items in (
        ("Over the 2 GB ceiling or failed (fails the benchmark run)", doc["failures"]),
        ("Slower than the target", doc["misses"]),
        ("Above the 1 GB goal", doc["above_goal"]),
        ("Notes (not judged)", doc.get("notes", [])),
    ):
        lines += [f"**{title}:** " + ("none." if not items else ""), ""]
        lines += [f"- {item}" for item in items] + ([""] if items else [])
    return lines


def render(doc: dict) -> str:
    """The results as markdown (what ``python -m benchmarks`` writes to ``benchmarks.md``)."""
    limits, main = doc["limits"], doc["main"]
    parts = [
        machine_lines(doc),
        ["", "### Stages", "", *stage_table(main, limits)],
        ["", "### pandas reference, same run, same data", "", *ratio_table(doc)],
        ["", "### `engine run`, fresh process each", "", *run_table(main, limits)],
    ]
    if doc["scale"]:
        parts.append(["", "### Scale curve: median s and peak RSS MiB per stage", "",
                      *scale_table(doc)])  # fmt: skip
    parts.append(["", "### Verdict", "", *verdict_lines(doc)])
    return "\n".join(line for part in parts for line in part).rstrip() + "\n"


def splice(path: Path, text: str) -> None:
    """Replace what lies between ``BEGIN`` and ``END`` in ``path`` (appended if absent)."""
    current = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{text}{END}"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        current = head + block + rest.split(END, 1)[1]
    else:
        current = current.rstrip() + ("\n\n" if current else "") + block + "\n"
    path.write_text(current)
