"""Expression previews and output shapes, without a database (engine/preview.py,
engine/output_schema.py), and the positions errors carry (engine/expressions)."""

from __future__ import annotations

import pytest

from engine.expressions import ExpressionError, ExpressionLimits, Scope, compile_template
from engine.output_pages import MemoryOutput
from engine.output_schema import MAX_PATHS, infer_shape, ordered_types, sample_items
from engine.preview import Failed, PreviewData, Rendered, preview_expression, preview_parameters

DATA = PreviewData(
    input_items=[{"name": "Ada", "price": 2, "qty": 3}, {"name": "Bob", "price": 5, "qty": 1}],
    node_outputs={"Orders": [{"id": 1}, {"id": 2}]},
    execution={"id": "e1", "mode": "manual"},
    workflow={"id": "w1", "name": "Shop", "version": 3},
    now="2026-12-07T23:00:00+00:00",
)
LIMITS = ExpressionLimits()


def _error_at(text: str, json: object) -> tuple[str, str]:
    """The failing error's reason and the text its position covers."""
    with pytest.raises(ExpressionError) as caught:
        compile_template(text, locate=True).render(Scope(json=json))
    position = caught.value.position
    assert position is not None
    return caught.value.reason, text[position[0] : position[1]]


@pytest.mark.parametrize(
    ("text", "covered"),
    [
        ("{{ $json.a.b.c }}", "$json.a.b"),
        ("total: {{ 1 + $json.a.b }} items", "$json.a.b"),
        ("{{ 'é' + $json.a.b }}", "$json.a.b"),
        ("{{ $json.a * 'x' }}", "$json.a * 'x'"),
        ("{{ $('Nope').item }}", "$('Nope')"),
        ("{{ 1 }} and {{\n  $json.a.b\n}}", "$json.a.b"),
        # Rewritten spellings change the text's length before the error: still mapped back.
        ("{{ $json.x === null && $json.a.b }}", "$json.a.b"),
        ("{{ $json.x || $json.a.b }}", "$json.a.b"),
        ("{{ !$json.x\n  && true && $json.a.b }}", "$json.a.b"),
    ],
)
def test_an_evaluation_error_covers_the_operation_that_failed(text: str, covered: str) -> None:
    _, got = _error_at(text, {"a": None})
    assert got == covered


@pytest.mark.parametrize(
    ("text", "covered"),
    [
        ("{{ foo(1) }}", "foo(1)"),
        ("x {{ $json.__class__ }}", "$json.__class__"),
        ("{{ (1 }}", "("),
        ("{{ $json.a", "{{ $json.a"),
        ("a {{ }} b", "{{ }}"),
    ],
)
def test_a_syntax_error_covers_what_was_refused(text: str, covered: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template(text, locate=True)
    position = caught.value.position
    assert position is not None and text[position[0] : position[1]] == covered


def test_an_error_at_the_end_of_the_text_is_an_empty_position_there() -> None:
    text = "hi {{ $json.x + }}"
    with pytest.raises(ExpressionError) as caught:
        compile_template(text)
    assert caught.value.position == (15, 15)


def test_the_run_time_compile_is_unchanged_without_locate() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template("{{ $json.a.b }}").render(Scope(json={"a": None}))
    assert caught.value.position is None
    assert caught.value.reason == "cannot read 'b' of null"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{{ $json.price * $json.qty }}", 6),
        ("{{ $input.all().length }}", 2),
        ("{{ $input.item.name }}", "Ada"),
        ("{{ $('Orders').item.id }}", 1),
        ("{{ $('Orders').first().id }}", 1),
        ("{{ $execution.id }}", "e1"),
        ("{{ $workflow.name }} v{{ $workflow.version }}", "Shop v3"),
        ("plain text", "plain text"),
    ],
)
def test_a_preview_has_the_value_the_run_would_have(text: str, value: object) -> None:
    assert preview_expression(text, DATA, 0, LIMITS) == Rendered(value)


def test_a_preview_of_the_second_item() -> None:
    assert preview_expression("{{ $json.name }}", DATA, 1, LIMITS) == Rendered("Bob")


