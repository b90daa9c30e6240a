"""Run outputs on disk and the printed summary.

Every file is written atomically (temporary file in the same folder, fsync, rename),
so a reader or a crash never sees a half-written file under its final name.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from engine.pipeline import RunResult

CAVEATS = (
    "Survivorship bias: the universe is today's S&P 500 constituents, so past returns of "
    "the universe are overstated.",
    "The S&P 500 index file is a price index (no dividends); the portfolio and the "
    "equal-weight universe use Adj Close (dividends included).",
)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(fileobj)`` into a temporary file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_safe(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def metrics_document(result: RunResult) -> dict:
    """The metrics JSON: metrics, data identity, settings, caveats and stage timings."""
    return {
        "model": result.settings.model.value,
        "dataset_fingerprint": result.fingerprint,
        "data_source": result.source,
        "metrics": {k: _json_safe(v) for k, v in sorted(result.metrics.items())},
        "settings": result.settings.as_params(),
        "features": list(result.features),
        "period": {
            "start": str(result.equity["date"].min()) if result.equity.height else None,
            "end": str(result.equity["date"].max()) if result.equity.height else None,
        },
        "caveats": list(CAVEATS),
        "timings_s": result.timings,
    }


def write_outputs(result: RunResult, folder: Path) -> dict[str, Path]:
    """Write portfolio, holdings history, equity curve and metrics for the run's model."""
    model = result.settings.model.value
    portfolio = result.holdings.select("symbol", "name", "sector", "weight", "score")
    files = {
        "portfolio": (f"portfolio_{model}.csv", lambda f: portfolio.write_csv(f)),
        "holdings": (f"holdings_{model}.csv", lambda f: result.history.write_csv(f)),
        "equity": (f"equity_{model}.csv", lambda f: result.equity.write_csv(f)),
        "metrics": (
            f"metrics_{model}.json",
            lambda f: f.write(json.dumps(metrics_document(result), indent=2).encode()),
        ),
    }
    return {key: atomic_write(folder / name, fn) for key, (name, fn) in files.items()}


def summary(result: RunResult) -> str:
    """A short human summary of the run, ending with the caveats."""
    m = result.metrics
    lines = [
        f"model {result.settings.model.value} on {result.source} data "
        f"(fingerprint {result.fingerprint[:12]})",
        f"  out-of-sample rank IC {m.get('ic_mean', float('nan')):+.4f} "
        f"(t {m.get('ic_tstat', float('nan')):+.2f}, {int(m.get('ic_periods', 0))} periods), "
        f"R2 {m.get('r2_oos', float('nan')):+.4f}",
        f"  portfolio CAGR net {m['net_cagr']:+.2%} gross {m['gross_cagr']:+.2%}, "
        f"Sharpe {m['net_sharpe']:.2f}, max drawdown {m['net_max_drawdown']:.1%}",
        f"  index (price) CAGR {m['index_cagr']:+.2%} -> excess {m['excess_cagr_vs_index']:+.2%}; "
        f"equal-weight universe CAGR {m['universe_cagr']:+.2%} -> excess "
        f"{m['excess_cagr_vs_universe']:+.2%}",
    ]
    return "\n".join([*lines, *(f"  caveat: {c}" for c in CAVEATS)])
