"""The operators of the factor language: one small class per operator, Qlib's shape.

A factor is a tree of these nodes over fields (``$close``...) and numbers. Nodes are frozen
dataclasses, so equal subtrees are equal and hash alike: a set of factors shares them.
Every value is a float per (symbol, date) row, computed from the symbol's own rows only.

Windows count rows of the symbol's own trading history, the current row included: ``N``
rows means rows t-N+1..t. A windowed value is null until its window is full and null when
any value inside it is null (``Count`` excepted: it counts the non-null ones). Every result
is finite or null: x/0, log of x <= 0 and powers undefined in the reals give null.

Each node knows three things the compilers need:

``lead``
    leading rows of a symbol where the value is null by construction (``Ref($close, 5)``:
    5; ``Mean(Ref($close, 1), 20)``: 1 + 19).
``holes``
    whether it can also be null after those rows (a missing index level, a division by 0).
``future``
    rows it reads after the current one (``Ref(x, -h)``): allowed in labels only.

Composite operators (``Delta``, ``Corr``, ``Slope``...) ``expand`` into primitive ones,
which the compilers know; their parts are shared with the rest of a set.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

FIELDS = ("open", "high", "low", "close", "volume", "index")
# Qlib's threshold: Corr and Rsquare are null where a window's std is within 2e-5 of 0.
STD_ZERO = 2e-5


@dataclass(frozen=True)
class Node:
    """A factor expression."""

    def children(self) -> tuple[Node, ...]:
        return tuple(v for f in fields(self) if isinstance(v := getattr(self, f.name), Node))

    @property
    def lead(self) -> int:
        return max((c.lead for c in self.children()), default=0)

    @property
    def holes(self) -> bool:
        return any(c.holes for c in self.children())

    @property
    def future(self) -> int:
        return max((c.future for c in self.children()), default=0)

    def expand(self) -> Node:
        """This node in primitive operators only (composite operators override)."""
        kids = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(**{k: v.expand() if isinstance(v, Node) else v for k, v in kids.items()})

    def references(self) -> tuple[Node, ...]:
        """Children as often as a compiled form reads them (a guard reads its operand twice)."""
        return self.children()

    def __str__(self) -> str:
        args = ", ".join(str(getattr(self, f.name)) for f in fields(self))
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class Field(Node):
    """``$name``: one of FIELDS; OHLC adjusted (raw times Adj Close / Close), ``$close`` is
    Adj Close, ``$volume`` as is, ``$index`` the index level of the same date (null where
    the index has none)."""

    name: str

    @property
    def holes(self) -> bool:
        return self.name == "index"

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True)
class Number(Node):
    value: float

    def __str__(self) -> str:
        return repr(self.value)


# --- element-wise ---------------------------------------------------------------------
@dataclass(frozen=True)
class Unary(Node):
    x: Node


class Neg(Unary):
    """-x."""


class Abs(Unary):
    """|x|."""


class Sign(Unary):
    """-1, 0 or 1."""


class Log(Unary):
    """Natural log; null where x <= 0."""

    holes = True

    def references(self) -> tuple[Node, ...]:
        return (self.x, self.x)


@dataclass(frozen=True)
class Binary(Node):
    a: Node
    b: Node
    symbol: ClassVar[str] = ""

    def __str__(self) -> str:
        if self.symbol:
            return f"({self.a} {self.symbol} {self.b})"
        return super().__str__()


class Add(Binary):
    symbol = "+"


class Sub(Binary):
    symbol = "-"


class Mul(Binary):
    symbol = "*"


class Div(Binary):
    """a / b; null where b is 0."""

    symbol = "/"

    @property
    def holes(self) -> bool:
        return super().holes or not _nonzero(self.b)

    def references(self) -> tuple[Node, ...]:
        return (self.a, self.b) if _nonzero(self.b) else (self.a, self.b, self.b)


class Power(Binary):
    """a ** b (``Power(a, b)``); null where undefined in the reals (a < 0 with a
    fractional b, 0 to a negative power)."""

    symbol = "**"

    @property
    def holes(self) -> bool:
        return super().holes or self.guard() is not None

    def guard(self) -> str | None:
        """What the base must satisfy: None (nothing), ">= 0", "> 0", "!= 0" or "any"
        (the exponent is an expression: checked on both)."""
        if not isinstance(self.b, Number):
            return "any"
        e = self.b.value
        if float(e).is_integer():
            return None if e >= 0 else "!= 0"
        return ">= 0" if e > 0 else "> 0"

    def references(self) -> tuple[Node, ...]:
        guard = self.guard()
        if guard is None:
            return (self.a, self.b)
        return (self.a,) * 4 + (self.b,) * 3 if guard == "any" else (self.a, self.a, self.b)


class Greater(Binary):
    """The larger of a and b (null if either is)."""

    def references(self) -> tuple[Node, ...]:
        return (self.a, self.a, self.b, self.b)


class Less(Greater):
    """The smaller of a and b (null if either is)."""


class Gt(Binary):
    symbol = ">"


class Ge(Binary):
    symbol = ">="


class Lt(Binary):
    symbol = "<"


class Le(Binary):
    symbol = "<="


class Eq(Binary):
    symbol = "=="


class Ne(Binary):
    symbol = "!="


class And(Binary):
    """1 where both are non-zero (Kleene logic with nulls)."""

    symbol = "&"


class Or(Binary):
    symbol = "|"


COMPARISONS = (Gt, Ge, Lt, Le, Eq, Ne, And, Or)


@dataclass(frozen=True)
class If(Node):
    """a where cond is non-zero, b where it is 0, null where it is null."""

    cond: Node
    a: Node
    b: Node

    def references(self) -> tuple[Node, ...]:
        return (self.cond, self.cond, self.a, self.b)


@dataclass(frozen=True)
class Where(Node):
    """(internal) x where cond is non-zero, else null."""

    cond: Node
    x: Node
    holes = True


def _nonzero(node: Node) -> bool:
    return isinstance(node, Number) and node.value != 0
