"""The daemon without sockets: frames in, log rows and replies out (sans-IO)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pixels_daemon.core import engine
from pixels_daemon.daemon import Daemon
from pixels_daemon.plan import default_plan
from pixels_daemon.store import EventStore
from protocol import codec
from protocol.messages import (
    Ack,
    DependencyFound,
    Error,
    Escalation,
    Heartbeat,
    Register,
    Reply,
    Request,
    Status,
    Welcome,
    WorkstreamReport,
)
from protocol.views import StatusView

ROUTE = (b"peer-1",)
NOW = 1_800_000_000.0


def make(store: EventStore | None = None) -> Daemon:
    """A daemon after its first tick, as serve() starts it: the first orchestrators activated
    (the tick's row goes to ``store`` when one is given, as serve() commits it)."""
    d = Daemon(default_plan(), clock=lambda: NOW)
    d.apply_event(engine.Tick(), NOW)
    rows = d.take_batch().rows
    if store is not None:
        store.append(rows)
    return d


def status(seq: int, progress: float = 0.5, orch: str = "foundation", ws: str = "WS-01") -> bytes:
    return codec.encode(
        Status(
            id=f"m{seq}",
            seq=seq,
            orchestrator=orch,
            workstreams={ws: WorkstreamReport(status="in_progress", progress=progress)},
        )
    )


def replies(daemon: Daemon) -> list[object]:
    batch = daemon.take_batch()
    return [codec.to_orchestrator.decode(frame) for _, frame in daemon.replies(batch)]


def test_next_status_is_applied_logged_and_acked() -> None:
    """A status with the next seq changes the workstream, becomes a row, and is acked."""
    d = make()
    d.on_bus_frame(ROUTE, status(1, 0.25), NOW)
    batch = d.take_batch()
    assert [(r[2], r[3]) for r in batch.rows] == [("foundation", 1)]
    out = [codec.to_orchestrator.decode(f) for _, f in d.replies(batch)]
    assert out == [Ack(acked_seq=1, re="m1", id=out[0].id, ts=NOW)]  # type: ignore[attr-defined]
    assert d.state.workstreams["WS-01"].progress == 0.25
    assert d.state.workstreams["WS-01"].status == "in_progress"


def test_one_ack_per_orchestrator_per_batch() -> None:
    """Many messages of one orchestrator in one batch get a single cumulative ack."""
    d = make()
    for seq in range(1, 6):
        d.on_bus_frame(ROUTE, status(seq, seq / 10), NOW)
    out = replies(d)
    assert len(out) == 1
    assert isinstance(out[0], Ack)
    assert out[0].acked_seq == 5
    assert out[0].re == "m5"


def test_duplicate_is_acked_not_reapplied() -> None:
    """A resent seq is acked again but changes nothing and writes no row."""
    d = make()
    d.on_bus_frame(ROUTE, status(1, 0.25), NOW)
    replies(d)
    d.on_bus_frame(ROUTE, status(1, 0.99), NOW)
    batch = d.take_batch()
    assert batch.rows == []
    assert d.state.workstreams["WS-01"].progress == 0.25
    assert d.counters.duplicates == 1
    out = [codec.to_orchestrator.decode(f) for _, f in d.replies(batch)]
    assert isinstance(out[0], Ack)
    assert out[0].acked_seq == 1


def test_gap_is_refused_with_seq_gap_and_current_ack() -> None:
    """A seq beyond the next one is not applied: seq_gap error plus the ack to resend from."""
    d = make()
    d.on_bus_frame(ROUTE, status(3), NOW)
    out = replies(d)
    assert isinstance(out[0], Error)
    assert out[0].code == "seq_gap"
    assert "resend from 1" in out[0].message
    assert isinstance(out[1], Ack)
    assert out[1].acked_seq == 0
    assert d.state.workstreams["WS-01"].progress == 0.0  # nothing applied


def test_status_for_another_orchestrators_workstream_is_rejected_and_consumed() -> None:
    """Reporting another domain's workstream is refused (not_owner) but its seq is consumed."""
    d = make()
    d.on_bus_frame(ROUTE, status(1, ws="WS-04"), NOW)
    out = replies(d)
    assert isinstance(out[0], Error)
    assert (out[0].code, out[0].rejected_seq) == ("not_owner", 1)
    assert isinstance(out[1], Ack)
    assert out[1].acked_seq == 1
    assert d.state.workstreams["WS-04"].status == "not_started"


def test_unknown_workstream_is_rejected() -> None:
    """A workstream the plan does not have is refused with unknown_workstream."""
    d = make()
    d.on_bus_frame(ROUTE, status(1, ws="WS-99"), NOW)
    out = replies(d)
    assert isinstance(out[0], Error)
    assert out[0].code == "unknown_workstream"


def test_unknown_orchestrator_is_refused_without_consuming() -> None:
    """A sender that is not a plan orchestrator gets unknown_orchestrator and nothing is logged."""
    d = make()
    d.on_bus_frame(ROUTE, status(1, orch="nobody"), NOW)
    batch = d.take_batch()
    assert batch.rows == []
    out = [codec.to_orchestrator.decode(f) for _, f in d.replies(batch)]
    assert isinstance(out[0], Error)
    assert out[0].code == "unknown_orchestrator"
    assert "foundation" in out[0].message


def test_register_gets_welcome_with_acked_seq() -> None:
    """register is answered by welcome stating the highest applied seq."""
    d = make()
    d.on_bus_frame(ROUTE, status(1), NOW)
    d.on_bus_frame(ROUTE, status(2), NOW)
    replies(d)
    d.on_bus_frame(ROUTE, codec.encode(Register(id="r", orchestrator="foundation")), NOW)
    out = replies(d)
    assert isinstance(out[0], Welcome)
    assert (out[0].acked_seq, out[0].re, out[0].plan) == (2, "r", "DGX-Pixels")


def test_heartbeat_updates_last_seen_and_gets_ack() -> None:
    """A heartbeat is answered with the current ack and marks the orchestrator as seen."""
    d = make()
    d.on_bus_frame(ROUTE, codec.encode(Heartbeat(id="h", orchestrator="model")), NOW)
    out = replies(d)
    assert isinstance(out[0], Ack)
    assert d.last_seen["model"] == NOW


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xc1not msgpack", "bad_frame"),
        (msgspec.msgpack.encode([1, 2, 3]), "bad_frame"),
        (msgspec.msgpack.encode({"msg": "status", "v": 99, "id": "x"}), "unsupported_version"),
        (msgspec.msgpack.encode({"msg": "teleport", "v": 1, "id": "x"}), "unknown_type"),
        (msgspec.msgpack.encode({"msg": "status", "v": 1, "id": "x", "seq": 1}), "bad_message"),
        (b"\x80" * (2 << 20), "too_large"),
    ],
)
def test_bad_frames_get_an_error_and_are_counted(frame: bytes, code: str) -> None:
    """Each kind of bad frame gets an error reply with its code; the counter records it."""
    d = make()
    d.on_bus_frame(ROUTE, frame, NOW)
    out = replies(d)
    assert isinstance(out[0], Error)
    assert out[0].code == code
    assert d.counters.frame_errors[code] == 1


