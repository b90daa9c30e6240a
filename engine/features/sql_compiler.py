"""Factor trees to DuckDB SQL window expressions, and the panel of a set as one SELECT.

Each level of the plan is one CTE (``select *, <columns> from <previous level>``): SQL
cannot nest window functions, so a window's input is a column of an earlier level.
Windows are explicit frames over the symbol's rows, ``w{n}`` = ``rows between n - 1
preceding and current row``; a value is kept only when its window is full, by the row
number (``_row``, 0-based) or, where the input can hold nulls, by ``count(x) = n``.

Sums and means of an input without nulls past its leading ones are differences of one
running sum (``RunningSum``, the frame ``cum``) and its lag by the window: DuckDB computes
a framed aggregate by a segment tree per window, and a lag costs a fraction of one, so
the windows of one input (Alpha158 takes five of each) share one running sum. The
running sum of a symbol's history is at most a few thousand times a window's sum, so the
difference keeps all but the last few of float64's 16 digits.

Every windowed operator is a column of its own (``build_plan(windows_apart=True)``), so
the arithmetic on windows' results is a level without window functions: a level that has
one is a window operator, which sorts and carries every column made before it, and the
widest level (the outputs) then carries none through a window operator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

from engine.features import operators as op
from engine.features import windows as win
from engine.features.plan import Plan, build_plan

Ref = Callable[[op.Node], str]
# Another engine's form of some operators: node type -> builder(node, ref) -> SQL text
# that sqlglot reads as DuckDB (``engine.features.spark_forms``).
Forms = Mapping[type, Callable[[op.Node, Ref], str]]
# EMA in SQL: two blocks of EMA_BLOCK(n) rows carry every weight above 1e-17 of the total.
EMA_TAIL = 1e-17
# Quantiles over up to this many rows sort the row and its lags: DuckDB's framed
# quantile_cont takes several times longer over frames this small than over larger ones.
SORTED_LAGS = 5


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def compile_node(node: op.Node, ref: Ref) -> str:
    """``node`` as a DuckDB expression; ``ref`` compiles (or names) its children.
    ``ref.forms``, where given, overrides the form of the node types it names."""
    build = getattr(ref, "forms", {}).get(type(node))
    if build is not None:
        return build(node, ref)
    for kinds, build in _RULES:
        if isinstance(node, kinds):
            return build(node, ref)
    raise TypeError(f"no SQL form for {type(node).__name__}")


# --- element-wise -----------------------------------------------------------------------
def _power(node: op.Power, ref: Ref) -> str:
    a, b = ref(node.a), ref(node.b)
    guard = node.guard()
    if guard == "any":
        ok = f"({a} > 0 or ({a} = 0 and {b} >= 0) or ({a} < 0 and {b} = round({b})))"
        return f"(case when {ok} then pow({a}, {b}) end)"
    base = {None: a, "!= 0": f"nullif({a}, 0)", ">= 0": f"(case when {a} >= 0 then {a} end)",
            "> 0": f"(case when {a} > 0 then {a} end)"}[guard]  # fmt: skip
    return f"pow({base}, {b})"


def _pick(node: op.Binary, ref: Ref, keep_a: str) -> str:
    a, b = ref(node.a), ref(node.b)
    other = {">=": "<", "<=": ">"}[keep_a]
    return f"(case when {a} {keep_a} {b} then {a} when {a} {other} {b} then {b} end)"


_ELEMENTWISE: dict[type, Callable[..., str]] = {
    op.Neg: lambda n, r: f"(- {r(n.x)})",
    op.Abs: lambda n, r: f"abs({r(n.x)})",
    op.Sign: lambda n, r: f"sign({r(n.x)})::double",
    op.Log: lambda n, r: f"ln(nullif(greatest({r(n.x)}, 0), 0))",
    op.Div: lambda n, r: f"({r(n.a)} / nullif({r(n.b)}, 0))",
    op.Power: _power,
    op.Less: lambda n, r: _pick(n, r, "<="),
    op.Greater: lambda n, r: _pick(n, r, ">="),
    op.And: lambda n, r: f"(({r(n.a)} <> 0) and ({r(n.b)} <> 0))::double",
    op.Or: lambda n, r: f"(({r(n.a)} <> 0) or ({r(n.b)} <> 0))::double",
    op.If: lambda n, r: (
        f"(case when {r(n.cond)} <> 0 then {r(n.a)} when {r(n.cond)} = 0 then {r(n.b)} end)"
    ),
    op.Where: lambda n, r: f"(case when {r(n.cond)} <> 0 then {r(n.x)} end)",
}
_INFIX = {op.Add: "+", op.Sub: "-", op.Mul: "*"}
_COMPARE = {op.Gt: ">", op.Ge: ">=", op.Lt: "<", op.Le: "<=", op.Eq: "=", op.Ne: "<>"}


def _infix(node: op.Binary, ref: Ref) -> str:
    if type(node) in _COMPARE:
        return f"({ref(node.a)} {_COMPARE[type(node)]} {ref(node.b)})::double"
    return f"({ref(node.a)} {_INFIX[type(node)]} {ref(node.b)})"


# --- running sums ---------------------------------------------------------------------
class RunningSum(win.Rolling):
    """(SQL only) the sum of x over the symbol's rows up to t (null rows count 0)."""

    @property
    def lead(self) -> int:
        return self.x.lead


