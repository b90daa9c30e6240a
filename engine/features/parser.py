"""Qlib-syntax factor expressions to operator trees, with Python's own ``ast``.

``$name`` is not Python: each ``$`` is read as ``_`` (same length, so every column stays
where it was) and a name is a field exactly when the source has ``$`` at its start.
Anything the language does not have is refused with one line naming the factor, the
1-based column (and line, for a multi-line expression) and what was expected.
"""

from __future__ import annotations

import ast
import difflib
from typing import NoReturn

from engine.features import FeatureError
from engine.features import operators as op
from engine.features import windows as win

Arg = str  # "expr" | "window" | "offset" | "quantile"
SIGNATURES: dict[str, tuple[type[op.Node], tuple[Arg, ...]]] = {
    **{name: (getattr(win, name), ("expr", "window")) for name in (
        "Mean", "Sum", "Std", "Var", "Skew", "Kurt", "Max", "Min", "Med", "Mad", "Rank",
        "IdxMax", "IdxMin", "Count", "Delta", "Slope", "Rsquare", "Resi", "WMA", "EMA")},
    "Ref": (win.Ref, ("expr", "offset")),
    "Quantile": (win.Quantile, ("expr", "window", "quantile")),
    "Corr": (win.Corr, ("expr", "expr", "window")),
    "Cov": (win.Cov, ("expr", "expr", "window")),
    "Abs": (op.Abs, ("expr",)),
    "Sign": (op.Sign, ("expr",)),
    "Log": (op.Log, ("expr",)),
    "Power": (op.Power, ("expr", "expr")),
    "Greater": (op.Greater, ("expr", "expr")),
    "Less": (op.Less, ("expr", "expr")),
    "If": (op.If, ("expr", "expr", "expr")),
}  # fmt: skip
REFUSED = {
    "Mask": "Mask loads another instrument's series (Qlib's benchmark trick); "
    "this archive's only other series is the index: use $index",
}
FIELD_REFUSED = {"vwap": "the Kaggle archive has no VWAP (volume-weighted average price)"}
BINARY = {ast.Add: op.Add, ast.Sub: op.Sub, ast.Mult: op.Mul, ast.Div: op.Div,
          ast.Pow: op.Power, ast.BitAnd: op.And, ast.BitOr: op.Or}  # fmt: skip
COMPARE = {ast.Gt: op.Gt, ast.GtE: op.Ge, ast.Lt: op.Lt, ast.LtE: op.Le,
           ast.Eq: op.Eq, ast.NotEq: op.Ne}  # fmt: skip


class ExpressionError(FeatureError):
    """A factor expression the language refuses; the message is one line."""


def parse(name: str, text: str, *, label: bool = False) -> op.Node:
    """The operator tree of factor ``name``'s expression ``text``.

    ``label``: allow looking forward (``Ref(x, -h)``); a feature may not.

    Raises
    ------
    ExpressionError
        One line: ``factor 'name': at column C: what was expected``.
    """
    return _Reader(name, text, label).read()


