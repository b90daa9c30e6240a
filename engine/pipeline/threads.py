"""Work that runs on a thread of its own while the run goes on.

The walk-forward's per-period sums keep one core busy (BLAS on one thread, a loop over
periods). Work that reads only what is already computed and is needed only later (the
factor returns) is started here and waited for where its result is needed, so that it
uses the other core meanwhile.

The thread is a daemon: a run that ends early (an error, Ctrl-C) exits without waiting
for work whose result nobody will read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def started(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` running on a new daemon thread; ``result()`` of the future waits for
    it and raises what it raised."""
    future: Future[T] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever waits for the result
            future.set_exception(exc)

    name = getattr(fn, "__name__", "work")
    threading.Thread(target=work, name=name, daemon=True).start()
    return future
