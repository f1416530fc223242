"""The load generator: one asyncio process, N keep-alive TLS connections.

Closed loop (the default): each connection sends its next request when the last is
answered, so the server runs at saturation. Open loop (`rate`): requests are due at a
fixed rate, spread evenly over the connections, and each latency counts from when its
request was due, not from when it went out (a late server is not let off its queue: no
coordinated omission, as wrk2 measures).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

# Below this, an open-loop connection waits for its due time by yielding, not by a timer:
# the event loop's timers fire to the millisecond, which would add up to 1 ms to latency.
SPIN_SECONDS = 0.002
# An open-loop run ends at most this long after its last request was due.
BACKLOG_SECONDS = 1.0


async def _until(due: float) -> None:
    """Return at `due` (perf_counter time), to a few microseconds."""
    early = due - time.perf_counter() - SPIN_SECONDS
    if early > 0:
        await asyncio.sleep(early)
    while time.perf_counter() < due:
        await asyncio.sleep(0)


async def _one_connection(
    port: int,
    context: ssl.SSLContext,
    requests: list[bytes],
    *,
    start: int,
    stop_at: float,
    latencies: list[float],
    schedule: tuple[float, float] | None = None,
) -> None:
    """`schedule`: (first due time, interval) in open loop; None in closed loop."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    turn = start
    due, interval = schedule if schedule is not None else (0.0, 0.0)
    try:
        while True:
            if schedule is None:
                started = time.perf_counter()
            else:
                await _until(due)
                started, due = due, due + interval
                if time.perf_counter() > stop_at + BACKLOG_SECONDS:
                    break  # a server this far behind the rate: its backlog is not sent
            if started >= stop_at:
                break
            turn = (turn + 1) % len(requests)
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
    port: int,
    ca: Path,
    bodies: list[bytes],
    path: str,
    *,
    seconds: float,
    connections: int,
    rate: float | None = None,
) -> dict[str, float]:
    """req/s answered, p50 and p99 in ms; `rate`: open loop at that many requests/s."""
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    context = ssl.create_default_context(cafile=str(ca))

    async def run(
        duration: float, requests: list[bytes] = requests, rate: float | None = None
    ) -> list[float]:
        latencies: list[float] = []
        now = time.perf_counter()
        stop_at = now + duration
        # Evenly spaced starts: a body comes back only after len(requests) requests.
        starts = [i * len(requests) // connections for i in range(connections)]
        # Open loop: connection i's requests are due every connections/rate seconds,
        # offset by i/rate (after a short pause for every connection's TLS handshake).
        schedules: list[tuple[float, float] | None] = [
            (now + 0.2 + i / rate, connections / rate) if rate else None for i in range(connections)
        ]
        await asyncio.gather(
            *(
                _one_connection(
                    port,
                    context,
                    requests,
                    start=start,
                    stop_at=stop_at + (0.2 if rate else 0.0),
                    latencies=latencies,
                    schedule=schedule,
                )
                for start, schedule in zip(starts, schedules, strict=True)
            )
        )
        return latencies

    asyncio.run(run(1.0, requests[:1]))  # warm-up: connections, TLS; one body, one answer
    latencies = asyncio.run(run(seconds, rate=rate))
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
    }
