"""Descriptors of Loom's built-in node types.

They reach the registry through the `loom.node_types` entry point declared in `pyproject.toml`,
the same way a plugin's types do. Each parameters schema is JSON Schema Draft 2020-12, read by
the validator and by the editor, which builds its forms from `title`, `description`, `default`
and `enum`. The behaviours behind them live in `flow`, `merge` and `transform`.

Any parameter string may hold expressions (`{{ $json.price }}`). Numeric parameters that users
commonly compute accept either a number or a string holding an expression; `errorMessage`
(the ajv-errors convention, read by `engine.validation`) gives the wording for those.

Ports of each type (inputs -> outputs):

    manual_trigger  (none) -> main
    set, sort, limit, aggregate, split_out, noop, wait  main -> main
    if              main -> true, false
    switch          main -> output0, output1, output2, output3, fallback
                    (rule i sends its items to output<i>; items no rule takes go to fallback)
    merge           input1, input2 (one connection each) -> main
    filter          main -> main (kept items), discarded
    stop_and_error  main -> (none)
    execute_workflow  main -> main
    execute_workflow_trigger, webhook, schedule  (none) -> main
    code            main -> main (its descriptor lives beside its behaviour, in `code`)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.credentials import KINDS
from engine.node_types import NodeGroup, NodeType, Port
from engine.nodes import code, flow, merge, subworkflow, transform, webhook
from engine.nodes.base import NodeRunContext, PortItems
from engine.nodes.conditions import OPERATORS, UNARY_OPERATORS, pattern_problems
from engine.nodes.flow import SWITCH_OUTPUTS
from engine.schedule import MAX_INTERVAL_S, schedule_problems

JSONSchema = dict[str, Any]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# A string holding both `{{` and `}}` is taken for an expression; the expression parser checks
# it properly. Two anchored lookaheads keep the match linear: `\{\{[\s\S]*\}\}` backtracks
# quadratically on a long run of `{{`, which a 256 KiB parameter could turn into a stall.
EXPRESSION_PATTERN = r"^(?=[\s\S]*\{\{)(?=[\s\S]*\}\})"

# Date and time as ISO 8601 (`2025-01-31T09:00:00Z`), or an expression producing one.
DATE_TIME_OR_EXPRESSION_PATTERN = (
    r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?$|(?=[\s\S]*\{\{)(?=[\s\S]*\}\}))"
)


def _text(title: str, description: str, **extra: Any) -> JSONSchema:
    return {"type": "string", "title": title, "description": description, **extra}


def _flag(title: str, description: str, *, default: bool) -> JSONSchema:
    return {"type": "boolean", "title": title, "description": description, "default": default}


def _choice(title: str, description: str, options: Sequence[str], *, default: str) -> JSONSchema:
    return {
        "type": "string",
        "title": title,
        "description": description,
        "enum": list(options),
        "default": default,
    }


def _any_value(title: str, description: str) -> JSONSchema:
    return {"title": title, "description": description}


def _number_or_expression(
    title: str, description: str, *, integer: bool, minimum: float, default: float | None = None
) -> JSONSchema:
    # `minimum` only constrains numbers and `pattern` only strings, so one schema covers both
    # forms without an anyOf, whose errors read badly.
    kind = "a whole number" if integer else "a number"
    wrong = f"must be {kind} or an expression such as {{{{ $json.count }}}}"
    schema: JSONSchema = {
        "type": ["integer" if integer else "number", "string"],
        "title": title,
        "description": description,
        "minimum": minimum,
        "pattern": EXPRESSION_PATTERN,
        "errorMessage": {"type": wrong, "pattern": wrong},
    }
    if default is not None:
        schema["default"] = default
    return schema


def _object(
    properties: dict[str, JSONSchema], required: Sequence[str] = (), **extra: Any
) -> JSONSchema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def _list(
    title: str, description: str, item: JSONSchema, *, min_items: int = 0, **extra: Any
) -> JSONSchema:
    return {
        "type": "array",
        "title": title,
        "description": description,
        "items": item,
        "minItems": min_items,
        **extra,
    }


def _parameters(
    properties: dict[str, JSONSchema], required: Sequence[str] = (), **extra: Any
) -> JSONSchema:
    return {"$schema": DRAFT_2020_12, **_object(properties, required, **extra)}


def _when(
    field: str, value: str, required: Sequence[str], otherwise: Sequence[str] = ()
) -> JSONSchema:
    """`if`/`then`/`else`: what is required once `field` is `value`, and what otherwise."""
    branches: JSONSchema = {
        "if": {"properties": {field: {"const": value}}, "required": [field]},
        "then": {"required": list(required)},
    }
    if otherwise:
        branches["else"] = {"required": list(otherwise)}
    return branches


def _conditions() -> JSONSchema:
    # Every operator but the emptiness and existence tests needs something to compare with.
    needs_right: JSONSchema = {
        "if": {
            "properties": {"operator": {"not": {"enum": list(UNARY_OPERATORS)}}},
            "required": ["operator"],
        },
        "then": {"required": ["right"]},
    }
    condition = _object(
        {
            "left": _any_value(
                "Value", "The value to test, usually an expression such as {{ $json.status }}."
            ),
            "operator": _choice(
                "Comparison",
                "How to compare the value: equals, not_equals, gt (greater than), gte (greater "
                "than or equal), lt (less than), lte (less than or equal), contains (text in "
                "text, an element in a list, a key in an object), not_contains, starts_with, "
                "ends_with, is_empty (null, empty text, list or object), is_not_empty, regex "
                "(matches a regular expression), exists (present and not null) or not_exists. "
                "A number and numeric text compare as numbers; text orders alphabetically.",
                OPERATORS,
                default="equals",
            ),
            "right": _any_value(
                "Compare with",
                "The value to compare against, or the regular expression for 'regex'. Not used "
                "by is_empty, is_not_empty, exists and not_exists.",
            ),
        },
        required=("left", "operator"),
        **needs_right,
    )
    return _list("Conditions", "The tests each item is checked against.", condition, min_items=1)


def _combine() -> JSONSchema:
    return _choice(
        "Combine conditions",
        "all: an item matches when every condition holds; any: when at least one holds.",
        ("all", "any"),
        default="all",
    )


def _ignore_case() -> JSONSchema:
    return _flag(
        "Ignore case", "Compare text without regard to upper and lower case.", default=False
    )


def _manual_trigger() -> NodeType:
    return NodeType(
        name="manual_trigger",
        version=1,
        display_name="Manual Trigger",
        description="Starts the workflow when you click Execute; the run's input is its item.",
        group=NodeGroup.TRIGGER,
        inputs=(),
        outputs=(Port(),),
        parameters_schema=_parameters({}),
        execute=flow.manual_trigger,
    )


def _set() -> NodeType:
    field = _object(
        {
            "name": _text(
                "Name",
                "The field to write on each item; a dotted name such as 'customer.address.city' "
                "writes into nested objects, creating them as needed.",
            ),
            "value": _any_value(
                "Value",
                "What to write: fixed text, a number, or an expression such as "
                "{{ $json.price * 2 }}. Left out, the field is set to null.",
            ),
        },
        required=("name",),
    )
    return NodeType(
        name="set",
        version=1,
        display_name="Edit Fields (Set)",
        description="Adds or changes fields on every item.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=_parameters(
            {
                "fields": _list(
                    "Fields to set", "The fields to add or change.", field, min_items=1
                ),
                "keepOnlySet": _flag(
                    "Keep only these fields",
                    "Drop every other field from the items, keeping only the ones set here.",
                    default=False,
                ),
            },
            required=("fields",),
        ),
        execute=transform.set_fields,
    )


def _if() -> NodeType:
    return NodeType(
        name="if",
        version=1,
        display_name="If",
        description="Sends each item to True or False depending on conditions.",
        group=NodeGroup.FLOW,
        outputs=(Port("true", "True"), Port("false", "False")),
        parameters_schema=_parameters(
            {"conditions": _conditions(), "combine": _combine(), "ignoreCase": _ignore_case()},
            required=("conditions",),
        ),
        execute=flow.if_,
        check_parameters=pattern_problems,
    )


def _switch() -> NodeType:
    rule = _object(
        {
            "conditions": _conditions(),
            "combine": _combine(),
            "label": _text("Label", "A name for this route, shown on the canvas."),
        },
        required=("conditions",),
    )
    return NodeType(
        name="switch",
        version=1,
        display_name="Switch",
        description=(
            "Routes each item by rules: the first rule sends to Output 0, the second to "
            f"Output 1, and so on, up to {SWITCH_OUTPUTS} rules. Items that match no rule go "
            "to Fallback."
        ),
        group=NodeGroup.FLOW,
        outputs=(
            *(Port(f"output{index}", f"Output {index}") for index in range(SWITCH_OUTPUTS)),
            Port("fallback", "Fallback"),
        ),
        parameters_schema=_parameters(
            {
                "rules": _list(
                    "Routing rules",
                    "Checked in order; the first rule routes to Output 0, the second to "
                    f"Output 1, and so on (at most {SWITCH_OUTPUTS} rules).",
                    rule,
                    min_items=1,
                    maxItems=SWITCH_OUTPUTS,
                ),
                "sendToAllMatching": _flag(
                    "Send to all matching outputs",
                    "Send an item to every rule it matches instead of only the first one.",
                    default=False,
                ),
                "ignoreCase": _ignore_case(),
            },
            required=("rules",),
        ),
        execute=flow.switch,
        check_parameters=pattern_problems,
    )


def _merge() -> NodeType:
    return NodeType(
        name="merge",
        version=1,
        display_name="Merge",
        description="Waits for both inputs and combines their items into one list.",
        group=NodeGroup.FLOW,
        inputs=(
            Port("input1", "Input 1", accepts_many=False),
            Port("input2", "Input 2", accepts_many=False),
        ),
        parameters_schema=_parameters(
            {
                "mode": _choice(
                    "Mode",
                    "append: items of input 1, then items of input 2. combine_by_position: "
                    "the first items of both inputs become one item, then the second ones, and "
                    "so on. combine_by_key: items whose key fields hold the same value become "
                    "one item; Join says what happens to items without a match. choose_branch: "
                    "pass on the items of one input once both have arrived. Combined items "
                    "take input 2's value where both inputs have a field.",
                    ("append", "combine_by_position", "combine_by_key", "choose_branch"),
                    default="append",
                ),
                "key": _text(
                    "Key field",
                    "For combine_by_key: the field whose value must match on both inputs, "
                    "for example 'id' or 'customer.email'. Values match only if equal as JSON "
                    '(1 matches 1.0 but not "1"); items without a value never match.',
                ),
                "input2Key": _text(
                    "Key field on input 2",
                    "For combine_by_key: the key field of input 2's items when it is named "
                    "differently from input 1's; left out, Key field is used on both.",
                ),
                "join": _choice(
                    "Join",
                    "For combine_by_key: inner keeps only items that found a match; left also "
                    "passes on input 1 items without a match, unchanged; outer passes on the "
                    "unmatched items of both inputs, input 2's after all others.",
                    ("inner", "left", "outer"),
                    default="inner",
                ),
                "includeUnpaired": _flag(
                    "Include unpaired items",
                    "For combine_by_position: when one input has more items, pass the extra "
                    "ones on unchanged instead of dropping them.",
                    default=False,
                ),
                "branch": _choice(
                    "Branch",
                    "For choose_branch: the input whose items are passed on.",
                    ("input1", "input2"),
                    default="input1",
                ),
            },
            **_when("mode", "combine_by_key", ("key",)),
        ),
        execute=merge.merge,
    )


def _filter() -> NodeType:
    return NodeType(
        name="filter",
        version=1,
        display_name="Filter",
        description=(
            "Keeps the items that match the conditions. Items that do not match go to "
            "Discarded, if you connect it."
        ),
        group=NodeGroup.FLOW,
        outputs=(Port("main", "Kept"), Port("discarded", "Discarded")),
        parameters_schema=_parameters(
            {"conditions": _conditions(), "combine": _combine(), "ignoreCase": _ignore_case()},
            required=("conditions",),
        ),
        execute=flow.filter_,
        check_parameters=pattern_problems,
    )


def _sort() -> NodeType:
    sort_key = _object(
        {
            "field": _text("Field", "The field to sort by, for example 'createdAt'."),
            "order": _choice(
                "Order",
                "asc: smallest or earliest first; desc: largest or latest first.",
                ("asc", "desc"),
                default="asc",
            ),
        },
        required=("field",),
    )
    return NodeType(
        name="sort",
        version=1,
        display_name="Sort",
        description="Puts the items in order by one or more fields.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=_parameters(
            {
                "fields": _list(
                    "Sort by",
                    "The fields to sort by; later fields break ties of earlier ones.",
                    sort_key,
                    min_items=1,
                ),
            },
            required=("fields",),
        ),
        execute=transform.sort,
    )


def _limit() -> NodeType:
    return NodeType(
        name="limit",
        version=1,
        display_name="Limit",
        description="Passes on at most a given number of items and drops the rest.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=_parameters(
            {
                "maxItems": _number_or_expression(
                    "Max items", "How many items to keep, at least 1.", integer=True, minimum=1
                ),
                "keep": _choice(
                    "Keep",
                    "first: keep the first items; last: keep the last ones.",
                    ("first", "last"),
                    default="first",
                ),
            },
            required=("maxItems",),
        ),
        execute=transform.limit,
    )


def _aggregate() -> NodeType:
    collected = _object(
        {
            "field": _text("Field", "The field whose values are collected from every item."),
            "renameTo": _text(
                "Output field",
                "The name of the list in the result; left out, the field's own name (its last "
                "part, for a nested field such as 'customer.email') is used.",
            ),
        },
        required=("field",),
    )
    return NodeType(
        name="aggregate",
        version=1,
        display_name="Aggregate",
        description="Combines all items into a single item holding lists.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=_parameters(
            {
                "mode": _choice(
                    "Aggregate",
                    "all_items: put every item, whole, into one list. fields: collect the "
                    "values of chosen fields into one list per field.",
                    ("all_items", "fields"),
                    default="all_items",
                ),
                "fields": _list(
                    "Fields to collect",
                    "For the fields mode: the fields whose values are gathered.",
                    collected,
                    min_items=1,
                ),
                "destinationField": _text(
                    "Output field",
                    "For the all_items mode: the name of the list holding the items.",
                    default="data",
                ),
                "keepMissing": _flag(
                    "Keep missing values",
                    "For the fields mode: put null in a list for items that lack the field or "
                    "hold null there, so that the lists of several fields stay aligned; "
                    "otherwise such items are skipped.",
                    default=False,
                ),
            },
            **_when("mode", "fields", ("fields",)),
        ),
        execute=transform.aggregate,
    )


def _split_out() -> NodeType:
    return NodeType(
        name="split_out",
        version=1,
        display_name="Split Out",
        description="Turns a list inside an item into separate items, one per entry.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=_parameters(
            {
                "field": _text(
                    "Field to split",
                    "The field holding the list, e.g. 'orders'. An object element becomes the "
                    "new item; any other element is put under this field's name. Items "
                    "without the field give no items; a field found in no item is an error.",
                ),
                "keepOtherFields": _flag(
                    "Keep other fields",
                    "Copy the item's other fields onto each new item, with the element in "
                    "place of the list.",
                    default=False,
                ),
            },
            required=("field",),
        ),
        execute=transform.split_out,
    )


def _noop() -> NodeType:
    return NodeType(
        name="noop",
        version=1,
        display_name="No Operation",
        description="Passes items on unchanged; useful as a placeholder or a junction.",
        group=NodeGroup.FLOW,
        parameters_schema=_parameters({}),
        execute=flow.noop,
    )


def _stop_and_error() -> NodeType:
    return NodeType(
        name="stop_and_error",
        version=1,
        display_name="Stop and Error",
        description="Stops the workflow and marks the run as failed with your message.",
        group=NodeGroup.FLOW,
        outputs=(),
        parameters_schema=_parameters(
            {
                "message": _text(
                    "Error message",
                    "Why the run failed, shown in the execution log; may use expressions "
                    "such as {{ $json.error }}.",
                ),
            },
            required=("message",),
        ),
        execute=flow.stop_and_error,
    )


def _wait() -> NodeType:
    return NodeType(
        name="wait",
        version=1,
        display_name="Wait",
        description="Pauses the run for a while or until a given time, then continues.",
        group=NodeGroup.FLOW,
        parameters_schema=_parameters(
            {
                "resume": _choice(
                    "Resume",
                    "after_interval: wait for an amount of time. at_time: wait until a date "
                    "and time.",
                    ("after_interval", "at_time"),
                    default="after_interval",
                ),
                "amount": _number_or_expression(
                    "Wait amount",
                    "How long to wait, in the chosen unit; 0 or more.",
                    integer=False,
                    minimum=0,
                    default=1,
                ),
                "unit": _choice(
                    "Unit",
                    "The unit of the wait amount.",
                    ("seconds", "minutes", "hours", "days"),
                    default="seconds",
                ),
                "until": _text(
                    "Resume at",
                    "For at_time: when to continue, as an ISO 8601 date and time such as "
                    "2025-01-31T09:00:00Z (without an offset, the workflow's timezone is used), "
                    "or an expression.",
                    pattern=DATE_TIME_OR_EXPRESSION_PATTERN,
                    errorMessage={
                        "pattern": "must be a date and time such as 2025-01-31T09:00:00Z "
                        "or an expression"
                    },
                ),
            },
            # Without `resume`, the node waits for an interval, as the default says.
            **_when("resume", "at_time", ("until",), otherwise=("amount",)),
        ),
        execute=flow.wait,
    )


async def _send_http_request(context: NodeRunContext, inputs: PortItems) -> PortItems:
    """The HTTP Request node's behaviour, imported with aiohttp when a node first runs."""
    from engine.nodes.http import http_request

    return await http_request(context, inputs)


