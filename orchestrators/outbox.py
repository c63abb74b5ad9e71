"""The orchestrator client's durable outbox: what it accepted stays on disk until acked.

A message is *accepted* when ``enqueue`` returns: its row is committed with synchronous=FULL, so it
survives the client's own crash (SIGKILL) and a power loss, and it stays until an ``ack`` covers
its seq. Together with the daemon's rule (apply seq == acked + 1 once, ack duplicates again) this
gives "never lost, never applied twice".

Seq rules (everything that assigns or drops a seq lives in this module):

- Durable messages carry seq 1, 2, 3, ... per orchestrator, contiguous. A fresh outbox does not know
  where the daemon stands, so messages enqueued before the first ``welcome`` get seq NULL.
- The first ``welcome(acked_seq=A)`` gives them A+1, A+2, ... in enqueue order, durably, before
  anything is sent. From then on ``enqueue`` assigns the next seq at once.
- Every later ``welcome(A)`` is one of three cases (``WelcomeCase``):
  RESET   A < acked_local: the daemon lost its state (a fresh state dir); renumber pending from A+1.
  FOREIGN A > the highest seq ever assigned: something else wrote under this name (another
          outbox); renumber pending from A+1 so nothing new is taken for a duplicate.
  RESUME  otherwise: drop rows with seq <= A (applied, their ack was lost); resend the rest in
          order.
  In every case acked_local becomes A (after a reset the old, higher value means nothing).
- ``ack(N)`` deletes rows with seq <= N and raises acked_local to N. An ack above the highest seq
  ever assigned is FOREIGN too: nothing is deleted and the caller re-registers.
- A pending message the daemon's decoder refused (not consumed: every later seq gaps) is dropped
  and the later ones move down by one (docs/protocol.md, "Refused before consumption").

Rows store the whole frame as sent (envelope included): a resend is the same bytes, and the hot
path never re-encodes. Renumbering (rare) re-encodes the rows it touches.

Blocking (stdlib sqlite3): the async client calls it in a worker thread, one call at a time.
Two processes may open one outbox file (``pixels-orchestrator outbox`` while a client runs, or a
second ``report`` started while the first still delivers): every write runs in a ``BEGIN
IMMEDIATE`` transaction that reads the seq counters it changes, so two writers never hand out the
same seq. (The protocol still wants one live client per name; this only keeps the file sound.)
"""

from __future__ import annotations

import enum
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from protocol import codec
from protocol.codec import FrameError
from protocol.messages import (
    MAX_FRAME_BYTES,
    DependencyFound,
    Escalation,
    PollReply,
    Status,
    tag_of,
)

SCHEMA_VERSION = 1

#: The messages that go through the outbox (the durable ones: seq > 0, acked after commit).
Durable = Status | PollReply | Escalation | DependencyFound
DURABLE_TYPES = (Status, PollReply, Escalation, DependencyFound)

#: How long a write waits for another process's transaction on the same outbox: far above one
#: FULL commit (milliseconds), short enough that a wedged writer surfaces as an error instead of a
#: silent hang.
BUSY_TIMEOUT_MS = 5000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL)",
    """CREATE TABLE IF NOT EXISTS messages (
    -- local id = enqueue order (AUTOINCREMENT: an id is never reused after deletes)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER UNIQUE,          -- NULL until the daemon's acked seq is known (first welcome)
    kind TEXT NOT NULL,          -- the message's tag: status, poll_reply, escalation
    body BLOB NOT NULL,          -- the frame as sent (seq 0 and id "" while seq is NULL)
    enqueued_at REAL NOT NULL    -- the client's clock when accepted; also the frame's ts
)""",
)


class OutboxError(Exception):
    """Raised when the outbox file cannot be opened or written (unwritable path, disk full, a file
    that belongs to another orchestrator or is not an outbox). Nothing was accepted."""


class InvalidMessage(ValueError):
    """Raised by ``enqueue`` for a message the daemon would refuse to decode (a field out of range,
    a bad name, too large) or that names another orchestrator. Nothing was accepted.

    Such a message must never enter the outbox: the daemon does not consume a frame it cannot
    decode, so it would block every later seq behind it.
    """


