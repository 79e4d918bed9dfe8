"""The expression language and its sandbox."""

from __future__ import annotations

import json
import time

import pytest

from engine.expressions import (
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    Scope,
    compile_parameters,
    compile_template,
    referenced_nodes,
    rename_references,
)
from engine.expressions.lexer import split_template, to_python


def render(source: str, **scope: object) -> object:
    return compile_template(source).render(Scope(**scope))  # type: ignore[arg-type]


ITEM = {"price": 2.5, "qty": 4, "name": "Widget", "tags": ["a", "b"], "nested": {"x": 1}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ $json.price * $json.qty }}", 10.0),
        ("{{ $json.qty + 1 }}", 5),
        ("{{ $json.qty / 8 }}", 0.5),
        ("{{ $json.qty // 3 }}", 1),
        ("{{ $json.qty % 3 }}", 1),
        ("{{ 2 ** 10 }}", 1024),
        ("{{ -$json.qty }}", -4),
        ("{{ $json.name }}", "Widget"),
        ("{{ $json['name'] }}", "Widget"),
        ("{{ $json.nested.x }}", 1),
        ("{{ $json.missing }}", None),
        ("{{ $json.tags[0] }}", "a"),
        ("{{ $json.tags[-1] }}", "b"),
        ("{{ $json.tags[5] }}", None),
        ("{{ $json.tags.length }}", 2),
        ("{{ $json.name.length }}", 6),
        ("{{ len($json.tags) }}", 2),
        ("{{ $json.name.toUpperCase() }}", "WIDGET"),
        ("{{ $json.name.lower() }}", "widget"),
        ("{{ $json.tags.join('-') }}", "a-b"),
        ("{{ $json.tags.includes('a') }}", True),
        ("{{ 'a' in $json.tags }}", True),
        ("{{ 'z' not in $json.tags }}", True),
        ("{{ $json.qty > 3 && $json.price < 3 }}", True),
        ("{{ $json.qty > 3 and $json.price > 3 }}", False),
        ("{{ $json.qty > 5 || $json.name == 'Widget' }}", True),
        ("{{ !($json.qty > 5) }}", True),
        ("{{ $json.qty === 4 }}", True),
        ("{{ $json.qty !== 4 }}", False),
        ("{{ 'big' if $json.qty > 3 else 'small' }}", "big"),
        ("{{ [1, 2, $json.qty] }}", [1, 2, 4]),
        ("{{ {'a': $json.qty, 'b': [true, false, null]} }}", {"a": 4, "b": [True, False, None]}),
        ("{{ round(2.567, 2) }}", 2.57),
        ("{{ max($json.qty, 10) }}", 10),
        ("{{ sum([1, 2, 3]) }}", 6),
        ("{{ $json.price.toFixed(2) }}", "2.50"),
        ("{{ 'total: ' + $json.qty }}", "total: 4"),
        ("{{ matches($json.name, '^W.+t$') }}", True),
        ("{{ keys($json.nested) }}", ["x"]),
        ("{{ default($json.missing, 'n/a') }}", "n/a"),
        ("{{ $json.name[0:3] }}", "Wid"),
        ("{{ '}}' }}", "}}"),
        ('{{ "it\'s" }}', "it's"),
    ],
)
def test_expressions_evaluate(source: str, expected: object) -> None:
    assert render(source, json=ITEM) == expected


def test_a_lone_expression_keeps_its_type_and_mixed_text_renders_as_text() -> None:
    assert render("{{ $json.nested }}", json=ITEM) == {"x": 1}
    assert render("  {{ $json.qty }}  ", json=ITEM) == 4
    assert render("qty={{ $json.qty }}, ok={{ true }}, none={{ null }}", json=ITEM) == (
        "qty=4, ok=true, none="
    )
    assert render("{{ $json.nested }}!", json=ITEM) == '{"x":1}!'
    assert render("no expressions here") == "no expressions here"


def test_context_variables() -> None:
    scope = {
        "json": {"a": 1},
        "input": [{"a": 1}, {"a": 2}],
        "item_index": 1,
        "node_outputs": {"Fetch": [{"id": 10}, {"id": 20}], "Empty": []},
        "execution": {"id": "e1", "mode": "manual"},
        "workflow": {"id": "w1", "name": "Flow", "version": 3},
        "now": "2026-11-25T10:00:00+00:00",
    }
    assert render("{{ $input.all() }}", **scope) == [{"a": 1}, {"a": 2}]
    assert render("{{ $input.first().a }}", **scope) == 1
    assert render("{{ $input.item.a }}", **scope) == 2
    assert render("{{ $itemIndex }}", **scope) == 1
    assert render('{{ $node["Fetch"].json.id }}', **scope) == 10
    assert render('{{ $("Fetch").item.id }}', **scope) == 20
    assert render('{{ $("Fetch").last().id }}', **scope) == 20
    assert render('{{ $("Fetch").all().length }}', **scope) == 2
    assert render('{{ $("Empty").first() }}', **scope) is None
    assert render("{{ $execution.mode }}", **scope) == "manual"
    assert render("{{ $workflow.version }}", **scope) == 3
    assert render("{{ $now }}", **scope) == "2026-11-25T10:00:00+00:00"
    assert render("{{ $today }}", **scope) == "2026-11-25"
    with pytest.raises(ExpressionEvaluationError, match="no output of node 'Nope'"):
        render('{{ $("Nope").first() }}', **scope)


