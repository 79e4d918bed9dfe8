"""The `JSON` scalar with Loom's nesting limit (engine/json_depth.py), for every argument and
input field typed JSON, given as a variable or written in the document.

A variable's value is checked where graphql-core coerces it; its error names the variable
and the field path (`Variable '$input' has invalid value at .nodes[0].parameters: ...`). A
value written in the document is checked by `JsonLiteralDepth` during validation, which names
the argument and field path (`The value of 'input.nodes[0].parameters' (argument of
'createWorkflow') is ...`); the scalar checks it again once the variables inside it are
replaced. Either way the error has `extensions.code` BAD_USER_INPUT and nothing runs.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    ArgumentNode,
    FieldNode,
    GraphQLError,
    GraphQLScalarType,
    ListValueNode,
    Node,
    ObjectFieldNode,
    ObjectValueNode,
    ValidationRule,
    ValueNode,
    VariableDefinitionNode,
    VisitorAction,
    get_named_type,
    value_from_ast_untyped,
)
from graphql.language import SKIP
from strawberry.types.scalar import ScalarDefinition, scalar

from engine.json_depth import MAX_JSON_DEPTH, JsonTooDeep, nests_deeper
from resolvers.errors import BAD_USER_INPUT

TOO_DEEP = f"JSON {JsonTooDeep()}"
_EXTENSIONS = {"code": BAD_USER_INPUT, "maxDepth": MAX_JSON_DEPTH}
_SPEC_URL = (
    "https://ecma-international.org/wp-content/uploads/ECMA-404_2nd_edition_december_2017.pdf"
)


def _parse_value(value: Any) -> Any:
    if nests_deeper(value):
        raise GraphQLError(TOO_DEEP, extensions=_EXTENSIONS)
    return value


def _parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    value = value_from_ast_untyped(node, variables)
    # Too deep as written: `JsonLiteralDepth` says so, with the argument's name; too deep
    # only with the values of the variables inside it: said here.
    if nests_deeper(value) and not _literal_depth_exceeds(node, MAX_JSON_DEPTH):
        raise GraphQLError(TOO_DEEP, node, extensions=_EXTENSIONS)
    return value


JSON_SCALAR: ScalarDefinition = scalar(
    name="JSON",
    description=(
        "A JSON value as specified by [ECMA-404](" + _SPEC_URL + "), with arrays and "
        f"objects nested at most {MAX_JSON_DEPTH} levels deep."
    ),
    specified_by_url=_SPEC_URL,
    parse_value=_parse_value,
    parse_literal=_parse_literal,
)


class JsonLiteralDepth(ValidationRule):
    """Refuses a JSON value written in the document that nests past the limit, naming the
    argument and the field path within it."""

    def enter_list_value(
        self, node: ListValueNode, _key: Any, _parent: Any, path: Any, ancestors: Any
    ) -> VisitorAction:
        return self._check(node, ancestors[0] if ancestors else None, path)

    def enter_object_value(
        self, node: ObjectValueNode, _key: Any, _parent: Any, path: Any, ancestors: Any
    ) -> VisitorAction:
        return self._check(node, ancestors[0] if ancestors else None, path)

    def _check(self, node: ValueNode, root: Node | None, path: list[Any]) -> VisitorAction:
        named = get_named_type(self.context.get_input_type())
        if not (isinstance(named, GraphQLScalarType) and named.name == JSON_SCALAR.name):
            return None
        if _literal_depth_exceeds(node, MAX_JSON_DEPTH):
            self.report_error(
                GraphQLError(f"{_where(root, path)} is {TOO_DEEP}", node, extensions=_EXTENSIONS)
            )
        return SKIP  # a JSON value is checked whole, from its outermost list or object


def _literal_depth_exceeds(node: ValueNode, limit: int) -> bool:
    """Like `nests_deeper`, on a value written in the document (variables count as leaves)."""
    level: list[ValueNode] = [node]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        children: list[ValueNode] = []
        for value in level:
            if isinstance(value, ListValueNode):
                children += value.values
            elif isinstance(value, ObjectValueNode):
                children += (field.value for field in value.fields)
        level = [child for child in children if isinstance(child, ListValueNode | ObjectValueNode)]
    return False


def _where(root: Node | None, path: list[Any]) -> str:
    """`The value of 'input.nodes[0].parameters' (argument of 'createWorkflow')`: the way
    from the document (`root`) along the visitor's `path` of attribute names and indexes."""
    parts: list[str] = []
    owner = ""
    current: Any = root
    for key in path:
        child = current[key] if isinstance(key, int) else getattr(current, key)
        if isinstance(child, FieldNode):
            owner, parts = f" (argument of '{child.name.value}')", []
        elif isinstance(child, VariableDefinitionNode):
            return f"The default value of '${child.variable.name.value}'"
        elif isinstance(child, ArgumentNode | ObjectFieldNode):
            parts.append(("." if parts else "") + child.name.value)
        elif isinstance(current, tuple | list) and isinstance(child, ValueNode) and parts:
            parts.append(f"[{key}]")
        current = child
    return f"The value of '{''.join(parts)}'{owner}" if parts else "A JSON value"
