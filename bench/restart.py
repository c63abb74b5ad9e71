"""Time from start to READY on a state dir holding a large event log, beside an empty one.

    python bench/restart.py [--events N] [--rounds R] [--smoke]

Fills a state dir through the real daemon (N status messages from the four orchestrators of the
embedded plan, acked, i.e. committed to the event log), then times, R rounds each, interleaved so
all share the machine's noise:

- baseline: pixelsd on an EMPTY state dir, start to the first answered ``ping``;
- clean: pixelsd on the full state dir after a clean stop (SIGTERM: a final snapshot is written);
- crash: the same after SIGKILL mid-way between snapshots (the worst case: the replay of what
  follows the newest snapshot, up to the daemon's snapshot interval).

"Start" is the fork of ``pixelsd`` (interpreter start-up included); READY is the first ``ping``
answered on the control socket (what READY=1 to systemd also waits for). Target: < 3 s with
1,000,000 events. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import run_client, start_daemon  # bench/ is on sys.path: run as a script

from protocol import codec
from protocol.messages import Status, WorkstreamReport

TARGET_S = 3.0
#: The embedded plan's four orchestrators: the log then holds four interleaved streams, like a real
#: one. Foundation reports WS-01's progress; the others, not active yet (the plan holds their work
#: until gate 1), report their own status only.
STREAMS = (
    ("foundation", "WS-01"),
    ("model", None),
    ("interface", None),
    ("integration", None),
)
CHUNK = 50_000  # frames encoded at a time: a million pre-encoded frames would be ~300 MB


def frames(orch: str, ws: str | None, first: int, count: int, total: int) -> list[bytes]:
    now = time.time()
    return [
        codec.encode(
            Status(
                id=f"{orch}-{seq}",
                seq=seq,
                ts=now,
                orchestrator=orch,
                status="active" if ws else "idle",
                workstreams={ws: WorkstreamReport(status="in_progress", progress=seq / total)}
                if ws
                else {},
            )
        )
        for seq in range(first, first + count)
    ]


def launch(state_dir: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start pixelsd; return it and the seconds from fork to the first answered ping."""
    start = time.perf_counter()
    proc = start_daemon(state_dir, "--telemetry-interval", "0", timeout_s=120)
    return proc, time.perf_counter() - start


def stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=60)


def fill(state_dir: Path, events: int) -> float:
    """N acked status messages into a fresh state dir; returns the ingest rate (msg/s)."""
    proc, _ = launch(state_dir)
    per_stream = events // len(STREAMS)
    start = time.perf_counter()
    try:
        for first in range(1, per_stream + 1, CHUNK):
            count = min(CHUNK, per_stream - first + 1)
            for orch, ws in STREAMS:
                run_client(
                    f"ipc://{state_dir}/run/bus.sock",
                    frames(orch, ws, first, count, per_stream),
                    window=1000,
                    timeout_s=600,
                    first_seq=first,
                )
    finally:
        elapsed = time.perf_counter() - start
        stop(proc, signal.SIGTERM)
    return per_stream * len(STREAMS) / elapsed


def count_events(state_dir: Path) -> int:
    db = next(state_dir.glob("*.db"))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (n,) = conn.execute("SELECT count(*) FROM events").fetchone()
    return int(n)


#: Events appended after the newest snapshot before the SIGKILL: just under the daemon's snapshot
#: interval (pixels_daemon.daemon.DEFAULT_SNAPSHOT_EVERY = 10,000), the most a start replays.
TAIL = 9_000


def crash_between_snapshots(state_dir: Path, first: int) -> int:
    """Start, add TAIL events (foundation's seq ``first``...), SIGKILL; returns the next seq."""
    proc, _ = launch(state_dir)
    try:
        run_client(
            f"ipc://{state_dir}/run/bus.sock",
            frames("foundation", "WS-01", first, TAIL, first + TAIL),
            window=1000,
            first_seq=first,
        )
    finally:
        stop(proc, signal.SIGKILL)
    return first + TAIL


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.rounds = 4_000, 1
    tmp = Path(tempfile.mkdtemp(prefix="pxr-", dir="/tmp"))
    try:
        full, empty = tmp / "full", tmp / "empty"
        full.mkdir()
        rate = fill(full, args.events)
        seq = crash_between_snapshots(full, args.events // len(STREAMS) + 1)
        stored = count_events(full)
        size = sum(f.stat().st_size for f in full.glob("*.db*"))
        base, clean, crash = [], [], []
        for _ in range(args.rounds):
            shutil.rmtree(empty, ignore_errors=True)
            empty.mkdir()
            proc, t = launch(empty)
            base.append(t)
            stop(proc, signal.SIGTERM)
            # After a SIGKILL (the start replays the tail), then after that daemon's clean stop
            # (its final snapshot covers all), then a new tail and SIGKILL for the next round.
            proc, t = launch(full)
            crash.append(t)
            stop(proc, signal.SIGTERM)
            proc, t = launch(full)
            clean.append(t)
            stop(proc, signal.SIGTERM)
            seq = crash_between_snapshots(full, seq)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    print(f"events in the log: {stored:,} ({size / 1e6:.0f} MB), filled at {rate:,.0f} msg/s")
    print(
        f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, zmq {zmq.zmq_version()}"
    )
    print(f"{'start to READY':<40}{'median s':>10}{'all rounds':>40}")
    for label, runs in (
        ("baseline (empty state dir)", base),
        ("after a clean stop (snapshot)", clean),
        ("after SIGKILL (replay since snapshot)", crash),
    ):
        print(f"{label:<40}{med(runs):>10.3f}{[round(x, 3) for x in runs]!s:>40}")
    worst = max(med(clean), med(crash))
    print(f"worst/baseline: {worst / med(base):.2f}; target: < {TARGET_S} s")
    print(
        json.dumps(
            {
                "bench": "restart",
                "events": stored,
                "db_bytes": size,
                "baseline_s": round(med(base), 4),
                "clean_s": round(med(clean), 4),
                "crash_s": round(med(crash), 4),
                "ratio": round(worst / med(base), 3),
                "target_s": TARGET_S,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
