"""Live events (pixels_daemon/events.py): the pure state diff, driven by the real engine, and the
XPUB publisher against real SUB sockets over ipc."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from pixels_daemon.core.engine import (
    AckEscalation,
    AddDependency,
    ApproveDecision,
    Halt,
    ResolveEscalation,
    Resume,
    SnoozeEscalation,
)
from pixels_daemon.core.engine import receive as engine_receive
from pixels_daemon.core.state import State
from pixels_daemon.events import (
    KINDS,
    SNDHWM,
    EventFeed,
    EventPublisher,
    WatchEvent,
    report_event,
)
from pixels_daemon.paths import StatePaths
from pixels_daemon.server import DaemonError
from protocol.messages import Status, WorkstreamReport
from tests.test_engine import HOUR, Sim

#: How long a test waits for something asynchronous (a subscription reaching the XPUB).
WAIT_S = 5.0

_decoder = msgspec.msgpack.Decoder(WatchEvent)


class Watched:
    """A Sim with an EventFeed on its state: ``seen()`` is what a watcher gets since the last."""

    def __init__(self) -> None:
        self.sim = Sim()
        self.feed = EventFeed(self.sim.plan, self.sim.state)

    def seen(self, kind: str | None = None) -> list[str]:
        events = self.feed.changes(self.sim.plan, self.sim.state, self.sim.now)
        assert all(e.at == self.sim.now for e in events)
        return [e.text for e in events if kind is None or e.kind == kind]


@pytest.fixture
def w() -> Watched:
    return Watched()


# --- the feed: workstreams ------------------------------------------------------------------


def test_a_new_feed_is_a_baseline_and_reports_nothing(w: Watched) -> None:
    """Constructed on a state, the feed reports nothing until something changes."""
    assert w.seen() == []


def test_nothing_changed_reports_nothing(w: Watched) -> None:
    """An idle tick changes nothing a watcher would see."""
    w.sim.later(HOUR)
    w.sim.tick()
    assert w.seen() == []


def test_workstream_status_change_is_one_line(w: Watched) -> None:
    """A workstream moving on reads "A1 ready -> in_progress"."""
    w.sim.report("A1", "in_progress", 0.1)
    assert w.seen("workstream") == ["A1 ready -> in_progress"]


def test_progress_below_five_points_is_not_reported(w: Watched) -> None:
    """Progress moving less than 5 points from the last one shown is not news."""
    w.sim.report("A1", "in_progress", 0.1)
    w.seen()
    w.sim.report("A1", "in_progress", 0.14)
    assert w.seen() == []


def test_progress_of_five_points_or_more_is_reported(w: Watched) -> None:
    """Progress moving 5 points or more reads "A1 progress 10% -> 25%"."""
    w.sim.report("A1", "in_progress", 0.1)
    w.seen()
    w.sim.report("A1", "in_progress", 0.25)
    assert w.seen() == ["A1 progress 10% -> 25%"]


def test_small_progress_steps_add_up_to_one_event_per_five_points(w: Watched) -> None:
    """1-point steps are measured from the last progress shown, not the last reported."""
    w.sim.report("A1", "in_progress", 0.1)
    w.seen()
    lines = []
    for step in range(1, 11):
        w.sim.report("A1", "in_progress", 0.1 + step / 100)
        lines += w.seen()
    assert lines == ["A1 progress 10% -> 15%", "A1 progress 15% -> 20%"]


def test_blocked_with_a_blocker_is_one_line_naming_it(w: Watched) -> None:
    """Reported blocked, the status line carries the blocker."""
    w.sim.report("A1", "in_progress", 0.1)
    w.seen()
    w.sim.report("A1", "blocked", 0.1, blocker="waiting for CUDA 13 wheels")
    assert w.seen() == ["A1 in_progress -> blocked: waiting for CUDA 13 wheels"]


def test_blocker_set_and_cleared_without_a_status_change(w: Watched) -> None:
    """A blocker reported on work in progress, then gone, reads as set and cleared."""
    w.sim.report("A1", "in_progress", 0.1)
    w.seen()
    w.sim.report("A1", "in_progress", 0.1, blocker="disk almost full")
    assert w.seen() == ["A1 blocker: disk almost full"]
    w.sim.report("A1", "in_progress", 0.1)
    assert w.seen() == ["A1 blocker cleared (was: disk almost full)"]


def test_workstream_event_data_names_the_transition(w: Watched) -> None:
    """--json consumers get the workstream's name, from, to and progress."""
    w.sim.report("A1", "in_progress", 0.3)
    (event,) = w.feed.changes(w.sim.plan, w.sim.state, w.sim.now)
    assert (event.kind, event.subject) == ("workstream", "A1")
    assert {k: event.data[k] for k in ("from", "to", "progress")} == {
        "from": "ready",
        "to": "in_progress",
        "progress": 0.3,
    }