class WindowSum(win.Rolling):
    """(SQL only) the sum of the last n rows: a ``RunningSum`` minus its value n rows back."""


def running_sums(node: op.Node) -> op.Node:
    """``node`` (expanded) with every Sum and Mean of an input without holes as a
    ``WindowSum`` of the input's ``RunningSum``."""
    kids = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    node = type(node)(**{k: running_sums(v) if isinstance(v, op.Node) else v
                         for k, v in kids.items()})  # fmt: skip
    if type(node) in (win.Sum, win.Mean) and not node.x.holes:
        total = WindowSum(RunningSum(node.x, 1), node.n)
        return total if isinstance(node, win.Sum) else op.Div(total, op.Number(float(node.n)))
    return node


# --- windows ----------------------------------------------------------------------------
def when_full(node: op.Node, value: str, counted: str | None = None) -> str:
    """``value`` where the window is full; with ``counted``, also where its n values are."""
    ok = f"_row >= {node.lead}"
    if counted is not None:
        ok += f" and count({counted}) over w{node.n} = {node.n}"
    return f"(case when {ok} then {value} end)"


def _ref(node: win.Ref, ref: Ref) -> str:
    x = ref(node.x)
    return f"lag({x}, {node.n}) over s" if node.n > 0 else f"lead({x}, {-node.n}) over s"


def _sign_sum(node: win.SignSum, ref: Ref) -> str:
    """sign(x - lag(x, k)) summed over k = lo..hi: a null lag makes the sum null."""
    x = ref(node.x)
    signs = " + ".join(f"sign({x} - lag({x}, {k}) over s)" for k in range(node.lo, node.hi + 1))
    return f"({signs})::double"


def _rolling(node: win.Rolling, ref: Ref) -> str:
    x, n = ref(node.x), node.n
    w = f"over w{n}"
    if isinstance(node, RunningSum):
        return f"sum({x}) over cum"
    if isinstance(node, WindowSum):
        return when_full(node, f"({x} - coalesce(lag({x}, {n}) over s, 0))")
    if isinstance(node, win.Count):
        return f"(case when _row >= {n - 1} then count({x}) {w}::double end)"
    if isinstance(node, win.EMA):
        return _ema(x, n)
    if type(node) in _POISONED:
        return _poisoned(node, x)
    value = {
        win.Mean: f"avg({x}) {w}",
        win.Sum: f"sum({x}) {w}",
        win.Std: f"stddev_samp({x}) {w}",
        win.Var: f"var_samp({x}) {w}",
        win.Max: f"max({x}) {w}",
        win.Min: f"min({x}) {w}",
        win.Skew: f"nullif(skewness({x}) {w}, 'nan'::double)",
        win.Kurt: f"nullif(kurtosis({x}) {w}, 'nan'::double)",
        win.Rank: f"((rank(order by {x}) {w}) + (cume_dist(order by {x}) {w}) * {n}) / {2 * n}",
        win.ArgMax: f"(arg_max(_row, {x}) {w} - _row + {n})::double",
        win.Mad: f"list_avg(list_transform(list({x}) {w}, lambda v: abs(v - avg({x}) {w})))",
        win.TimeCov: f"regr_sxy({x}, _row) {w}",
    }.get(type(node))
    if isinstance(node, win.Quantile) and n <= SORTED_LAGS:
        value = _sorted_quantile(x, n, node.q)
    elif isinstance(node, win.Quantile):
        qs = getattr(ref, "quantiles", {}).get((node.x, n), [node.q])
        listed = ", ".join(repr(q) for q in qs)  # one sorted frame for all of them
        value = f"(quantile_cont({x}, [{listed}]) {w})[{qs.index(node.q) + 1}]"
    return when_full(node, value, x if node.x.holes else None)


