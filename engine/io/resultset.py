"""Result sets: the output files of one run, published together or not at all.

POSIX renames one name atomically, never several, so the files of a run are not renamed
into the output folder one by one (an error or a kill between two renames would leave
files of two runs side by side). Each published state of the folder is a directory of its
own, written in full and never changed, and one symbolic link says which is current::

    <folder>/portfolio_ridge.csv -> .engine-current/portfolio_ridge.csv   (one per name)
    <folder>/.engine-current -> .engine-sets/<id>                         (the switch)
    <folder>/.engine-sets/<id>/portfolio_ridge.csv, metrics_ridge.json, ...

``publish`` writes the new files into a hidden staging folder
(``.engine-sets/.<id>.<random>.tmp``), adds hard links to the files of the current set
that it keeps, fsyncs them, renames the folder to ``.engine-sets/<id>`` and then replaces
``.engine-current`` by a link to it with one ``rename``: the atomic step. Before it, the
folder shows the previous set, whole; after it, the new one, whole. A failure or a kill
at any step before it leaves the previous set published and its own files unpublished
(removed at once on an error, by the next publish after a kill). The set before the
current one is kept, for a reader that resolved ``.engine-current`` just before a switch.

A name that first appears in a set gets its link before the switch, while it points at
nothing (a reader sees no file); a name that leaves the set loses its link after. A
folder written before result sets existed (plain files) is taken over by a first set of
hard links to those files, which changes nothing a reader sees.

A reader opening several files while a run publishes may open one before the switch and
the next after it; one that needs a single set across several opens reads them through
the resolved link (``current``). The caller holds the folder's lock
(``engine.io.locks.output_lock``): one publisher at a time.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

from engine.io.files import atomic_write, finish, fsync, temporary

SETS = ".engine-sets"
CURRENT = ".engine-current"
# A file system without hard links (some network and FUSE mounts) gets copies instead.
NO_HARD_LINKS = frozenset({errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK})

Writer = Callable[[IO[bytes]], object]


def publish(
    folder: Path, writers: Mapping[str, Writer], retire: Callable[[str], bool] = lambda _: False
) -> dict[str, Path]:
    """Publish a new result set in ``folder``: the files ``writers`` writes (file name ->
    writer of its bytes), and the current set's other files except those ``retire`` names.

    Returns file name -> path of each new file inside the published set (a path that no
    later publish changes: what a run records as its artifacts). On any error, and on a
    kill, the folder keeps showing the set it showed before. A full disk is an OSError
    naming ``folder / name`` of the file being written.
    """
    folder = Path(folder)
    (folder / SETS).mkdir(parents=True, exist_ok=True)
    _adopt(folder, [n for n in _plain_files(folder) if n in writers or retire(n)])
    previous = current(folder)
    kept = {n: p for n, p in _files(previous).items() if n not in writers and not retire(n)}
    made = _publish(folder, writers, kept)
    _tidy(folder, keep={made.name, previous.name if previous else made.name})
    return {name: made / name for name in writers}


def current(folder: Path) -> Path | None:
    """The folder of the published set (resolved: stays that set), or None if none is."""
    link = Path(folder) / CURRENT
    return link.resolve() if link.is_dir() else None


def _publish(folder: Path, writers: Mapping[str, Writer], links: Mapping[str, Path]) -> Path:
    """Make a set of ``writers``' files and hard links to ``links`` (name -> file), link
    its names, and switch ``.engine-current`` to it; return its folder."""
    sets = folder / SETS
    name = f"{time.time_ns():020d}-{os.getpid()}"
    with temporary(sets / name) as staging:
        made = [staging]
        try:
            staging.mkdir()
            _fill(staging, folder, writers, links)
            os.rename(staging, sets / name)
            made[0] = sets / name
            fsync(sets)
            _link_new(folder, [*writers, *links])
            _switch(folder, made[0])
        except BaseException:
            finish(lambda: shutil.rmtree(made[0], ignore_errors=True))
            finish(lambda: _tidy(folder, keep=set()))
            raise
    _link_rest(folder, [*writers, *links])
    return made[0]


def _fill(staging: Path, folder: Path, writers: Mapping[str, Writer], links: Mapping[str, Path]):
    """Write ``writers``' files and hard-link ``links`` into ``staging``, all fsynced."""
    for name, write in writers.items():
        try:
            atomic_write(staging / name, write)
        except OSError as exc:  # named as the output folder's file, not the staging one
            if exc.errno is None:
                raise
            raise OSError(exc.errno, exc.strerror, str(folder / name)) from exc
    for name, source in links.items():
        _hard_link(source, staging / name)
    fsync(staging)


def _hard_link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise
        shutil.copyfile(source, target)


def _link_new(folder: Path, names: Iterable[str]) -> None:
    """Point ``folder/name`` at ``.engine-current/name`` where nothing is yet."""
    for name in names:
        if not os.path.lexists(folder / name):
            _replace_link(folder / name, f"{CURRENT}/{name}")


def _link_rest(folder: Path, names: Iterable[str]) -> None:
    """Point ``folder/name`` at ``.engine-current/name`` over a plain file or another link."""
    for name in names:
        if _target(folder / name) != f"{CURRENT}/{name}":
            _replace_link(folder / name, f"{CURRENT}/{name}")


def _target(path: Path) -> str | None:
    """Where ``path`` points if it is a link, else None."""
    return os.readlink(path) if path.is_symlink() else None


def _replace_link(path: Path, target: str) -> None:
    """Make ``path`` a link to ``target`` in one rename."""
    try:
        with temporary(path) as tmp:
            os.symlink(target, tmp)
            os.replace(tmp, path)
    except OSError as exc:  # os.symlink names the target: name the link instead
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _switch(folder: Path, made: Path) -> None:
    """Make ``.engine-current`` point at ``made``: the one atomic step of a publish."""
    _replace_link(folder / CURRENT, f"{SETS}/{made.name}")
    fsync(folder)


def _adopt(folder: Path, plain: list[str]) -> None:
    """Take over plain files (a folder written before result sets) into a set of hard
    links with the current set's files: a reader sees the same bytes under each name."""
    if plain:
        _publish(folder, {}, {**_files(current(folder)), **{n: folder / n for n in plain}})


def _plain_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()]


def _files(directory: Path | None) -> dict[str, Path]:
    """name -> path of each file of a set folder (none for None)."""
    return {p.name: p for p in directory.iterdir() if p.is_file()} if directory else {}


def _tidy(folder: Path, keep: set[str]) -> None:
    """Remove the sets not in ``keep`` nor current (and staging folders a kill left), the
    links to names the current set does not have, and temporary links a kill left (only
    publishing, under the output lock, makes links here)."""
    now = current(folder)
    keep = keep | ({now.name} if now else set())
    for entry in (folder / SETS).iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
    for entry in folder.iterdir():
        target = _target(entry)
        if target and target.startswith(f"{CURRENT}/") and not entry.exists():
            entry.unlink(missing_ok=True)
        elif target and entry.name.startswith(".") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)  # a link a kill left before renaming it
