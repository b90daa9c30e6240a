"""Work that runs on a thread of its own while the run goes on.

The walk-forward's per-period sums keep one core busy (BLAS on one thread, a loop over
periods). Work that reads only what is already computed and is needed only later (the
factor returns) is started here and waited for where its result is needed, so that it
uses the other core meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def started(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` running on a new thread; ``result()`` of the future waits for it and
    raises what it raised."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=getattr(fn, "__name__", "work"))
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends when its one task does
