"""The ``engine`` command (the console script, and ``python -m engine``): the click
command line of ``engine.cli``, which Ctrl-C ends, whenever it comes, with click's one
line "Aborted!" and the exit status of a command ended by SIGINT (130), no traceback.

This module imports nothing at its top: a Ctrl-C during the command line's own imports
is answered too, and the tracking worker (``multiprocessing`` re-imports the program's
main module in it) imports only this.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
ABORTED = "Aborted!"  # click's words for an interrupted command


def main() -> None:
    """Run the command line on ``sys.argv`` and exit with its status."""
    try:
        try:
            from engine.cli import main as command_line

            status = command_line.main(prog_name="engine", standalone_mode=False)
        finally:
            _ignore_interrupts()
    except (KeyboardInterrupt, Exception) as exc:
        status = _answered(exc)
    sys.exit(status if isinstance(status, int) else 0)


def _ignore_interrupts() -> None:
    """Ignore SIGINT from now on: the command is over (ended or interrupted), and what is
    left (ending the tracking worker, the interpreter's exit) must not be cut short by a
    Ctrl-C that would end the process by the signal instead of with the command's status."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _answered(exc: BaseException) -> int:
    """The status of a command line that raised ``exc``. A KeyboardInterrupt raised while
    answering (a second Ctrl-C, or one SIGINT that a native library reports twice, before
    ``_aborted`` ignores SIGINT) is answered in turn, as an interrupt."""
    while True:
        try:
            return _aborted() if isinstance(exc, KeyboardInterrupt) else _ended(exc)
        except KeyboardInterrupt as again:
            exc = again


def _ended(exc: Exception) -> int:
    """The status of a command line that raised ``exc``; click's own handling of it
    (``standalone_mode``), except that an interrupt exits with 130."""
    import click

    if _interrupted(exc):  # click's Abort, or whatever the interrupt broke on its way out
        return _aborted(newline=not isinstance(exc, click.Abort))
    if isinstance(exc, click.Abort):  # end of input at a prompt
        click.echo(ABORTED, err=True)
        return 1
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    raise exc


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by, or while handling, a KeyboardInterrupt."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, KeyboardInterrupt):
            return True
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return False


def _aborted(newline: bool = True) -> int:
    """Remove the temporary files of the writes the interrupt broke, say "Aborted!" (on
    a line of its own) and give the interrupted status; a second Ctrl-C meanwhile is
    ignored."""
    _ignore_interrupts()
    files = sys.modules.get("engine.io.files")  # not imported: nothing was written
    if files is not None:
        files.discard_temporaries()
    sys.stderr.write(("\n" if newline else "") + ABORTED + "\n")
    sys.stderr.flush()
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    main()
