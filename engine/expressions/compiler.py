"""Compiling one expression: Python's parser, a strict whitelist, then closures.

The source (after `lexer.to_python`) is parsed by `ast.parse(mode="eval")`. Every node of the
tree must be of a whitelisted kind; names must be Loom's (`$json`, `$input`, ...) or its
functions; attribute access is a key lookup on JSON objects or a whitelisted method, never
Python's `getattr`. The checked tree becomes nested closures, so evaluating an expression per
item costs a few function calls and no parsing.

Why Python's parser rather than a grammar library: it is fast, exhaustively tested, and gives
precise syntax errors; the whitelist makes the accepted language small and the compiler
(not `eval`) gives it meaning. There are no loops, comprehensions, lambdas or assignments.

Evaluation is metered (`budget`): a rendering charges the size of its expressions' trees
when it starts (`compile_counted`), and every operation whose work grows with the data
(repetition, comparisons of containers, `in`, slices, the functions) charges that work and
checks the size of what it builds before it builds it. The hot path (`$json.price *
$json.qty`) pays nothing for it.

Over 400 lines, but one cohesive thing: the checker and the
closures it builds, one case per kind of syntax node.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.expressions.budget import (
    EXPRESSION_STEPS,
    MAX_INT_BITS,
    MAX_POWER_EXPONENT,
    NUMBER_SIZE,
    TREE_NODE_STEPS,
    Budget,
    exceeded,
)
from engine.expressions.cache import WeightedCache
from engine.expressions.errors import (
    EvalError,
    ExpressionEvaluationError,
    ExpressionLimitError,
    ExpressionSyntaxError,
    LimitExceeded,
)
from engine.expressions.functions import (
    FUNCTIONS,
    arity_problem,
    contains,
    method,
    sliced,
    text_of,
    type_name,
)
from engine.expressions.lexer import DOLLAR_PREFIX, as_written, source_offset, to_python
from engine.expressions.patterns import pattern_problem
from engine.expressions.scope import NodeItems, NodeOutputs, Scope, plain

MAX_EXPRESSION_CHARS = 10_000
MAX_TREE_DEPTH = 64
MAX_TREE_NODES = 2_000

Compiled = Callable[[Scope], Any]

# `$name` -> what it evaluates to, given the scope.
_VARIABLES: dict[str, Callable[[Scope], Any]] = {
    "json": lambda scope: scope.json,
    "input": lambda scope: scope.input_items,
    "execution": lambda scope: scope.execution,
    "workflow": lambda scope: scope.workflow,
    "now": lambda scope: scope.now,
    "today": lambda scope: scope.now[:10],
    "itemIndex": lambda scope: scope.item_index,
    "node": lambda scope: scope.nodes,
    "parameter": lambda scope: scope.parameter,
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}

# Comparisons take the budget first: `==` and `<` on containers and `in` charge their work.
_COMPARE: dict[type[ast.cmpop], Callable[[Budget, Any, Any], Any]] = {
    ast.Eq: lambda budget, left, right: left == right,
    ast.NotEq: lambda budget, left, right: left != right,
    ast.Lt: lambda budget, left, right: left < right,
    ast.LtE: lambda budget, left, right: left <= right,
    ast.Gt: lambda budget, left, right: left > right,
    ast.GtE: lambda budget, left, right: left >= right,
    ast.In: lambda budget, left, right: contains(budget, right, left, "'in'"),
    ast.NotIn: lambda budget, left, right: not contains(budget, right, left, "'not in'"),
}
_ORDERED = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
# Types whose comparison costs one step whatever their value.
_SCALARS = frozenset((int, float, bool, type(None)))


def _checked_number(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise exceeded(NUMBER_SIZE, f"a number larger than {MAX_INT_BITS:,} bits")
    return value


def _power(base: Any, exponent: Any) -> Any:
    for value in (base, exponent):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EvalError(f"'**' needs numbers, got {type_name(value)}")
    if abs(exponent) > MAX_POWER_EXPONENT:
        raise exceeded(NUMBER_SIZE, f"an exponent larger than {MAX_POWER_EXPONENT:,}")
    big = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if big and abs(base).bit_length() * exponent > MAX_INT_BITS:
        raise exceeded(NUMBER_SIZE, f"a number larger than {MAX_INT_BITS:,} bits")
    try:
        return base**exponent
    except OverflowError as exc:
        raise EvalError("number too large") from exc
    except ZeroDivisionError as exc:
        raise EvalError("zero cannot be raised to a negative power") from exc


def _arithmetic(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Scope, Any, Any], Any]:
    def apply(scope: Scope, left: Any, right: Any) -> Any:
        if (type(left) is float and type(right) in _NUMBERS) or (
            type(right) is float and type(left) is int
        ):
            try:
                return op(left, right)  # the hot path: float arithmetic cannot grow unbounded
            except ZeroDivisionError as exc:
                raise EvalError("division by zero") from exc
        if type(left) is int and type(right) is int:
            try:
                return _checked_number(op(left, right))
            except ZeroDivisionError as exc:
                raise EvalError("division by zero") from exc
        left, right = plain(left), plain(right)
        if symbol == "%" and isinstance(left, str):
            # Python would format the string (`'%s' % x`): not part of the language.
            raise EvalError(f"'%' needs numbers, got {type_name(left)} and {type_name(right)}")
        if symbol == "*":
            # Repeating a string or list: check the size before building it.
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, list) and isinstance(count, int):
                    measured = scope.budget.check_repeat(sequence, count)
                    repeated = sequence * count
                    scope.budget.remember(repeated, measured)
                    return repeated
                if isinstance(sequence, str) and isinstance(count, int):
                    scope.budget.check_repeat(sequence, count)
        if symbol == "+":
            joined = _concatenate(scope.budget, left, right)
            if joined is not None:
                return joined
        if isinstance(left, dict) or isinstance(right, dict):
            raise EvalError(f"'{symbol}' cannot apply to an object")
        try:
            return _checked_number(op(left, right))
        except ZeroDivisionError as exc:
            raise EvalError("division by zero") from exc
        except OverflowError as exc:
            raise EvalError("number too large") from exc
        except TypeError as exc:
            raise EvalError(
                f"'{symbol}' cannot apply to {type_name(left)} and {type_name(right)}"
            ) from exc

    return apply


_NUMBERS = (int, float)


def _concatenate(budget: Budget, left: Any, right: Any) -> Any:
    """`a + b` with a string or list on either side; None when neither is (numbers)."""
    left_is_text, right_is_text = isinstance(left, str), isinstance(right, str)
    if left_is_text or right_is_text:
        # `"total: " + 3` reads naturally in expressions; join as text, like JavaScript.
        left_text = left if left_is_text else text_of(budget, left)
        right_text = right if right_is_text else text_of(budget, right)
        budget.check_size(len(left_text) + len(right_text), "the joined text")
        budget.charge_chars(len(left_text) + len(right_text))
        return left_text + right_text
    if isinstance(left, list) and isinstance(right, list):
        size = budget.size(left)
        budget.check_size(size + budget.size(right), "the joined list")
        budget.charge_elements(len(left) + len(right))
        return left + right
    return None


_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    # Refused, named as the user typed them.
    ast.MatMult: "@",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Is: "is",
    ast.IsNot: "is not",
}


def _get_key(container: Any, key: Any) -> Any:
    """`a[b]` and `a.b` on JSON data: object keys and array or string indexes."""
    if isinstance(container, dict):
        if not isinstance(key, str):
            raise EvalError(f"object keys are strings, got {type_name(key)}")
        return container.get(key)
    if isinstance(container, list | str):
        if isinstance(key, bool) or not isinstance(key, int):
            if key == "length":
                return len(container)
            raise EvalError(f"index must be an integer, got {type_name(key)}")
        if -len(container) <= key < len(container):
            return container[key]
        return None
    if isinstance(container, NodeItems):
        return container.get(key)
    if isinstance(container, NodeOutputs):
        return container.lookup(key)
    if container is None:
        raise EvalError(f"cannot read {key!r} of null")
    raise EvalError(f"cannot read {key!r} of a {type_name(container)}")


def _attribute(container: Any, name: str) -> Any:
    if type(container) is dict:  # the hot path: `$json.price`
        return container.get(name)
    if isinstance(container, NodeItems):
        return container.attribute(name)
    if isinstance(container, NodeOutputs):
        return container.lookup(name)
    if isinstance(container, list) and name == "length":
        return len(container)
    if isinstance(container, str) and name == "length":
        return len(container)
    if isinstance(container, dict):
        return container.get(name)
    if container is None:
        raise EvalError(f"cannot read '{name}' of null")
    raise EvalError(f"a {type_name(container)} has no field '{name}'")


@dataclass(slots=True)
class _Compiler:
    source: str
    # What Python parsed (the source rewritten by `to_python`, in parentheses), to quote the
    # user's text of a refused construct.
    parsed: str = ""
    nodes_seen: int = 0
    # Whether each operation's closure says where it failed (`EvalError.position`): a call
    # more per operation, so only for previews, never at run time.
    locate: bool = False
    # Where each line of `parsed` starts, for positions (made on first use).
    line_starts: list[int] | None = None

    def fail(self, message: str) -> ExpressionSyntaxError:
        return ExpressionSyntaxError(message, self.source)

    def span(self, node: ast.AST) -> tuple[int, int]:
        """Where `node` is in the user's text, [start, end) in characters."""
        start = self.offset(getattr(node, "lineno", 1), getattr(node, "col_offset", 0))
        end_line = getattr(node, "end_lineno", None)
        end_col = getattr(node, "end_col_offset", None)
        end = start if end_line is None or end_col is None else self.offset(end_line, end_col)
        return start, max(start, end)

    def offset(self, line: int, column_bytes: int) -> int:
        """A position of the tree (a line, and a column in UTF-8 bytes of `parsed`) as an
        offset in the user's text."""
        if self.line_starts is None:
            starts = [0]
            for text in self.parsed.split("\n"):
                starts.append(starts[-1] + len(text) + 1)
            self.line_starts = starts
        line_start = self.line_starts[min(max(line, 1), len(self.line_starts) - 1) - 1]
        line_text = self.parsed[line_start:].split("\n", 1)[0]
        column = len(line_text.encode()[:column_bytes].decode(errors="ignore"))
        # `parsed` is the rewritten text in parentheses: one character before it.
        return source_offset(self.source, line_start + column - 1)

    def located(self, compiled: Compiled, node: ast.AST) -> Compiled:
        """`compiled`, naming where it failed when an operation inside it names nothing."""
        span = self.span(node)

        def locating(scope: Scope) -> Any:
            try:
                return compiled(scope)
            except EvalError as exc:
                if exc.position is None:
                    exc.position = span
                raise
            except (TypeError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
                error = EvalError(_unexpected(exc))
                error.position = span
                raise error from exc

        return locating

    def written(self, node: ast.AST) -> str:
        """How the user wrote `node`, for a message (never the rewritten names)."""
        segment = ast.get_source_segment(self.parsed, node) if self.parsed else None
        if not segment:
            return "this construct"
        text = as_written(segment)
        return repr(text if len(text) <= 40 else text[:37] + "...")

    def compile(self, node: ast.AST, depth: int = 0) -> Compiled:
        self.nodes_seen += 1
        if depth > MAX_TREE_DEPTH:
            raise self.fail(f"expression nested deeper than {MAX_TREE_DEPTH} levels")
        if self.nodes_seen > MAX_TREE_NODES:
            raise self.fail(f"expression larger than {MAX_TREE_NODES} elements")
        handler = getattr(self, f"_{type(node).__name__}", None)
        try:
            if handler is None:
                raise self.fail(f"{_describe(node) or self.written(node)} is not allowed")
            compiled: Compiled = handler(node, depth + 1)
        except ExpressionSyntaxError as exc:
            if exc.position is None:  # the innermost construct refused says where
                exc.position = self.span(node)
            raise
        return self.located(compiled, node) if self.locate else compiled

    def _Constant(self, node: ast.Constant, depth: int) -> Compiled:
        value = node.value
        if isinstance(value, complex):
            raise self.fail("complex numbers are not allowed")
        if isinstance(value, bytes):
            raise self.fail("byte strings are not allowed")
        if not isinstance(value, str | int | float | bool | type(None)):
            raise self.fail(f"{self.written(node)} is not allowed")
        _checked_constant = _checked_number(value) if isinstance(value, int) else value
        return lambda scope: _checked_constant

    def _Name(self, node: ast.Name, depth: int) -> Compiled:
        name = node.id
        if name.startswith(DOLLAR_PREFIX):
            variable = name[len(DOLLAR_PREFIX) :]
            getter = _VARIABLES.get(variable)
            if getter is None:
                raise self.fail(f"unknown variable {as_written(name)}" if variable else "'$' alone")
            return getter
        if name in ("True", "False", "None"):
            constant = {"True": True, "False": False, "None": None}[name]
            return lambda scope: constant
        raise self.fail(f"unknown name {as_written(name)!r}")

    def _List(self, node: ast.List, depth: int) -> Compiled:
        items = [self.compile(element, depth) for element in node.elts]

        def build_list(scope: Scope) -> list[Any]:
            result = [plain(item(scope)) for item in items]
            scope.budget.check_value(result, "this list")
            return result

        return build_list

    _Tuple = _List

    def _Dict(self, node: ast.Dict, depth: int) -> Compiled:
        if any(key is None for key in node.keys):
            raise self.fail("'**' in an object literal is not allowed")
        keys = [self.compile(key, depth) for key in node.keys if key is not None]
        values = [self.compile(value, depth) for value in node.values]

        def build(scope: Scope) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for key, value in zip(keys, values, strict=True):
                key_value = key(scope)
                if not isinstance(key_value, str):
                    raise EvalError(f"object keys must be strings, got {type_name(key_value)}")
                result[key_value] = plain(value(scope))
            scope.budget.check_value(result, "this object")
            return result

        return build

    def _BinOp(self, node: ast.BinOp, depth: int) -> Compiled:
        left, right = self.compile(node.left, depth), self.compile(node.right, depth)
        if isinstance(node.op, ast.Pow):
            return lambda scope: _power(left(scope), right(scope))
        op = _BINARY.get(type(node.op))
        if op is None:
            raise self.fail(f"operator {_SYMBOLS.get(type(node.op), '?')!r} is not allowed")
        apply = _arithmetic(op, _SYMBOLS[type(node.op)])
        return lambda scope: apply(scope, left(scope), right(scope))

    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> Compiled:
        operand = self.compile(node.operand, depth)
        if isinstance(node.op, ast.Not):
            return lambda scope: not _truthy(operand(scope))
        if isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1

            def signed(scope: Scope) -> Any:
                value = operand(scope)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise EvalError(f"unary minus needs a number, got {type_name(value)}")
                return sign * value

            return signed
        raise self.fail("operator ~ is not allowed")

    def _BoolOp(self, node: ast.BoolOp, depth: int) -> Compiled:
        values = [self.compile(value, depth) for value in node.values]
        if isinstance(node.op, ast.And):

            def all_of(scope: Scope) -> Any:
                result: Any = True
                for value in values:
                    result = value(scope)
                    if not _truthy(result):
                        return result
                return result

            return all_of

        def any_of(scope: Scope) -> Any:
            result: Any = False
            for value in values:
                result = value(scope)
                if _truthy(result):
                    return result
            return result

        return any_of

    def _Compare(self, node: ast.Compare, depth: int) -> Compiled:
        left = self.compile(node.left, depth)
        ops = []
        for op in node.ops:
            compare = _COMPARE.get(type(op))
            if compare is None:
                raise self.fail(f"comparison {_SYMBOLS.get(type(op), '?')!r} is not allowed")
            ops.append(compare)
        orders = [isinstance(op, _ORDERED) for op in node.ops]
        rights = [self.compile(comparator, depth) for comparator in node.comparators]

        def compare_all(scope: Scope) -> bool:
            current = plain(left(scope))
            for compare, ordered, right in zip(ops, orders, rights, strict=True):
                other = plain(right(scope))
                if ordered and not (type(current) in _SCALARS and type(other) in _SCALARS):
                    scope.budget.comparison(current, other)
                try:
                    if not compare(scope.budget, current, other):
                        return False
                except TypeError as exc:
                    raise EvalError(
                        f"cannot compare {type_name(current)} with {type_name(other)}"
                    ) from exc
                current = other
            return True

        return compare_all

    def _IfExp(self, node: ast.IfExp, depth: int) -> Compiled:
        test = self.compile(node.test, depth)
        body, orelse = self.compile(node.body, depth), self.compile(node.orelse, depth)
        return lambda scope: body(scope) if _truthy(test(scope)) else orelse(scope)

    def _Attribute(self, node: ast.Attribute, depth: int) -> Compiled:
        name = node.attr
        if name.startswith("_"):
            raise self.fail(f"field names starting with '_' cannot be read with '.': {name!r}")
        target = self.compile(node.value, depth)
        return lambda scope: _attribute(target(scope), name)

    def _Subscript(self, node: ast.Subscript, depth: int) -> Compiled:
        target = self.compile(node.value, depth)
        if isinstance(node.slice, ast.Slice):
            if node.slice.step is not None:
                raise self.fail("slice steps are not allowed")
            lower = self.compile(node.slice.lower, depth) if node.slice.lower else None
            upper = self.compile(node.slice.upper, depth) if node.slice.upper else None

            def slice_of(scope: Scope) -> Any:
                value = target(scope)
                if not isinstance(value, str | list):
                    raise EvalError(f"cannot slice a {type_name(value)}")
                start = lower(scope) if lower else None
                end = upper(scope) if upper else None
                for bound in (start, end):
                    if bound is not None and (
                        isinstance(bound, bool) or not isinstance(bound, int)
                    ):
                        raise EvalError("slice bounds must be integers")
                return sliced(scope.budget, value, start, end)

            return slice_of
        key = self.compile(node.slice, depth)
        return lambda scope: _get_key(target(scope), key(scope))

    def _Call(self, node: ast.Call, depth: int) -> Compiled:
        if node.keywords:
            raise self.fail("keyword arguments are not allowed")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.fail("'*' arguments are not allowed")
        args = [self.compile(arg, depth) for arg in node.args]
        func = node.func
        self.check_pattern(node)
        if isinstance(func, ast.Name):
            if func.id == DOLLAR_PREFIX:  # $("Node name")
                if len(args) != 1:
                    raise self.fail('$(...) takes one node name, as in $("Name")')
                name_arg = args[0]
                return lambda scope: _get_key(scope.nodes, name_arg(scope))
            if func.id.startswith(DOLLAR_PREFIX):
                written = as_written(func.id)
                if func.id[len(DOLLAR_PREFIX) :] in _VARIABLES:
                    raise self.fail(f"{written} is not a function")
                raise self.fail(f"unknown function {written}")
            function = FUNCTIONS.get(func.id)
            if function is None:
                raise self.fail(f"unknown function {func.id!r}")
            if problem := arity_problem(func.id, function, len(args)):
                raise self.fail(problem)
            return lambda scope: function(scope.budget, *[plain(arg(scope)) for arg in args])
        if isinstance(func, ast.Attribute):
            name = func.attr
            if name.startswith("_"):
                raise self.fail(f"unknown method {name!r}")
            receiver = self.compile(func.value, depth)

            def call_method(scope: Scope) -> Any:
                target = receiver(scope)
                values = [plain(arg(scope)) for arg in args]
                if isinstance(target, NodeItems):
                    return target.call(name, values)
                implementation = method(target, name)
                if implementation is None:
                    raise EvalError(f"a {type_name(target)} has no method {name!r}")
                if problem := arity_problem(name, implementation, len(values), receiver=True):
                    raise EvalError(problem)
                return implementation(scope.budget, target, *values)

            return call_method
        raise self.fail("only functions and methods can be called")

    def check_pattern(self, node: ast.Call) -> None:
        """A regular expression written literally (`matches(x, '...')`, `x.matches('...')`)
        is checked now, so that a bad one is a problem of the workflow when it is saved."""
        func, args = node.func, node.args
        if isinstance(func, ast.Name) and func.id == "matches" and len(args) == 2:
            pattern = args[1]
        elif isinstance(func, ast.Attribute) and func.attr == "matches" and len(args) == 1:
            pattern = args[0]
        else:
            return
        if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
            problem = pattern_problem(pattern.value)
            if problem is not None:
                raise self.fail(problem)


def _truthy(value: Any) -> bool:
    if isinstance(value, NodeItems | NodeOutputs):
        return True
    return bool(value)


def _describe(node: ast.AST) -> str:
    names = {
        "Lambda": "lambda",
        "ListComp": "a comprehension",
        "SetComp": "a comprehension",
        "DictComp": "a comprehension",
        "GeneratorExp": "a comprehension",
        "JoinedStr": "an f-string",
        "FormattedValue": "an f-string",
        "NamedExpr": "':=' assignment",
        "Await": "await",
        "Yield": "yield",
        "YieldFrom": "yield",
        "Set": "a set literal",
        "Starred": "'*'",
    }
    return names.get(type(node).__name__, "")


def compile_expression(source: str) -> Compiled:
    """Compile the text inside `{{ }}` into a function of the scope.

    Compiled expressions are pure functions of their source, so they are cached by it and
    shared by every node and version that uses the same text.
    """
    return compile_counted(source)[0]


def compile_counted(source: str, locate: bool = False) -> tuple[Compiled, int]:
    """`compile_expression`, and the steps one evaluation of the expression's own
    operations costs (its tree's size): a rendering charges them when it starts
    (`Budget.start`), so that evaluating costs nothing extra on the hot path.

    Compiled expressions and the reasons of those refused are cached by their text (a
    workflow is validated again on every save, and its expressions compiled again for its
    plan): up to `CACHE_EXPRESSIONS` texts and about `CACHE_BYTES` of memory, a compiled
    expression taking about 150 bytes a node of its tree besides its text. That holds the
    expressions of the largest workflow the API accepts (4 MB), however they are written:
    an LRU smaller than what is validated again and again would miss every time.

    `locate=True` compiles it so that an evaluation error says where in the text it
    failed (`ExpressionError.position`): the same operations, each in a closure more, for
    previews; those are cached apart.
    """
    if len(source) > MAX_EXPRESSION_CHARS:
        error = ExpressionSyntaxError(
            f"expression longer than {MAX_EXPRESSION_CHARS} characters", source
        )
        error.position = (MAX_EXPRESSION_CHARS, len(source))
        raise error
    cache = _located if locate else _compiled
    compiled = cache.get(source)
    if compiled is None:
        try:
            compiled = _compile(source, locate)
        except ExpressionSyntaxError as exc:
            compiled = _Refusal(exc.reason, exc.position)
        cache.put(source, compiled)
    if isinstance(compiled, _Refusal):
        error = ExpressionSyntaxError(compiled.reason, source)
        error.position = compiled.position
        raise error
    return compiled


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a text was refused, cached like a compiled expression."""

    reason: str
    position: tuple[int, int] | None


CACHE_EXPRESSIONS = 16_384
CACHE_BYTES = 64 * 1024 * 1024
_BYTES_PER_TREE_NODE = 150


def _weight(source: str, compiled: tuple[Compiled, int] | _Refusal) -> int:
    """Bytes an entry holds, about: its text, and for a compiled one its closures."""
    if isinstance(compiled, _Refusal):
        return len(source) + len(compiled.reason)
    return len(source) + _BYTES_PER_TREE_NODE * compiled[1] // TREE_NODE_STEPS


_compiled: WeightedCache[str, tuple[Compiled, int] | _Refusal] = WeightedCache(
    CACHE_EXPRESSIONS, CACHE_BYTES, _weight
)
# Expressions compiled to locate their errors, for previews: what one editor session types,
# a far smaller set than the workflows a process runs.
_located: WeightedCache[str, tuple[Compiled, int] | _Refusal] = WeightedCache(
    1_024, CACHE_BYTES // 16, _weight
)


def cache_counts() -> tuple[int, int]:
    """(hits, misses) of the compile cache since the process started."""
    return _compiled.hits, _compiled.misses


def _compile(source: str, locate: bool = False) -> tuple[Compiled, int]:
    python = to_python(source)
    # Parenthesised, so that an expression may span lines and start with whitespace.
    parsed = "(" + python + "\n)"
    compiler = _Compiler(source, parsed, locate=locate)
    try:
        tree = ast.parse(parsed, mode="eval")
    except SyntaxError as exc:
        hint = " (use 'a if condition else b' instead of '?:')" if "?" in source else ""
        error = ExpressionSyntaxError(_syntax_message(exc.msg, hint), source)
        error.position = _syntax_position(compiler, exc)
        raise error from exc
    except (RecursionError, MemoryError) as exc:
        raise ExpressionSyntaxError("expression too deeply nested", source) from exc
    except ValueError as exc:  # the parser refuses NUL characters
        error = ExpressionSyntaxError("expression holds a NUL character", source)
        at = source.find("\0")
        error.position = (at, at + 1)
        raise error from exc
    try:
        body = compiler.compile(tree.body)
    except RecursionError as exc:
        raise ExpressionSyntaxError("expression too deeply nested", source) from exc

    def evaluate(scope: Scope) -> Any:
        try:
            return plain(body(scope))
        except LimitExceeded as exc:
            error: ExpressionEvaluationError = ExpressionLimitError(str(exc), source, exc.limit)
            error.position = exc.position
            raise error from exc
        except EvalError as exc:
            error = ExpressionEvaluationError(str(exc), source)
            error.position = exc.position
            raise error from exc
        except (TypeError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
            raise ExpressionEvaluationError(_unexpected(exc), source) from exc

    # Every operation of the tree counts, whichever branches run.
    return evaluate, EXPRESSION_STEPS + TREE_NODE_STEPS * compiler.nodes_seen


def _syntax_position(compiler: _Compiler, exc: SyntaxError) -> tuple[int, int]:
    """Where Python's parser says the syntax error is, in the user's text."""
    line, column = exc.lineno or 1, max((exc.offset or 1) - 1, 0)
    end_line, end_column = exc.end_lineno or line, max((exc.end_offset or 0) - 1, column)
    # The parser's columns count characters (1-based); `offset` takes UTF-8 bytes.
    start = compiler.offset(line, _column_bytes(compiler.parsed, line, column))
    end = compiler.offset(end_line, _column_bytes(compiler.parsed, end_line, end_column))
    if end <= start:
        end = min(start + 1, len(compiler.source))
    return min(start, len(compiler.source)), max(end, start)


def _column_bytes(parsed: str, line: int, column: int) -> int:
    lines = parsed.split("\n")
    text = lines[min(max(line, 1), len(lines)) - 1]
    return len(text[:column].encode())


_UNCLOSED = re.compile(r"closing parenthesis '\)' does not match opening parenthesis '(.)'.*")


def _syntax_message(message: str, hint: str) -> str:
    """Python's words for a syntax error, about the user's text only: the parenthesis the
    compiler wraps around it and its rewritten `$` names never show."""
    message = _UNCLOSED.sub(r"'\1' was never closed", as_written(message))
    if message.startswith("invalid syntax"):
        return message[:14] + hint + message[14:]
    return f"invalid syntax{hint}: {message}"


def _unexpected(exc: BaseException) -> str:
    """What went wrong, where an operation failed in a way no check above foresaw: in
    words, without Python's exception or type names."""
    if isinstance(exc, OverflowError):
        return "number too large"
    if isinstance(exc, RecursionError | MemoryError):
        return "the data is too deeply nested or too large"
    return "a value of the wrong type or form was used"