def test_parameters_compile_once_and_render_per_item() -> None:
    compiled, problems = compile_parameters(
        {"url": "https://x/{{ $json.id }}", "fixed": {"a": [1, "two"]}, "n": "{{ $json.id * 2 }}"}
    )
    assert problems == []
    assert not compiled.is_constant
    assert compiled.render(Scope(json={"id": 7})) == {
        "url": "https://x/7",
        "fixed": {"a": [1, "two"]},
        "n": 14,
    }
    constant, _ = compile_parameters({"a": "plain", "b": [1, 2]})
    assert constant.is_constant


def test_compile_problems_name_the_parameter_path() -> None:
    _, problems = compile_parameters({"fields": [{"value": "{{ $json.a + }}"}], "ok": "{{ 1 }}"})
    assert [problem.path for problem in problems] == ["fields[0].value"]
    assert "invalid syntax" in str(problems[0].error)
    assert "$json.a +" in str(problems[0].error)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ $json.price * }}", "invalid syntax"),
        ("{{ }}", "empty expression"),
        ("{{ $json.a", "unclosed"),
        ("{{ $nope }}", "unknown variable $nope"),
        ("{{ foo }}", "unknown name 'foo'"),
        ("{{ foo(1) }}", "unknown function 'foo'"),
        ("{{ $json.a ? 1 : 2 }}", "if condition else"),
        ("{{ matches('a', '(') }}", "invalid regular expression"),
    ],
)
def test_syntax_errors_are_clear(source: str, message: str) -> None:
    with pytest.raises(
        ExpressionSyntaxError, match=message.replace("$", r"\$").replace("(", r"\(")
    ):
        compile_template(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ $json.a.b }}", "cannot read 'b' of null"),
        ("{{ $json.name * $json.tags }}", "cannot apply"),
        ("{{ 1 / 0 }}", "division by zero"),
        ("{{ $json.tags + 1 }}", "cannot apply"),
        ("{{ $json.qty.upper() }}", "no method 'upper'"),
        ("{{ int('abc') }}", "not a number"),
        ("{{ $json.tags < 3 }}", "cannot compare"),
        ("{{ matches('a', $json.name + '(') }}", "invalid regular expression"),
    ],
)
def test_evaluation_errors_are_typed(source: str, message: str) -> None:
    template = compile_template(source)
    with pytest.raises(ExpressionEvaluationError, match=message) as caught:
        template.render(Scope(json=ITEM))
    assert caught.value.expression in source


# Names the user never wrote: the compiler's rewritten `$` names, Python's exception, type,
# syntax-tree and function names.
INTERNAL_NAMES = (
    "_S_",
    "Error",
    "NodeItems",
    "NodeOutputs",
    "lambda",
    "_length",
    "_replace",
    "MatMult",
    "BitOr",
    "Slice",
    "ellipsis",
    "unhashable",
    "positional",
    "closing parenthesis",
)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Compile time: a parameter problem when the workflow is saved.
        ("{{ $eval(1) }}", "unknown function $eval"),
        ("{{ $json(1) }}", "$json is not a function"),
        ("{{ $$ }}", "unknown variable $$"),
        ("{{ len(1, 2) }}", "len() takes 1 argument, got 2"),
        ("{{ trim() }}", "trim() takes 1 argument, got 0"),
        ("{{ min() }}", "min of nothing"),  # any number of arguments: checked when run
        ("{{ $json[1:2, 3] }}", "'1:2' is not allowed"),
        ("{{ $json @ 2 }}", "operator '@' is not allowed"),
        ("{{ 1 | 2 }}", "operator '|' is not allowed"),
        ("{{ $json is null }}", "comparison 'is' is not allowed"),
        ("{{ b'x' }}", "byte strings are not allowed"),
        ("{{ 1j }}", "complex numbers are not allowed"),
        ("{{ ... }}", "'...' is not allowed"),
        ("{{ $json[ }}", "invalid syntax: '[' was never closed"),
        ("{{ $json.a $json.b }}", "invalid syntax. Perhaps you forgot a comma?"),
        # Run time: the node fails with EXPRESSION_ERROR.
        ("{{ $json.nested.get([1]) }}", "get expects a string, got array"),
        ("{{ $json.nested.get() }}", "get() takes 1 to 2 arguments, got 0"),
        ("{{ $json.name.replace('a') }}", "replace() takes 2 arguments, got 1"),
        ("{{ contains($json.nested, [1]) }}", None),  # false, not a crash
        ("{{ '%z' % 1 }}", "'%' needs numbers, got string and number"),
        ("{{ '%s' % 5 }}", "'%' needs numbers, got string and number"),
        ("{{ 10 ** 400 / 3 }}", "number too large"),
        ("{{ floor(1e308 * 10) }}", "number too large"),
        ("{{ 10.5 ** 400 }}", "number too large"),
        ("{{ 0.0 ** -1 }}", "zero cannot be raised to a negative power"),
        ("{{ parseJson('[' * 5000 + ']' * 5000) }}", "not valid JSON: nested too deeply"),
        ("{{ $node }}", "$node is not a value: pick a node, as in $node['Name'] or $('Name')"),
    ],
)
def test_messages_name_only_what_the_user_wrote(source: str, message: str | None) -> None:
    try:
        render(source, json=ITEM, input=[ITEM], node_outputs={"X": [ITEM]})
    except ExpressionError as exc:
        text = str(exc)
        assert message is not None and text.startswith(message), text
        assert not any(name in text for name in INTERNAL_NAMES), text
    else:
        assert message is None, f"{source} did not fail"