class WelcomeCase(enum.Enum):
    FIRST = "first"  # the outbox learned its base seq
    RESET = "reset"  # the daemon's acked seq went backwards
    FOREIGN = "foreign"  # the daemon's acked seq is beyond anything this outbox assigned
    RESUME = "resume"  # the normal reconnect


@dataclass(frozen=True, slots=True)
class Counters:
    """The outbox's position after a call: the client mirrors these for its properties."""

    acked_seq: int  # highest seq the daemon acked (acked_local)
    last_seq: int  # highest seq assigned (0 while no base is known)
    pending: int  # rows not yet acked


@dataclass(frozen=True, slots=True)
class WelcomeOutcome:
    case: WelcomeCase
    dropped: int  # rows deleted as already applied
    renumbered: int  # rows given a (new) seq
    counters: Counters


@dataclass(frozen=True, slots=True)
class AckOutcome:
    deleted: int
    foreign: bool  # the ack is above every seq assigned here: re-register (nothing was deleted)
    counters: Counters


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """One row, for listings (``pixels-orchestrator outbox``)."""

    local_id: int
    seq: int | None
    kind: str
    enqueued_at: float
    size: int


def message_id(orchestrator: str, seq: int) -> str:
    """The envelope id of durable message ``seq``: readable, and unique per sender and seq."""
    return f"{orchestrator}-{seq}"


def stamp(message: Durable, orchestrator: str, seq: int, now: float) -> tuple[str, bytes]:
    """(kind, the frame as it goes on the wire): seq, id and ts set here (the caller's object is
    left alone), checked by the daemon's own decoder so nothing undecodable is accepted.

    Raises InvalidMessage: not a durable message, another orchestrator's, undecodable, too large.
    """
    if not isinstance(message, DURABLE_TYPES):
        raise InvalidMessage(
            f"only status, poll_reply and escalation go through the outbox, not "
            f"{type(message).__name__}"
        )
    if message.orchestrator != orchestrator:
        raise InvalidMessage(
            f"message names orchestrator {message.orchestrator!r}, but this outbox belongs "
            f"to {orchestrator!r}"
        )
    stamped = msgspec.structs.replace(
        message, seq=seq, id=message_id(orchestrator, seq) if seq else "", ts=now
    )
    frame = codec.encode(stamped)
    try:
        # Every field the daemon's decoder checks (ranges, patterns, lengths) is checked here.
        codec.to_daemon.decode(frame)
    except FrameError as exc:
        raise InvalidMessage(exc.message) from None
    if len(frame) > MAX_FRAME_BYTES:
        raise InvalidMessage(f"message is {len(frame)} bytes; the limit is {MAX_FRAME_BYTES}")
    return tag_of(type(message)), frame


def check_message(message: Durable, orchestrator: str) -> None:
    """Raise InvalidMessage if ``enqueue`` would refuse ``message``; accept nothing."""
    stamp(message, orchestrator, 0, 0.0)


