"""Behaviours of the flow node types: trigger, pass-through, routing, stopping and waiting.

`if`, `filter` and `switch` render their parameters per item, since conditions usually read
the item (`{{ $json.age }}`); when the parameters hold no expression the decision is the
same for every item and is made once.

Over 400 lines, but one cohesive thing: the behaviours of the flow node types.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine.expressions.budget import Budget
from engine.expressions.functions import to_text
from engine.node_catalog import CORE, Catalog, ParameterHint, Widget
from engine.node_types import NodeGroup, NodeType, Port
from engine.nodes import schema
from engine.nodes.base import Item, NodeError, NodeRunContext, PortItems, Suspend
from engine.nodes.conditions import (
    combine_parameter,
    conditions_parameter,
    ignore_case_parameter,
    matches,
    pattern_problems,
)
from engine.nodes.parameters import (
    choice,
    flag,
    invalid_parameter,
    number,
    per_item,
    settings,
    shown,
    text,
)
from engine.schedule import MAX_INTERVAL_S, schedule_problems

SWITCH_OUTPUTS = 4
SWITCH_PORTS = tuple(f"output{index}" for index in range(SWITCH_OUTPUTS))
FALLBACK_PORT = "fallback"

STOP_AND_ERROR = "STOP_AND_ERROR"
DEFAULT_STOP_MESSAGE = "The workflow was stopped by a Stop and Error node"

UNIT_SECONDS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}


async def manual_trigger(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Passes on the execution input, which the executor hands over as its one item."""
    return {"main": list(inputs.get("main", []))}