def test_input_and_node_items_used_as_values_are_their_items() -> None:
    scope = {"json": ITEM, "input": [{"a": 1}, {"a": 2}], "node_outputs": {"X": [{"b": 3}]}}
    assert render("{{ $input }}", **scope) == [{"a": 1}, {"a": 2}]
    assert render('{{ $("X") }}', **scope) == [{"b": 3}]
    assert render('{{ $node["X"] }}', **scope) == [{"b": 3}]
    assert render("{{ [$input.first(), $('X')] }}", **scope) == [{"a": 1}, [{"b": 3}]]
    assert render("{{ {'all': $input} }}", **scope) == {"all": [{"a": 1}, {"a": 2}]}
    assert render("{{ $input if true else 1 }}", **scope) == [{"a": 1}, {"a": 2}]
    assert render("items: {{ $input }}", **scope) == 'items: [{"a":1},{"a":2}]'
    assert render("{{ len($input) }}", **scope) == 2
    assert render("{{ typeOf($('X')) }}", **scope) == "array"
    assert render("{{ $input == [{'a': 1}, {'a': 2}] }}", **scope) is True
    assert render("{{ json($input) }}", **scope) == '[{"a":1},{"a":2}]'


def test_numbers_read_as_text_the_way_javascript_spells_them() -> None:
    assert render("{{ 'x' + 1e308 * 10 }}") == "xInfinity"
    assert render("{{ str(-1e308 * 10) }}") == "-Infinity"
    assert render("{{ 'ok: ' + true }}") == "ok: true"


# Known sandbox-escape and resource-exhaustion payloads. Each must be refused at compile time
# or evaluate harmlessly, quickly, without reaching any Python object.
def test_parse_json_reads_64_levels_and_refuses_more() -> None:
    text = "[" * 64 + "]" * 64
    assert render("{{ parseJson($json.text) }}", json={"text": text}) == json.loads(text)
    with pytest.raises(ExpressionEvaluationError, match="nested more than 64 levels deep"):
        render("{{ parseJson($json.text) }}", json={"text": "[" + text + "]"})


