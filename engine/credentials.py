"""Credential kinds: what each stores (a JSON Schema the frontend renders), which of its
fields are secrets, and how a request is authenticated with it.

Secrets are write-only: they are stored encrypted (storage/secrets.py) and never shown,
logged or put into an error message. Problems name the field, never its value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.validation import Problem

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 256,
    "pattern": r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
}
_SECRET = {"type": "string", "minLength": 1, "maxLength": 8192, "writeOnly": True}


@dataclass(frozen=True, slots=True)
class CredentialKind:
    name: str
    display_name: str
    description: str
    schema: dict[str, Any]

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Top-level fields that are secrets (`writeOnly` in the schema)."""
        properties: dict[str, Any] = self.schema.get("properties", {})
        return tuple(name for name, spec in properties.items() if spec.get("writeOnly"))

    def public(self, data: dict[str, Any]) -> dict[str, Any]:
        """The stored fields that may be shown: everything but the secrets."""
        secret = set(self.secret_fields)
        return {name: value for name, value in data.items() if name not in secret}


def _kind(name: str, display: str, description: str, properties: dict[str, Any]) -> CredentialKind:
    required = [key for key, spec in properties.items() if spec.pop("required", True)]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    # Valid Draft 2020-12, as tests/engine/test_credential_kinds.py holds.
    return CredentialKind(name, display, description, schema)


KINDS: dict[str, CredentialKind] = {
    kind.name: kind
    for kind in (
        _kind(
            "api_key_header",
            "API key (header)",
            "An API key sent in a request header.",
            {
                "headerName": {**_NAME, "title": "Header name", "default": "X-API-Key"},
                "apiKey": {**_SECRET, "title": "API key"},
            },
        ),
        _kind(
            "api_key_query",
            "API key (query string)",
            "An API key sent as a query parameter.",
            {
                "paramName": {**_NAME, "title": "Parameter name", "default": "api_key"},
                "apiKey": {**_SECRET, "title": "API key"},
            },
        ),
        _kind(
            "bearer_token",
            "Bearer token",
            "`Authorization: Bearer <token>`.",
            {"token": {**_SECRET, "title": "Token"}},
        ),
        _kind(
            "basic_auth",
            "Basic auth",
            "`Authorization: Basic` with a user name and password.",
            {
                "username": {"type": "string", "maxLength": 1024, "title": "User name"},
                "password": {**_SECRET, "title": "Password"},
            },
        ),
        _kind(
            "oauth2_client_credentials",
            "OAuth2 client credentials",
            "A token fetched from the token URL with the client id and secret, cached until "
            "it expires.",
            {
                "tokenUrl": {
                    "type": "string",
                    "format": "uri",
                    "pattern": "^https?://",
                    "maxLength": 2048,
                    "title": "Token URL",
                },
                "clientId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "title": "Client id",
                },
                "clientSecret": {**_SECRET, "title": "Client secret"},
                "scope": {"type": "string", "maxLength": 2048, "title": "Scope", "required": False},
                "audience": {
                    "type": "string",
                    "maxLength": 2048,
                    "title": "Audience",
                    "required": False,
                },
                "clientAuthentication": {
                    "type": "string",
                    "enum": ["header", "body"],
                    "default": "header",
                    "title": "Send client id and secret",
                    "description": "header: HTTP Basic authentication (the OAuth2 default); "
                    "body: client_id and client_secret form fields. Either way they go to the "
                    "token URL's origin only, never on through a redirect to another one.",
                    "required": False,
                },
            },
        ),
        _kind(
            "custom_headers",
            "Custom headers",
            "Headers sent with every request; their values are secrets.",
            {
                "headers": {
                    "type": "object",
                    "title": "Headers",
                    "minProperties": 1,
                    "maxProperties": 50,
                    "propertyNames": _NAME,
                    "additionalProperties": {"type": "string", "maxLength": 8192},
                    "writeOnly": True,
                }
            },
        ),
    )
}


@functools.cache
def _validator(kind_name: str) -> Draft202012Validator:
    # jsonschema (9 MB, 50 ms) loads with the first credential to check, not at start.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(KINDS[kind_name].schema)


def check_data(kind_name: str, data: Any, field: str = "data") -> list[Problem]:
    """Every problem of `data` for the kind, naming the field but never quoting a value."""
    kind = KINDS.get(kind_name)
    if kind is None:
        known = ", ".join(sorted(KINDS))
        return [Problem("UNKNOWN_CREDENTIAL_KIND", f"unknown kind; one of: {known}", None, "kind")]
    if not isinstance(data, dict):
        return [Problem("INVALID_CREDENTIAL", "must be a JSON object", None, field)]
    problems = []
    for error in sorted(_validator(kind_name).iter_errors(data), key=lambda e: list(e.path)):
        path = ".".join(str(part) for part in error.absolute_path)
        where = f"{field}.{path}" if path else field
        problems.append(Problem("INVALID_CREDENTIAL", _describe(error), None, where))
    return problems


def _describe(error: Any) -> str:
    """What is wrong, in words that never contain the value (it may be a secret)."""
    validator = error.validator
    if validator == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        return f"required: {', '.join(missing)}"
    if validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown field(s): {', '.join(extra)}"
    messages = {
        "type": f"must be of type {error.validator_value}",
        "minLength": "must not be empty",
        "maxLength": f"must be at most {error.validator_value} characters",
        "pattern": "has characters that are not allowed here",
        "format": f"must be a valid {error.validator_value}",
        "minProperties": f"needs at least {error.validator_value} entries",
        "maxProperties": f"may have at most {error.validator_value} entries",
    }
    return messages.get(validator, f"is invalid ({validator})")
