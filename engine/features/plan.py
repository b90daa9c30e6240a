"""The evaluation plan of a set of factors, shared by the Polars and SQL compilers.

The factors' trees (expanded to primitive operators) form one graph in which equal
subtrees are one node. A node gets a column of its own (is materialised) when

* it is an output (a factor or a label),
* it is the input of a windowed operator (SQL cannot nest window functions, and Polars
  then rolls over a plain column),
* or it is read more than once (by two factors, or twice by one compiled form, as a
  guard does), unless it is a field or a number.

Every other node is compiled inline into its parent. Columns come in levels: a column's
level is one more than the highest level of the columns its inline expression reads
(fields are level 0), so one ``with_columns`` (Polars) or one CTE (SQL) computes a level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import methodcaller

from engine.features.operators import Field, Node, Number
from engine.features.windows import WINDOWED

HIDDEN_PREFIX = "_c"


@dataclass(frozen=True)
class Plan:
    """columns: node -> column name (materialised nodes); levels: the (name, node) pairs
    computed at each level, level 1 first; outputs: (output name, node) in order."""

    columns: Mapping[Node, str]
    levels: tuple[tuple[tuple[str, Node], ...], ...]
    outputs: tuple[tuple[str, Node], ...]
    fields: tuple[str, ...]


Reads = Callable[[Node], tuple[Node, ...]]


def build_plan(
    outputs: Sequence[tuple[str, Node]],
    reads: Reads | None = None,
    share_windows_only: bool = False,
    late: bool = False,
    windows_apart: bool = False,
) -> Plan:
    """The plan computing every (name, tree) of ``outputs`` (trees as parsed); ``reads``:
    a compiler's own count of the children its compiled form reads (default: the
    operators' ``references``). ``share_windows_only``: a node read more than once gets a
    column only if its inline expression holds a window (SQL, where a column costs a join
    and arithmetic is cheap to repeat). ``late``: each column at the last level it can
    take, not the first (SQL, where a window operator carries every column made before it
    to the next level). ``windows_apart``: every windowed operator gets a column, so that
    no arithmetic on a window's result holds a window itself (SQL: a level of arithmetic
    only needs no window operator)."""
    roots = [(name, tree.expand()) for name, tree in outputs]
    order, reads = _walk([root for _, root in roots], reads or methodcaller("references"))
    forced = {c for node in order if isinstance(node, WINDOWED) for c in node.children()}
    columns: dict[Node, str] = {}
    for name, root in roots:
        columns.setdefault(root, name)
    windowed: dict[Node, bool] = {}  # the node's inline expression holds a window
    for node in order:
        leaf = isinstance(node, Field | Number)
        inner = any(windowed[c] for c in node.children() if c not in columns)
        windowed[node] = isinstance(node, WINDOWED) or inner
        shared = reads[node] > 1 and (windowed[node] or not share_windows_only)
        apart = windows_apart and isinstance(node, WINDOWED)
        if node not in columns and not leaf and (node in forced or shared or apart):
            columns[node] = f"{HIDDEN_PREFIX}{len(columns)}"
    numbers = [n for n in forced if isinstance(n, Number)]
    for n in numbers:  # a window over a constant: a column of it
        columns.setdefault(n, f"{HIDDEN_PREFIX}{len(columns)}")
    level = _levels(order, columns)
    if late:
        level = _late_levels(order, columns, level)
    by_level: dict[int, list[tuple[str, Node]]] = {}
    for node in order:  # children before parents
        if node in columns:
            by_level.setdefault(level[node], []).append((columns[node], node))
    fields = tuple(sorted({n.name for n in order if isinstance(n, Field)}))
    return Plan(
        columns=columns,
        levels=tuple(tuple(by_level[k]) for k in sorted(by_level)),
        outputs=tuple(roots),
        fields=fields,
    )


def _walk(roots: list[Node], references: Reads) -> tuple[list[Node], Counter[Node]]:
    """Distinct nodes, children before parents, and how often compiled parents read each."""
    order: list[Node] = []
    seen: set[Node] = set()
    reads: Counter[Node] = Counter()
    stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        reads.update(references(node))
        stack.append((node, True))
        stack.extend((c, False) for c in node.children() if c not in seen)
    return order, reads


def _levels(order: list[Node], columns: Mapping[Node, str]) -> dict[Node, int]:
    """Level of every node: of its column if materialised, else of what it inlines."""
    level: dict[Node, int] = {}
    for node in order:
        inner = max((_read_level(c, level, columns) for c in node.children()), default=0)
        level[node] = inner + 1 if node in columns else inner
    return level


def _late_levels(
    order: list[Node], columns: Mapping[Node, str], early: Mapping[Node, int]
) -> dict[Node, int]:
    """Level of every node when each is computed as late as its readers allow: an output
    at the last level, any other column one level before the first column reading it."""
    top = max((early[n] for n in columns), default=0)
    level = {n: top for n in order}
    for node in reversed(order):  # parents before children
        for child in node.children():
            if child in level:
                level[child] = min(level[child], level[node] - (child in columns))
    return level


def _read_level(child: Node, level: Mapping[Node, int], columns: Mapping[Node, str]) -> int:
    if isinstance(child, Field):
        return 0
    return level[child]
