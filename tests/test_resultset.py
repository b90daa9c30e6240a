"""engine.io.resultset: a result set is published whole or not at all.

The kill test runs a real process that publishes result sets in a loop and SIGKILLs it
at seeded random moments, so the kills land at every step of a publish (writing,
linking, switching, tidying); after each, the folder must show exactly one complete set.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.io import resultset
from tests.reliability_helpers import is_temporary

SEED = 20250618
NAMES = ("a.csv", "b.csv", "c.json", "d.png")


def writers(tag: str, names=NAMES) -> dict:
    return {name: (lambda f, name=name: f.write(f"{tag} {name}\n".encode())) for name in names}


def shown(folder: Path) -> dict[str, str]:
    """What a reader sees: each visible output name and its content (no hidden entries)."""
    return {
        p.name: p.read_text()
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and p.is_file()
    }


def test_a_set_replaces_the_previous_one_whole(tmp_path):
    first = resultset.publish(tmp_path, writers("one"))
    assert shown(tmp_path) == {n: f"one {n}\n" for n in NAMES}
    assert all((tmp_path / n).is_symlink() for n in NAMES)
    resultset.publish(tmp_path, writers("two"))
    assert shown(tmp_path) == {n: f"two {n}\n" for n in NAMES}
    assert first["a.csv"].read_text() == "one a.csv\n"  # the previous set is kept as it was
    resultset.publish(tmp_path, writers("three"))
    assert not first["a.csv"].exists()  # and the one before it removed
    assert len(list((tmp_path / resultset.SETS).iterdir())) == 2


def test_files_not_rewritten_are_kept_unless_retired(tmp_path):
    resultset.publish(tmp_path, writers("one"))
    resultset.publish(tmp_path, writers("two", ["a.csv"]), retire=lambda n: n == "d.png")
    assert shown(tmp_path) == {"a.csv": "two a.csv\n", "b.csv": "one b.csv\n",
                               "c.json": "one c.json\n"}  # fmt: skip
    assert not os.path.lexists(tmp_path / "d.png")  # its link went with it


def test_a_folder_of_plain_files_is_taken_over_unchanged(tmp_path):
    for name in ("a.csv", "b.csv", "notes.txt"):
        (tmp_path / name).write_text(f"old {name}\n")
    resultset.publish(tmp_path, writers("new", ["a.csv"]), retire=lambda n: n == "b.csv")
    assert shown(tmp_path) == {"a.csv": "new a.csv\n", "notes.txt": "old notes.txt\n"}
    assert not (tmp_path / "notes.txt").is_symlink()  # not an output: never touched


def test_a_writer_failing_midway_leaves_the_previous_set(tmp_path):
    resultset.publish(tmp_path, writers("one", ["a.csv", "b.csv"]))
    failing = writers("two", ["e.csv", "a.csv"])

    def broken(handle):
        handle.write(b"half")
        raise ValueError("the plot failed")

    failing["b.csv"] = broken
    with pytest.raises(ValueError, match="the plot failed"):
        resultset.publish(tmp_path, failing)
    assert shown(tmp_path) == {"a.csv": "one a.csv\n", "b.csv": "one b.csv\n"}
    assert not os.path.lexists(tmp_path / "e.csv")  # the new name's link is gone too
    assert not [p for p in tmp_path.rglob("*") if is_temporary(p)]
    assert len(list((tmp_path / resultset.SETS).iterdir())) == 1


PUBLISHER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.io import resultset

    folder, names = Path(sys.argv[1]), ["a.csv", "b.csv", "c.json", "d.png", "e.csv"]
    for run in range(10**9):
        # every run writes a different subset, so that names appear and disappear too
        mine = [n for i, n in enumerate(names) if (run >> i) % 3 != 1] or names[:1]
        body = lambda f, n: f.write(f"run {run} of {len(mine)} {n}\\n".encode() * 200)
        resultset.publish(folder, {n: (lambda f, n=n: body(f, n)) for n in mine},
                          retire=lambda n: n not in mine)
        print(run, flush=True)
    """
)


def assert_one_complete_set(folder: Path) -> int:
    """Every visible output comes from one run and that run's files are all there."""
    files = shown(folder)
    if not files:
        return -1
    runs = {text.split()[1] for text in files.values()}
    assert len(runs) == 1, f"files of runs {sorted(runs)} side by side"
    first = next(iter(files.values())).split()
    assert len(files) == int(first[3]), f"run {first[1]}: {sorted(files)} of {first[3]}"
    assert all(text.count("\n") == 200 for text in files.values()), "a partial file"
    return int(first[1])


@pytest.mark.parametrize("kills", [pytest.param(8), pytest.param(60, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_leaves_one_complete_set(tmp_path, kills):
    rng = random.Random(f"{SEED}-{kills}")
    folder = tmp_path / "out"
    seen = []
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(folder)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        proc.stdout.readline()  # one set published: the kill lands in a later one
        time.sleep(rng.uniform(0, 0.3))  # a publish takes some 10-50 ms (its fsyncs)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        seen.append(assert_one_complete_set(folder))
    assert len(set(seen)) > 1  # the kills landed in different runs
    # the next publish tidies whatever the kills left behind
    resultset.publish(folder, writers("after"), retire=lambda _: True)
    assert shown(folder) == {n: f"after {n}\n" for n in NAMES}
    assert sorted(p.name for p in folder.iterdir() if p.is_symlink()) == sorted(
        [*NAMES, resultset.CURRENT])  # fmt: skip
    assert not [p for p in folder.rglob("*") if is_temporary(p)]
    assert len(list((folder / resultset.SETS).iterdir())) == 2
