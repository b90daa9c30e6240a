"""The ``engine`` command line. Flags -> Settings; no logic lives here.

User errors (bad input, bad settings, an unusable tracking store) end in one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import errno
import functools
import importlib
import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

log = logging.getLogger("engine")

EXIT_USER_ERROR = 1
EXIT_TRACKING = 3


def _user_errors() -> tuple[type[Exception], ...]:
    from engine.config import SettingsError
    from engine.data.archive import ArchiveError
    from engine.features import FeatureError
    from engine.io.memory import InsufficientMemory
    from engine.lifecycle.promotion import PolicyError
    from engine.lifecycle.registry import RegistryError
    from engine.lifecycle.tracking.errors import TrackingError
    from engine.report.errors import ReportError
    from engine.research.models import ModelError
    from engine.spark import SparkUnavailable
    from engine.views.database import QueryError

    return (
        ArchiveError, SettingsError, FeatureError, ModelError, PolicyError,
        RegistryError, QueryError, InsufficientMemory, ReportError, SparkUnavailable,
        TrackingError,
    )  # fmt: skip


class EngineError(click.ClickException):
    """A user-facing failure: printed as one line, exit code ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USER_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"engine: error: {self.format_message()}", err=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the engine's user errors into one-line EngineErrors (exit code 3 for a
    tracking store's failure, 1 for the others)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:  # first: the next clause imports the error classes
            raise
        except _user_errors() as exc:
            raise EngineError(str(exc), _exit_code(exc)) from exc
        except OSError as exc:  # unwritable output/cache folder, full disk, ...
            raise EngineError(_os_message(exc)) from exc
        except MemoryError as exc:  # numpy or Python ran out (Polars aborts: see engine.io.memory)
            raise EngineError("out of memory: free memory or use a smaller archive") from exc

    return wrapper


def _exit_code(exc: Exception) -> int:
    from engine.lifecycle.tracking.errors import TrackingError

    return EXIT_TRACKING if isinstance(exc, TrackingError) else EXIT_USER_ERROR


def _os_message(exc: OSError) -> str:
    """One line for an operating-system error: what it is and the file (a full disk
    names the file it was writing, whoever reported it: ``io.files.disk_full``)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename:
        return f"the disk is full ({exc.strerror}) writing {exc.filename}: free some space there"
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def choice(enum: type) -> click.Choice:
    return click.Choice([m.value for m in enum], case_sensitive=False)


def _configure_logging(verbose: int, quiet: bool) -> None:
    from engine import logs

    logs.to_stderr(logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More progress output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary.")
@click.version_option(package_name="engine")
def main(verbose: int, quiet: bool) -> None:
    """A fast, honest S&P 500 portfolio engine.

    Reads the Kaggle "S&P 500 Stocks" archive (or a synthetic stand-in), computes
    point-in-time features, walks models forward with a purge, builds a top-N
    portfolio, backtests it net of costs against the index, and logs the run to MLflow.
    """
    _configure_logging(verbose, quiet)


PATHS = ("paths.data", "paths.output", "paths.cache")


def spec_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options for the dotted settings ``names`` (e.g. ``"portfolio.top_stocks"``),
    generated from their one definition in ``engine.config``: flag, help, environment
    variable, type and default. The command receives them as ``section__name`` keyword
    arguments; ``spec_from`` turns those into a ``RunSpec``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            fn = _option(name)(fn)
        return fn

    return decorate


def spec_from(flags: dict[str, Any]) -> Any:
    """The ``RunSpec`` of the environment with the ``spec_options`` flags given applied.

    A flag's bad value is a usage error (exit 2), like any other bad flag; a bad
    environment variable is a user error (exit 1)."""
    from engine.config import RunSpec, SettingsError

    given = {k.replace("__", "."): v for k, v in flags.items() if "__" in k}
    try:
        RunSpec.from_env(given, environ={})
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    return RunSpec.from_env(given)


def _option(dotted: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    from enum import Enum

    from engine import config

    meta = config.setting_metadata(dotted)
    kind, default = config.setting_type(dotted), config.setting_default(dotted)
    flag = meta["flag"] or "--" + dotted.split(".")[1].replace("_", "-")
    decls = [flag, *([meta["short"]] if meta["short"] else []), dotted.replace(".", "__")]
    args = typing.get_args(kind)
    element = next((a for a in args if a is not type(None)), kind) if args else kind
    if typing.get_origin(element) is tuple:
        element = typing.get_args(element)[0]
    if isinstance(default, bool):
        return click.option(*decls, is_flag=True, flag_value=not flag.startswith("--no-"),
                            default=None, help=meta["help"])  # fmt: skip
    shown = default.value if isinstance(default, Enum) else default
    if isinstance(default, tuple):
        shown = ", ".join(map(str, default))
    where = f"env {meta['env']}; " if meta["env"] else ""
    extra = (
        f" [{where}default {shown}]" if shown is not None else (f" [{where[:-2]}]" if where else "")
    )
    types = {int: click.INT, float: click.FLOAT, Path: click.Path(path_type=Path)}
    click_type = (
        choice(element)
        if isinstance(element, type) and issubclass(element, Enum)
        else types.get(element, click.STRING)
    )
    multiple = isinstance(default, tuple)
    return click.option(*decls, type=click_type, multiple=multiple, default=None,
                        callback=(lambda ctx, param, value: value or None) if multiple else None,
                        help=meta["help"] + extra)  # fmt: skip


# Each module below owns one command or group and registers it on ``main`` when imported.
COMMAND_MODULES = ("run", "report", "data", "registry", "predict", "serve", "sql")


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"engine.cli.{name}")


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
