"""Runs the steps of a page, in order, against a live Loom, carrying values between them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from graphql import OperationDefinitionNode, OperationType, parse

from tests.docs.doc_examples import AnswerMismatch, Block, DocExampleError, Step, match, substitute

# A query whose answer shows a later state (a run still going) is asked again until then.
ANSWER_WITHIN_S = 30.0
POLL_EVERY_S = 0.2
PROCESS_TIMEOUT_S = 60.0


@dataclass
class Runner:
    """What the page's examples need of the world: where Loom is and how text is rewritten.

    `rewrites` replaces text in every block before it runs (the documented host and port,
    the token placeholder, public URLs served by a local stand-in); `known` holds the values
    of $NAMES shown by earlier answers.
    """

    graphql_url: str
    token: str
    rewrites: dict[str, str]
    env: dict[str, str]
    known: dict[str, str] = field(default_factory=dict)

    async def run(self, step: Step) -> None:
        try:
            if step.kind == "graphql":
                await self._graphql(step)
            else:
                await self._process(step)
        except (AnswerMismatch, DocExampleError) as exc:
            raise AssertionError(f"the example at line {step.block.line}: {exc}") from exc

    def _rewrite(self, block: Block) -> str:
        text = block.text
        for old, new in self.rewrites.items():
            text = text.replace(old, new)
        return text

    def _answer(self, step: Step) -> Any:
        assert step.answer is not None
        text = self._rewrite(step.answer)
        if step.answer.language == "text":
            return text.strip()
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocExampleError(f"the answer at line {step.answer.line}: {exc}") from exc

    def _bind(self, expected: Any, actual: Any) -> None:
        self.known.update(match(expected, actual, self.known))

    async def _graphql(self, step: Step) -> None:
        document = substitute(self._rewrite(step.block), self.known, step.block.line)
        variables: Any = None
        if step.variables is not None:
            text = substitute(self._rewrite(step.variables), self.known, step.variables.line)
            try:
                variables = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DocExampleError(f"variables at line {step.variables.line}: {exc}") from exc
        operation = _operation(document)
        expected = self._answer(step) if step.answer is not None else {}
        deadline = time.monotonic() + ANSWER_WITHIN_S
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                response = await client.post(
                    self.graphql_url,
                    json={"query": document, "variables": variables},
                    headers={"Authorization": f"Bearer {self.token}"},
                )
                body = response.json()
                try:
                    if "errors" not in expected and body.get("errors"):
                        raise AnswerMismatch(f"errors: {body['errors']}")
                    self._bind(expected, body)
                    return
                except AnswerMismatch as exc:
                    # Only a query can be asked again: a mutation would do its work twice.
                    if operation is not OperationType.QUERY or time.monotonic() > deadline:
                        raise AnswerMismatch(f"{exc}\nthe whole answer: {body}") from exc
                await asyncio.sleep(POLL_EVERY_S)

    async def _process(self, step: Step) -> None:
        text = self._rewrite(step.block)
        if step.kind == "sh":
            # No text substitution: $NAMES reach the shell as variables, as for a reader.
            command = ["bash", "-euo", "pipefail", "-c", text]
        else:
            command = [sys.executable, "-c", substitute(text, self.known, step.block.line)]
        process = await asyncio.create_subprocess_exec(
            *command,
            env={**self.env, "TOKEN": self.token, **self.known},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(
                f"line {step.block.line}: still running after {PROCESS_TIMEOUT_S} s"
            ) from None
        output = stdout.decode()
        if process.returncode != 0:
            raise AssertionError(
                f"line {step.block.line}: exit code {process.returncode}\n{output}\n"
                f"{stderr.decode()}"
            )
        if step.answer is None:
            return
        expected = self._answer(step)
        if step.answer.language == "text":
            if output.strip() != expected:
                raise AnswerMismatch(f"printed {output.strip()!r}, the page shows {expected!r}")
            return
        try:
            actual = json.loads(output)
        except json.JSONDecodeError as exc:
            raise AnswerMismatch(f"printed {output!r}, not one JSON value: {exc}") from exc
        self._bind(expected, actual)


def _operation(document: str) -> OperationType:
    operations = [
        definition
        for definition in parse(document).definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
    if len(operations) != 1:
        raise DocExampleError("an example holds exactly one operation")
    if operations[0].operation is OperationType.SUBSCRIPTION:
        raise DocExampleError(
            "a subscription needs a websocket: show a client that runs it, and mark the "
            "document <!-- not-run: why -->"
        )
    return operations[0].operation


def base_env() -> dict[str, str]:
    """The environment examples run in: this one without Loom's settings."""
    return {key: value for key, value in os.environ.items() if not key.startswith("LOOM_")}