def test_escalation_is_recorded() -> None:
    """An escalation becomes an open record with a daemon id."""
    d = make()
    esc = Escalation(
        id="e",
        seq=1,
        orchestrator="model",
        issue="GPU OOM",
        severity="high",
        affected_workstreams=["WS-05", "WS-10"],
    )
    d.on_bus_frame(ROUTE, codec.encode(esc), NOW)
    replies(d)
    (record,) = d.state.escalations.values()
    assert (record.id, record.severity, record.state) == ("E-1", "high", "open")


def test_replay_rebuilds_the_same_state(state_dir: Path) -> None:
    """Replaying the committed rows gives a state equal to the live one."""
    store = EventStore.open(state_dir / "pixels.db")
    live = make(store)
    for seq in range(1, 50):
        live.on_bus_frame(ROUTE, status(seq, seq / 100), NOW + seq)
        if seq % 7 == 0:
            store.append(live.take_batch().rows)
    store.append(live.take_batch().rows)
    rebuilt = Daemon(default_plan(), clock=lambda: NOW)
    rebuilt.replay(store)
    assert msgspec.msgpack.encode(rebuilt.state) == msgspec.msgpack.encode(live.state)


def test_replay_from_snapshot_equals_full_replay(state_dir: Path) -> None:
    """A snapshot plus the tail of the log rebuilds the same state as the whole log."""
    store = EventStore.open(state_dir / "pixels.db")
    live = make(store)
    for seq in range(1, 21):
        live.on_bus_frame(ROUTE, status(seq, seq / 100), NOW + seq)
        last = store.append(live.take_batch().rows)
        if seq == 10:
            store.save_snapshot(live.snapshot_key, last, live.snapshot(last))
    from_snapshot = Daemon(default_plan(), clock=lambda: NOW)
    assert from_snapshot.replay(store) == 10  # only the events after the snapshot
    assert msgspec.msgpack.encode(from_snapshot.state) == msgspec.msgpack.encode(live.state)