def _sorted_quantile(x: str, n: int, q: float) -> str:
    """The q-quantile of x and its n - 1 lags, interpolated as pandas does: h = (n - 1) q,
    the sorted values a, b at floor(h) and the next, a + (h - floor(h)) (b - a). The row is
    sorted once: a and b are reduced from a slice of the sorted list (DuckDB evaluates each
    mention of an expression anew)."""
    values = ", ".join([x, *(f"lag({x}, {k}) over s" for k in range(1, n))])
    ordered = f"list_sort([{values}])"
    h = (n - 1) * q
    low, frac = math.floor(h), h - math.floor(h)
    if frac == 0:
        return f"{ordered}[{low + 1}]"
    return f"list_reduce({ordered}[{low + 1}:{low + 2}], lambda a, b: a + {frac!r} * (b - a))"


# Aggregates through which a NaN propagates: where the input can hold nulls, each null
# enters as NaN and a NaN result becomes null, instead of a second aggregate counting the
# window's values. Min is -max(-x): DuckDB sorts NaN above every number. (Not skewness
# nor kurtosis: DuckDB raises on a NaN.)
_POISONED = {
    win.Mean: "avg({x}) {w}",
    win.Sum: "sum({x}) {w}",
    win.Std: "stddev_samp({x}) {w}",
    win.Var: "var_samp({x}) {w}",
    win.Max: "max({x}) {w}",
    win.Min: "- max(- {x}) {w}",
    win.TimeCov: "regr_sxy({x}, _row) {w}",
}


def _poisoned(node: win.Rolling, x: str) -> str:
    if node.x.holes:
        x = f"coalesce({x}, 'nan'::double)"
    value = _POISONED[type(node)].format(x=x, w=f"over w{node.n}")
    if node.x.holes:
        value = f"nullif({value}, 'nan'::double)"
    return when_full(node, value)


def ema_block(n: int) -> tuple[float, int]:
    """(b, P) of an EMA with span n: its decay b = 1 - 2 / (n + 1) per row and the rows P
    past which the older rows weigh below EMA_TAIL of the total (1 where b = 0)."""
    b = 1 - 2 / (n + 1)
    return b, max(1, math.ceil(math.log(EMA_TAIL * (1 - b)) / math.log(b))) if b > 0 else 1


def _ema(x: str, n: int) -> str:
    """EMA with span n from two frames: the rows of this row's block of P rows so far, and
    the whole previous block, each weighted b^-(row mod P) (the common factor cancels);
    older rows weigh below EMA_TAIL of the total and are left out."""
    b, p = ema_block(n)
    k = f"(_row % {p})"
    weight = f"pow({b!r}, - {k})"
    cur = f"(partition by symbol order by date rows between {k} preceding and current row)"
    prev = f"(partition by symbol order by date rows between {k} + {p} preceding and {k} + 1 preceding)"
    num = f"(sum({x} * {weight}) over {cur} + {b!r} ** {p} * coalesce(sum({x} * {weight}) over {prev}, 0))"
    den_w = f"(case when {x} is not null then {weight} end)"
    den = f"(sum({den_w}) over {cur} + {b!r} ** {p} * coalesce(sum({den_w}) over {prev}, 0))"
    seen = f"count({x}) over (partition by symbol order by date rows between unbounded preceding and current row)"
    return f"(case when {x} is not null and {seen} >= {n} then {num} / {den} end)"


