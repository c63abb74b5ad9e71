"""A real orchestrator process for durability tests: sends N statuses through the client library.

    python flood.py NAME ENDPOINT OUTBOX N [CHUNK]

Message i (1-based) reports WS-01 in progress at i/N; the last reports it complete. Messages are
enqueued in chunks; after each chunk the client waits until everything is acked, so the stream is
spread across the daemon restarts the test inflicts. Exit 0 once all N are acked.
"""

from __future__ import annotations

import sys

import anyio

from orchestrators.client import OrchestratorClient
from protocol.messages import Status, WorkstreamReport


def report(i: int, n: int, name: str) -> Status:
    done = i == n
    return Status(
        orchestrator=name,
        workstreams={
            "WS-01": WorkstreamReport(status="complete" if done else "in_progress", progress=i / n)
        },
    )


async def main(name: str, endpoint: str, outbox: str, n: int, chunk: int) -> int:
    async with OrchestratorClient(name, endpoint, outbox) as client:
        for start in range(1, n + 1, chunk):
            await client.send_many(
                [report(i, n, name) for i in range(start, min(start + chunk, n + 1))]
            )
            if not await client.wait_acked(timeout=60):
                print(f"not acked: pending={client.pending}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    name, endpoint, outbox, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    chunk = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    sys.exit(anyio.run(main, name, endpoint, outbox, n, chunk))