def _http_request() -> NodeType:
    pair = _object(
        {
            "name": _text("Name", "The name."),
            "value": _any_value("Value", "The value, or an expression."),
        },
        required=("name",),
    )
    return NodeType(
        name="http_request",
        version=1,
        display_name="HTTP Request",
        description="Sends an HTTP request for each item and outputs the response. Private "
        "and local addresses are refused unless the server allows them.",
        group=NodeGroup.ACTION,
        credential_kinds=tuple(sorted(KINDS)),
        parameters_schema=_parameters(
            {
                "method": _choice(
                    "Method",
                    "The HTTP method.",
                    ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
                    default="GET",
                ),
                "url": _text(
                    "URL", "http or https URL, or an expression.", minLength=1, maxLength=8192
                ),
                "query": _list("Query", "Query string parameters.", pair, maxItems=100),
                "headers": _list("Headers", "Request headers.", pair, maxItems=100),
                "bodyType": _choice(
                    "Body",
                    "What to send as the body.",
                    ("none", "json", "form", "text"),
                    default="none",
                ),
                "jsonBody": _any_value("JSON body", "For a json body: the JSON to send."),
                "formBody": _list("Form body", "For a form body: its fields.", pair, maxItems=100),
                "textBody": _text("Text body", "For a text body: the text to send."),
                "timeoutSeconds": _number_or_expression(
                    "Timeout",
                    "Seconds for the whole exchange.",
                    integer=False,
                    minimum=0.1,
                    default=30,
                ),
                "maxRedirects": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 5,
                    "default": 5,
                    "title": "Redirects",
                    "description": "Redirects followed at most.",
                },
                "responseFormat": _choice(
                    "Response format",
                    "auto: JSON when the response says so, text otherwise.",
                    ("auto", "json", "text"),
                    default="auto",
                ),
                "fullResponse": _flag(
                    "Full response",
                    "Output status, headers and body, not only the body.",
                    default=False,
                ),
                "splitArray": _flag(
                    "Split into items",
                    "A JSON array response becomes one item per element.",
                    default=False,
                ),
                "maxResponseBytes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100 * 1024 * 1024,
                    "default": 10 * 1024 * 1024,
                    "title": "Largest response",
                    "description": "Bytes; a larger response fails the node.",
                },
                "retry": _object(
                    {
                        "maxAttempts": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 10,
                            "default": 3,
                            "title": "Attempts",
                            "description": "Tries in all, for connection errors, 429 and 5xx.",
                        },
                        "backoffSeconds": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 60,
                            "default": 1,
                            "title": "Backoff",
                            "description": "First wait (Retry-After wins).",
                        },
                    },
                    title="Retries",
                    description="Retries of this request; Retry-After is honoured.",
                ),
            },
            required=("url",),
        ),
        execute=_send_http_request,
    )


