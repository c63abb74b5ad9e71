"""A test agent driven by a file: it prints what the test appends to feed.txt, so a test decides
each line of its output (and when it exits) without racing it.

    python feed_agent.py

In its working dir: appends ``start PID`` to events.txt; prints ``mark=$AGENT_MARK`` (what its
environment says); then every line appended to feed.txt is printed (flushed) as its own output,
except ``EXIT N``, which makes it exit with status N. SIGTERM: appends ``stop PID``, exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

#: How often the feed is looked at: a test waits for what the agent printed, so this is latency,
#: not a timing assumption.
LOOK_S = 0.02


def main() -> int:
    stopping = False

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    with Path("events.txt").open("a") as f:
        f.write(f"start {os.getpid()}\n")
    print(f"mark={os.environ.get('AGENT_MARK', '')}", flush=True)
    feed, offset = Path("feed.txt"), 0
    while not stopping:
        try:
            data = feed.read_bytes()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1
        for line in data[offset:end].decode().splitlines():
            if line.startswith("EXIT "):
                return int(line.split()[1])
            print(line, flush=True)
        offset = max(offset, end)
        time.sleep(LOOK_S)
    with Path("events.txt").open("a") as f:
        f.write(f"stop {os.getpid()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