def _cov(node: win.Cov, ref: Ref) -> str:
    a, b = ref(node.a), ref(node.b)
    if not (node.a.holes or node.b.holes):
        return when_full(node, f"covar_samp({a}, {b}) over w{node.n}")
    poisoned = f"covar_samp(coalesce({a}, 'nan'::double), coalesce({b}, 'nan'::double))"
    return when_full(node, f"nullif({poisoned} over w{node.n}, 'nan'::double)")


_RULES: tuple[tuple[type | tuple[type, ...], Callable[..., str]], ...] = (
    (op.Number, lambda n, r: f"{n.value!r}::double"),
    (op.Field, lambda n, r: r(n)),
    *_ELEMENTWISE.items(),
    ((*_INFIX, *_COMPARE), _infix),
    (win.Ref, _ref),
    (win.SignSum, _sign_sum),
    (win.Order, lambda n, r: f"(- {r(n.x)})" if n.descending else r(n.x)),
    (win.Rolling, _rolling),
    (win.Cov, _cov),
)  # fmt: skip


def reads(node: op.Node) -> tuple[op.Node, ...]:
    """The children the SQL form of ``node`` reads, as often as it reads them: a division
    (``nullif``) and a log (``greatest``) read theirs once, unlike the Polars forms."""
    if isinstance(node, op.Div | op.Log):
        return node.children()
    return node.references()


# --- the panel --------------------------------------------------------------------------
FIELD_SQL = {
    "open": "p.open * (p.adj_close / p.close)",
    "high": "p.high * (p.adj_close / p.close)",
    "low": "p.low * (p.adj_close / p.close)",
    "close": "p.adj_close",
    "volume": "p.volume",
    "index": "i.sp500",
}


def panel_sql(
    outputs: Sequence[tuple[str, op.Node]],
    horizons: Sequence[int],
    min_history: int = 1,
    forms: Forms | None = None,
    symbol_range: bool = False,
) -> str:
    """One DuckDB SELECT over the relations ``prices`` (date, symbol, adj_close, close,
    high, low, open, volume) and ``index`` (date, sp500): date, symbol, adj_close,
    history_rows, every output (name, tree) and per horizon ``label_end_{h}d``, sorted by
    (symbol, date); rows with ``history_rows >= min_history``.

    Levels are a chain of CTEs; each passes on only the columns a later level or the
    result reads (a window operator carries every column of its input). ``forms``: the
    operators compiled otherwise (another engine's forms, see ``compile_node``).
    ``symbol_range``: only the symbols between the parameters ``$first`` and ``$last``
    (a batch: windows never cross a symbol)."""
    outputs = [(name, running_sums(tree.expand())) for name, tree in outputs]
    plan = build_plan(outputs, reads, share_windows_only=True, late=True, windows_apart=True)
    final = {"date", "symbol", "adj_close", "_row", *(f"label_end_{h}d" for h in horizons)}
    final |= {plan.columns[node] for _, node in plan.outputs}
    forms = forms or {}
    needs = [_level_reads(plan, k, forms) for k in range(len(plan.levels))]
    ctes = [f"_l0 as (\n{_base(plan, horizons, symbol_range)}\n)"]
    made = [c for c in ("date", "symbol", "adj_close", "_row")] + [f"_f_{f}" for f in plan.fields]
    made += [f"label_end_{h}d" for h in horizons]
    for k in range(len(plan.levels)):
        later = set().union(final, *needs[k:], {"symbol", "date", "_row"})
        carry = [c for c in made if c in later]
        ctes.append(f"_l{k + 1} as (\n{_level(plan, k, carry, forms)}\n)")
        made = carry + [name for name, _ in plan.levels[k]]
    columns = ["date", "symbol", "adj_close", "_row + 1 as history_rows"]
    columns += [f"{quote(plan.columns[node])} as {quote(name)}" for name, node in plan.outputs]
    columns += [f"label_end_{h}d" for h in horizons]
    sep = ",\n"
    return (f"with {sep.join(ctes)}\nselect {', '.join(columns)}\nfrom _l{len(plan.levels)}\n"
            f"where _row + 1 >= {int(min_history)}\norder by symbol, date")  # fmt: skip