def _webhook() -> NodeType:
    return NodeType(
        name=webhook.WEBHOOK,
        version=1,
        display_name="Webhook",
        description="Starts the workflow (its published version, while active) when a request "
        "comes to /webhook/{path}; the request is the item: body, query, headers, method, path.",
        group=NodeGroup.TRIGGER,
        inputs=(),
        credential_kinds=("api_key_header", "basic_auth"),
        parameters_schema=_parameters(
            {
                "path": _text(
                    "Path",
                    "The path after /webhook/; a UUID of this node's own when left empty.",
                    pattern=r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$",
                    maxLength=200,
                ),
                "methods": _list(
                    "Methods",
                    "The HTTP methods it answers.",
                    {"type": "string", "enum": list(webhook.METHODS)},
                    min_items=1,
                    uniqueItems=True,
                    default=["POST"],
                ),
                "responseMode": _choice(
                    "Respond",
                    "immediately: 202 with the execution id. last_node: when the run ends, with "
                    "the items of the last node that produced data. respond_node: with what a "
                    "Respond to Webhook node says.",
                    webhook.RESPONSE_MODES,
                    default="immediately",
                ),
                "maxBodyBytes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 16 * 1024 * 1024,
                    "default": 1024 * 1024,
                    "title": "Largest body",
                    "description": "Bytes; a larger request gets 413.",
                },
            }
        ),
        execute=webhook.webhook,
    )