class _Reader:
    def __init__(self, name: str, text: str, label: bool) -> None:
        self.name, self.text, self.label = name, text, label

    def read(self) -> op.Node:
        if not self.text.strip():
            self.fail(None, "empty expression")
        try:
            tree = ast.parse(self.text.replace("$", "_").strip(), mode="eval")
        except SyntaxError as exc:
            lead = len(self.text) - len(self.text.lstrip())
            where = (exc.lineno or 1, (exc.offset or 1) - 1 + (lead if exc.lineno == 1 else 0))
            self.fail(where, f"invalid syntax ({exc.msg})")
        self.shift = len(self.text) - len(self.text.lstrip())
        node = self.node(tree.body)
        if node.future and not self.label:
            self.fail(None, "Ref with a negative offset reads the future: allowed in labels only")
        return node

    # --- errors ---------------------------------------------------------------------
    def fail(self, where: ast.AST | tuple[int, int] | None, what: str) -> NoReturn:
        at = ""
        if isinstance(where, ast.AST):
            where = (where.lineno, self.column(where))
        if where is not None:
            line, col = where
            at = (
                f"at line {line}, column {col + 1}: "
                if "\n" in self.text
                else f"at column {col + 1}: "
            )
        raise ExpressionError(f"factor {self.name!r}: {at}{what}")

    def column(self, node: ast.AST) -> int:
        """0-based character column of ``node`` in the original text (ast gives bytes)."""
        lines = self.text.strip().split("\n")
        line = lines[node.lineno - 1].encode()
        col = len(line[: node.col_offset].decode(errors="ignore"))
        return col + (self.shift if node.lineno == 1 else 0)

    def source_char(self, node: ast.AST) -> str:
        lines = self.text.strip().split("\n")
        col = self.column(node) - (self.shift if node.lineno == 1 else 0)
        return lines[node.lineno - 1][col : col + 1]

    # --- nodes ----------------------------------------------------------------------
    def node(self, node: ast.AST) -> op.Node:
        if isinstance(node, ast.Name):
            return self.field(node)
        if isinstance(node, ast.Constant):
            return op.Number(self.number(node))
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp):
            kind = BINARY.get(type(node.op))
            if kind is None:
                self.fail(node, f"operator {_symbol(node.op)} is not in the language "
                          "(+ - * / ** & | and comparisons)")  # fmt: skip
            return kind(self.node(node.left), self.node(node.right))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BoolOp):
            self.fail(node, "'and'/'or' are not in the language: use & and | with parentheses")
        self.fail(node, f"expected a field, a number or an operator call, got {_kind(node)}")

    def field(self, node: ast.Name) -> op.Node:
        if self.source_char(node) != "$":
            hint = _suggest(node.id, SIGNATURES) or _suggest(f"${node.id}", _FIELD_NAMES)
            self.fail(node, f"unknown name {node.id!r}{hint}; fields start with $")
        name = node.id[1:]
        if name in FIELD_REFUSED:
            self.fail(node, f"${name}: {FIELD_REFUSED[name]}")
        if name not in op.FIELDS:
            hint = _suggest(f"${name}", _FIELD_NAMES)
            self.fail(node, f"unknown field ${name}{hint}; fields: {', '.join(_FIELD_NAMES)}")
        return op.Field(name)

    def number(self, node: ast.Constant) -> float:
        if isinstance(node.value, str):
            self.fail(node, "a string literal is not in the language (nor is Mask's instrument)")
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            self.fail(node, f"expected a number, got {node.value!r}")
        return float(node.value)

    def unary(self, node: ast.UnaryOp) -> op.Node:
        if isinstance(node.op, ast.UAdd):
            return self.node(node.operand)
        if not isinstance(node.op, ast.USub):
            self.fail(node, f"operator {_symbol(node.op)} is not in the language (use If)")
        inner = self.node(node.operand)
        return op.Number(-inner.value) if isinstance(inner, op.Number) else op.Neg(inner)

    def compare(self, node: ast.Compare) -> op.Node:
        if len(node.ops) > 1:
            self.fail(node, "chained comparison: write (a < b) & (b < c)")
        kind = COMPARE.get(type(node.ops[0]))
        if kind is None:
            self.fail(node, f"operator {_symbol(node.ops[0])} is not in the language")
        return kind(self.node(node.left), self.node(node.comparators[0]))

    def call(self, node: ast.Call) -> op.Node:
        if not isinstance(node.func, ast.Name):
            self.fail(node, f"expected an operator name, got {_kind(node.func)}")
        fname = node.func.id
        if fname in REFUSED:
            self.fail(node, REFUSED[fname])
        if fname not in SIGNATURES:
            self.fail(node, f"unknown operator {fname!r}{_suggest(fname, SIGNATURES)}")
        if node.keywords:
            self.fail(node.keywords[0].value, f"{fname} takes positional arguments only")
        kind, signature = SIGNATURES[fname]
        if len(node.args) != len(signature):
            shown = ", ".join(signature)
            self.fail(node, f"{fname} takes {len(signature)} argument(s) ({shown}), "
                      f"got {len(node.args)}")  # fmt: skip
        args = [self.argument(fname, a, s) for a, s in zip(node.args, signature, strict=True)]
        self.check_window(fname, kind, node, args)
        return kind(*args)

    def argument(self, fname: str, node: ast.AST, kind: Arg) -> object:
        if kind == "expr":
            return self.node(node)
        value = self.node(node)
        if not isinstance(value, op.Number):
            self.fail(node, f"{fname}: expected a number for its {kind}, got an expression")
        v = value.value
        if kind == "quantile":
            if not 0 <= v <= 1:
                self.fail(node, f"{fname}: expected a quantile in [0, 1], got {v:g}")
            return v
        if not v.is_integer():
            self.fail(node, f"{fname}: expected a whole number of rows for its {kind}, got {v:g}")
        if kind == "window" and v <= 0:
            self.fail(node, f"{fname}: expected a window of at least 1 row, got {v:g}")
        if kind == "offset" and v == 0:
            self.fail(node, f"{fname}: offset 0 (Qlib's first row of the loaded range) is "
                      "not supported: use the expression itself")  # fmt: skip
        if kind == "offset" and v < 0 and not self.label:
            self.fail(node, f"{fname}: offset {v:g} reads the future: allowed in labels only")
        return int(v)

    def check_window(self, fname: str, kind: type, node: ast.Call, args: list) -> None:
        low = getattr(kind, "min_window", 1)
        window = next((a for a in args if isinstance(a, int)), None)
        if fname != "Ref" and window is not None and window < low:
            self.fail(node.args[-1] if fname != "Quantile" else node.args[1],
                      f"{fname}: expected a window of at least {low} rows, got {window}")  # fmt: skip


_FIELD_NAMES = tuple(f"${f}" for f in op.FIELDS)


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _symbol(operator: ast.AST) -> str:
    return {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
            ast.RShift: ">>", ast.BitXor: "^", ast.Not: "not", ast.Invert: "~",
            ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
            }.get(type(operator), type(operator).__name__)  # fmt: skip


def _kind(node: ast.AST) -> str:
    return {ast.Attribute: "an attribute", ast.Subscript: "a subscript", ast.Lambda: "a lambda",
            ast.IfExp: "a Python if-expression (use If)", ast.Tuple: "a tuple",
            ast.List: "a list"}.get(type(node), type(node).__name__)  # fmt: skip
