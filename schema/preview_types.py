"""GraphQL types of the editor loop's reads: expression previews and output shapes."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from engine.output_schema import Shape, ordered_types


@strawberry.type(description="A range of characters of a text: from `start` to `end`, excluded.")
class TextRange:
    start: int = strawberry.field(description="Offset of the first character (from 0).")
    end: int = strawberry.field(
        description="Offset after the last character; equal to `start` for a point (an "
        "error at the end of the text)."
    )


@strawberry.type(description="The value an expression or a node's parameters would have.")
class ExpressionValue:
    value: JSON = strawberry.field(
        description="The value, capped at `maxBytes` of JSON: a larger one is replaced by its "
        "truncation marker (see `NodeRunOutput`) and `truncated` is true."
    )
    type: str = strawberry.field(
        description="Its JSON type: string, number, boolean, null, object or array."
    )
    truncated: bool = strawberry.field(description="Whether `value` is a truncation marker.")
    # Nullable only so that a query may select `executionId` on every member of the union.
    execution_id: strawberry.ID | None = strawberry.field(
        description="The execution whose data the preview used (always set)."
    )
    item_index: int = strawberry.field(description="The input item it was evaluated for.")
    item_count: int = strawberry.field(description="How many items the node's input has.")


@strawberry.type(
    description="Why the expression would fail, as the run would report it: `code` is the "
    "run's error type (EXPRESSION_SYNTAX, EXPRESSION_ERROR, EXPRESSION_LIMIT)."
)
class ExpressionError:
    code: str = strawberry.field(
        description="EXPRESSION_SYNTAX (it does not compile), EXPRESSION_ERROR (it fails on "
        "this item's data) or EXPRESSION_LIMIT (it needs more than the deployment's limits)."
    )
    message: str = strawberry.field(description="What went wrong, quoting the expression.")
    position: TextRange | None = strawberry.field(
        description="Where in the text (for `evaluateParameters`: in the text of `parameter`) "
        "it went wrong: the operation that failed, or what was refused."
    )
    parameter: str | None = strawberry.field(
        description="For `evaluateParameters`: the parameter that failed, e.g. `fields[0].value`."
    )
    limit: str | None = strawberry.field(
        description="For EXPRESSION_LIMIT: which limit (steps, value size, number size, regex "
        "time, regex size; or time: a preview stops after 1 s whatever the limits)."
    )
    setting: str | None = strawberry.field(
        description="For EXPRESSION_LIMIT: the setting that raises that limit, if one does."
    )
    # Nullable only so that a query may select `executionId` on every member of the union.
    execution_id: strawberry.ID | None = strawberry.field(
        description="The execution whose data the preview used (always set)."
    )


@strawberry.type(
    description="The node has no data to preview against: no manual execution, or its "
    "upstream nodes did not run (or produced no items) in it. Run the workflow first."
)
class NoDataError:
    message: str = strawberry.field(description="What is missing and what to run.")
    node_id: strawberry.ID = strawberry.field(description="The node previewed.")
    execution_id: strawberry.ID | None = strawberry.field(
        description="The execution looked at; null when the workflow has no manual execution."
    )


@strawberry.type(description="One field of the items: where it is, its types, an example.")
class OutputField:
    path: str = strawberry.field(
        description="Where it is, as written after `$json` in an expression: `customer.name`, "
        '`["first name"]`, and `[]` for the elements of an array (`orders[].id`).'
    )
    types: list[str] = strawberry.field(
        description="The JSON types seen there: string, number, boolean, null, object, array."
    )
    example: JSON | None = strawberry.field(
        description="The first string, number or boolean seen there (a string cut to 200 "
        "characters); null when only null, objects or arrays were."
    )
    item_count: int = strawberry.field(
        description="How many of the sampled items have it (an item counts once)."
    )


@strawberry.type(
    description="The shape of a list of items, inferred from the first `sampledItems` of "
    "them (at most 1,000), for autocomplete and mapping. At most 500 fields, 12 levels deep, "
    "the first 20 elements of each array: past a bound, `truncated` is true."
)
class OutputSchema:
    port: str = strawberry.field(description="The port whose items these are.")
    total_items: int = strawberry.field(description="How many items the port has in all.")
    sampled_items: int = strawberry.field(description="How many were looked at.")
    truncated: bool = strawberry.field(
        description="Whether items, fields, levels or array elements were left out."
    )
    fields: list[OutputField] = strawberry.field(
        description="The fields, in the order they were first met."
    )
    execution_id: strawberry.ID | None = strawberry.field(
        description="For `inputSchema`: the execution the items come from."
    )


def output_schema(
    shape: Shape, port: str, total_items: int, execution_id: str | None = None
) -> OutputSchema:
    """The GraphQL form of an inferred shape."""
    return OutputSchema(
        port=port,
        total_items=total_items,
        sampled_items=shape.sampled_items,
        truncated=shape.truncated or shape.sampled_items < total_items,
        fields=[
            OutputField(
                path=field.path,
                types=ordered_types(field.types),
                example=field.example,
                item_count=field.items,
            )
            for field in shape.fields
        ],
        execution_id=None if execution_id is None else strawberry.ID(execution_id),
    )
