"""A small aiohttp load generator, used when `wrk` is not installed.

    python bench/loadgen.py URL TOKEN BODY DURATION_S CONNECTIONS

Sends POST (when BODY is not empty) or GET requests on CONNECTIONS concurrent loops for
DURATION_S seconds and prints requests per second.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp


async def run(url: str, token: str, body: str, duration_s: float, connections: int) -> float:
    done = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        end = time.monotonic() + duration_s

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < end:
                request = session.post(url, data=body) if body else session.get(url)
                async with request as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status} from {url}")
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        return done / (time.monotonic() - start)


if __name__ == "__main__":
    url, token, body, duration, connections = sys.argv[1:6]
    print(asyncio.run(run(url, token, body, float(duration), int(connections))))
