"""The expression tree the evaluator walks, converted from ``promql_parser``'s AST.

``promql_parser`` (PyPI, a Rust port of Prometheus' parser) parses; this module turns its
objects into small frozen dataclasses that hold plain Python values (milliseconds,
label-name tuples), so the evaluator can key caches on nodes and the conversion is the
one place where constructs the engine does not evaluate are refused, naming them.

Errors: :class:`ParseError` for text the parser refuses (HTTP 400 ``bad_data``),
:class:`Unsupported` for a construct the engine does not evaluate (HTTP 422).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import promql_parser as pp

DEFAULT_SUBQUERY_STEP_MS = 60_000  # Prometheus' default global evaluation_interval (1m)
# Operators plus bracket nesting an expression may hold. The parser recurses natively and
# crashes the process (stack overflow) on a few thousand chained operators, and the tree is
# walked recursively here too; real queries hold a few dozen.
MAX_COMPLEXITY = 250
_OPERATOR_CHARS = frozenset("+-*/%^<>=!")
_OPERATOR_WORDS = frozenset(("and", "or", "unless", "atan2"))


class ParseError(ValueError):
    """The expression does not parse; the message is the parser's."""


class Unsupported(ValueError):
    """A construct this engine does not evaluate (answered 422, never a wrong number)."""


@dataclass(frozen=True, eq=False)
class Node:
    pass


@dataclass(frozen=True, eq=False)
class Number(Node):
    value: float


@dataclass(frozen=True, eq=False)
class String(Node):
    value: str


@dataclass(frozen=True, eq=False)
class LabelMatcher:
    name: str
    op: str  # = != =~ !~
    value: str


@dataclass(frozen=True, eq=False)
class Selector(Node):
    """An instant vector selector; ``range_ms`` is set when it is the inside of a range
    selector (``x[5m]``). ``at`` is None, a Unix ms, or ``"start"``/``"end"``."""

    matchers: tuple[LabelMatcher, ...]
    offset_ms: int = 0
    at: int | str | None = None
    range_ms: int | None = None

    @property
    def window_ms(self) -> int:
        """The range of a range selector; ValueError for an instant one (functions and
        windows over a range vector get a range selector or a subquery from the parser)."""
        if self.range_ms is None:
            raise ValueError("an instant vector selector has no range")
        return self.range_ms


@dataclass(frozen=True, eq=False)
class Subquery(Node):
    expr: Node
    range_ms: int
    step_ms: int | None  # None: the default evaluation interval
    offset_ms: int = 0
    at: int | str | None = None

    @property
    def window_ms(self) -> int:
        """The subquery's range (as :attr:`Selector.window_ms`)."""
        return self.range_ms


@dataclass(frozen=True, eq=False)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Aggregate(Node):
    op: str
    expr: Node
    param: Node | None
    grouping: tuple[str, ...]
    without: bool


@dataclass(frozen=True, eq=False)
class Binary(Node):
    op: str
    lhs: Node
    rhs: Node
    card: str = "one-to-one"  # one-to-one | many-to-one | one-to-many | many-to-many
    on: bool = False
    matching: tuple[str, ...] = ()  # on(...) / ignoring(...) labels
    include: tuple[str, ...] = ()  # group_left(...) / group_right(...) labels
    return_bool: bool = False


@dataclass(frozen=True, eq=False)
class Negate(Node):
    expr: Node


# Types an expression evaluates to (Prometheus' ValueType names).
SCALAR, VECTOR, MATRIX, STRING = "scalar", "vector", "matrix", "string"
_TYPE_NAMES = {SCALAR: "scalar", VECTOR: "instant vector", MATRIX: "range vector", STRING: "string"}

_CARD = {"OneToOne": "one-to-one", "ManyToOne": "many-to-one", "OneToMany": "one-to-many",
         "ManyToMany": "many-to-many"}
_MATCH = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _register_functions() -> None:
    """Teach the parser Prometheus 2.x's ``holt_winters`` (renamed in Prometheus 3, whose
    grammar the parser follows). Idempotent."""
    vt = pp.ValueType
    pp.register_extra_functions([pp.Function("holt_winters", [vt.Matrix, vt.Scalar, vt.Scalar], vt.Vector)])


