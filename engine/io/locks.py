"""Cross-process locks with a bounded wait: ``filelock.FileLock`` (``flock`` on a lock file).

The kernel releases a ``flock`` when its holder exits, however it exits (SIGKILL
included), so a crashed run never leaves a stale lock behind. Waiting is bounded: a
holder that never lets go (a hung process, a stuck network store) ends the wait with
``LockTimeout``, one line naming what is locked and the lock file, instead of a hang.

* ``output_lock``: held by ``engine run`` while it writes its outputs and records its
  MLflow run, so the files in one output folder always come from one run and each run's
  MLflow artifacts are the files it wrote (concurrent runs compute in parallel and
  take turns only for this phase).
* ``build_lock``: held while one build of a cache entry (the archive's tables, a model
  frame) runs, so that concurrent runs build it once.
* ``registry.store_lock`` uses ``exclusive`` for the MLflow store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import filelock

log = logging.getLogger(__name__)

OUTPUT_LOCK = ".engine-output.lock"
# Another run's write-and-track phase takes seconds (a slow tracking server: its request
# timeouts and retries); a wait this long means something is stuck.
OUTPUT_WAIT_S = 900.0
# A build of a cache entry by another process (a large archive's model frame) can take
# minutes; a wait this long means that process is stuck.
BUILD_WAIT_S = 3_600.0
POLL_S = 0.05


class LockTimeout(TimeoutError):
    """The lock stayed held by another process for the whole wait (one line)."""


@contextlib.contextmanager
def exclusive(path: Path, wait_s: float, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block.

    Parameters
    ----------
    path : the lock file; its content is never used.
    wait_s : seconds to wait for another holder before raising ``LockTimeout``.
    what : what the lock protects, for the log and the error message (no secrets).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path, poll_interval=POLL_S)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        log.info("waiting for another process using %s ...", what)
        try:
            lock.acquire(timeout=wait_s)
        except filelock.Timeout:
            message = f"{what} is locked by another process: waited {wait_s:g} s for {path}"
            raise LockTimeout(message) from None
    try:
        yield
    finally:
        lock.release()


def output_lock(folder: Path, wait_s: float = OUTPUT_WAIT_S) -> contextlib.AbstractContextManager:
    """The lock on an output folder (``<folder>/.engine-output.lock``)."""
    return exclusive(Path(folder) / OUTPUT_LOCK, wait_s, f"output folder {folder}")


def build_lock(path: Path, what: str) -> contextlib.AbstractContextManager:
    """The lock serialising the builds of one cache entry (``path``: its lock file)."""
    return exclusive(path, BUILD_WAIT_S, what)
