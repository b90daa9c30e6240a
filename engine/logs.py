"""Where the engine's messages go, and the progress lines of its stages.

Messages go to stderr, one line each, prefixed ``engine:`` (the CLI and the tracking
worker, a process with its own logging, print the same way); other libraries' loggers
stay at WARNING. ``StageTimer`` times the stages of a run (the pipeline's, tracking's) and
logs when each starts and ends.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def to_stderr(level: int) -> None:
    """Send ``engine`` messages at ``level`` and above, and others' warnings, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("engine: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("engine").setLevel(level)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name), for a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass
class StageTimer:
    """Wall time of each stage, in seconds, in the order the stages ran.

    Attributes
    ----------
    seconds : stage name -> wall time, seconds.
    prefix : put before each stage's name in the log (``"tracking: "``).
    level : the log level of the start and end lines of a stage.
    """

    seconds: dict[str, float] = field(default_factory=dict)
    prefix: str = ""
    level: int = logging.INFO

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name``; log its start (``name ...``) and its end."""
        start = time.perf_counter()
        log.log(self.level, "%s%s ...", self.prefix, name)
        yield
        self.seconds[name] = time.perf_counter() - start
        log.log(self.level, "%s%s done in %.2f s", self.prefix, name, self.seconds[name])

    def line(self) -> str:
        """The total and every stage on one line: ``<prefix>1.23 s (a 0.50, b 0.73)``."""
        stages = ", ".join(f"{k} {v:.2f}" for k, v in self.seconds.items())
        return f"{self.prefix}{sum(self.seconds.values()):.2f} s ({stages})"