def test_recover_drops_uncommitted_changes(state_dir: Path) -> None:
    """After a failed commit the state is the committed one and senders are told to retry."""
    store = EventStore.open(state_dir / "pixels.db")
    d = make()
    d.on_bus_frame(ROUTE, status(1, 0.1), NOW)
    store.append(d.take_batch().rows)
    d.on_bus_frame(ROUTE, status(2, 0.9), NOW)
    out = [codec.to_orchestrator.decode(f) for _, f in d.recover(store, d.take_batch())]
    assert d.state.workstreams["WS-01"].progress == 0.1
    assert d.state.orchestrators["foundation"].acked_seq == 1
    assert isinstance(out[0], Error)
    assert out[0].code == "unavailable"


def test_ctl_status_reply_is_a_status_view() -> None:
    """The status command answers with the documented StatusView."""
    d = make()
    d.on_bus_frame(ROUTE, status(1, 0.5), NOW)
    replies(d)
    reply = codec.ctl_response.decode(
        d.on_ctl_frame(codec.encode(Request(id="q", command="status")), NOW)
    )
    assert isinstance(reply, Reply)
    view = codec.convert(reply.result, StatusView)
    assert view.phase == "Phase 1: Foundation"
    ws01 = next(w for w in view.workstreams if w.id == "WS-01")
    assert (ws01.status, ws01.progress) == ("in_progress", 0.5)
    foundation = next(o for o in view.orchestrators if o.name == "foundation")
    assert foundation.connection == "connected"


def test_ctl_unknown_command_is_an_error() -> None:
    """An unknown control command gets unknown_command naming the known ones."""
    d = make()
    reply = codec.ctl_response.decode(
        d.on_ctl_frame(codec.encode(Request(id="q", command="dance")), NOW)
    )
    assert isinstance(reply, Error)
    assert reply.code == "unknown_command"
    assert "status" in reply.message


def test_snapshot_key_changes_with_engine_thresholds() -> None:
    """A snapshot taken under other engine thresholds is not reused (replay would differ)."""
    plan = default_plan()
    default = Daemon(plan, clock=lambda: NOW)
    stricter = Daemon(plan, clock=lambda: NOW, config=engine.EngineConfig(stall_s=3600.0))
    assert default.snapshot_key != stricter.snapshot_key
    assert default.snapshot_key == Daemon(plan, clock=lambda: NOW).snapshot_key


def dependency(seq: int, ws: str, dep: str, orch: str = "foundation") -> bytes:
    return codec.encode(
        DependencyFound(
            id=f"d{seq}",
            seq=seq,
            orchestrator=orch,
            workstream=ws,
            depends_on=dep,
            reason="found while implementing",
        )
    )


