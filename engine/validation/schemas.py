"""Parameter schemas as Loom reads them: Draft 2020-12 where a blank required string counts
as missing, with the keywords that only describe stripped before compiling.

Each schema is compiled twice. jsonschema is the reference: its verdict is the one that counts
and it words the errors. jsonschema-rs answers only "valid or not", but five to twenty times
faster on Loom's schemas, so it goes first and jsonschema runs only on the parameters it does
not vouch for.

Imported on first use (engine/validation/parameters.py): a process that checks no parameters
does not load either library.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import create

from engine.validation.findings import Finding, findings_from_error, one_per_field

if TYPE_CHECKING:
    from jsonschema_rs import KeywordValidator

    from engine.node_types import NodeType


def _required_not_blank(
    validator: Any, required: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """`required`, where a blank string counts as missing; errors point at the property."""
    if not validator.is_type(instance, "object"):
        return
    for name in required:
        if name not in instance:
            yield ValidationError(f"{name!r} is a required property", path=(name,))
        elif isinstance(instance[name], str) and not instance[name].strip():
            yield ValidationError(f"{name!r} must not be blank", path=(name,))


ParameterValidator = create(
    meta_schema=Draft202012Validator.META_SCHEMA,
    validators={**Draft202012Validator.VALIDATORS, "required": _required_not_blank},
    type_checker=Draft202012Validator.TYPE_CHECKER,
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)

# Keywords that only describe, for the editor. Dropping them changes no verdict and spares
# jsonschema a descent into the many schemas that hold nothing else, like an any-value field.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
    | {"$comment"}
)
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = frozenset(
    {"items", "contains", "additionalProperties", "unevaluatedProperties"}
    | {"unevaluatedItems", "propertyNames", "if", "then", "else", "not"}
)


def without_annotations(schema: Any) -> Any:
    """The schema as the validator needs it; a subschema left empty becomes `true`."""
    if not isinstance(schema, Mapping):
        return schema
    stripped: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword in _SCHEMA_MAPS and isinstance(value, Mapping):
            value = {name: without_annotations(sub) for name, sub in value.items()}
        elif keyword in _SCHEMA_LISTS and isinstance(value, list):
            value = [without_annotations(sub) for sub in value]
        elif keyword in _SCHEMA_VALUES:
            value = without_annotations(value)
        stripped[keyword] = value
    return stripped or True


# jsonschema-rs may vouch for parameters only where it reads a schema exactly as jsonschema
# does. Where the two differ, it runs jsonschema's own code for the keyword instead:
# `required` for the blank-string rule, `pattern` for Python's regex dialect (`$`, `\s`, `\d`
# match other text in Rust's), `multipleOf` for jsonschema's float arithmetic (0.3 is no
# multiple of 0.1 there).
_DELEGATED_KEYWORDS = ("required", "pattern", "multipleOf")
# What the fast validator cannot mirror that way, so a schema using it gets none: regexes that
# choose subschemas (`patternProperties`), and parts written in another dialect than 2020-12.
_DIALECTS = (
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2020-12/schema#",
)
# Keyword implementations only ask the validator about types, which every instance answers.
_TYPE_CHECKS = ParameterValidator({})


def fast_validator(schema: Any) -> jsonschema_rs.Validator | None:
    """A jsonschema-rs validator that accepts exactly what `ParameterValidator` accepts.

    None when the schema uses what it cannot mirror, or when it does not compile (a remote
    `$ref`, say, which it will not fetch); jsonschema then checks alone.
    """
    if not _mirrorable(schema):
        return None
    keywords = {keyword: _delegated(keyword) for keyword in _DELEGATED_KEYWORDS}
    try:
        # `format` only annotates, as in jsonschema without a format checker.
        return jsonschema_rs.Draft202012Validator(
            schema, validate_formats=False, offline=True, keywords=keywords
        )
    except Exception:  # whatever it refuses, jsonschema has accepted at registration
        return None


def _delegated(keyword: str) -> type[KeywordValidator]:
    """A jsonschema-rs keyword that runs jsonschema's implementation of `keyword`."""
    implementation: Callable[..., Iterator[ValidationError] | None]
    implementation = ParameterValidator.VALIDATORS[keyword]

    class Delegated:
        def __init__(
            self, parent_schema: dict[str, Any], value: Any, schema_path: list[str | int]
        ) -> None:
            self._schema = parent_schema
            self._value = value

        def validate(self, instance: Any) -> None:
            for error in implementation(_TYPE_CHECKS, self._value, instance, self._schema) or ():
                raise ValueError(error.message)

    return Delegated


def _mirrorable(schema: Any) -> bool:
    """Whether no part of the schema needs what `fast_validator` cannot mirror.

    Walks every mapping, data included: a false alarm only costs speed.
    """
    stack = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            if "patternProperties" in value:
                return False
            if "$schema" in value and value["$schema"] not in _DIALECTS:
                return False
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return True


# What jsonschema-rs reads unlike jsonschema: it takes NaN and the infinities for no number at
# all, and Rust strings cannot hold lone surrogates. Parameters with either are left to jsonschema.
_NOT_FOR_RUST = re.compile(r"NaN|Infinity|[\ud800-\udfff]")


class CompiledSchema:
    """One node type's schema, compiled once."""

    def __init__(self, node_type: NodeType) -> None:
        self.node_type = node_type
        schema = without_annotations(node_type.parameters_schema)
        self._validator = ParameterValidator(schema)
        self._fast = fast_validator(schema)

    def check(self, parameters: object) -> tuple[Finding, ...]:
        """Every problem of these parameters, at most one per field."""
        return one_per_field(
            [
                finding
                for error in self._validator.iter_errors(parameters)
                for finding in findings_from_error(error)
            ]
        )

    def vouches_for(self, encoded: str, parameters: object) -> bool:
        """True when the fast validator finds `parameters`, decoded from `encoded`, valid.

        False proves nothing: `check` decides then.
        """
        if self._fast is None or _NOT_FOR_RUST.search(encoded):
            return False
        try:
            return self._fast.is_valid(parameters)
        except ValueError:  # a value jsonschema-rs cannot convert
            return False
