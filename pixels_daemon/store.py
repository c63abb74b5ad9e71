"""The event log: an append-only SQLite table, written in group commits, plus state snapshots.

Acked means on disk: the daemon sends an ack only after ``append`` has returned, and by default the
database runs with synchronous=FULL so a committed batch survives power loss as well as a crash.
Blocking calls: run them in a worker thread, never on the event loop. One thread at a time uses the
connection (the daemon serialises writers), so ``check_same_thread`` is off.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SCHEMA_VERSION = 1

Synchronous = Literal["FULL", "NORMAL"]

#: How long a connection waits on a lock held by another connection (a backup, a reader with the
#: sqlite3 shell) before failing: long enough to ride out a checkpoint, short enough to surface
#: a wedge.
BUSY_TIMEOUT_MS = 5000

#: Most rows one INSERT statement writes. A batch goes in as multi-row INSERTs of power-of-two
#: sizes (1,024 + 512 + ...: at most 11 statements, and 11 statement texts for sqlite3's cache),
#: not executemany: executemany takes the GIL back after every row, and beside a busy event loop
#: each row then waits out a GIL switch interval (1,000 rows: 3 ms alone, 0.8 s beside a busy
#: thread; bench/store_insert.py). 1,024 rows x 6 columns is 6,144 parameters, under SQLite's
#: 32,766 (and lowered at open where the library allows fewer).
INSERT_ROWS_MAX = 1024

_COLUMNS = ("id", "at", "kind", "orchestrator", "seq", "body")
_INSERT = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES "
_ROW = "(" + ",".join("?" * len(_COLUMNS)) + ")"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,      -- log position, 1, 2, 3, ...
    at REAL NOT NULL,            -- daemon clock when applied (unix seconds)
    kind TEXT NOT NULL,          -- 'msg': a durable wire message (body = its frame)
    orchestrator TEXT,
    seq INTEGER,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    event_id INTEGER NOT NULL,   -- state after applying events 1..event_id
    key TEXT NOT NULL,           -- core version + plan fingerprint (another's is unusable)
    taken_at REAL NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (key, event_id)
);
"""


class StoreError(Exception):
    """Raised when the database cannot be opened or written (disk full, I/O error, corruption).

    The daemon must stop acknowledging while appends fail: nothing unsaved is ever acked.
    """


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at: float
    kind: str
    orchestrator: str | None
    seq: int | None
    body: bytes


NewEvent = tuple[float, str, str | None, int | None, bytes]  # at, kind, orchestrator, seq, body


class EventStore:
    """The daemon's SQLite database. Open with ``EventStore.open(path)``."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.last_id = self._scalar("SELECT COALESCE(MAX(id), 0) FROM events")
        rows_max = INSERT_ROWS_MAX
        while rows_max > 1 and rows_max * len(_COLUMNS) > conn.getlimit(
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
        ):
            rows_max //= 2
        self._rows_max = rows_max
        self._insert_sql: dict[int, str] = {}

    @classmethod
    def open(cls, path: str | Path, synchronous: Synchronous = "FULL") -> EventStore:
        """Open (creating if needed) the database at ``path``."""
        path = Path(path)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # WAL: readers (backups, pixelsctl-side tools) never block the writer.
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL by default: an acked message must survive power loss, not only a crash.
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.executescript(_SCHEMA)
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?), ('created_at', ?)",
                    (str(SCHEMA_VERSION), repr(time.time())),
                )
            elif int(version[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: database schema {version[0]} is not {SCHEMA_VERSION}; "
                    "this pixelsd cannot read it (upgrade pixelsd or restore a backup)"
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the event log: {exc}") from exc
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def _scalar(self, sql: str) -> int:
        row = self._conn.execute(sql).fetchone()
        return int(row[0])

    def append(
        self,
        events: Sequence[NewEvent],
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> int:
        """Append ``events`` in one transaction (one fsync); return the id of the last one.

        ``also`` writes more in the same transaction (the notification outbox: what the batch
        decided to tell is on disk exactly when the batch is). Raises StoreError and leaves the
        log unchanged if the commit fails.
        """
        if not events and also is None:
            return self.last_id
        first = self.last_id + 1
        try:
            self._conn.execute("BEGIN")
            self._insert(first, events)
            if also is not None:
                also(self._conn)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"cannot commit to the event log {self.path}: {exc}") from exc
        self.last_id = first + len(events) - 1
        return self.last_id

    def _insert(self, first: int, events: Sequence[NewEvent]) -> None:
        """INSERT ``events`` with ids from ``first``, in multi-row statements of power-of-two
        sizes (see INSERT_ROWS_MAX)."""
        execute = self._conn.execute
        total = len(events)
        done = 0
        size = self._rows_max
        while done < total:
            while size > total - done:
                size //= 2
            params: list[object] = []
            for event_id in range(first + done, first + done + size):
                params.append(event_id)
                params.extend(events[event_id - first])
            execute(self._insert_statement(size), params)
            done += size

    def _insert_statement(self, rows: int) -> str:
        sql = self._insert_sql.get(rows)
        if sql is None:
            sql = _INSERT + ",".join([_ROW] * rows)
            self._insert_sql[rows] = sql
        return sql

    def events(self, after: int = 0, chunk: int = 10_000) -> Iterator[EventRow]:
        """Events with id > ``after`` in log order, read in chunks (bounded memory)."""
        last = after
        while True:
            rows = self._conn.execute(
                "SELECT id, at, kind, orchestrator, seq, body FROM events WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield EventRow(*row)
            last = rows[-1][0]

    def count(self) -> int:
        return self._scalar("SELECT COUNT(*) FROM events")

    def save_snapshot(self, key: str, event_id: int, state: bytes, keep: int = 2) -> None:
        """Store the state after ``event_id``; keep only the newest ``keep`` snapshots per key."""
        try:
            self._conn.execute("BEGIN")
            self._conn.execute(
                "INSERT OR REPLACE INTO snapshots (event_id, key, taken_at, state) "
                "VALUES (?,?,?,?)",
                (event_id, key, time.time(), state),
            )
            self._conn.execute(
                "DELETE FROM snapshots WHERE key = ? AND event_id NOT IN "
                "(SELECT event_id FROM snapshots WHERE key = ? ORDER BY event_id DESC LIMIT ?)",
                (key, key, keep),
            )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"cannot write a snapshot to {self.path}: {exc}") from exc

    def latest_snapshot(self, key: str) -> tuple[int, bytes] | None:
        """The newest snapshot for ``key`` that does not run past the log, or None."""
        row = self._conn.execute(
            "SELECT event_id, state FROM snapshots WHERE key = ? AND event_id <= ? "
            "ORDER BY event_id DESC LIMIT 1",
            (key, self.last_id),
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def integrity_check(self) -> str:
        """SQLite's own verdict: 'ok' when the file is sound."""
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
