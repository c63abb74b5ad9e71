"""The notification outbox: a table in the daemon's own SQLite database (STATE_DIR/pixels.db).

In the daemon's database, not a file of its own, so that a notification is enqueued in the same
transaction as the batch of events that caused it (``enqueue`` runs inside ``EventStore.append``):
either both are on disk or neither is, and a crash between the commit and the enqueue cannot lose
one. A row's send-once ``key`` (with its sink) is unique, so enqueueing the same notification
again changes nothing.

The delivery loop uses its own connection (WAL: it never blocks the event log's writer for long;
busy_timeout rides out the writer's commits). Blocking calls: run them in a worker thread.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pixels_daemon.store import BUSY_TIMEOUT_MS, StoreError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,             -- send-once key: the event it tells of (escalation:E-3:...)
    sink TEXT NOT NULL,
    kind TEXT NOT NULL,            -- escalation, gate, weekly_report, completion, test
    severity TEXT NOT NULL,
    reason TEXT NOT NULL,          -- escalations: raised, renotify, resolved, ...
    title TEXT NOT NULL,
    body TEXT NOT NULL,            -- Markdown
    attachment_name TEXT,
    attachment TEXT,
    created_at REAL NOT NULL,      -- real unix seconds
    state TEXT NOT NULL,           -- pending, sent, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,             -- pending: not before this (quiet hours, backoff)
    last_error TEXT NOT NULL DEFAULT '',
    sent_at REAL,
    retried_at REAL,               -- `pixelsctl notify retry`: the give-up time counts from here
    UNIQUE (key, sink)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_attempt);
"""


@dataclass(frozen=True)
class Message:
    """One notification, before it is routed: what every sink renders from."""

    key: str
    kind: str
    severity: str
    title: str
    body: str
    reason: str = ""
    attachment_name: str | None = None
    attachment: str | None = None


@dataclass(frozen=True)
class Row:
    """One (notification, sink) in the outbox."""

    id: int
    key: str
    sink: str
    kind: str
    severity: str
    reason: str
    title: str
    body: str
    attachment_name: str | None
    attachment: str | None
    created_at: float
    state: str
    attempts: int
    next_attempt: float | None
    last_error: str
    sent_at: float | None
    retried_at: float | None

    @property
    def since(self) -> float:
        """When its give-up time started: made, or last retried by hand."""
        return self.created_at if self.retried_at is None else max(self.created_at, self.retried_at)

    def view(self) -> dict[str, Any]:
        """What `pixelsctl notifications --json` shows of it (no bodies: they can be long)."""
        return {
            "id": self.id,
            "sink": self.sink,
            "kind": self.kind,
            "key": self.key,
            "severity": self.severity,
            "title": self.title,
            "state": self.state,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "next_attempt": self.next_attempt,
            "last_error": self.last_error,
            "sent_at": self.sent_at,
        }


_COLUMNS = ", ".join(Row.__dataclass_fields__)

#: (key, sink, kind, severity, reason, title, body, attachment_name, attachment, created_at,
#: next_attempt)
Queued = tuple[str, str, str, str, str, str, str, str | None, str | None, float, float]


def queued(message: Message, sink: str, created_at: float, release: float) -> Queued:
    return (
        message.key,
        sink,
        message.kind,
        message.severity,
        message.reason,
        message.title,
        message.body,
        message.attachment_name,
        message.attachment,
        created_at,
        release,
    )


def enqueue(conn: sqlite3.Connection, rows: Sequence[Queued]) -> None:
    """Insert ``rows`` in the caller's transaction; a (key, sink) already there is left alone."""
    conn.executemany(
        "INSERT OR IGNORE INTO notifications (key, sink, kind, severity, reason, title, body, "
        "attachment_name, attachment, created_at, next_attempt, state) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,'pending')",
        rows,
    )


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: Outbox, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class Outbox:
    """The delivery side's connection to the outbox table."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # The delivery loop's worker threads and pixelsctl's requests (on the event loop) share
        # the connection: one statement at a time.
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> Outbox:
        path = Path(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # A mark (sent, next attempt) lost to power loss means one repeat attempt at most;
            # FULL anyway, as for the log: the attempt counter is what makes a repeat careful.
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the notification outbox: {exc}") from exc
        return cls(conn, path)

    @_locked
    def close(self) -> None:
        self._conn.close()

    def _write(self, sql: str, args: Sequence[object]) -> None:
        try:
            self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the notification outbox {self.path}: {exc}") from exc

    @_locked
    def add(self, rows: Sequence[Queued]) -> list[int]:
        """Enqueue outside a batch (`pixelsctl notify test`); the rows' ids."""
        try:
            self._conn.execute("BEGIN")
            enqueue(self._conn, rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"cannot write the notification outbox {self.path}: {exc}") from exc
        ids = []
        for row in rows:
            found = self._conn.execute(
                "SELECT id FROM notifications WHERE key = ? AND sink = ?", (row[0], row[1])
            ).fetchone()
            ids.append(int(found[0]))
        return ids

    @_locked
    def due(self, now: float, limit: int = 100) -> list[Row]:
        """Pending rows whose time has come, oldest first."""
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM notifications WHERE state = 'pending' AND next_attempt <= ? "
            "ORDER BY next_attempt, id LIMIT ?",
            (now, limit),
        )
        return [Row(*r) for r in cur.fetchall()]

    @_locked
    def next_due(self) -> float | None:
        """When the next pending row is due; None when none is pending."""
        row = self._conn.execute(
            "SELECT MIN(next_attempt) FROM notifications WHERE state = 'pending'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    @_locked
    def begin_attempt(self, row_id: int) -> None:
        """Count the attempt before it is made: after a crash, ``attempts > 0`` on a pending row
        says a receiver may have it already (the GitHub sink then looks before it posts)."""
        self._write("UPDATE notifications SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    @_locked
    def mark_sent(self, row_id: int, now: float) -> None:
        self._write(
            "UPDATE notifications SET state = 'sent', sent_at = ?, next_attempt = NULL, "
            "last_error = '' WHERE id = ?",
            (now, row_id),
        )

    @_locked
    def mark_retry(self, row_id: int, next_attempt: float, error: str) -> None:
        self._write(
            "UPDATE notifications SET next_attempt = ?, last_error = ? WHERE id = ?",
            (next_attempt, error, row_id),
        )

    @_locked
    def mark_failed(self, row_id: int, error: str) -> None:
        self._write(
            "UPDATE notifications SET state = 'failed', next_attempt = NULL, last_error = ? "
            "WHERE id = ?",
            (error, row_id),
        )

    @_locked
    def retry(self, row_id: int, now: float) -> Row | None:
        """Try a failed or pending row again now (its give-up time starts over); None when there
        is no such row. A sent row is returned unchanged."""
        try:
            self._conn.execute(
                "UPDATE notifications SET state = 'pending', next_attempt = ?, retried_at = ? "
                "WHERE id = ? AND state != 'sent'",
                (now, now, row_id),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the notification outbox {self.path}: {exc}") from exc
        found = self._conn.execute(
            f"SELECT {_COLUMNS} FROM notifications WHERE id = ?", (row_id,)
        ).fetchone()
        return None if found is None else Row(*found)

    @_locked
    def rows(self, *, failed: bool = False, limit: int = 200) -> list[Row]:
        """The newest ``limit`` rows (only the failed ones with ``failed``), oldest first."""
        where = "WHERE state = 'failed'" if failed else ""
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM notifications {where} ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [Row(*r) for r in reversed(cur.fetchall())]