def _base(plan: Plan, horizons: Sequence[int], symbol_range: bool = False) -> str:
    fields = [f"{FIELD_SQL[f]} as _f_{f}" for f in plan.fields]
    ends = [f"lead(p.date, {int(h)}) over s as label_end_{int(h)}d" for h in horizons]
    join = ' left join "index" i on i.date = p.date' if "index" in plan.fields else ""
    columns = ["p.date", "p.symbol", "p.adj_close", "row_number() over s - 1 as _row",
               *fields, *ends]  # fmt: skip
    within = "\nwhere p.symbol between $first and $last" if symbol_range else ""
    return (
        f"select {', '.join(columns)}\nfrom prices p{join}{within}\n"
        "window s as (partition by p.symbol order by p.date)"
    )


def _compiler(plan: Plan, current: list[op.Node], seen: set[str], forms: Forms) -> Ref:
    """``ref`` of a level's columns; ``ref.quantiles``: (input, window) -> every q the plan
    asks of it, so that quantiles of one frame are one windowed call (DuckDB shares it);
    ``ref.forms``: ``forms``."""

    def ref(node: op.Node) -> str:
        if isinstance(node, op.Field):
            seen.add(f"_f_{node.name}")
            return f"_f_{node.name}"
        if node in plan.columns and node is not current[0] and not isinstance(node, op.Number):
            seen.add(plan.columns[node])
            return quote(plan.columns[node])
        return compile_node(node, ref)

    quantiles: dict[tuple[op.Node, int], list[float]] = {}
    for node in plan.columns:
        for part in _inline(node, plan):
            if isinstance(part, win.Quantile):
                quantiles.setdefault((part.x, part.n), []).append(part.q)
    ref.quantiles = {key: sorted(set(qs)) for key, qs in quantiles.items()}
    ref.forms = forms
    return ref


def _inline(node: op.Node, plan: Plan) -> list[op.Node]:
    """``node`` and the nodes compiled inline into its column."""
    found, stack = [], [node]
    while stack:
        n = stack.pop()
        found.append(n)
        stack.extend(c for c in n.children() if c not in plan.columns)
    return found


def _level_reads(plan: Plan, level: int, forms: Forms) -> set[str]:
    """Columns the expressions of ``plan.levels[level]`` read."""
    seen: set[str] = set()
    current: list[op.Node] = [None]
    ref = _compiler(plan, current, seen, forms)
    for _, node in plan.levels[level]:
        current[0] = node
        compile_node(node, ref)
    return seen


def _level(plan: Plan, level: int, carry: list[str], forms: Forms) -> str:
    current: list[op.Node] = [None]
    ref = _compiler(plan, current, set(), forms)
    exprs, windows = [], set()
    for name, node in plan.levels[level]:
        current[0] = node
        exprs.append(f"{compile_node(node, ref)} as {quote(name)}")
        windows |= _windows(node, plan)
    frames = [
        f"w{n} as (s rows between {n - 1} preceding and current row)" for n in sorted(windows)
    ]
    clause = ", ".join(["s as (partition by symbol order by date)",
                        "cum as (s rows between unbounded preceding and current row)", *frames])  # fmt: skip
    sep = ",\n  "
    columns = [quote(c) for c in carry] + exprs
    return f"select {sep.join(columns)}\nfrom _l{level}\nwindow {clause}"


def _windows(node: op.Node, plan: Plan) -> set[int]:
    """Window sizes of the windowed operators compiled inline in ``node``'s column."""
    windowed = (n for n in _inline(node, plan) if isinstance(n, win.Rolling | win.PairRolling))
    return {n.n for n in windowed if not isinstance(n, RunningSum | WindowSum)}