# --- orchestrators ---------------------------------------------------------------------------


def test_orchestrator_activation_is_reported(w: Watched) -> None:
    """beta's gate passing activates it: "beta activated"."""
    w.sim.open_beta()
    assert w.seen("orchestrator") == ["beta activated"]


def test_operator_halt_and_resume_of_an_orchestrator(w: Watched) -> None:
    """halt and resume read as the holds put on and lifted."""
    w.sim.do(Halt(target="alpha", reason="maintenance"))
    assert w.seen("orchestrator") == ["alpha halted: operator"]
    w.sim.do(Resume(target="alpha"))
    assert w.seen("orchestrator") == ["alpha resumed (was held by operator)"]


# --- escalations -----------------------------------------------------------------------------


def test_escalation_opened(w: Watched) -> None:
    """A new escalation reads "E-1 opened (SEVERITY): ISSUE"."""
    w.sim.escalate("alpha", "GPU not found", ("A1",), severity="high")
    assert w.seen("escalation") == ["E-1 opened (high): GPU not found"]


def test_escalation_acknowledged_with_its_note(w: Watched) -> None:
    """ack reads "E-1 acknowledged: NOTE"."""
    w.sim.escalate("alpha", "GPU not found", ("A1",))
    w.seen()
    w.sim.do(AckEscalation(escalation="E-1", note="on it"))
    assert w.seen() == ["E-1 acknowledged: on it"]


def test_escalation_resolved(w: Watched) -> None:
    """resolve reads "E-1 resolved"; a resolved escalation is not reported again."""
    w.sim.escalate("alpha", "GPU not found", ("A1",))
    w.seen()
    w.sim.do(ResolveEscalation(escalation="E-1"))
    assert w.seen() == ["E-1 resolved"]
    w.sim.later(HOUR)
    w.sim.tick()
    assert w.seen() == []


def test_escalation_snoozed_names_until_when(w: Watched) -> None:
    """snooze reads "E-1 snoozed until YYYY-MM-DD HH:MM" (the daemon's local time)."""
    w.sim.escalate("alpha", "GPU not found", ("A1",))
    w.seen()
    until = w.sim.now + 4 * HOUR
    w.sim.do(SnoozeEscalation(escalation="E-1", until=until))
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(until))
    assert w.seen() == [f"E-1 snoozed until {stamp}"]


def test_repeated_escalation_reports_its_count(w: Watched) -> None:
    """The same escalation sent again reads "E-1 raised again (x2, SEVERITY): ISSUE"."""
    w.sim.escalate("alpha", "GPU not found", ("A1",))
    w.seen()
    w.sim.escalate("alpha", "GPU still not found", ("A1",))
    assert w.seen() == ["E-1 raised again (x2, medium): GPU still not found"]


def test_escalation_opened_and_resolved_between_two_calls_reports_both(w: Watched) -> None:
    """Changes that happen between two looks are all reported, in order."""
    w.sim.escalate("alpha", "GPU not found", ("A1",))
    w.sim.do(ResolveEscalation(escalation="E-1", note="reseated"))
    assert w.seen() == ["E-1 opened (medium): GPU not found", "E-1 resolved: reseated"]


# --- gates, decisions, plan ------------------------------------------------------------------


def test_gate_checking_then_failed_names_the_failures(w: Watched) -> None:
    """A gate's evaluation reads pending -> checking, then checking -> failed with what failed."""
    w.sim.finish("A1", "A2")
    assert w.seen("gate") == ["g1 pending -> checking (run 1)"]
    w.sim.gate_result("g1", "smoke", 1, "GPU not found\n")
    (line,) = w.seen("gate")
    assert line.startswith("g1 checking -> failed (run 1): ") and "smoke" in line


def test_gate_passed(w: Watched) -> None:
    """A passing check reads "g1 checking -> passed (run 1)"."""
    w.sim.finish("A1", "A2")
    w.seen()
    w.sim.gate_result("g1", "smoke", 0)
    assert w.seen("gate") == ["g1 checking -> passed (run 1)"]


def test_decision_opened_then_approved(w: Watched) -> None:
    """A decision reads opened with its title, then approved with the decision and ADR number."""
    w.sim.status("alpha", decisions_needed=["SDXL or SD3 for A2?"])
    assert w.seen("decision") == ["D-1 opened (decision_needed): SDXL or SD3 for A2?"]
    w.sim.do(ApproveDecision(decision="D-1", note="SDXL"))
    assert w.seen("decision") == ["D-1 approved (ADR 1): SDXL"]


def test_plan_change_is_reported(w: Watched) -> None:
    """A runtime plan change reads "plan change N: DETAIL (SOURCE: REASON)"."""
    w.sim.do(AddDependency(workstream="B2", depends_on="A2", reason="needs A2's output"))
    (event,) = w.feed.changes(w.sim.plan, w.sim.state, w.sim.now)
    assert (event.kind, event.subject) == ("plan", "B2")
    assert event.text.startswith("plan change 1: ")
    assert event.text.endswith("(operator: needs A2's output)")


