"""The form of a declarative node type's definition, as JSON Schema (Draft 2020-12).

Checked with jsonschema before anything else (engine/declarative.py): every structural
problem is reported at once with its path (`requestTemplate.method`,
`catalog.parameterHints[0].widget`); what JSON Schema cannot say (a parameters schema that
is valid, templates that compile, a URL, known credential kinds) is checked after.
"""

from __future__ import annotations

from typing import Any

from engine.node_catalog import Widget

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_PAGES = 1000
# A path into a response body: keys (and list indexes) joined by dots, `data.items`.
SELECT_PATH = r"^[^.\s]+(\.[^.\s]+)*$"

_TEXT: dict[str, Any] = {"type": "string", "maxLength": 2000}
_PATH: dict[str, Any] = {"type": "string", "pattern": SELECT_PATH, "maxLength": 500}
_NAMES: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 200},
    "maxItems": 200,
    "uniqueItems": True,
}
# Query and header entries: name -> a JSON value whose strings may hold `{{ }}`.
_PAIRS: dict[str, Any] = {
    "type": "object",
    "maxProperties": 100,
    "propertyNames": {"minLength": 1, "maxLength": 200},
}

DEFINITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["displayName", "requestTemplate"],
    "properties": {
        "displayName": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": _TEXT,
        "parametersSchema": {"type": "object"},
        "credentialKinds": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 20,
            "uniqueItems": True,
        },
        "catalog": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "category": {"type": "string", "minLength": 1, "maxLength": 100},
                "subcategory": {"type": "string", "maxLength": 100},
                "icon": {"type": "string", "maxLength": 100_000},
                "documentationUrl": {"type": "string", "maxLength": 2000},
                "subtitle": {"type": "string", "maxLength": 200},
                "parameterHints": {
                    "type": "array",
                    "maxItems": 200,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 200},
                            "placeholder": {"type": "string", "maxLength": 200},
                            "widget": {"enum": [widget.value for widget in Widget]},
                            "showWhen": {
                                "type": "object",
                                "additionalProperties": {"type": "array", "maxItems": 50},
                            },
                        },
                    },
                },
                "defaults": {"type": "object"},
            },
        },
        "requestTemplate": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "method": {"enum": list(METHODS)},
                "url": {"type": "string", "minLength": 1, "maxLength": 8192},
                "query": _PAIRS,
                "headers": _PAIRS,
                "body": {},
                "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
                "maxResponseBytes": {"type": "integer", "minimum": 1, "maximum": 100 * 1024**2},
                "retry": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 10},
                        "backoffSeconds": {"type": "number", "minimum": 0, "maximum": 60},
                    },
                },
            },
        },
        "responseMapping": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "select": _PATH,
                "split": {"type": "boolean"},
                "keep": _NAMES,
                "drop": _NAMES,
            },
        },
        "pagination": {
            "type": "object",
            "additionalProperties": False,
            "required": ["maxPages"],
            "properties": {
                "nextUrl": _PATH,
                "cursor": _PATH,
                "cursorParameter": {"type": "string", "minLength": 1, "maxLength": 200},
                "maxPages": {"type": "integer", "minimum": 1, "maximum": MAX_PAGES},
            },
        },
    },
}
