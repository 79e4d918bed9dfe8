"""The credential kinds' schemas, checked here rather than on every start."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from engine.credentials import KINDS, CredentialKind


@pytest.mark.parametrize("kind", KINDS.values(), ids=lambda kind: kind.name)
def test_schema_is_valid_draft_2020_12(kind: CredentialKind) -> None:
    Draft202012Validator.check_schema(kind.schema)
