"""The root of every error the engine raises on purpose, and the tree under it.

    EngineError
     +-- WorkflowError                 a workflow the engine cannot take as it is
     |    +-- PlanError                   no plan: unknown types, cycles, bad ports (plan)
     |    +-- EditError                   an edit that does not apply (editing)
     |    +-- StartNodeError              a start node the run cannot start at (executor)
     |    +-- ParameterMigrationError     parameters a newer type version cannot take (node_types)
     +-- NodeTypeRegistryError         a node type or plugin that cannot be registered
     +-- ExpressionError               an expression refused or failed (expressions.errors)
     |    +-- ExpressionSyntaxError
     |    +-- ExpressionEvaluationError
     |         +-- ExpressionLimitError
     +-- EvalError                     inside evaluation, before the expression's text is
     |    +-- LimitExceeded              added (expressions.errors)
     |    +-- InvalidPattern             a regular expression refused (expressions.patterns)
     +-- NodeError                     a node's run failed: `error_type` says how (nodes.base)
     +-- CallRefused                   a sub-workflow call that cannot be made (nodes.base)
     +-- HttpError                     a request not made or not completed (http_errors)
     |    +-- InvalidUrl
     |    +-- DestinationRefused
     |    +-- ResponseTooLarge
     +-- CodeFailure                   a Code node script without items (code.sandbox)
     +-- HostDied                      a Code node sandbox process that ended (code.hosts)
     +-- FrameTooLarge (ValueError)    a sandbox frame past its size (code.frames)
     +-- JsonTooDeep (ValueError)      JSON nested past the limit (json_depth)
     +-- ScheduleError (ValueError)    a schedule that cannot run (schedule)
     +-- InvalidDomain (ValueError)    an allowedDomains entry of a credential that is not a
     |                                 host name, wildcard or IP address (credential_domains)
     +-- QueueUnavailable (ConnectionError)  the queue refused a submission (submitter)
     +-- SubscriptionLimitError        too many live subscriptions (bus)
     +-- StartConflict                 a new execution storage refused: its idempotency key
     |                                 used meanwhile, or its workflow gone (ports)
     +-- LeaseLost                     what a process that lost an execution's lease meant
     |                                 to create for it, refused (ports)
     +-- IllegalTransitionError        a state change the state machine forbids: a bug of the
                                       engine, not of the workflow (states)

Errors that are also a `ValueError` or a `ConnectionError` stay so, for callers that catch
those. Not errors, and so outside the tree: `Suspend` (a node parks its run) and
`DeadlineReached` (a node's time ran out in synchronous work), both `BaseException`s like
cancellation, so that no behaviour's `except Exception` swallows them.
"""

from __future__ import annotations


class EngineError(Exception):
    """An error the engine raised on purpose; its subclasses say which (see the tree)."""


class WorkflowError(EngineError):
    """A workflow the engine cannot take as it is: its graph, an edit, a start, an upgrade."""
