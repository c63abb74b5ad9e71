"""The event log: group commits, ordered reads, snapshots, refusal of what it cannot read."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixels_daemon.store import INSERT_ROWS_MAX, SCHEMA_VERSION, EventStore, StoreError


def _rows(n: int, start_seq: int = 1) -> list[tuple[float, str, str | None, int | None, bytes]]:
    return [(1000.0 + i, "msg", "foundation", start_seq + i, b"body%d" % i) for i in range(n)]


def test_append_returns_last_id_and_reads_back_in_order(state_dir: Path) -> None:
    """A batch gets consecutive ids and reads back in log order."""
    store = EventStore.open(state_dir / "pixels.db")
    assert store.append(_rows(3)) == 3
    assert store.append(_rows(2, start_seq=4)) == 5
    assert [(r.id, r.seq) for r in store.events()] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    assert [r.id for r in store.events(after=3)] == [4, 5]


def test_events_survive_reopen(state_dir: Path) -> None:
    """What was appended is there after the database is closed and opened again."""
    path = state_dir / "pixels.db"
    store = EventStore.open(path)
    store.append(_rows(4))
    store.close()
    again = EventStore.open(path)
    assert again.last_id == 4
    assert [r.body for r in again.events()] == [b"body0", b"body1", b"body2", b"body3"]


def test_chunked_read_covers_every_row(state_dir: Path) -> None:
    """Reading in chunks smaller than the log still yields every event once."""
    store = EventStore.open(state_dir / "pixels.db")
    store.append(_rows(25))
    assert [r.id for r in store.events(chunk=7)] == list(range(1, 26))


def test_runs_in_wal_with_full_sync_by_default(state_dir: Path) -> None:
    """The default durability is WAL + synchronous=FULL: acked means on disk."""
    store = EventStore.open(state_dir / "pixels.db")
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_failed_commit_raises_and_keeps_the_log(state_dir: Path) -> None:
    """A commit that fails raises StoreError and leaves earlier events and last_id intact."""
    store = EventStore.open(state_dir / "pixels.db")
    store.append(_rows(2))
    store._conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(StoreError, match="disk full"):
        store.append(_rows(1, start_seq=3))
    assert store.last_id == 2
    assert store.count() == 2


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 2 * INSERT_ROWS_MAX + 3), max_size=3))
def test_batches_of_any_size_are_written_whole_and_in_order(sizes: list[int]) -> None:
    """Batches of any size (the insert splits them into multi-row statements) land whole, with
    consecutive ids, in order, every column as given."""
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(Path(tmp) / "pixels.db", synchronous="NORMAL")
        expected: list[tuple[int, float, str, str | None, int | None, bytes]] = []
        for size in sizes:
            rows = _rows(size, start_seq=len(expected) + 1)
            assert store.append(rows) == len(expected) + size
            expected += [(len(expected) + i + 1, *row) for i, row in enumerate(rows)]
        got = [(r.id, r.at, r.kind, r.orchestrator, r.seq, r.body) for r in store.events()]
        assert got == expected
        store.close()


def test_a_batch_failing_in_a_later_statement_leaves_none_of_it(state_dir: Path) -> None:
    """A batch written in several statements is still one transaction: a failure in its last
    statement leaves none of its rows behind."""
    store = EventStore.open(state_dir / "pixels.db")
    store.append(_rows(2))
    size = INSERT_ROWS_MAX + 5
    store._conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.id = "
        f"{2 + size} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(StoreError, match="disk full"):
        store.append(_rows(size, start_seq=3))
    assert store.last_id == 2
    assert store.count() == 2


def test_insert_fits_a_library_allowing_fewer_parameters(state_dir: Path) -> None:
    """Where SQLite allows fewer bound parameters, statements hold fewer rows; nothing else
    changes."""
    path = state_dir / "pixels.db"
    EventStore.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
    store = EventStore(conn, path)
    assert store.append(_rows(40)) == 40
    assert [r.seq for r in store.events()] == list(range(1, 41))


def test_snapshot_latest_per_key_and_pruned(state_dir: Path) -> None:
    """The newest snapshot of a key is returned; older ones beyond `keep` are deleted."""
    store = EventStore.open(state_dir / "pixels.db")
    store.append(_rows(30))
    for event_id in (10, 20, 30):
        store.save_snapshot("k", event_id, b"s%d" % event_id, keep=2)
    store.save_snapshot("other", 5, b"x")
    assert store.latest_snapshot("k") == (30, b"s30")
    assert store._conn.execute("SELECT COUNT(*) FROM snapshots WHERE key='k'").fetchone()[0] == 2
    assert store.latest_snapshot("missing") is None


def test_snapshot_past_the_log_is_ignored(state_dir: Path) -> None:
    """A snapshot claiming more events than the log holds is not used."""
    store = EventStore.open(state_dir / "pixels.db")
    store.append(_rows(5))
    store.save_snapshot("k", 3, b"ok")
    store.save_snapshot("k", 9, b"ahead")
    assert store.latest_snapshot("k") == (3, b"ok")


def test_newer_schema_is_refused(state_dir: Path) -> None:
    """A database written by a newer schema is refused with a message saying so."""
    path = state_dir / "pixels.db"
    EventStore.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema"):
        EventStore.open(path)


def test_garbage_file_is_refused(state_dir: Path) -> None:
    """A file that is not a SQLite database gives StoreError, not a traceback."""
    path = state_dir / "pixels.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        EventStore.open(path)
