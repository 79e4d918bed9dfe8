"""Expression micro-benchmark: what one evaluation costs on the hot path.

    .venv/bin/python bench/expressions.py [--runs 7] [--number 200000]

Three figures per run, median of `--runs` repeats of `--number` evaluations each, on one item
`{"price": 2.5, "qty": 3}`:

1. `$json.price * $json.qty` compiled once, called per evaluation: the closure, and (once
   evaluation is metered) the start of a fresh budget, as every rendering starts one;
2. a node's parameters `{"total": "{{ $json.price * $json.qty }}"}` rendered per item, as
   `set` renders them (one rendering: a fresh budget, the expression, the object built);
3. the floor: a hand-written Python function reading the same two keys and multiplying.

The floor moves with the machine's load (two shared cores) as the figures do; compare the
ratios of runs made the same day; the best run shows the cost with the least interference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.expressions import Scope, compile_expression, compile_parameters
from engine.graph import Node
from engine.nodes.base import NodeRunContext
from engine.nodes.parameters import per_item

EXPRESSION = "$json.price * $json.qty"
ITEM = {"price": 2.5, "qty": 3}


def floor(scope: Scope) -> Any:
    return scope.json["price"] * scope.json["qty"]


def per_evaluation_us(call: Any, runs: int, number: int) -> list[float]:
    timer = timeit.Timer(call)
    return [elapsed / number * 1e6 for elapsed in timer.repeat(repeat=runs, number=number)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()

    scope = Scope(json=dict(ITEM))
    expression = compile_expression(EXPRESSION)
    assert expression(scope) == 7.5
    compiled, problems = compile_parameters({"total": "{{ " + EXPRESSION + " }}"})
    assert not problems
    # The per-item path of `set`, `if`, `filter` and `switch`: one scope, rendered per item.
    context = NodeRunContext.for_node(
        Node(id="set", name="Set", type="set", parameters=compiled.source)
    )
    render = per_item(context)
    assert render(ITEM, 0) == {"total": 7.5}

    budget = getattr(scope, "budget", None)  # None: code from before metering
    if budget is None:

        def metered() -> Any:
            return expression(scope)

    else:
        start = budget.start

        def metered() -> Any:
            start()
            return expression(scope)

    figures = {
        "closure": per_evaluation_us(metered, args.runs, args.number),
        "rendering": per_evaluation_us(lambda: render(ITEM, 0), args.runs, args.number),
        "floor": per_evaluation_us(lambda: floor(scope), args.runs, args.number),
    }
    print(f"expressions: {args.runs} runs of {args.number:,} evaluations (median, µs each)")
    for name, values in figures.items():
        spread = ", ".join(f"{value:.3f}" for value in values)
        median, best = statistics.median(values), min(values)
        print(f"  {name:10s} {median:.3f} µs, best {best:.3f}   ({spread})")
    ratio = statistics.median(figures["closure"]) / statistics.median(figures["floor"])
    print(f"  closure / floor: {ratio:.2f}x")


if __name__ == "__main__":
    main()
