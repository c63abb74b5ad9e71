"""A probe agent for tests/test_runner.py: says when it starts and stops, reports once, then waits.

    python probe_agent.py --workstream WS --output PATH [--progress P]

Appends ``start PID`` to events.txt in its working dir, writes one STATUS.json (in_progress at P)
to PATH atomically, then waits for SIGTERM, appends ``stop PID`` and exits 0. The test itself
writes any further STATUS.json it needs, so what the runner reads is exactly what the test chose.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workstream", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--progress", type=float, default=0.4)
    opts = parser.parse_args()
    # Blocked before anything else: a SIGTERM sent at any point is waited for, never lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    events = Path("events.txt")
    with events.open("a") as f:
        f.write(f"start {os.getpid()}\n")
    output = Path(opts.output)
    doc = {
        "workstream": opts.workstream,
        "status": "in_progress",
        "progress": opts.progress,
        "started_at": "2026-01-05T09:00:00Z",
        "completion_date": None,
        "blockers": [],
        "metrics": {},
    }
    tmp = output.with_name(".probe.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, output)
    signal.sigwait({signal.SIGTERM})
    with events.open("a") as f:
        f.write(f"stop {os.getpid()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
