"""SIGTERM in the tracking worker: how the engine process ends it (``Pool.terminate``).

During a run the worker answers it by raising ``SystemExit`` (``stop``, installed by
``worker._log``), so that the run's cleanup runs: MLflow ends the run as failed and
temporary folders are removed. Inside a ``whole`` block (creating or ending a run in the
store) the answer waits until the block ends, so that a run is never left RUNNING. Python
runs signal handlers in the main thread whichever thread the kernel picks, so this holds
whatever threads MLflow or its store start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # how many ``whole`` blocks are running
_pending: int | None = None  # a signal that came during one, answered when they end


def stop(signum: int, frame: object) -> None:
    """The worker's SIGTERM handler during a run: raise ``SystemExit(128 + signum)``, now
    or, inside a ``whole`` block, when it ends."""
    global _pending
    if _depth:
        _pending = signum
        return
    raise SystemExit(128 + signum)


@contextmanager
def whole() -> Iterator[None]:
    """A block that ``stop`` does not break: a SIGTERM that comes meanwhile ends the
    process when it ends."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            raise SystemExit(128 + signum)
