"""An orchestrator on another host (a network namespace in tests): N statuses over tcp:// CURVE.

    python curve_agent.py NAME ENDPOINT OUTBOX N INTERVAL_S SERVER_KEY KEY

Enqueues status i (WS-01 at i/N; the last complete) every INTERVAL_S, printing "sent i", whether
or not the link is up (the outbox keeps them), then waits for every one to be acked and prints
"acked N". Exit 0 once all are acked, 1 if not within 60 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from orchestrators.client import OrchestratorClient
from pixels_daemon.security.keys import client_curve
from protocol.messages import Status, WorkstreamReport


async def main(argv: list[str]) -> int:
    name, endpoint, outbox, n, interval, server_key, key = argv
    total = int(n)
    curve = client_curve(server_key, key)
    async with OrchestratorClient(name, endpoint, Path(outbox), curve=curve) as client:
        for i in range(1, total + 1):
            done = i == total
            report = WorkstreamReport(
                status="complete" if done else "in_progress", progress=i / total
            )
            await client.send(Status(orchestrator=name, workstreams={"WS-01": report}))
            print(f"sent {i}", flush=True)
            await anyio.sleep(float(interval))  # the workload's pace, not a wait for time
        if not await client.wait_acked(60):
            print(f"pending {client.pending}", flush=True)
            return 1
        print(f"acked {client.acked_seq}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
