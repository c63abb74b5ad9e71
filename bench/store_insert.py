"""How the event log writes a batch: EventStore.append beside plain executemany, in the same run.

    python bench/store_insert.py [--batches N] [--smoke]

Both write the same rows (a status frame's size) into the same schema, one transaction per batch,
synchronous=FULL in WAL, as the daemon does. Each is timed twice:

- alone: nothing else runs in the process;
- beside a busy loop: another Python thread spins, as the daemon's event loop does while a batch
  commits in its worker thread (a status reply being encoded, the next frames being decoded).
  executemany takes the GIL back after every row's step, so each row then waits out a GIL switch
  interval; EventStore.append writes multi-row INSERTs and takes it back a few times a batch.

Prints a table (microseconds per row; lower is better) and one JSON line; ratio is
executemany's time over append's, beside the busy loop, at 1,000-row batches (> 1: append wins).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixels_daemon.store import EventStore, NewEvent

BODY = b"x" * 180  # about one encoded status frame


def rows(n: int) -> list[NewEvent]:
    now = time.time()
    return [(now, "msg", "foundation", seq, BODY) for seq in range(1, n + 1)]


def executemany_writer(store: EventStore) -> Callable[[Sequence[NewEvent]], None]:
    """The baseline: one executemany per batch on the store's own connection and table."""
    conn: sqlite3.Connection = store._conn  # the same file, pragmas and schema

    def write(batch: Sequence[NewEvent]) -> None:
        first = store.last_id + 1
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (id, at, kind, orchestrator, seq, body) VALUES (?,?,?,?,?,?)",
            [(first + i, *event) for i, event in enumerate(batch)],
        )
        conn.execute("COMMIT")
        store.last_id = first + len(batch) - 1

    return write


def timed(write: Callable[[Sequence[NewEvent]], None], sizes: list[int], busy: bool) -> float:
    """Microseconds per row to write one batch of each size (a spinning thread beside if busy)."""
    batches = [rows(n) for n in sizes]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True) if busy else None
    if spinner is not None:
        spinner.start()
    start = time.perf_counter()
    for batch in batches:
        write(batch)
    elapsed = time.perf_counter() - start
    stop.set()
    if spinner is not None:
        spinner.join()
    return elapsed / sum(sizes) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per row of the table")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.batches = 3
    tmp = Path(tempfile.mkdtemp(prefix="pxs-", dir="/tmp"))
    try:
        store = EventStore.open(tmp / "pixels.db")
        writers = {"executemany": executemany_writer(store), "append": store.append}
        rng = random.Random(1)
        cases = {
            "1 row": [1] * args.batches,
            "100 rows": [100] * args.batches,
            "1,000 rows": [1000] * args.batches,
            "1-2,048 rows": [rng.randint(1, 2048) for _ in range(args.batches)],
        }
        # Beside a busy loop executemany is ~100x slower: fewer batches keep the run short.
        busy_batches = max(1, args.batches // 10)
        results: dict[str, dict[str, float]] = {}
        for case, sizes in cases.items():
            for busy in (False, True):
                label = f"{case}{', busy loop' if busy else ''}"
                for name, write in writers.items():
                    results.setdefault(label, {})[name] = timed(
                        write, sizes[:busy_batches] if busy else sizes, busy
                    )
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, ", end="")
    print(f"sqlite {sqlite3.sqlite_version}; us per row, lower is better")
    print(f"{'batch':<28}{'executemany':>14}{'append':>10}{'ratio':>8}")
    for label, by in results.items():
        ratio = by["executemany"] / by["append"]
        print(f"{label:<28}{by['executemany']:>14,.1f}{by['append']:>10,.1f}{ratio:>8.2f}")
    key = "1,000 rows, busy loop"
    figures = {
        "bench": "store_insert",
        "batches": args.batches,
        "executemany_us_per_row": round(results["1,000 rows"]["executemany"], 2),
        "append_us_per_row": round(results["1,000 rows"]["append"], 2),
        "busy_executemany_us_per_row": round(results[key]["executemany"], 2),
        "busy_append_us_per_row": round(results[key]["append"], 2),
        "ratio": round(results[key]["executemany"] / results[key]["append"], 2),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
