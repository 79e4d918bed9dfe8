"""Credentials over GraphQL: stored encrypted, write-only, scoped to workspaces, not deleted
while workflows use them."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from storage import credentials
from storage.db import Database
from storage.models import Credential
from storage.secrets import CredentialDecryptionError, SecretBox, SecretKeyError, embedded_key
from tests.conftest import Caller
from tests.factories import CREATE, node

FIELDS = "id name kind workspaceId fields secretFields createdAt updatedAt"
RESULT = f"""
  __typename
  ... on Credential {{ {FIELDS} }}
  ... on ValidationError {{ message problems {{ code message field }} }}
  ... on NotFoundError {{ message id }}
"""
CREATE_CREDENTIAL = f"""
mutation($input: CredentialInput!) {{ createCredential(input: $input) {{ {RESULT} }} }}
"""
UPDATE_CREDENTIAL = f"""
mutation($id: ID!, $input: CredentialUpdateInput!) {{
  updateCredential(id: $id, input: $input) {{ {RESULT} }}
}}
"""
DELETE_CREDENTIAL = """
mutation($id: ID!) {
  deleteCredential(id: $id) {
    __typename
    ... on Deleted { id }
    ... on NotFoundError { message id }
    ... on InUseError { message workflows { id name } }
  }
}
"""
LIST = f"{{ credentials {{ {FIELDS} }} }}"
SECRET = "s3cr3t-value-that-must-never-leave"


async def create(caller: Caller, **input: Any) -> dict[str, Any]:
    data = await caller.gql(CREATE_CREDENTIAL, {"input": input})
    return dict(data["createCredential"])


async def bearer(caller: Caller, name: str = "GitHub") -> dict[str, Any]:
    result = await create(caller, name=name, kind="bearer_token", data={"token": SECRET})
    assert result["__typename"] == "Credential", result
    return result


async def test_kinds_describe_their_fields_with_secrets_write_only(alice: Caller) -> None:
    data = await alice.gql("{ credentialKinds { name displayName schema secretFields } }")
    kinds = {kind["name"]: kind for kind in data["credentialKinds"]}
    assert set(kinds) == {
        "api_key_header",
        "api_key_query",
        "bearer_token",
        "basic_auth",
        "oauth2_client_credentials",
        "custom_headers",
    }
    basic = kinds["basic_auth"]
    assert basic["secretFields"] == ["password"]
    assert basic["schema"]["properties"]["password"]["writeOnly"] is True
    assert "writeOnly" not in basic["schema"]["properties"]["username"]


async def test_create_list_update_delete_and_secrets_never_come_back(
    alice: Caller, database: Database
) -> None:
    created = await create(
        alice,
        name="Stripe",
        kind="api_key_header",
        data={"headerName": "X-Api-Key", "apiKey": SECRET},
    )
    assert created["__typename"] == "Credential", created
    assert created["fields"] == {"headerName": "X-Api-Key"}
    assert created["secretFields"] == ["apiKey"]
    listed = (await alice.gql(LIST))["credentials"]
    assert [item["name"] for item in listed] == ["Stripe"]
    # Renaming keeps the secret the client cannot read back.
    renamed = (
        await alice.gql(UPDATE_CREDENTIAL, {"id": created["id"], "input": {"name": "Stripe live"}})
    )["updateCredential"]
    assert renamed["name"] == "Stripe live"
    assert renamed["secretFields"] == ["apiKey"]
    changed = (
        await alice.gql(
            UPDATE_CREDENTIAL,
            {"id": created["id"], "input": {"data": {"headerName": "Authorization"}}},
        )
    )["updateCredential"]
    assert changed["fields"] == {"headerName": "Authorization"}
    async with database.session() as session:
        row = (await session.exec(select(Credential))).one()
    assert SECRET.encode() not in row.secret
    responses = json.dumps([created, listed, renamed, changed])
    assert SECRET not in responses
    deleted = (await alice.gql(DELETE_CREDENTIAL, {"id": created["id"]}))["deleteCredential"]
    assert deleted == {"__typename": "Deleted", "id": created["id"]}
    assert (await alice.gql(LIST))["credentials"] == []


@pytest.mark.parametrize(
    ("input", "field", "code"),
    [
        ({"name": "x", "kind": "telepathy", "data": {}}, "kind", "UNKNOWN_CREDENTIAL_KIND"),
        ({"name": "x", "kind": "bearer_token", "data": {}}, "data", "INVALID_CREDENTIAL"),
        ({"name": "x", "kind": "bearer_token", "data": [SECRET]}, "data", "INVALID_CREDENTIAL"),
        (
            {"name": "x", "kind": "bearer_token", "data": {"token": SECRET, "extra": 1}},
            "data",
            "INVALID_CREDENTIAL",
        ),
        (
            {
                "name": "x",
                "kind": "api_key_header",
                "data": {"headerName": "a b", "apiKey": SECRET},
            },
            "data.headerName",
            "INVALID_CREDENTIAL",
        ),
        (
            {"name": "x", "kind": "bearer_token", "data": {"token": 12345}},
            "data.token",
            "INVALID_CREDENTIAL",
        ),
        ({"name": " ", "kind": "bearer_token", "data": {"token": SECRET}}, "name", "INVALID_NAME"),
    ],
)
async def test_bad_input_is_refused_by_field_without_quoting_values(
    alice: Caller, db_state: Any, input: dict[str, Any], field: str, code: str
) -> None:
    before = await db_state()
    result = await create(alice, **input)
    assert result["__typename"] == "ValidationError", result
    assert (code, field) in [(p["code"], p["field"]) for p in result["problems"]]
    assert SECRET not in json.dumps(result) and "12345" not in json.dumps(result)
    assert await db_state() == before


async def test_names_are_unique_per_workspace(alice: Caller, bob: Caller) -> None:
    await bearer(alice)
    again = await create(alice, name="GitHub", kind="bearer_token", data={"token": "x"})
    assert again["__typename"] == "ValidationError"
    assert again["problems"][0]["code"] == "DUPLICATE_NAME"
    assert (await bearer(bob))["__typename"] == "Credential"  # another workspace


async def test_an_update_is_checked_against_the_kind(alice: Caller, db_state: Any) -> None:
    created = await bearer(alice)
    before = await db_state()
    result = (
        await alice.gql(
            UPDATE_CREDENTIAL, {"id": created["id"], "input": {"data": {"token": None}}}
        )
    )["updateCredential"]
    assert result["__typename"] == "ValidationError"
    assert result["problems"][0]["field"] == "data"
    assert await db_state() == before


async def test_nobody_sees_or_changes_anothers_credentials(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    mine = await bearer(alice)
    before = await db_state()
    assert (await bob.gql(LIST))["credentials"] == []
    update = (await bob.gql(UPDATE_CREDENTIAL, {"id": mine["id"], "input": {"name": "mine"}}))[
        "updateCredential"
    ]
    assert update["__typename"] == "NotFoundError"
    delete = (await bob.gql(DELETE_CREDENTIAL, {"id": mine["id"]}))["deleteCredential"]
    assert delete["__typename"] == "NotFoundError"
    elsewhere = await create(
        bob, name="x", kind="bearer_token", data={"token": "t"}, workspaceId=mine["workspaceId"]
    )
    assert elsewhere["__typename"] == "NotFoundError"
    assert await db_state() == before


async def test_a_credential_in_use_is_not_deleted_and_the_users_are_named(alice: Caller) -> None:
    credential = await bearer(alice)
    created = await alice.gql(
        CREATE,
        {
            "input": {
                "name": "Sync issues",
                "nodes": [node("n", "N", credentials={"bearer_token": credential["id"]})],
                "edges": [],
            }
        },
    )
    workflow = created["createWorkflow"]
    result = (await alice.gql(DELETE_CREDENTIAL, {"id": credential["id"]}))["deleteCredential"]
    assert result["__typename"] == "InUseError"
    assert result["workflows"] == [{"id": workflow["id"], "name": "Sync issues"}]
    assert len((await alice.gql(LIST))["credentials"]) == 1


async def test_a_sealed_secret_opens_only_as_its_own_row() -> None:
    box = SecretBox("k1")
    token = box.seal("c1", "w1", {"token": SECRET})
    assert box.open(token, "c1", "w1") == {"token": SECRET}
    with pytest.raises(CredentialDecryptionError) as moved:
        box.open(token, "c2", "w1")
    with pytest.raises(CredentialDecryptionError):
        box.open(token, "c1", "w2")
    with pytest.raises(CredentialDecryptionError):
        SecretBox("another key").open(token, "c1", "w1")
    assert SECRET not in str(moved.value)


async def test_rotation_re_encrypts_under_the_new_key(
    alice: Caller, database: Database, settings: Any
) -> None:
    await bearer(alice, "one")
    await bearer(alice, "two")
    old = settings.secret_key.get_secret_value()
    rotating = SecretBox("the new key", previous=[old])
    assert await credentials.rotate_all(database, rotating, batch=1) == 2
    async with database.session() as session:
        rows = (await session.exec(select(Credential))).all()
    only_new = SecretBox("the new key")
    assert [only_new.open(row.secret, row.id, row.workspace_id) for row in rows] == [
        {"token": SECRET},
        {"token": SECRET},
    ]
    with pytest.raises(CredentialDecryptionError):
        SecretBox(old).open(rows[0].secret, rows[0].id, rows[0].workspace_id)


async def test_the_rotate_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_DATABASE_URL": url,
        "LOOM_DATA_DIR": str(tmp_path),
    }
    loom = Path(sys.executable).parent / "loom"
    database = Database(url)
    try:
        from storage import accounts
        from storage.migrate import upgrade

        await upgrade(database)
        async with database.transaction() as session:
            user = await accounts.create_user(session, "ops")
            await credentials.create_credential(
                session,
                SecretBox("old"),
                workspace_id=user.personal_workspace_id,
                name="c",
                kind="bearer_token",
                data={"token": SECRET},
                created_by=user.id,
            )
        missing = await asyncio.to_thread(
            subprocess.run,
            [str(loom), "secrets", "rotate"],
            env={**env, "LOOM_SECRET_KEY": "new"},
            capture_output=True,
            text=True,
        )
        assert missing.returncode == 1 and "does not decrypt" in missing.stderr
        done = await asyncio.to_thread(
            subprocess.run,
            [str(loom), "secrets", "rotate"],
            env={**env, "LOOM_SECRET_KEY": "new", "LOOM_PREVIOUS_SECRET_KEYS": "older,old"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert "re-encrypted 1 credential" in done.stdout
        async with database.session() as session:
            row = (await session.exec(select(Credential))).one()
        assert SecretBox("new").open(row.secret, row.id, row.workspace_id) == {"token": SECRET}
        assert SECRET not in done.stdout + done.stderr + missing.stdout + missing.stderr
    finally:
        await database.dispose()


def test_the_embedded_key_file_is_private(tmp_path: Path) -> None:
    key = embedded_key(tmp_path)
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert embedded_key(tmp_path) == key
    path.chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        embedded_key(tmp_path)


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        (lambda mine, theirs: {"bearer_token": "no-such-credential"}, "UNKNOWN_CREDENTIAL"),
        (lambda mine, theirs: {"bearer_token": theirs}, "UNKNOWN_CREDENTIAL"),
        (lambda mine, theirs: {"basic_auth": mine}, "CREDENTIAL_KIND_MISMATCH"),
        (lambda mine, theirs: {"telepathy": mine}, "UNKNOWN_CREDENTIAL_KIND"),
    ],
    ids=["missing", "another workspace", "wrong kind", "unknown kind"],
)
async def test_workflows_refer_only_to_their_own_workspaces_credentials(
    alice: Caller, bob: Caller, db_state: Any, reference: Any, code: str
) -> None:
    mine = (await bearer(alice))["id"]
    theirs = (await bearer(bob))["id"]
    credentials_ref = reference(mine, theirs)
    before = await db_state()
    created = await alice.gql(
        CREATE,
        {
            "input": {
                "name": "W",
                "nodes": [node("n", "N", credentials=credentials_ref)],
                "edges": [],
            }
        },
    )
    result = created["createWorkflow"]
    assert result["__typename"] == "ValidationError", result
    (problem,) = result["problems"]
    assert (problem["code"], problem["nodeId"]) == (code, "n")
    assert problem["field"] == f"credentials.{next(iter(credentials_ref))}"
    assert "bob" not in problem["message"]
    assert await db_state() == before
