"""The outbox on a real SQLite database: rows commit with the batch or not at all, a send-once
key is enqueued once; the messages' keys come from the event, the same every time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pixels_daemon.core import engine
from pixels_daemon.core.state import EscalationRecord, State
from pixels_daemon.notify import messages
from pixels_daemon.notify.outbox import Message, Outbox, enqueue, queued
from pixels_daemon.store import EventStore, StoreError

MSG = Message(key="gate:gate-1:run:1", kind="gate", severity="high", title="t", body="b")
EVENT = (1.0, "msg", "model", 1, b"x")


@pytest.fixture
def db(tmp_path: Path) -> tuple[EventStore, Outbox]:
    store = EventStore.open(tmp_path / "pixels.db")
    outbox = Outbox.open(tmp_path / "pixels.db")
    return store, outbox


def test_rows_commit_with_the_batch(db: tuple[EventStore, Outbox]) -> None:
    store, outbox = db
    rows = [queued(MSG, "chat", 10.0, 10.0), queued(MSG, "gh", 10.0, 10.0)]
    store.append([EVENT], lambda conn: enqueue(conn, rows))
    assert [(r.sink, r.state) for r in outbox.rows()] == [("chat", "pending"), ("gh", "pending")]
    assert store.count() == 1


def test_a_failed_commit_leaves_neither_events_nor_rows(db: tuple[EventStore, Outbox]) -> None:
    store, outbox = db

    def enqueue_then_fail(conn: sqlite3.Connection) -> None:
        enqueue(conn, [queued(MSG, "chat", 10.0, 10.0)])
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(StoreError):
        store.append([EVENT], enqueue_then_fail)
    assert outbox.rows() == []
    assert store.count() == 0


def test_the_same_key_is_enqueued_once_per_sink(db: tuple[EventStore, Outbox]) -> None:
    store, outbox = db
    row = queued(MSG, "chat", 10.0, 10.0)
    store.append([EVENT], lambda conn: enqueue(conn, [row]))
    assert outbox.add([row]) == [1]
    assert len(outbox.rows()) == 1


def test_due_rows_come_in_order_and_sent_ones_leave(db: tuple[EventStore, Outbox]) -> None:
    _, outbox = db
    later = Message(key="gate:gate-2:run:1", kind="gate", severity="high", title="t", body="b")
    first, second = outbox.add([queued(MSG, "chat", 1.0, 5.0), queued(later, "chat", 2.0, 3.0)])
    assert [r.id for r in outbox.due(now=4.0)] == [second]
    outbox.mark_sent(second, now=4.0)
    assert [r.id for r in outbox.due(now=9.0)] == [first]
    assert outbox.next_due() == 5.0


def escalation(**extra: object) -> EscalationRecord:
    fields: dict[str, object] = {
        "id": "E-3",
        "orchestrator": "model",
        "type": "blocker",
        "severity": "high",
        "issue": "GPU OOM",
        "affected_workstreams": ["WS-05"],
        "attempted_resolutions": [],
        "help_needed": "more memory",
        "raised_at": 100.0,
        "last_notified": 100.0,
        **extra,
    }
    return EscalationRecord(**fields)  # type: ignore[arg-type]


def test_an_escalations_key_names_it_the_reason_and_when_it_was_decided() -> None:
    state = State(escalations={"E-3": escalation(last_notified=14_500.25)})
    msg = messages.escalation_message(state, engine.Notify(escalation="E-3", reason="renotify"))
    assert msg is not None
    assert msg.key == "escalation:E-3:renotify:14500.250"
    assert msg.title == "[high] E-3 still open: GPU OOM"
    assert "WS-05" in msg.body


def test_a_resolved_escalations_key_uses_when_it_was_resolved() -> None:
    state = State(escalations={"E-3": escalation(state="resolved", resolved_at=200.0)})
    msg = messages.escalation_message(state, engine.Notify(escalation="E-3", reason="resolved"))
    assert msg is not None
    assert msg.key == "escalation:E-3:resolved:200.000"


def test_a_gate_key_names_its_evaluation() -> None:
    effect = engine.GateDecided(gate="gate-1", run=2, passed=False, failures=["fid < 0.9"])
    msg = messages.gate_message(effect)
    assert (msg.key, msg.severity) == ("gate:gate-1:run:2", "high")
    assert "- fid < 0.9" in msg.body


# --- the engine's side: a notification given up on is an escalation ---------------------------


def test_a_notification_given_up_on_raises_notification_failed_about_its_sink() -> None:
    from pixels_daemon.core.engine import NotificationFailed, Notify, decode_event, encode_event
    from tests.test_engine import Sim, of

    sim = Sim()
    failed = NotificationFailed(sink="slack", key="gate:gate-1:run:1", error="HTTP 401: no")
    assert decode_event(encode_event(failed)) == failed  # it goes to the log
    effects = sim.do(failed)
    (esc,) = [e for e in sim.state.escalations.values() if e.kind == "notification_failed"]
    assert (esc.subject, esc.severity, esc.orchestrator) == ("slack", "high", "pixelsd")
    assert "pixelsctl notify test slack" in esc.help_needed
    assert of(effects, Notify) == [Notify(escalation=esc.id, reason="raised")]


def test_another_failure_on_the_same_sink_updates_the_open_escalation() -> None:
    from pixels_daemon.core.engine import NotificationFailed
    from tests.test_engine import Sim

    sim = Sim()
    sim.do(NotificationFailed(sink="slack", key="a", error="HTTP 401"))
    sim.do(NotificationFailed(sink="slack", key="b", error="HTTP 401"))
    (esc,) = [e for e in sim.state.escalations.values() if e.kind == "notification_failed"]
    assert esc.count == 2
