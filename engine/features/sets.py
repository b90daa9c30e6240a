"""Feature sets: named lists of factor expressions (``core``, ``alpha158``, a user's file).

A user file is TOML (read with the standard library's ``tomllib``)::

    mom_21 = "$close / Ref($close, 21) - 1"

    [vol_20]
    expression = "Std(Log($close / Ref($close, 1)), 20)"
    description = "20-day volatility of daily log returns"

Names become output columns: Python identifiers, not starting with ``_`` and not a column
the panel already has. Every expression is parsed when the set is made, so a bad one
fails at once, in one line naming the file and the factor.
"""

from __future__ import annotations

import functools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from engine.features import FeatureError
from engine.features.alpha158 import alpha158
from engine.features.operators import Node
from engine.features.parser import parse

RESERVED = ("date", "symbol", "adj_close", "history_rows", "close", "high", "low", "open", "volume")
RESERVED_PREFIXES = ("fwd_ret_", "label_end_")
BUILTIN = ("core", "alpha158")
DEFAULT_SET = "core"

_R = "Log($close / Ref($close, 1))"  # daily log return of the stock
_M = "Log($index / Ref($index, 1))"  # daily log return of the index
# A window whose index returns are all 0 (a flat index) has var(m) = 0; computed from
# running sums it is rounding residue of either sign. var(m) at or below 1e-14 (squared
# daily log returns: a daily std of 1e-7) counts as 0, and beta is then null.
_VAR_M = f"If(Var({_M}, 63) > 1e-14, Var({_M}, 63), 0)"
CORE = (
    ("ret_1d", _R, "daily log return of Adj Close"),
    *((f"vol_{w}d", f"Std({_R}, {w})", f"std of the last {w} daily log returns")
      for w in (5, 21, 63)),
    *((f"mom_{w}d", f"$close / Ref($close, {w}) - 1", f"return over the last {w} rows")
      for w in (21, 63, 126, 252)),
    ("mom_12_1", "Ref($close, 21) / Ref($close, 252) - 1", "12-month return skipping the last"),
    *((f"px_sma{w}", f"$close / Mean($close, {w})", f"close over its {w}-row mean")
      for w in (20, 50)),
    ("sma50_sma200", "Mean($close, 50) / Mean($close, 200)", "50-row over 200-row mean"),
    ("px_high252", "$close / Max($close, 252)", "close over its 252-row high"),
    ("range_hl", "($high - $low) / $close", "day's range over the close"),
    ("range_hl_21d", "Mean(($high - $low) / $close, 21)", "mean range over 21 rows"),
    ("volume_z_21d", "($volume - Mean($volume, 21)) / Std($volume, 21)", "volume z-score"),
    ("beta_63d", f"Cov({_R}, {_M}, 63) / {_VAR_M}", "beta to the index over 63 rows"),
    ("idio_vol_63d",
     f"Power(Greater(Var({_R}, 63) - Power(Cov({_R}, {_M}, 63), 2) / {_VAR_M}, 0), 0.5)",
     "std of the residual of the return on the index's, 63 rows"),
)  # fmt: skip
DEFAULT_FEATURES: tuple[str, ...] = tuple(name for name, _, _ in CORE)


@dataclass(frozen=True)
class Factor:
    """One factor: its output column, its expression as written, and its parsed tree."""

    name: str
    expression: str
    description: str
    tree: Node


@dataclass(frozen=True)
class FeatureSet:
    """A named, ordered list of factors (``source``: "core", "alpha158" or a file path)."""

    source: str
    factors: tuple[Factor, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    @property
    def expressions(self) -> dict[str, str]:
        return {f.name: f.expression for f in self.factors}

    @property
    def descriptions(self) -> dict[str, str]:
        return {f.name: f.description for f in self.factors}


def feature_set(spec: str | Path) -> FeatureSet:
    """The set ``spec`` names: "core" (today's 18 features), "alpha158", or the path of a
    TOML file of factors.

    Raises
    ------
    FeatureError
        Unknown set, unreadable or invalid file, bad name or expression; one line.
    """
    if str(spec) in BUILTIN:
        return builtin_set(str(spec))
    return read_toml(Path(spec))


@functools.cache
def builtin_set(name: str) -> FeatureSet:
    """The built-in set ``name`` ("core" or "alpha158"), parsed once per process."""
    return make_set(name, CORE if name == "core" else alpha158())


def core_factor(name: str) -> FeatureSet:
    """A set of the one ``core`` factor ``name`` (e.g. the momentum baseline's mom_12_1)."""
    return make_set(f"core:{name}", [entry for entry in CORE if entry[0] == name])


def to_toml(features: FeatureSet) -> str:
    """``features`` as a TOML file ``read_toml`` reads back: one table per factor with its
    expression and description (JSON string escapes are valid TOML basic strings)."""
    lines = [f"# feature set: {features.source}"]
    for f in features.factors:
        lines += ["", f"[{f.name}]", f"expression = {json.dumps(f.expression)}"]
        if f.description:
            lines.append(f"description = {json.dumps(f.description)}")
    return "\n".join(lines) + "\n"


def make_set(source: str, entries) -> FeatureSet:
    """A set from (name, expression, description) triples, each name checked and each
    expression parsed."""
    factors, seen = [], set()
    for name, expression, description in entries:
        _check_name(source, name)
        if name.lower() in seen:
            raise FeatureError(f"{source}: factor {name!r} defined twice (names ignore case)")
        seen.add(name.lower())
        try:
            tree = parse(name, expression)
        except FeatureError as exc:
            raise FeatureError(f"{source}: {exc}") from None
        factors.append(Factor(name, expression, description, tree))
    if not factors:
        raise FeatureError(f"{source}: no factors defined")
    return FeatureSet(source, tuple(factors))


def read_toml(path: Path) -> FeatureSet:
    """The factors of the TOML file ``path`` (format in the module docstring)."""
    if path.suffix != ".toml":
        raise FeatureError(f"unknown feature set {str(path)!r}: use {', '.join(BUILTIN)} "
                           "or the path of a .toml file of factors")  # fmt: skip
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FeatureError(f"cannot read features file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FeatureError(f"features file {path}: invalid TOML: {exc}") from None
    entries = [_entry(path, name, value) for name, value in table.items()]
    return make_set(str(path), entries)


def _entry(path: Path, name: str, value: object) -> tuple[str, str, str]:
    if isinstance(value, str):
        return name, value, ""
    if not isinstance(value, dict):
        raise FeatureError(f"{path}: factor {name!r}: expected a string expression or a "
                           "table with expression and description")  # fmt: skip
    unknown = sorted(set(value) - {"expression", "description"})
    if unknown:
        raise FeatureError(f"{path}: factor {name!r}: unknown key {unknown[0]!r} "
                           "(expected expression, description)")  # fmt: skip
    expression, description = value.get("expression"), value.get("description", "")
    if not isinstance(expression, str):
        raise FeatureError(f'{path}: factor {name!r}: expected expression = "..."')
    if not isinstance(description, str):
        raise FeatureError(f"{path}: factor {name!r}: the description must be a string")
    return name, expression, description


def _check_name(source: str, name: str) -> None:
    reserved = name in RESERVED or name.startswith(RESERVED_PREFIXES)
    if not name.isidentifier() or name.startswith("_") or reserved:
        raise FeatureError(f"{source}: factor name {name!r}: expected an identifier "
                           "not starting with '_' and not one of the panel's own columns "
                           f"({', '.join(RESERVED)}, fwd_ret_*, label_end_*)")  # fmt: skip