def _schedule() -> NodeType:
    return NodeType(
        name="schedule",
        version=1,
        display_name="Schedule",
        description="Starts the workflow (its published version, while active) on a cron "
        "schedule in a timezone, or every so many seconds. Each tick runs once, however many "
        "processes run; the item is {scheduledAt, timezone}.",
        group=NodeGroup.TRIGGER,
        inputs=(),
        parameters_schema=_parameters(
            {
                "mode": _choice(
                    "Mode",
                    "cron: a cron expression. interval: every so many seconds.",
                    ("cron", "interval"),
                    default="cron",
                ),
                "cron": _text(
                    "Cron",
                    "Five fields: minute hour day-of-month month day-of-week, e.g. "
                    "'0 9 * * 1-5' for 09:00 on weekdays.",
                    maxLength=200,
                ),
                "timezone": _text(
                    "Timezone",
                    "IANA name such as Europe/Paris; UTC by default. Daylight "
                    "saving: a skipped local time runs right after the jump, a repeated one "
                    "runs once.",
                    maxLength=64,
                    default="UTC",
                ),
                "intervalSeconds": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": MAX_INTERVAL_S,
                    "title": "Every (seconds)",
                    "description": "For interval mode: seconds between runs.",
                },
                "missed": _choice(
                    "After downtime",
                    "skip: ticks missed while no process ran are skipped. run_once: the "
                    "latest missed tick runs once.",
                    ("skip", "run_once"),
                    default="skip",
                ),
            },
            **_when("mode", "interval", ("intervalSeconds",), otherwise=("cron",)),
        ),
        execute=flow.manual_trigger,
        check_parameters=_schedule_problems,
    )


