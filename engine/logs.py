"""Where the engine's messages go: stderr, one line each, prefixed ``engine:``.

Used by the CLI and by the tracking worker (a child process with its own logging), so both
print the same way. Other libraries' loggers stay at WARNING.
"""

from __future__ import annotations

import logging
import sys


def to_stderr(level: int) -> None:
    """Send ``engine`` messages at ``level`` and above, and others' warnings, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("engine: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("engine").setLevel(level)