ESCAPES = [
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "''.__class__.__mro__[1].__subclasses__()",
    "[].__class__.__base__.__subclasses__()",
    "$json.__class__",
    "$json.__init__.__globals__",
    "$json.__dict__",
    "$json['__class__']",
    "$json.get.__self__",
    "$input.__class__",
    "$input._items",
    "$node.__class__",
    "$('x').__init__",
    "__import__('os').system('id')",
    "__builtins__",
    "globals()",
    "locals()",
    "vars()",
    "dir()",
    "getattr($json, '__class__')",
    "eval('1')",
    "exec('1')",
    "compile('1', 'x', 'eval')",
    "open('/etc/passwd').read()",
    "type($json)",
    "lambda: 1",
    "(lambda x: x)(1)",
    "[x for x in [1, 2]]",
    "{x: 1 for x in [1]}",
    "(x for x in [1])",
    "{1, 2}",
    "(y := 5)",
    "f'{().__class__}'",
    "'{0.__class__}'.format(1)",
    "'%s' % $json",
    "str.format('{0.__class__}', 1)",
    "$json.name.format(1)",
    "9**9**9",
    "2**100000",
    "10**10**10",
    "'a' * 10**9",
    "[1] * 10**9",
    "'a' * 1000000 + 'b' * 1000000",
    "(" * 200 + "1" + ")" * 200,
    "[" * 200 + "1" + "]" * 200,
    "-" * 5000 + "1",
    "not " * 3000 + "1",
    "1" + "+1" * 5000,
    "x" * 20000,
    "replace('a' * 900000, 'a', 'aaaa')",
    "matches('a' * 30 + '!', '(a+)+$')",
    "parseJson('[' * 100000 + ']' * 100000)",
    "$json.tags.pop()",
    "$json.tags.append(1)",
    "$json.nested.update({'x': 2})",
    "$json.nested.clear()",
    "import os",
    "__import__",
    "$json.mro()",
    "b'bytes'",
    "...",
    "1j",
    "$json.name.__len__()",
    "keys.__globals__",
    "$('__class__')",
    "$node['__globals__']",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_escapes_are_refused_or_harmless(payload: str) -> None:
    item = {"name": "n", "tags": [1, 2], "nested": {"x": 1}}
    start = time.perf_counter()
    try:
        template = compile_template("{{ " + payload + " }}")
        result = template.render(Scope(json=item, input=[item], node_outputs={"x": [item]}))
    except ExpressionError:
        result = None
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{payload[:60]!r} took {elapsed:.2f} s"
    # Whatever came back is plain JSON data: no Python objects escaped.
    assert _is_json(result), f"{payload[:60]!r} produced {type(result)!r}"
    # The data the expression could see is unchanged.
    assert item == {"name": "n", "tags": [1, 2], "nested": {"x": 1}}


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return False


def test_there_are_at_least_forty_escape_payloads() -> None:
    assert len(ESCAPES) >= 40


def test_references_are_found_and_renamed() -> None:
    parameters = {
        "a": '{{ $node["Fetch data"].json.id }} and {{ $("Fetch data").item.x }}',
        "b": ["{{ $('Other').first() }}", 'plain $node["Fetch data"] not an expression'],
        "c": '{{ $("Fetch \\"quoted\\"").json }}',
    }
    assert referenced_nodes(parameters) == {"Fetch data", "Other", 'Fetch "quoted"'}
    renamed = rename_references(parameters, "Fetch data", 'Load "it"')
    assert (
        renamed["a"] == '{{ $node["Load \\"it\\""].json.id }} and {{ $("Load \\"it\\"").item.x }}'
    )
    assert renamed["b"] == parameters["b"]
    assert referenced_nodes(renamed) == {'Load "it"', "Other", 'Fetch "quoted"'}
    scope = Scope(json={}, node_outputs={'Load "it"': [{"id": 1, "x": 2}]})
    compiled, problems = compile_parameters({"a": renamed["a"]})
    assert problems == []
    assert compiled.render(scope) == {"a": "1 and 2"}


def test_compiled_evaluation_is_fast() -> None:
    template = compile_template("{{ $json.price * $json.qty }}")
    scope = Scope(json={"price": 2.5, "qty": 4})
    runs = 20_000
    start = time.perf_counter()
    for _ in range(runs):
        template.render(scope)
    per_evaluation_us = (time.perf_counter() - start) / runs * 1e6
    assert per_evaluation_us < 20, per_evaluation_us


@pytest.mark.parametrize(
    ("source", "python"),
    [
        ("$json.null && !$json.true", "_S_json.null  and   not _S_json.true"),
        ("a === null || b !== undefined", "a == None  or  b != None"),
        ("'$json && true' + \"it's\"", "'$json && true' + \"it's\""),
        ("1true + xtrue + étrue + _true", "1true + xtrue + étrue + _true"),
        ("$ + $('A') != !x", "_S_ + _S_('A') !=  not x"),
        ("'unclosed \\' true", "'unclosed \\' true"),
        ('"ends with a backslash\\', '"ends with a backslash\\'),
    ],
)
def test_rewriting_touches_names_and_operators_outside_strings(source: str, python: str) -> None:
    assert to_python(source) == python


@pytest.mark.parametrize(
    ("template", "expressions"),
    [
        ("a {{ x }} b {{ '}}' }}", ["x", "'}}'"]),
        ("{{ {'a': {'b': 1}} }}", ["{'a': {'b': 1"]),  # the first `}}` outside a string
        ('{{ "\\"}}" }}', ['"\\"}}"']),
    ],
)
def test_templates_split_where_expressions_close(template: str, expressions: list[str]) -> None:
    segments = split_template(template)
    assert [segment.text for segment in segments if segment.is_expression] == expressions


def test_an_unclosed_string_leaves_the_expression_unclosed() -> None:
    with pytest.raises(ExpressionSyntaxError, match="unclosed"):
        split_template("{{ 'a }}\\")