def test_discovered_dependency_becomes_a_plan_change() -> None:
    """dependency_found adds the dependency, acks it, and lists it as a plan change."""
    d = make()
    d.on_bus_frame(ROUTE, dependency(1, "WS-03", "WS-02"), NOW)
    out = replies(d)
    assert [type(m) for m in out] == [Ack]
    (change,) = d.ctl_plan_changes({}, NOW)  # type: ignore[misc]
    assert (change.kind, change.workstream, change.source) == ("add_dep", "WS-03", "foundation")
    ws03 = next(w for w in d.ctl_workstreams({}, NOW) if w.id == "WS-03")  # type: ignore[attr-defined]
    assert "WS-02" in ws03.depends_on


def test_discovered_dependency_making_a_cycle_is_refused_and_consumed() -> None:
    """A dependency that would close a cycle is refused naming it; its seq is still consumed."""
    d = make()
    d.on_bus_frame(ROUTE, dependency(1, "WS-01", "WS-03"), NOW)
    out = replies(d)
    assert isinstance(out[0], Error)
    assert out[0].rejected_seq == 1
    assert "WS-01" in out[0].message
    assert "WS-03" in out[0].message
    assert "cycle" in out[0].message
    assert isinstance(out[1], Ack)
    assert out[1].acked_seq == 1
    assert d.ctl_plan_changes({}, NOW) == []


def test_discovered_dependency_on_another_domains_workstream_is_refused() -> None:
    """An orchestrator may add dependencies only to its own workstreams."""
    d = make()
    d.on_bus_frame(ROUTE, dependency(1, "WS-04", "WS-03"), NOW)
    out = replies(d)
    assert isinstance(out[0], Error)
    assert (out[0].code, out[0].rejected_seq) == ("not_owner", 1)


def test_discovered_dependency_on_an_unknown_workstream_is_refused_and_consumed() -> None:
    """A depends_on the plan lacks is unknown_workstream (a bus error code), consumed."""
    d = make()
    d.on_bus_frame(ROUTE, dependency(1, "WS-03", "WS-99"), NOW)
    out = replies(d)
    assert isinstance(out[0], Error)
    assert (out[0].code, out[0].rejected_seq) == ("unknown_workstream", 1)
    assert "WS-99" in out[0].message
    assert d.ctl_plan_changes({}, NOW) == []


def test_a_batch_of_progress_reports_is_scoped_to_their_workstreams() -> None:
    """Batch.scope: the workstreams of the batch's progress reports (what a watcher's diff
    needs to look at); anything else (an escalation, an operator's event) makes it None."""
    d = make()
    d.on_bus_frame(ROUTE, status(1, 0.1), NOW)
    d.on_bus_frame(ROUTE, status(2, 0.2), NOW)
    assert d.take_batch().scope == {"WS-01"}
    assert d.take_batch().scope == set()  # nothing happened
    d.on_bus_frame(ROUTE, status(3, 0.3), NOW)
    d.apply_event(engine.Tick(), NOW)
    assert d.take_batch().scope is None
    blocked = Status(
        id="m4",
        seq=4,
        orchestrator="foundation",
        workstreams={"WS-01": WorkstreamReport(status="blocked", blocker="disk")},
    )
    d.on_bus_frame(ROUTE, codec.encode(blocked), NOW)
    assert d.take_batch().scope is None


def _status(d: Daemon) -> StatusView:
    reply = codec.ctl_response.decode(
        d.on_ctl_frame(codec.encode(Request(id="q", command="status")), NOW)
    )
    assert isinstance(reply, Reply)
    return codec.convert(reply.result, StatusView)


def test_status_shows_an_operator_stop_though_nothing_else_changed() -> None:
    """Launcher none: the process part of an orchestrator's view follows the log (an operator's
    stop) even while the rest of its view is unchanged and reused."""
    d = make()
    before = next(o for o in _status(d).orchestrators if o.name == "foundation")
    assert before.process is not None and not before.process.operator_stopped
    d.on_ctl_frame(codec.encode(Request(id="s", command="stop", args={"name": "foundation"})), NOW)
    d.take_batch()
    after = next(o for o in _status(d).orchestrators if o.name == "foundation")
    assert after.process is not None and after.process.operator_stopped