class Outbox:
    """One orchestrator's outbox file. Open with ``Outbox.open(path, orchestrator)``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, orchestrator: str) -> None:
        self._conn = conn
        self.path = path
        self.orchestrator = orchestrator

    @classmethod
    def open(cls, path: str | os.PathLike[str], orchestrator: str) -> Outbox:
        """Open (creating if needed) the outbox of ``orchestrator`` at ``path``.

        Raises OutboxError when the file cannot be used, or belongs to another orchestrator.
        """
        path = Path(path)
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE/COMMIT ourselves. check_same_thread
            # off: the async client calls us from worker threads, one call at a time.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # WAL: `pixels-orchestrator outbox` can read while a client writes, and a commit is
            # one sequential append to the WAL file.
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: "accepted" means on disk. With NORMAL a power loss could roll back the last
            # commits of messages the caller was told were accepted (a WAL commit is fsynced only
            # at checkpoints), and nobody would ever resend them.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            # executescript() would COMMIT first; run the DDL inside this transaction instead.
            for statement in _SCHEMA:
                conn.execute(statement)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema", SCHEMA_VERSION),
                        ("orchestrator", orchestrator),
                        ("acked_seq", 0),
                        ("last_seq", 0),
                        ("based", 0),
                    ],
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc
        if meta and int(meta.get("schema", 0)) != SCHEMA_VERSION:
            conn.close()
            raise OutboxError(
                f"{path}: outbox schema {meta.get('schema')} is not {SCHEMA_VERSION}; "
                "this pixels-orchestrator cannot read it"
            )
        if meta and meta.get("orchestrator") != orchestrator:
            conn.close()
            raise OutboxError(
                f"{path} is the outbox of orchestrator {meta.get('orchestrator')!r}, "
                f"not {orchestrator!r}; use another --outbox"
            )
        return cls(conn, path, orchestrator)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ----------------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (takes the write lock first, so the counters read inside
        cannot change under us); rolled back and turned into OutboxError on failure."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise OutboxError(f"cannot {what} in the outbox {self.path}: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _meta(self, conn: sqlite3.Connection) -> tuple[int, int, bool]:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return int(meta["acked_seq"]), int(meta["last_seq"]), bool(int(meta["based"]))

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, **values: int) -> None:
        conn.executemany(
            "UPDATE meta SET value = ? WHERE key = ?", [(v, k) for k, v in values.items()]
        )

    @staticmethod
    def _pending(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def counters(self) -> Counters:
        """Where the outbox stands now (read from disk: another process may share the file)."""
        acked, last, _ = self._meta(self._conn)
        return Counters(acked, last, self._pending(self._conn))

    @property
    def based(self) -> bool:
        """Whether the daemon's acked seq was ever learned (seqs are assigned at enqueue)."""
        return self._meta(self._conn)[2]

    # --- enqueue ---------------------------------------------------------------------------------

    def _frame(self, message: Durable, seq: int, now: float) -> tuple[str, bytes]:
        return stamp(message, self.orchestrator, seq, now)

    def enqueue(self, message: Durable, now: float) -> int | None:
        """Accept one message durably; return its seq, or None while no base seq is known."""
        return self.enqueue_many([message], now)[0]

    def enqueue_many(self, messages: Sequence[Durable], now: float) -> list[int | None]:
        """Accept ``messages`` in one transaction (one fsync), in order; all or none.

        Returns each one's seq (None while no base seq is known). Raises InvalidMessage (nothing
        accepted) if any message is invalid, OutboxError if the commit fails.
        """
        if not messages:
            return []
        with self._write("enqueue") as conn:
            _, last, based = self._meta(conn)
            if not based:
                conn.executemany(
                    "INSERT INTO messages (seq, kind, body, enqueued_at) VALUES (NULL, ?, ?, ?)",
                    [(*self._frame(m, 0, now), now) for m in messages],
                )
                return [None] * len(messages)
            conn.executemany(
                "INSERT INTO messages (seq, kind, body, enqueued_at) VALUES (?, ?, ?, ?)",
                [
                    (last + i, *self._frame(m, last + i, now), now)
                    for i, m in enumerate(messages, start=1)
                ],
            )
            self._set_meta(conn, last_seq=last + len(messages))
        return list(range(last + 1, last + 1 + len(messages)))

    # --- the daemon's answers --------------------------------------------------------------------

    def _renumber(self, conn: sqlite3.Connection, base: int) -> int:
        """Give every row base+1, base+2, ... in enqueue order, re-encoding its frame."""
        rows = conn.execute("SELECT id, body FROM messages ORDER BY id").fetchall()
        # Clear first: seq is UNIQUE, and the new range may overlap the old one.
        conn.execute("UPDATE messages SET seq = NULL")
        updates = []
        for offset, (local_id, body) in enumerate(rows, start=1):
            seq = base + offset
            message = codec.to_daemon.decode(body)
            stamped = msgspec.structs.replace(
                message, seq=seq, id=message_id(self.orchestrator, seq)
            )
            updates.append((seq, codec.encode(stamped), local_id))
        conn.executemany("UPDATE messages SET seq = ?, body = ? WHERE id = ?", updates)
        return len(rows)

    def on_welcome(self, acked_seq: int) -> WelcomeOutcome:
        """Apply ``welcome(acked_seq)`` (module docstring: the cases); durable before returning.

        Afterwards every pending row has a seq above ``acked_seq``, contiguous from acked_seq + 1:
        send them in seq order.
        """
        with self._write("apply a welcome") as conn:
            acked_local, last, based = self._meta(conn)
            dropped = renumbered = 0
            if not based:
                case = WelcomeCase.FIRST
                renumbered = self._renumber(conn, acked_seq)
            elif acked_seq < acked_local:
                case = WelcomeCase.RESET
                renumbered = self._renumber(conn, acked_seq)
            elif acked_seq > last:
                case = WelcomeCase.FOREIGN
                renumbered = self._renumber(conn, acked_seq)
            else:
                case = WelcomeCase.RESUME
                dropped = conn.execute("DELETE FROM messages WHERE seq <= ?", (acked_seq,)).rowcount
            pending = self._pending(conn)
            last_seq = last if case is WelcomeCase.RESUME else acked_seq + pending
            self._set_meta(conn, acked_seq=acked_seq, last_seq=last_seq, based=1)
        return WelcomeOutcome(case, dropped, renumbered, Counters(acked_seq, last_seq, pending))

    def on_ack(self, acked_seq: int) -> AckOutcome:
        """Apply ``ack(acked_seq)``: delete what it covers, raise acked_local.

        An ack above every seq assigned here is not ours to trust (another writer under this
        name): nothing changes and ``foreign`` is set, so the caller re-registers and the welcome
        renumbers.
        """
        with self._write("apply an ack") as conn:
            acked_local, last, based = self._meta(conn)
            if not based or acked_seq > last:
                return AckOutcome(
                    0, based and acked_seq > last, Counters(acked_local, last, self._pending(conn))
                )
            deleted = 0
            if acked_seq > acked_local:
                deleted = conn.execute("DELETE FROM messages WHERE seq <= ?", (acked_seq,)).rowcount
                self._set_meta(conn, acked_seq=acked_seq)
                acked_local = acked_seq
            return AckOutcome(deleted, False, Counters(acked_local, last, self._pending(conn)))

    def drop_refused(self, seq: int) -> Counters | None:
        """Drop pending message ``seq``, which the daemon's decoder refused (not consumed), and
        renumber every later one down by one; None if ``seq`` is not pending.

        Safe because the daemon applies in order: nothing after a refused seq was applied (each
        gapped). The caller then resends from ``seq``. ``enqueue`` validates with the daemon's own
        decoder, so this happens only when client and daemon disagree about the protocol.
        """
        with self._write("drop a refused message") as conn:
            acked, last, based = self._meta(conn)
            if not based or seq <= acked:
                return None
            deleted = conn.execute("DELETE FROM messages WHERE seq = ?", (seq,)).rowcount
            if not deleted:
                return None
            rows = conn.execute(
                "SELECT id, body FROM messages WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
            updates = []
            for new_seq, (local_id, body) in enumerate(rows, start=seq):
                message = codec.to_daemon.decode(body)
                stamped = msgspec.structs.replace(
                    message, seq=new_seq, id=message_id(self.orchestrator, new_seq)
                )
                updates.append((new_seq, codec.encode(stamped), local_id))
            # Ascending order: each row moves into the seq its predecessor just vacated.
            conn.executemany("UPDATE messages SET seq = ?, body = ? WHERE id = ?", updates)
            self._set_meta(conn, last_seq=last - 1)
            return Counters(acked, last - 1, self._pending(conn))

    # --- reading ---------------------------------------------------------------------------------

    def frames(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` pending frames with seq > ``after_seq``, in seq order: (seq, frame)."""
        rows = self._conn.execute(
            "SELECT seq, body FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [(int(seq), bytes(body)) for seq, body in rows]

    def list_pending(self) -> list[PendingMessage]:
        """Every row not yet acked, in enqueue order."""
        rows = self._conn.execute(
            "SELECT id, seq, kind, enqueued_at, length(body) FROM messages ORDER BY id"
        ).fetchall()
        return [PendingMessage(*row) for row in rows]

    def integrity_check(self) -> str:
        """SQLite's own verdict: 'ok' when the file is sound."""
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