async def noop(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Passes its items on unchanged."""
    return {"main": list(inputs.get("main", []))}


def _conditions_hold(parameters: dict[str, Any], budget: Budget) -> bool:
    combine = parameters.get("combine", "all")
    if combine != "all" and combine != "any":
        combine = choice(parameters, "combine", ("all", "any"), default="all")
    ignore_case = parameters.get("ignoreCase", False)
    if type(ignore_case) is not bool:
        ignore_case = flag(parameters, "ignoreCase", default=False)
    return matches(
        parameters.get("conditions"),
        combine=combine,
        ignore_case=ignore_case,
        where="conditions",
        budget=budget,
    )


async def _partition(ctx: NodeRunContext, items: list[Item]) -> tuple[list[Item], list[Item]]:
    """The items that match the node's conditions, and the others."""
    budget = ctx.budget()
    if ctx.compiled.is_constant:
        holds = _conditions_hold(ctx.parameters(), budget)
        return (items, []) if holds else ([], items)
    matching: list[Item] = []
    others: list[Item] = []
    parameters = per_item(ctx)
    for index, item in enumerate(items):
        budget.start()  # testing one item's conditions: a budget of their own
        if _conditions_hold(parameters(item, index), budget):
            matching.append(item)
        else:
            others.append(item)
        if ctx.due():
            await ctx.pause()
    return matching, others


async def if_(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Sends each item to `true` or `false`."""
    matching, others = await _partition(ctx, list(inputs.get("main", [])))
    return {"true": matching, "false": others}


async def filter_(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Keeps matching items on `main`; the others go to `discarded`."""
    matching, others = await _partition(ctx, list(inputs.get("main", [])))
    return {"main": matching, "discarded": others}


def _routes(parameters: dict[str, Any], budget: Budget) -> list[str]:
    """The output ports one item goes to: the first matching rule's, or every matching one's."""
    rules = parameters.get("rules")
    if not isinstance(rules, list) or not 1 <= len(rules) <= SWITCH_OUTPUTS:
        raise invalid_parameter(
            "rules", f"must be a list of 1 to {SWITCH_OUTPUTS} rules, got {shown(rules)}"
        )
    all_matching = flag(parameters, "sendToAllMatching", default=False)
    ignore_case = flag(parameters, "ignoreCase", default=False)
    routes: list[str] = []
    for index, rule in enumerate(rules):
        where = f"rules[{index}]"
        if not isinstance(rule, dict):
            raise invalid_parameter(where, f"must be a rule object, got {shown(rule)}")
        combine = choice(rule, "combine", ("all", "any"), default="all", prefix=f"{where}.")
        conditions, at = rule.get("conditions"), f"{where}.conditions"
        if matches(
            conditions,
            combine=combine,
            ignore_case=ignore_case,
            where=at,
            budget=budget,
        ):
            routes.append(SWITCH_PORTS[index])
            if not all_matching:
                break
    return routes or [FALLBACK_PORT]


async def switch(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Routes each item by ordered rules to `output0`..`output3`, else to `fallback`."""
    items = inputs.get("main", [])
    outputs: PortItems = {port: [] for port in (*SWITCH_PORTS, FALLBACK_PORT)}
    budget = ctx.budget()
    if ctx.compiled.is_constant:
        for port in _routes(ctx.parameters(), budget):
            outputs[port] = list(items)
        return outputs
    parameters = per_item(ctx)
    for index, item in enumerate(items):
        budget.start()  # testing one item's rules: a budget of their own
        for port in _routes(parameters(item, index), budget):
            outputs[port].append(item)
        if ctx.due():
            await ctx.pause()
    return outputs


async def stop_and_error(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Fails the node, and with it the run, with the message (rendered for the first item)."""
    message = settings(ctx, inputs.get("main", [])).get("message")
    rendered = to_text(message).strip() if message is not None else ""
    raise NodeError(rendered or DEFAULT_STOP_MESSAGE, error_type=STOP_AND_ERROR)


def _seconds_until(parameters: dict[str, Any]) -> float:
    until = text(parameters, "until")
    try:
        moment = datetime.fromisoformat(until.strip())
    except ValueError:
        raise invalid_parameter(
            "until",
            f"must be a date and time such as 2025-01-31T09:00:00Z, got {shown(until)}",
        ) from None
    if moment.tzinfo is None:
        # Workflow timezones do not reach node runs yet; until then a time without an
        # offset is read as UTC.
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


async def wait(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Waits for an interval or until a time (within this process), then passes items on."""
    items = inputs.get("main", [])
    parameters = settings(ctx, items)
    resume = choice(parameters, "resume", ("after_interval", "at_time"), default="after_interval")
    if resume == "at_time":
        delay_s = _seconds_until(parameters)
    else:
        unit = choice(parameters, "unit", tuple(UNIT_SECONDS), default="seconds")
        delay_s = number(parameters, "amount", minimum=0) * UNIT_SECONDS[unit]
    if ctx.resume_at is not None:  # parked earlier: wait only for what is left
        delay_s = (ctx.resume_at - datetime.now(UTC)).total_seconds()
        # Resumed early (another parked node was woken): park again rather than hold the
        # process for the rest.
        if ctx.info.durable_wait_s is not None and delay_s > ctx.info.durable_wait_s:
            raise Suspend(ctx.resume_at)
    elif ctx.info.durable_wait_s is not None and delay_s > ctx.info.durable_wait_s:
        raise Suspend(datetime.now(UTC) + timedelta(seconds=delay_s))
    if delay_s > 0:
        await ctx.sleep(delay_s)
    return {"main": list(items)}


def manual_trigger_type() -> NodeType:
    return NodeType(
        name="manual_trigger",
        version=1,
        display_name="Manual Trigger",
        description="Starts the workflow when you click Execute; the run's input is its item.",
        group=NodeGroup.TRIGGER,
        inputs=(),
        outputs=(Port(),),
        parameters_schema=schema.parameters({}),
        catalog=Catalog(
            category=CORE,
            subcategory="Triggers",
            icon="fa:mouse-pointer",
            documentation_url="docs/api.md#node-types",
        ),
        execute=manual_trigger,
    )


def _tested_parameters() -> schema.JSONSchema:
    """The parameters of If and Filter: conditions every item is tested against."""
    return schema.parameters(
        {
            "conditions": conditions_parameter(),
            "combine": combine_parameter(),
            "ignoreCase": ignore_case_parameter(),
        },
        required=("conditions",),
    )


def _tested_catalog(icon: str, placeholder: str) -> Catalog:
    return Catalog(
        category=CORE,
        subcategory="Flow",
        icon=icon,
        documentation_url="docs/api.md#node-types",
        hints=(
            ParameterHint("conditions[].left", placeholder=placeholder),
            ParameterHint("combine"),
            ParameterHint("ignoreCase"),
        ),
    )


def if_type() -> NodeType:
    return NodeType(
        name="if",
        version=1,
        display_name="If",
        description="Sends each item to True or False depending on conditions.",
        group=NodeGroup.FLOW,
        outputs=(Port("true", "True"), Port("false", "False")),
        parameters_schema=_tested_parameters(),
        catalog=_tested_catalog("fa:map-signs", "{{ $json.status }}"),
        execute=if_,
        check_parameters=pattern_problems,
    )


def switch_type() -> NodeType:
    rule = schema.object_of(
        {
            "conditions": conditions_parameter(),
            "combine": combine_parameter(),
            "label": schema.text("Label", "A name for this route, shown on the canvas."),
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
        parameters_schema=schema.parameters(
            {
                "rules": schema.list_of(
                    "Routing rules",
                    "Checked in order; the first rule routes to Output 0, the second to "
                    f"Output 1, and so on (at most {SWITCH_OUTPUTS} rules).",
                    rule,
                    min_items=1,
                    maxItems=SWITCH_OUTPUTS,
                ),
                "sendToAllMatching": schema.flag(
                    "Send to all matching outputs",
                    "Send an item to every rule it matches instead of only the first one.",
                    default=False,
                ),
                "ignoreCase": ignore_case_parameter(),
            },
            required=("rules",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Flow",
            icon="fa:random",
            documentation_url="docs/api.md#node-types",
            hints=(
                ParameterHint("rules[].conditions[].left", placeholder="{{ $json.kind }}"),
                ParameterHint("sendToAllMatching"),
                ParameterHint("ignoreCase"),
            ),
        ),
        execute=switch,
        check_parameters=pattern_problems,
    )


def filter_type() -> NodeType:
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
        parameters_schema=_tested_parameters(),
        catalog=_tested_catalog("fa:filter", "{{ $json.total }}"),
        execute=filter_,
        check_parameters=pattern_problems,
    )


def noop_type() -> NodeType:
    return NodeType(
        name="noop",
        version=1,
        display_name="No Operation",
        description="Passes items on unchanged; useful as a placeholder or a junction.",
        group=NodeGroup.FLOW,
        parameters_schema=schema.parameters({}),
        catalog=Catalog(
            category=CORE,
            subcategory="Helpers",
            icon="fa:arrow-right",
            documentation_url="docs/api.md#node-types",
        ),
        execute=noop,
    )


def stop_and_error_type() -> NodeType:
    return NodeType(
        name="stop_and_error",
        version=1,
        display_name="Stop and Error",
        description="Stops the workflow and marks the run as failed with your message.",
        group=NodeGroup.FLOW,
        outputs=(),
        parameters_schema=schema.parameters(
            {
                "message": schema.text(
                    "Error message",
                    "Why the run failed, shown in the execution log; may use expressions "
                    "such as {{ $json.error }}.",
                ),
            },
            required=("message",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Flow",
            icon="fa:exclamation-triangle",
            documentation_url="docs/api.md#node-types",
            hints=(ParameterHint("message", widget=Widget.MULTILINE),),
        ),
        execute=stop_and_error,
    )


def wait_type() -> NodeType:
    return NodeType(
        name="wait",
        version=1,
        display_name="Wait",
        description="Pauses the run for a while or until a given time, then continues.",
        group=NodeGroup.FLOW,
        parameters_schema=schema.parameters(
            {
                "resume": schema.choice(
                    "Resume",
                    "after_interval: wait for an amount of time. at_time: wait until a date "
                    "and time.",
                    ("after_interval", "at_time"),
                    default="after_interval",
                ),
                "amount": schema.number_or_expression(
                    "Wait amount",
                    "How long to wait, in the chosen unit; 0 or more.",
                    integer=False,
                    minimum=0,
                    default=1,
                ),
                "unit": schema.choice(
                    "Unit",
                    "The unit of the wait amount.",
                    ("seconds", "minutes", "hours", "days"),
                    default="seconds",
                ),
                "until": schema.text(
                    "Resume at",
                    "For at_time: when to continue, as an ISO 8601 date and time such as "
                    "2025-01-31T09:00:00Z (without an offset, the workflow's timezone is used), "
                    "or an expression.",
                    pattern=schema.DATE_TIME_OR_EXPRESSION_PATTERN,
                    errorMessage={
                        "pattern": "must be a date and time such as 2025-01-31T09:00:00Z "
                        "or an expression"
                    },
                ),
            },
            # Without `resume`, the node waits for an interval, as the default says.
            **schema.when("resume", "at_time", ("until",), otherwise=("amount",)),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Flow",
            icon="fa:pause-circle",
            documentation_url="docs/api.md#executions",
            hints=(
                ParameterHint("resume"),
                ParameterHint("amount", show_when={"resume": ("after_interval",)}),
                ParameterHint("unit", show_when={"resume": ("after_interval",)}),
                ParameterHint(
                    "until", placeholder="2025-01-31T09:00:00Z", show_when={"resume": ("at_time",)}
                ),
            ),
        ),
        execute=wait,
    )


def schedule_type() -> NodeType:
    return NodeType(
        name="schedule",
        version=1,
        display_name="Schedule",
        description="Starts the workflow (its published version, while active) on a cron "
        "schedule in a timezone, or every so many seconds. Each tick runs once, however many "
        "processes run; the item is {scheduledAt, timezone}.",
        group=NodeGroup.TRIGGER,
        inputs=(),
        parameters_schema=schema.parameters(
            {
                "mode": schema.choice(
                    "Mode",
                    "cron: a cron expression. interval: every so many seconds.",
                    ("cron", "interval"),
                    default="cron",
                ),
                "cron": schema.text(
                    "Cron",
                    "Five fields: minute hour day-of-month month day-of-week, e.g. "
                    "'0 9 * * 1-5' for 09:00 on weekdays.",
                    maxLength=200,
                ),
                "timezone": schema.text(
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
                "missed": schema.choice(
                    "After downtime",
                    "skip: ticks missed while no process ran are skipped. run_once: the "
                    "latest missed tick runs once.",
                    ("skip", "run_once"),
                    default="skip",
                ),
            },
            **schema.when("mode", "interval", ("intervalSeconds",), otherwise=("cron",)),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Triggers",
            icon="fa:clock",
            documentation_url="docs/api.md#schedules",
            subtitle="{cron}",
            hints=(
                ParameterHint("mode"),
                ParameterHint("cron", placeholder="0 9 * * 1-5", show_when={"mode": ("cron",)}),
                ParameterHint("timezone", placeholder="Europe/Paris"),
                ParameterHint("intervalSeconds", show_when={"mode": ("interval",)}),
            ),
        ),
        execute=manual_trigger,
        check_parameters=_schedule_problems,
    )


def _schedule_problems(parameters: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        ("INVALID_SCHEDULE", parameter, message)
        for parameter, message in schedule_problems(parameters)
    ]