def test_a_replaced_state_with_the_same_content_reports_nothing(w: Watched) -> None:
    """The feed compares values, so a rebuilt state object (replay, plan reload) is no news."""
    w.sim.escalate("alpha", "GPU not found", ("A1",))
    w.sim.report("A1", "in_progress", 0.5)
    w.seen()
    copy = msgspec.msgpack.decode(msgspec.msgpack.encode(w.sim.state), type=State)
    assert w.feed.changes(w.sim.plan, copy, w.sim.now) == []


def test_report_event_names_the_week_and_the_file() -> None:
    """report_event is a "report" event about "week N" naming the file written."""
    event = report_event(3, "/s/reports/week_03_status.md", 100.0)
    assert (event.kind, event.subject, event.at) == ("report", "week 3", 100.0)
    assert event.text == "week 3 report written: /s/reports/week_03_status.md"
    assert event.data == {"week": 3, "path": "/s/reports/week_03_status.md"}


def test_no_kind_is_a_prefix_of_another() -> None:
    """Subscriptions match the kind frame by prefix: every kind must select only itself."""
    assert not [(a, b) for a in KINDS for b in KINDS if a != b and b.startswith(a)]


# --- the publisher over real sockets ---------------------------------------------------------


@pytest.fixture
def endpoint(state_dir: Path) -> str:
    return StatePaths.under(state_dir).events_endpoint


@pytest.fixture
def publisher(endpoint: str) -> Iterator[EventPublisher]:
    ctx = zmq.Context()
    pub = EventPublisher(ctx, endpoint)
    try:
        yield pub
    finally:
        pub.close()
        ctx.term()


@pytest.fixture
def sub_ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def subscriber(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, *kinds: str
) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    for kind in kinds or ("",):
        sock.subscribe(kind)
    return sock


