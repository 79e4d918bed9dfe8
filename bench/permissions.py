"""Permission checks (issue 18): what deciding an operation costs on the hot paths.

    .venv/bin/python bench/permissions.py [--memberships 1,20,200] [--calls 200000]

In process, no I/O. For a caller with N memberships (shared workspaces, each with a role):

- building the principal (roles and, per action, the workspaces that allow it): paid once per
  token per `LOOM_TOKEN_CACHE_S`, when the authenticator looks the token up;
- `scope(info)`: the workspaces a read is scoped to (`workflow(id)`, `workflows`,
  `executions`): one lookup of the operation in the table, one of the action in the principal;
- `refusal(info, workspace)`: the check of a change or a run (`executeWorkflow`,
  `updateWorkflow`, ...), allowed and refused (the refused one builds its message).

A webhook request has no caller (its path is the secret) and a schedule or sub-workflow call
runs inside its workspace: none of them checks a role at run time, so the hot paths that do
are reads and manual runs. Then, in a migrated SQLite database, a page of 50 workflows from
shared workspaces with their members and roles is asked over ASGI and its SQL statements are
counted, for 5 and 50 workflows (the count must not grow). Target: at most 50 µs per request
for the check.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import event

from resolvers.permissions import refusal, scope
from server.app import create_app
from server.settings import Settings
from storage import accounts, workspaces
from storage.accounts import make_principal
from storage.db import Database
from storage.migrate import upgrade
from storage.models import User, Workflow
from storage.roles import Role

PAGE = """
query { workflows(first: 50) { totalCount edges { node {
  id name workspace { id name role members { role user { id name } } } createdBy { name }
} } } }
"""


def per_call_ns(call: Any, calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - started) / calls


def micro(memberships: int, calls: int) -> None:
    user = User(id="u", name="bench", role="member", personal_workspace_id="w0")
    roles = [r.value for r in Role]
    rows = [(f"w{i}", roles[i % len(roles)]) for i in range(memberships)]
    principal = make_principal(user, rows)
    context = SimpleNamespace(viewer=lambda: principal)
    read = SimpleNamespace(field_name="workflow", context=context)
    run = SimpleNamespace(field_name="executeWorkflow", context=context)
    owned, refused = "w0", next((w for w, r in rows if r == "viewer"), "w0")
    built = per_call_ns(lambda: make_principal(user, rows), max(calls // 100, 100))
    scoped = per_call_ns(lambda: scope(read), calls)
    allowed = per_call_ns(lambda: refusal(run, owned), calls)
    forbidden = per_call_ns(lambda: refusal(run, refused), calls)
    print(
        f"  {memberships:4d} memberships: principal built {built / 1000:8.2f} µs (once per "
        f"token lookup)   scope {scoped / 1000:6.3f} µs   refusal allowed "
        f"{allowed / 1000:6.3f} µs   refused {forbidden / 1000:6.3f} µs"
    )


async def statements_of_a_page() -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite+aiosqlite:///{folder}/loom.db")
        await upgrade(database)
        token = await accounts.create_user_with_token(database, "bench", accounts.ROLE_MEMBER)
        async with database.transaction() as session:
            bench = await accounts.get_user_by_name(session, "bench")
            assert bench is not None
            teams = []
            for index in range(5):
                team = await workspaces.create_workspace(session, f"team {index}", bench.id)
                for member in range(4):
                    user = await accounts.create_user(session, f"m{index}-{member}")
                    await workspaces.add_member(session, team.id, user.id, Role.EDITOR)
                teams.append(team.id)
        settings = Settings(_env_file=None, secret_key="bench-secret-key")  # type: ignore[call-arg]
        app = create_app(settings, database=database)
        statements: list[str] = []
        event.listen(
            database.engine.sync_engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2]),
        )
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loom") as client:
            added = 0
            for total in (5, 50):
                async with database.transaction() as session:
                    for index in range(added, total):
                        session.add(
                            Workflow(
                                workspace_id=teams[index % len(teams)],
                                name=f"wf {index}",
                                created_by=bench.id,
                                created_at=datetime(2030, 1, 1, tzinfo=UTC),
                            )
                        )
                added = total
                # Asked once first: the token's principal is then cached, as it is for
                # every request but one per `LOOM_TOKEN_CACHE_S` (that one adds 2 statements).
                await client.post("/graphql", json={"query": PAGE}, headers=headers)
                statements.clear()
                answer = await client.post("/graphql", json={"query": PAGE}, headers=headers)
                page = answer.json()["data"]["workflows"]
                assert len(page["edges"]) == total, page
                counted = len(statements)
                times = []
                for _ in range(50):
                    started = time.perf_counter()
                    (
                        await client.post("/graphql", json={"query": PAGE}, headers=headers)
                    ).raise_for_status()
                    times.append(time.perf_counter() - started)
                times.sort()
                print(
                    f"  workflows(first: 50) over {total:2d} workflows in 5 shared workspaces "
                    f"with members: {counted} SQL statements; p50 "
                    f"{times[len(times) // 2] * 1000:.2f} ms in process"
                )
        await database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memberships", default="1,20,200")
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    print("Permission checks, in process (target: at most 50 µs per request):")
    for memberships in (int(value) for value in args.memberships.split(",")):
        micro(memberships, args.calls)
    asyncio.run(statements_of_a_page())


if __name__ == "__main__":
    main()
