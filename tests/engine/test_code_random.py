"""Math.random in the Code node: each call draws from a generator of its own, seeded from
the operating system's CSPRNG, so what one call draws says nothing about another's values
and nothing is carried from one call to the next."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator

import pytest

from engine.code import CodeCall, CodeLimits, CodeSandbox

FACTS = {
    "execution": {"id": "e-1", "mode": "manual"},
    "workflow": {"id": "w-1", "name": "Tests", "version": 1},
    "now": "2026-01-01T00:00:00+00:00",
}


def draw(count: int) -> str:
    return f"return [{{json: {{v: Array.from({{length: {count}}}, () => Math.random())}}}}]"


async def values(sandbox: CodeSandbox, count: int) -> list[float]:
    result = await sandbox.run(CodeCall(draw(count), "all_items", [{}], {}, FACTS, 5))
    return list(result.items[0]["v"])


def seeds(*chosen: bytes) -> Callable[[int], bytes]:
    pending: Iterator[bytes] = iter(chosen)
    return lambda size: next(pending)[:size]


async def test_a_call_draws_from_its_own_seed_whatever_earlier_calls_drew() -> None:
    sandbox = CodeSandbox(
        CodeLimits(pool_size=1), entropy=seeds(b"a" * 16, b"b" * 16, b"a" * 16, b"c" * 16)
    )
    try:
        first = await values(sandbox, 5)
        other = await values(sandbox, 1000)
        again = await values(sandbox, 5)
        third = await values(sandbox, 5)
    finally:
        sandbox.close()
    assert first == again
    assert first != other[:5]
    assert third not in (first, other[:5])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[CodeSandbox]:
    code_sandbox = CodeSandbox(CodeLimits(pool_size=1))
    yield code_sandbox
    code_sandbox.close()


async def test_calls_draw_fresh_uniform_values(sandbox: CodeSandbox) -> None:
    first, second = await values(sandbox, 20_000), await values(sandbox, 20_000)
    assert first != second
    for drawn in (first, second):
        assert all(0 <= value < 1 for value in drawn)
        assert len(set(drawn)) == len(drawn)
        assert 0.49 < statistics.fmean(drawn) < 0.51
        # Every tenth of [0, 1) holds about a tenth of the values.
        tenths = [0] * 10
        for value in drawn:
            tenths[int(value * 10)] += 1
        assert all(1700 < count < 2300 for count in tenths), tenths
        # 53 bits, as V8's own: the low bits vary too.
        assert len({int(value * 2**53) & 0xFF for value in drawn}) == 256
