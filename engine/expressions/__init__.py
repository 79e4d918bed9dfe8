"""Safe expressions: `{{ ... }}` inside parameter strings, compiled once, run per item.

    from engine.expressions import compile_parameters, Scope
    compiled, problems = compile_parameters({"total": "{{ $json.price * $json.qty }}"})
    compiled.render(Scope(json={"price": 2, "qty": 3}))   # {"total": 6}

See `compiler` for the sandbox, `budget` for what an evaluation may cost, and
`docs/expressions.md` for the language.
"""

from engine.expressions.budget import Budget, ExpressionLimits
from engine.expressions.compiler import compile_expression
from engine.expressions.errors import (
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionLimitError,
    ExpressionSyntaxError,
)
from engine.expressions.scope import NodeItems, Scope
from engine.expressions.template import (
    CompiledParameters,
    ParameterError,
    Template,
    compile_parameters,
    compile_template,
    referenced_nodes,
    rename_references,
)

__all__ = [
    "Budget",
    "CompiledParameters",
    "ExpressionError",
    "ExpressionEvaluationError",
    "ExpressionLimitError",
    "ExpressionLimits",
    "ExpressionSyntaxError",
    "NodeItems",
    "ParameterError",
    "Scope",
    "Template",
    "compile_expression",
    "compile_parameters",
    "compile_template",
    "referenced_nodes",
    "rename_references",
]