def test_a_preview_failure_is_a_value_with_its_code_and_position() -> None:
    failed = preview_expression("Hi {{ $json.name.first.x }}", DATA, 0, LIMITS)
    assert isinstance(failed, Failed)
    assert failed.code == "EXPRESSION_ERROR" and failed.position == (6, 22)
    syntax = preview_expression("{{ $json. }}", DATA, 0, LIMITS)
    assert isinstance(syntax, Failed) and syntax.code == "EXPRESSION_SYNTAX"


def test_past_the_limits_is_expression_limit_as_at_run_time() -> None:
    failed = preview_expression("{{ ['x'*1000]*2000 }}", DATA, 0, LIMITS)
    assert isinstance(failed, Failed)
    assert failed.code == "EXPRESSION_LIMIT" and failed.limit == "value size"
    assert failed.setting == "LOOM_EXPRESSION_MAX_VALUE_SIZE"
    small = ExpressionLimits(max_steps=100)
    steps = preview_expression("{{ 'ab' * 400000 }}", DATA, 0, small)
    assert isinstance(steps, Failed)
    assert steps.code == "EXPRESSION_LIMIT" and steps.limit == "steps"


def test_parameters_render_whole_or_name_the_failing_parameter() -> None:
    parameters = {"fields": [{"name": "t", "value": "{{ $json.price * $json.qty }}"}]}
    assert preview_parameters(parameters, DATA, 0, LIMITS) == Rendered(
        {"fields": [{"name": "t", "value": 6}]}
    )
    failed = preview_parameters({"a": "ok", "b": "{{ $json.name.x.y }}"}, DATA, 0, LIMITS)
    assert isinstance(failed, Failed)
    assert failed.parameter == "b" and failed.position == (3, 15)


def test_a_shape_lists_paths_types_examples_and_counts() -> None:
    items = [
        {"id": 1, "name": "Ada", "tags": ["a", "b"], "address": {"city": "Oslo"}},
        {"id": "2", "tags": [], "address": None, "first name": "Bob"},
        {"id": 3, "orders": [{"sku": "x", "qty": 1}, {"sku": "y"}]},
    ]
    shape = infer_shape(items)
    fields = {f.path: f for f in shape.fields}
    assert ordered_types(fields["id"].types) == ["string", "number"]
    assert fields["id"].items == 3 and fields["id"].example == 1
    assert fields["name"].items == 1
    assert fields["tags"].items == 2 and fields["tags[]"].items == 1
    assert fields["tags[]"].example == "a"
    assert ordered_types(fields["address"].types) == ["null", "object"]
    assert fields["address.city"].example == "Oslo"
    assert fields['["first name"]'].items == 1
    assert fields["orders[].sku"].items == 1 and fields["orders[].qty"].items == 1
    assert shape.sampled_items == 3 and not shape.truncated


def test_a_shape_is_bounded() -> None:
    wide = [{f"k{i}": i for i in range(MAX_PATHS + 10)}]
    shape = infer_shape(wide)
    assert len(shape.fields) == MAX_PATHS and shape.truncated
    many = ({"i": i} for i in range(10_000))
    sampled = infer_shape(many, max_items=100)
    assert sampled.sampled_items == 100 and sampled.truncated
    assert sampled.fields[0].items == 100
    long_text = infer_shape([{"t": "x" * 10_000}])
    assert len(long_text.fields[0].example) <= 201


async def test_a_sample_reads_one_bounded_page_and_never_a_too_large_item() -> None:
    items = [{"i": i, "text": "x" * 100} for i in range(5_000)]
    sample = await sample_items(MemoryOutput({"main": items}), "main", 5_000, 1_000, 64 * 1024)
    assert 0 < len(sample) < 1_000 and sample[0] == items[0]
    huge = MemoryOutput({"main": [{"blob": "y" * 200_000}]})
    left_out = await sample_items(huge, "main", 1, 1_000, 64 * 1024)
    shape = infer_shape(left_out)
    assert shape.fields == [] and shape.truncated and shape.sampled_items == 0