_register_functions()


def complexity(text: str) -> int:
    """An upper bound on the depth of ``text``'s tree: operator characters and words plus
    the deepest bracket nesting, outside string literals and comments."""
    ops = depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":
            i += 1
            while i < n and text[i] != c:
                i += 2 if text[i] == "\\" and c != "`" else 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
        elif c in _OPERATOR_CHARS:
            ops += 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_:"):
                j += 1
            ops += text[i:j].lower() in _OPERATOR_WORDS
            i = j
            continue
        i += 1
    return ops + deepest


def quote_raw_strings(text: str) -> str:
    """``text`` with every raw string (in backticks) holding a backslash or a line break
    written as the double-quoted string of the same value.

    A PromQL raw string has no escape sequences: a backslash in it is a backslash, as in
    the regex ``127\\.0\\.0\\.1:9100`` that Grafana's ``${var:regex}`` writes. ``promql_parser``
    refuses there the backslash sequences it does not know (``unknown escape sequence
    '.'``) where Prometheus parses them. Other raw strings are left as they are, so that
    the parser's error positions stay those of ``text`` for them."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        j = i + 1
        if c in "\"'":
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j += 1
        elif c == "#":
            while j < n and text[j] != "\n":
                j += 1
        elif c == "`":
            end = text.find("`", j)
            if end < 0:  # unterminated: the parser names the error
                out.append(text[i:])
                break
            value, j = text[j:end], end + 1
            if any(ch in value for ch in "\\\n\r"):
                value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
                out.append(f'"{value}"')
                i = j
                continue
        out.append(text[i:j])
        i = j
    return "".join(out)


def parse(text: str) -> Node:
    """PromQL text -> the tree. Raises ParseError or Unsupported."""
    if complexity(text) > MAX_COMPLEXITY:
        raise ParseError(f"the expression is too complex: more than {MAX_COMPLEXITY} operators and nested brackets")
    try:
        tree = pp.parse(quote_raw_strings(text))
    except ValueError as exc:
        raise ParseError(str(exc)) from None
    except BaseException as exc:  # the Rust parser can panic (pyo3 PanicException)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ParseError(f"the expression could not be parsed: {exc}") from None
    try:
        return _convert(tree)
    except (ParseError, Unsupported):
        raise
    except RecursionError:  # a backstop: MAX_COMPLEXITY keeps trees far shallower
        raise ParseError("the expression nests too deeply") from None
    except (ValueError, OverflowError) as exc:  # the binding refuses a duration it cannot convert
        raise ParseError(f"a duration or time is out of range: {exc}") from None


def _name(member) -> str:  # noqa: ANN001 - the binding's enums: str() is "MatchOp.Re"
    return str(member).rsplit(".", 1)[-1]


def _ms(delta) -> int:  # noqa: ANN001 - datetime.timedelta
    return 0 if delta is None else round(delta.total_seconds() * 1000)


def _at(obj) -> int | str | None:  # noqa: ANN001 - promql_parser node with an ``at``
    try:
        at = obj.at
        if at is None:
            return None
        kind = _name(at.type)
        if kind == "Start":
            return "start"
        if kind == "End":
            return "end"
        return round(at.at.timestamp() * 1000)
    except BaseException as exc:  # a negative @ makes the parser's binding panic
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise Unsupported("@ modifier with a timestamp before 1970 or out of range") from None


def _selector(vs, range_ms: int | None = None) -> Selector:  # noqa: ANN001
    if vs.matchers.or_matchers:
        raise Unsupported("'or' inside label matchers")
    matchers = [LabelMatcher(m.name, _MATCH[_name(m.op)], m.value) for m in vs.matchers.matchers]
    if vs.name is not None and not any(m.name == "__name__" for m in matchers):
        matchers.insert(0, LabelMatcher("__name__", "=", vs.name))
    return Selector(tuple(matchers), _ms(vs.offset), _at(vs), range_ms)


def _convert(e) -> Node:  # noqa: ANN001, C901 - one case per parser node type
    if isinstance(e, pp.ParenExpr):
        return _convert(e.expr)
    if isinstance(e, pp.NumberLiteral):
        return Number(float(e.val))
    if isinstance(e, pp.StringLiteral):
        return String(e.val)
    if isinstance(e, pp.VectorSelector):
        return _selector(e)
    if isinstance(e, pp.MatrixSelector):
        return _selector(e.vector_selector, _ms(e.range))
    if isinstance(e, pp.SubqueryExpr):
        step = _ms(e.step) if e.step is not None else None
        if step is not None and step <= 0:
            raise Unsupported("subquery with a zero step")
        inner = _convert(e.expr)
        if value_type(inner) != VECTOR:
            raise ParseError(f"subquery is only allowed on instant vector, got {_TYPE_NAMES[value_type(inner)]}")
        return Subquery(inner, _ms(e.range), step, _ms(e.offset), _at(e))
    if isinstance(e, pp.UnaryExpr):
        return Negate(_convert(e.expr))
    if isinstance(e, pp.Call):
        from console.promql.functions import FUNCTIONS

        name = e.func.name
        if name not in FUNCTIONS:
            raise Unsupported(f"function {name}()")
        args = tuple(_convert(a) for a in e.args)
        expected = [_name(t).lower() for t in e.func.arg_types]
        for i, arg in enumerate(args):  # the parser lets some through, e.g. ln(-1)
            want, got = expected[min(i, len(expected) - 1)], value_type(arg)
            if got != want:
                raise ParseError(f"expected type {_TYPE_NAMES[want]} in call to function '{name}', "
                                 f"got {_TYPE_NAMES[got]}")
        return Call(name, args)
    if isinstance(e, pp.AggregateExpr):
        from console.promql.aggregations import AGGREGATIONS

        op = str(e.op)
        if op not in AGGREGATIONS:
            raise Unsupported(f"aggregation {op}()")
        grouping: tuple[str, ...] = ()
        without = False
        if e.modifier is not None:
            grouping = tuple(e.modifier.labels)
            without = _name(e.modifier.type) == "Without"
        param = _convert(e.param) if e.param is not None else None
        inner = _convert(e.expr)
        if value_type(inner) != VECTOR:
            raise ParseError(f"expected type instant vector in aggregation expression, got "
                             f"{_TYPE_NAMES[value_type(inner)]}")
        return Aggregate(op, inner, param, grouping, without)
    if isinstance(e, pp.BinaryExpr):
        op = str(e.op).strip()
        m = e.modifier
        kw: dict[str, Any] = {}  # Binary's matching fields
        if m is not None:
            fill = m.fill_values
            if fill is not None and (fill.lhs is not None or fill.rhs is not None):
                raise Unsupported("fill() modifiers of binary operators")
            kw["card"] = _CARD[_name(m.card)]
            kw["return_bool"] = bool(m.return_bool)
            if m.matching is not None:
                kw["on"] = _name(m.matching.type) == "Include"
                kw["matching"] = tuple(m.matching.labels)
            kw["include"] = tuple(m.group_labels or ())
        if op in ("and", "or", "unless"):
            kw["card"] = "many-to-many"
        return Binary(op, _convert(e.lhs), _convert(e.rhs), **kw)
    raise Unsupported(f"expression {type(e).__name__}")


def value_type(node: Node) -> str:
    """The type ``node`` evaluates to: scalar, vector, matrix or string."""
    if isinstance(node, Number):
        return SCALAR
    if isinstance(node, String):
        return STRING
    if isinstance(node, Selector):
        return MATRIX if node.range_ms is not None else VECTOR
    if isinstance(node, Subquery):
        return MATRIX
    if isinstance(node, Negate):
        return value_type(node.expr)
    if isinstance(node, Aggregate):
        return VECTOR
    if isinstance(node, Call):
        from console.promql.functions import FUNCTIONS

        return FUNCTIONS[node.name].returns
    if isinstance(node, Binary):
        if value_type(node.lhs) == SCALAR and value_type(node.rhs) == SCALAR:
            return SCALAR
        return VECTOR
    raise Unsupported(type(node).__name__)
