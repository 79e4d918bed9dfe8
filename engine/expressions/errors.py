"""Expression errors.

ExpressionError
 +-- ExpressionSyntaxError       the text is not an expression Loom accepts (compile time)
 +-- ExpressionEvaluationError   evaluating it failed for this item (run time)
"""

from __future__ import annotations


class ExpressionError(Exception):
    """An expression was refused or failed; says which expression and why."""

    def __init__(self, message: str, expression: str) -> None:
        shown = expression if len(expression) <= 200 else expression[:200] + "..."
        super().__init__(f"{message} in expression {{{{ {shown} }}}}")
        self.reason = message
        self.expression = expression
        # The parameter path (`fields[0].value`) once known; set by `compile_parameters`.
        self.parameter: str | None = None


class ExpressionSyntaxError(ExpressionError):
    """The expression cannot be compiled: bad syntax or a construct the sandbox forbids."""


class ExpressionEvaluationError(ExpressionError):
    """The expression compiled but failed on the data it was given."""
