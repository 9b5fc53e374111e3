"""Queries: GET /isins/{isin} from 16 concurrent clients over random keys, p50 and p99."""

from __future__ import annotations

import asyncio
import random
import time

from bench.common import BenchError


def queries(api: str, keys: list[str], clients: int = 16, total: int = 20_000) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors: dict[int, int] = {}
    sample: list[str] = []

    async def client(session: aiohttp.ClientSession, n: int, rng: random.Random) -> None:
        for _ in range(n):
            started = time.perf_counter()
            async with session.get(f"{api}/isins/{rng.choice(keys)}") as resp:
                body = await resp.read()
                if resp.status != 200:
                    errors[resp.status] = errors.get(resp.status, 0) + 1
                    if len(sample) < 3:
                        sample.append(body[:300].decode(errors="replace"))
            latencies.append(time.perf_counter() - started)

    async def main() -> float:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.perf_counter()
            await asyncio.gather(*(client(session, total // clients, random.Random(i)) for i in range(clients)))
            return time.perf_counter() - started

    seconds = asyncio.run(main())
    if errors:
        raise BenchError(f"queries did not answer 200: {errors} (by status), e.g. {sample}")
    latencies.sort()
    return {
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "rps": round(len(latencies) / seconds),
        "clients": clients,
        "requests": len(latencies),
    }