def _schedule_problems(parameters: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        ("INVALID_SCHEDULE", parameter, message)
        for parameter, message in schedule_problems(parameters)
    ]


def _respond_to_webhook() -> NodeType:
    pair = _object(
        {"name": _text("Name", "Header name."), "value": _any_value("Value", "Header value.")},
        required=("name",),
    )
    return NodeType(
        name=webhook.RESPOND,
        version=1,
        display_name="Respond to Webhook",
        description="Answers the request that started the run (Webhook trigger in "
        "respond_node mode).",
        group=NodeGroup.FLOW,
        parameters_schema=_parameters(
            {
                "status": _number_or_expression(
                    "Status", "HTTP status, 100-599.", integer=True, minimum=100, default=200
                ),
                "headers": _list("Headers", "Response headers.", pair, maxItems=50),
                "body": _any_value(
                    "Body", "What to send as JSON; the incoming items when left out."
                ),
            }
        ),
        execute=webhook.respond_to_webhook,
    )


def _execute_workflow() -> NodeType:
    return NodeType(
        name=subworkflow.EXECUTE_WORKFLOW,
        version=1,
        display_name="Execute Workflow",
        description="Runs another workflow of this workspace with the items (it starts at its "
        "'When Called by Another Workflow' trigger) and, when waiting, outputs what it returns.",
        group=NodeGroup.FLOW,
        parameters_schema=_parameters(
            {
                "workflowId": _text(
                    "Workflow", "The id of the workflow to run.", minLength=1, maxLength=255
                ),
                "source": _choice(
                    "Version",
                    "published: the workflow's published version. draft: its current draft.",
                    ("published", "draft"),
                    default="published",
                ),
                "mode": _choice(
                    "Mode",
                    "all_items: one execution with all the items. each_item: one execution per "
                    "item, outputs concatenated in item order.",
                    ("all_items", "each_item"),
                    default="all_items",
                ),
                "waitForCompletion": _flag(
                    "Wait for completion",
                    "Wait for the called executions and output the items they return (their "
                    "last node's); otherwise start them and pass the items on.",
                    default=True,
                ),
            },
            required=("workflowId",),
        ),
        execute=subworkflow.execute_workflow,
    )


def _execute_workflow_trigger() -> NodeType:
    return NodeType(
        name=subworkflow.TRIGGER,
        version=1,
        display_name="When Called by Another Workflow",
        description="Starts the workflow when an Execute Workflow node calls it; outputs the "
        "items it was sent (run by hand: the run's input as its item).",
        group=NodeGroup.TRIGGER,
        inputs=(),
        outputs=(Port(),),
        parameters_schema=_parameters({}),
        execute=subworkflow.execute_workflow_trigger,
    )


def node_types() -> list[NodeType]:
    """Every built-in node type (the `builtin` entry point of `loom.node_types`)."""
    return [
        _manual_trigger(),
        _set(),
        _if(),
        _switch(),
        _merge(),
        _filter(),
        _sort(),
        _limit(),
        _aggregate(),
        _split_out(),
        _noop(),
        _stop_and_error(),
        _wait(),
        _http_request(),
        _webhook(),
        _respond_to_webhook(),
        _schedule(),
        _execute_workflow(),
        _execute_workflow_trigger(),
        code.node_type(),
    ]
