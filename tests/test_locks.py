"""engine.io.locks: one holder at a time across processes, a bounded wait ending in one
line, and no stale lock after its holder is killed."""

from __future__ import annotations

import fcntl
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.io import locks

HOLD = """
import sys
from pathlib import Path
from engine.io import locks
with locks.exclusive(Path(sys.argv[1]), 5.0, "the thing"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_held_lock_is_a_bounded_wait_then_one_line(tmp_path: Path, caplog):
    path = tmp_path / "sub" / "x.lock"
    path.parent.mkdir()
    with open(path, "a+b") as other:  # another open file description: another owner
        fcntl.flock(other, fcntl.LOCK_EX)
        with (
            caplog.at_level(logging.INFO, logger="engine.io.locks"),
            pytest.raises(locks.LockTimeout) as err,
            locks.exclusive(path, 0.3, "the thing"),
        ):
            pytest.fail("entered a held lock")
        fcntl.flock(other, fcntl.LOCK_UN)
    assert str(err.value) == f"the thing is locked by another process: waited 0.3 s for {path}"
    assert "waiting for another process using the thing" in caplog.text
    with locks.exclusive(path, 0.3, "the thing"):  # free again
        assert path.exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path):
    path = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.LockTimeout), locks.exclusive(path, 0.2, "the thing"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with locks.exclusive(path, 5.0, "the thing"):
            assert path.exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdin.close()
        holder.stdout.close()


def test_the_output_lock_sits_in_its_folder(tmp_path: Path):
    with locks.output_lock(tmp_path / "out", wait_s=1.0):
        assert (tmp_path / "out" / locks.OUTPUT_LOCK).exists()
        with (
            pytest.raises(locks.LockTimeout, match="output folder"),
            locks.output_lock(tmp_path / "out", wait_s=0.1),
        ):
            pass
