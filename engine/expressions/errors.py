"""Expression errors.

ExpressionError
 +-- ExpressionSyntaxError       the text is not an expression Loom accepts (compile time)
 +-- ExpressionEvaluationError   evaluating it failed for this item (run time)
      +-- ExpressionLimitError   it ran out of its budget: steps, value size, number size or
                                 regex time (`budget.ExpressionLimits`)

Inside evaluation, code raises `EvalError` (or `LimitExceeded`) without the expression's text;
the compiler turns it into the public error with the text added. `DeadlineReached` is not an
error of the expression: the node's or the execution's time ran out while it was evaluated.
"""

from __future__ import annotations

from engine.errors import EngineError


class ExpressionError(EngineError):
    """An expression was refused or failed; says which expression and why."""

    def __init__(self, message: str, expression: str) -> None:
        shown = expression if len(expression) <= 200 else expression[:200] + "..."
        super().__init__(f"{message} in expression {{{{ {shown} }}}}")
        self.reason = message
        self.expression = expression
        # The parameter path (`fields[0].value`) once known; set by `compile_parameters`.
        self.parameter: str | None = None
        # Where in the parameter's text it went wrong, [start, end) in characters, when
        # known: syntax errors always; evaluation errors when compiled to locate them
        # (`compile_counted(..., locate=True)`, what previews use).
        self.position: tuple[int, int] | None = None


class ExpressionSyntaxError(ExpressionError):
    """The expression cannot be compiled: bad syntax or a construct the sandbox forbids."""


class ExpressionEvaluationError(ExpressionError):
    """The expression compiled but failed on the data it was given."""


class ExpressionLimitError(ExpressionEvaluationError):
    """The expression needed more than its budget allows; `limit` names which one."""

    def __init__(self, message: str, expression: str, limit: str) -> None:
        super().__init__(message, expression)
        self.limit = limit


class EvalError(EngineError):
    """Raised inside evaluation; the compiler adds the expression text (and, compiled to
    locate errors, the position of the innermost operation that failed)."""

    position: tuple[int, int] | None = None


class LimitExceeded(EvalError):
    """Raised inside evaluation when a budget runs out; `limit` names which one."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class DeadlineReached(BaseException):
    """The node's or the execution's deadline passed during synchronous work.

    A BaseException, like cancellation: no error handler of a behaviour or retry policy
    takes it for a failure of its own. The executor answers it by giving the event loop a
    turn, so that the timeout that is due ends the node or the run as it always does.
    """