def until(condition: Callable[[], bool]) -> None:
    """Poll a condition that an asynchronous event (a subscription arriving) will make true."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)  # polling for a socket event, not waiting for time to pass


def receive(sock: zmq.Socket[bytes]) -> tuple[bytes, WatchEvent]:
    assert sock.poll(int(WAIT_S * 1000)), "no event arrived"
    kind, payload = sock.recv_multipart()
    return kind, _decoder.decode(payload)


def event(kind: str = "gate", n: int = 1) -> WatchEvent:
    return WatchEvent(kind=kind, at=1000.0 + n, subject=f"s{n}", text=f"event {n}")


def test_no_subscriber_wants_no_events(publisher: EventPublisher) -> None:
    """With nobody subscribed, wants_events() is False (the daemon can skip the work)."""
    assert publisher.wants_events() is False


def test_a_subscriber_makes_events_wanted_until_it_leaves(
    publisher: EventPublisher, endpoint: str, sub_ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """wants_events() turns True when a watcher subscribes, False again once it disconnects."""
    sock = subscriber(sub_ctx, endpoint)
    until(publisher.wants_events)
    sock.close(0)
    until(lambda: not publisher.wants_events())


def test_events_reach_a_subscriber_as_kind_and_msgpack_frames(
    publisher: EventPublisher, endpoint: str, sub_ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """Each event arrives as [kind, msgpack(WatchEvent)], numbered per kind from 1."""
    sock = subscriber(sub_ctx, endpoint)
    until(publisher.wants_events)
    sent = [event("gate", 1), event("escalation", 2), event("gate", 3)]
    assert publisher.publish(sent) == 3
    got = [receive(sock) for _ in sent]
    assert [kind for kind, _ in got] == [b"gate", b"escalation", b"gate"]
    assert [(e.text, e.seq) for _, e in got] == [("event 1", 1), ("event 2", 1), ("event 3", 2)]


def test_a_subscriber_gets_only_the_kinds_it_asked_for(
    publisher: EventPublisher, endpoint: str, sub_ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """Subscribing to "escalation" skips the other kinds."""
    sock = subscriber(sub_ctx, endpoint, "escalation")
    until(publisher.wants_events)
    publisher.publish([event("gate", 1), event("escalation", 2), event("plan", 3)])
    publisher.publish([event("escalation", 4)])
    assert [receive(sock)[1].text for _ in range(2)] == ["event 2", "event 4"]
    assert not sock.poll(0)


def test_a_subscriber_that_never_reads_does_not_block_publish_and_sees_the_gap(
    publisher: EventPublisher, endpoint: str, sub_ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """100k events to a watcher that reads nothing: publish returns; the watcher's copies beyond
    its queues are dropped, and the numbering shows it how many it missed."""
    sock = subscriber(sub_ctx, endpoint)
    sock.setsockopt(zmq.RCVHWM, SNDHWM)
    until(publisher.wants_events)
    total = 100_000
    for start in range(0, total, 1000):
        publisher.publish([event("workstream", n) for n in range(start, start + 1000)])
    assert publisher.published == total
    received = 0
    while sock.poll(100):  # drain what its queues held
        sock.recv_multipart()
        received += 1
    publisher.publish([event("workstream", total)])
    _, last = receive(sock)
    missed = last.seq - 1 - received
    assert last.seq == total + 1
    assert 0 < received < total and missed == total - received


def test_events_socket_is_created_0660(publisher: EventPublisher, state_dir: Path) -> None:
    """Like the daemon's other sockets, owner and group may connect, nobody else."""
    mode = os.stat(StatePaths.under(state_dir).events_socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660


def test_a_stale_socket_file_is_replaced(endpoint: str, state_dir: Path) -> None:
    """A socket file left by a crashed daemon does not stop the publisher from binding."""
    ctx = zmq.Context()
    first = EventPublisher(ctx, endpoint)
    first._path = None  # as after a crash: the file stays behind
    first.close()
    second = EventPublisher(ctx, endpoint)
    try:
        assert StatePaths.under(state_dir).events_socket.exists()
    finally:
        second.close()
        ctx.term()


def test_close_removes_the_socket_file(endpoint: str, state_dir: Path) -> None:
    """After close() no events.sock is left for a watcher to find."""
    ctx = zmq.Context()
    EventPublisher(ctx, endpoint).close()
    ctx.term()
    assert not StatePaths.under(state_dir).events_socket.exists()


def test_a_file_that_is_not_a_socket_is_refused(endpoint: str, state_dir: Path) -> None:
    """A regular file at the socket path is left alone and the bind fails saying so."""
    path = StatePaths.under(state_dir).events_socket
    path.parent.mkdir()
    path.write_text("keep me")
    ctx = zmq.Context()
    try:
        with pytest.raises(DaemonError, match="is not a socket"):
            EventPublisher(ctx, endpoint)
    finally:
        ctx.term()
    assert path.read_text() == "keep me"


def test_publisher_works_on_the_daemons_asyncio_context(endpoint: str) -> None:
    """The server's zmq.asyncio.Context is accepted (the publisher shadows it)."""
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    pub = EventPublisher(ctx, endpoint)
    try:
        assert pub.wants_events() is False
        assert pub.publish([event()]) == 1
    finally:
        pub.close()
        ctx.term()


# --- a batch's scope (Batch.scope, engine.receive's "local") -----------------------------------


def test_a_scoped_diff_reports_only_the_named_workstreams_in_state_order(w: Watched) -> None:
    """``only``: the workstreams looked at (in the state's order, not the given one); no
    orchestrator is looked at."""
    w.sim.report("A1", "in_progress", 0.1)
    w.sim.open_beta()  # A1, A2 complete, g1 passed, beta activated
    events = w.feed.changes(w.sim.plan, w.sim.state, w.sim.now, only=["A2", "A1"])
    assert [e.subject for e in events if e.kind == "workstream"] == ["A1", "A2"]
    assert not [e for e in events if e.kind == "orchestrator"]
    assert w.feed.changes(w.sim.plan, w.sim.state, w.sim.now, only=set()) == []


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["A1", "A2"]),
                st.sampled_from(
                    ["in_progress", "in_progress", "in_progress", "blocked", "complete"]
                ),
                st.floats(min_value=0.0, max_value=1.0),
                st.sampled_from([None, None, "waiting"]),
            ),
            min_size=1,
            max_size=3,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_batch_of_local_messages_diffs_the_same_within_its_scope(
    batches: list[list[tuple[str, str, float, str | None]]],
) -> None:
    """What engine.receive calls local changes nothing a watcher sees outside the message's
    workstreams: the scoped diff of each batch equals the full one."""
    sim = Sim()  # the mini plan: A2 waits for A1, so completing A1 moves A2 (out of scope)
    full, scoped = EventFeed(sim.plan, sim.state), EventFeed(sim.plan, sim.state)
    seq = 0
    for batch in batches:
        scope: set[str] | None = set()
        for ws_id, status, progress, blocker in batch:
            seq += 1
            sim.later(600)
            report = WorkstreamReport(status=status, progress=progress, blocker=blocker)  # type: ignore[arg-type]
            message = Status(
                orchestrator="alpha", seq=seq, id=f"a-{seq}", workstreams={ws_id: report}
            )
            _, local = engine_receive(sim.state, sim.plan, message, sim.now)
            if not local:
                scope = None
            elif scope is not None:
                scope.add(ws_id)
        expected = full.changes(sim.plan, sim.state, sim.now)
        assert scoped.changes(sim.plan, sim.state, sim.now, only=scope) == expected
