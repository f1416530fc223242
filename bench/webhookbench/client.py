"""The load generator: one asyncio process, N keep-alive TLS connections, closed loop."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path


async def _one_connection(
    port: int,
    context: ssl.SSLContext,
    requests: list[bytes],
    *,
    start: int,
    stop_at: float,
    latencies: list[float],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    turn = start
    try:
        while time.perf_counter() < stop_at:
            turn = (turn + 1) % len(requests)
            started = time.perf_counter()
            writer.write(requests[turn])
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b'"allowed":true' not in answer.replace(b" ", b""):
                raise RuntimeError(f"unexpected answer: {answer[:200]!r}")
    finally:
        writer.close()


def load(
    port: int, ca: Path, bodies: list[bytes], path: str, *, seconds: float, connections: int
) -> dict[str, float]:
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    context = ssl.create_default_context(cafile=str(ca))

    async def run(duration: float, requests: list[bytes] = requests) -> list[float]:
        latencies: list[float] = []
        stop_at = time.perf_counter() + duration
        # Evenly spaced starts: a body comes back only after len(requests) requests.
        starts = [i * len(requests) // connections for i in range(connections)]
        await asyncio.gather(
            *(
                _one_connection(
                    port, context, requests, start=start, stop_at=stop_at, latencies=latencies
                )
                for start in starts
            )
        )
        return latencies

    asyncio.run(run(1.0, requests[:1]))  # warm-up: connections, TLS; one body, one answer
    latencies = asyncio.run(run(seconds))
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
    }
