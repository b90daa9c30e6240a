"""``engine registry``: list, compare, promote and roll back registered models."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from engine.cli import EXIT_TRACKING, EngineError, friendly, main, spec_from, spec_options

HIDDEN_METRICS = ("ic", "ic_n")  # step metrics: their last value is not a summary
SHOWN_TAGS = ("data_source", "dataset_fingerprint", "period_start", "period_end")
PARAMS_NEVER_DIFFERENT = ("paths.data", "paths.output", "paths.cache", "tracking.uri",
                          "tracking.enabled")  # fmt: skip


# Which store and which registered model a registry command works on.
store_options = spec_options("model.name", "tracking.registered_model", "paths.output",
                             "tracking.uri")  # fmt: skip


def store_spec(flags: dict[str, Any]) -> Any:
    """The settings of the flags, whose store must exist (a SQLite file is made only by
    ``engine run``); exit 3 if it does not."""
    from engine.lifecycle.tracking import store

    settings = spec_from(flags)
    uri = settings.mlflow_uri
    if not store.exists(uri):
        raise EngineError(
            f"no MLflow store at {store.sqlite_path(uri)}: run `engine run` first "
            "(or give --output-path / --tracking-uri)",
            EXIT_TRACKING,
        )
    return settings


def open_registry(flags: dict[str, Any]) -> tuple[Any, Any]:
    """(settings, MlflowClient) for the store the flags name (``friendly`` makes its
    failure exit 3)."""
    from engine.lifecycle.tracking import store

    settings = store_spec(flags)
    return settings, store.connect(settings)


@main.group(name="registry")
def registry_group() -> None:
    """Registered models: versions, aliases (challenger, champion), promotion."""


def _when(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _aliases_of(all_aliases: dict[str, str], number: str) -> str:
    return ",".join(sorted(a for a, v in all_aliases.items() if str(v) == str(number))) or "-"


@registry_group.command(name="list")
@store_options
@friendly
def list_versions(**flags: Any) -> None:
    """Every version of the registered models, with aliases and promotion decisions."""
    from engine.lifecycle import registry
    from engine.lifecycle.tracking import store

    settings, client = open_registry(flags)
    with store.store_errors(settings, "listing the registry"):
        chosen = flags.get("model") or flags.get("registered_model")
        names = [settings.registered_model_name] if chosen else registry.registered_names(client)
        if not names:
            click.echo("no registered model yet: `engine run` registers one")
        for name in names:
            _print_model(client, name)


def _print_model(client: Any, name: str) -> None:
    from engine.lifecycle import registry

    found = registry.aliases(client, name)
    champion = found.get(registry.CHAMPION, "none")
    click.echo(f"{name}: {registry.CHAMPION} v{champion}, "
               f"{registry.CHALLENGER} v{found.get(registry.CHALLENGER, 'none')}")  # fmt: skip
    rows = [("version", "aliases", "created (UTC)", "data", "fingerprint", "period", "fitted",
             "decision")]  # fmt: skip
    reasons = []
    for mv in registry.versions(client, name):
        tags = mv.tags or {}
        period = f"{tags.get(registry.PERIOD_START, '?')}..{tags.get(registry.PERIOD_END, '?')}"
        rows.append((f"v{mv.version}", _aliases_of(found, mv.version), _when(mv.creation_timestamp),
                     tags.get(registry.DATA_SOURCE, ""), tags.get(registry.FINGERPRINT, "")[:12],
                     period, tags.get(registry.FITTED_AT, "?"),
                     tags.get(registry.DECISION, "")))  # fmt: skip
        reasons.append(f"  v{mv.version}: {tags.get(registry.REASON, '')}")
    click.echo(_table(rows))
    for line in reasons:
        click.echo(line)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _number(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4g}"


def comparison(client: Any, name: str, wanted: Sequence[str]) -> dict[str, Any]:
    """Per version: aliases, data identity, settings that differ, and every metric."""
    from engine.lifecycle import registry

    all_versions = {str(mv.version): mv for mv in registry.versions(client, name)}
    chosen = [v.lstrip("v") for v in wanted] or list(all_versions)
    missing = [v for v in chosen if v not in all_versions]
    if missing:
        raise registry.RegistryError(f"{name} has no version {', '.join(missing)}")
    found = registry.aliases(client, name)
    out: dict[str, Any] = {}
    for number in chosen:
        mv = all_versions[number]
        run = client.get_run(mv.run_id) if mv.run_id else None
        metrics = dict(run.data.metrics) if run else {}
        out[number] = {
            "aliases": _aliases_of(found, number),
            "tags": {t: (mv.tags or {}).get(t, "") for t in SHOWN_TAGS},
            "decision": (mv.tags or {}).get(registry.DECISION, ""),
            "params": dict(run.data.params) if run else {},
            "metrics": {k: v for k, v in metrics.items() if k not in HIDDEN_METRICS},
        }
    return out


@registry_group.command()
@click.argument("versions", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--timings", is_flag=True, help="Also show the stage timings (time_*).")
@store_options
@friendly
def compare(versions: tuple[str, ...], as_json: bool, timings: bool, **flags: Any) -> None:
    """Metrics of VERSIONS (default: every version) side by side, with the data they were
    measured on and the settings that differ between them."""
    from engine.lifecycle.tracking import store

    settings, client = open_registry(flags)
    name = settings.registered_model_name
    with store.store_errors(settings, "comparing versions"):
        table = comparison(client, name, versions)
    if as_json:
        click.echo(json.dumps({"name": name, "versions": table}, indent=2, default=str))
        return
    click.echo(_comparison_text(name, table, timings))


def _comparison_text(name: str, table: dict[str, Any], timings: bool) -> str:
    numbers = list(table)
    rows = [
        (name, *(f"v{n}" for n in numbers)),
        ("aliases", *(table[n]["aliases"] for n in numbers)),
    ]
    rows += [(tag, *(table[n]["tags"][tag][:12] for n in numbers)) for tag in SHOWN_TAGS]
    rows.append(("decision", *(table[n]["decision"] for n in numbers)))
    params = sorted({p for n in numbers for p in table[n]["params"]} - set(PARAMS_NEVER_DIFFERENT))
    for p in params:
        values = [table[n]["params"].get(p, "") for n in numbers]
        if len(set(values)) > 1:
            rows.append((f"setting {p}", *values))
    metrics = sorted({m for n in numbers for m in table[n]["metrics"]})
    for m in metrics:
        if m.startswith("time_") and not timings:
            continue
        values = [table[n]["metrics"].get(m) for n in numbers]
        rows.append((m, *("-" if v is None else _number(v) for v in values)))
    return _table(rows)


@registry_group.command()
@click.argument("version")
@store_options
@friendly
def promote(version: str, **flags: Any) -> None:
    """Make VERSION the champion by hand (recorded on the version as a manual promotion)."""
    from engine.lifecycle import registry
    from engine.lifecycle.tracking import store

    settings, client = open_registry(flags)
    name = settings.registered_model_name
    with store.store_errors(settings, "promoting"):
        decision = registry.promote(client, settings.mlflow_uri, name, version.lstrip("v"))
    click.echo(f"{name} v{version.lstrip('v')}: {decision.line()}")


@registry_group.command()
@store_options
@friendly
def rollback(**flags: Any) -> None:
    """Return the champion to the previous one (the version crowned before it)."""
    from engine.lifecycle import registry
    from engine.lifecycle.tracking import store

    settings, client = open_registry(flags)
    name = settings.registered_model_name
    with store.store_errors(settings, "rolling back"):
        old, new = registry.rollback(client, settings.mlflow_uri, name)
    click.echo(f"{name}: {registry.CHAMPION} v{old} -> v{new} (v{old} tagged rolled back)")
