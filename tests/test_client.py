"""OrchestratorClient against BusPeer, a test peer that plays the daemon's bus rules over ipc://.

BusPeer is NOT pixelsd: it is a small ROUTER in a thread that implements the contract of
docs/protocol.md section 5 (welcome with the acked seq, apply seq == acked + 1 once, duplicates
acked again, seq_gap plus ack for a gap, cumulative acks) and can misbehave on purpose: forget what
it received (a crash before the commit), keep quiet (lost acks), lose a frame, refuse a frame.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
import zmq

from orchestrators.client import OrchestratorClient
from orchestrators.outbox import Outbox
from protocol import codec
from protocol.codec import FrameError
from protocol.messages import (
    Ack,
    Command,
    Error,
    ErrorCode,
    Escalation,
    Heartbeat,
    Message,
    Poll,
    PollReply,
    Register,
    Status,
    Welcome,
    WorkstreamReport,
)

NAME = "foundation"
T0 = 1_800_000_000.0
#: Tests tick by hand with a fake clock; the background heartbeat task must never fire on its own.
NO_AUTO_TICK_S = 3600.0

Durable = Status | PollReply | Escalation


@dataclass
class PeerRules:
    """How BusPeer behaves; tests flip these while it runs (under BusPeer.lock)."""

    commit: bool = True  # False: durable frames are received and forgotten (crash before commit)
    ack: bool = True  # False: applied but never acked (acks lost)
    answer_heartbeats: bool = True
    ack_every: int = 1  # ack once this many applied seqs are unacked (tests the client's window)
    lose_once: set[int] = field(default_factory=set)  # seqs lost on first arrival (a hole)
    refuse_once: set[int] = field(default_factory=set)  # seqs refused as bad_message (not consumed)
    unknown_workstreams: set[str] = field(default_factory=set)  # consumed with an error
    fail_commit_once: bool = False  # answer the next new seq with `unavailable`, not applied
    orchestrators: set[str] = field(default_factory=lambda: {NAME, "model"})


class BusPeer:
    """A test stand-in for the daemon's bus ROUTER (see the module docstring)."""

    def __init__(self, endpoint: str, acked: dict[str, int] | None = None) -> None:
        self.endpoint = endpoint
        self.rules = PeerRules()
        self.lock = threading.Lock()
        self.acked: dict[str, int] = dict(acked or {})
        self.last_ack_sent: dict[str, int] = {}
        self.applied: list[Durable] = []
        self.received: list[Message] = []
        self.sent: list[Message] = []
        self.max_ahead = 0  # the most a durable seq ran ahead of the last ack sent
        self._outbox: list[tuple[bytes, Message]] = []  # pushed by tests: (route, message)
        self._routes: dict[str, bytes] = {}
        self._ctx = zmq.Context()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- test controls ---------------------------------------------------------------------

    def start(self) -> BusPeer:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.bind(self.endpoint)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the ROUTER (the client sees a disconnect); the peer's state is kept."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._thread = None

    def restart(self, **rules: object) -> None:
        self.stop()
        for key, value in rules.items():
            setattr(self.rules, key, value)
        self.start()

    def close(self) -> None:
        self.stop()
        self._ctx.term()

    def push(self, message: Message) -> None:
        """Send ``message`` to NAME's connection from the peer's thread."""
        with self.lock:
            self._outbox.append((self._routes[NAME], message))

    def durable_received(self) -> list[int]:
        with self.lock:
            return [m.seq for m in self.received if isinstance(m, Status | PollReply | Escalation)]

    def count(self, kind: type[Message], *, sent: bool = False) -> int:
        with self.lock:
            return sum(isinstance(m, kind) for m in (self.sent if sent else self.received))

    def applied_seqs(self) -> list[int]:
        with self.lock:
            return [m.seq for m in self.applied]

    # --- the peer's thread -----------------------------------------------------------------

    def _serve(self, sock: zmq.Socket[bytes]) -> None:
        try:
            while not self._stop.is_set():
                with self.lock:
                    pushed, self._outbox = self._outbox, []
                for route, message in pushed:
                    self._send(sock, route, message)
                if not sock.poll(10):  # ms: how soon the peer notices stop() and pushes
                    continue
                while True:
                    try:
                        route, payload = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    for reply in self._on_frame(route, payload):
                        self._send(sock, route, reply)
        finally:
            sock.close(0)

    def _send(self, sock: zmq.Socket[bytes], route: bytes, message: Message) -> None:
        with self.lock:
            self.sent.append(message)
        with contextlib.suppress(zmq.ZMQError):  # the client went away: drop it, like the daemon
            sock.send_multipart([route, codec.encode(message)], zmq.NOBLOCK)

    def _on_frame(self, route: bytes, payload: bytes) -> list[Message]:
        with self.lock:
            try:
                message = codec.to_daemon.decode(payload)
            except FrameError as exc:
                return [Error(code=exc.code, message=exc.message, re=exc.msg_id or None)]
            self.received.append(message)
            rules = self.rules
            name = message.orchestrator
            if name not in rules.orchestrators:
                return [self._error("unknown_orchestrator", "no such orchestrator", message)]
            self._routes[name] = route
            acked = self.acked.get(name, 0)
            if isinstance(message, Register):
                self.last_ack_sent[name] = acked
                return [Welcome(orchestrator=name, acked_seq=acked, heartbeat_s=2.0, re=message.id)]
            if isinstance(message, Heartbeat):
                return [self._ack(name, message)] if rules.answer_heartbeats else []
            self.max_ahead = max(self.max_ahead, message.seq - self.last_ack_sent.get(name, 0))
            if message.seq in rules.lose_once:
                rules.lose_once.discard(message.seq)
                return []
            if not rules.commit:
                return []
            if message.seq in rules.refuse_once and message.seq == acked + 1:
                rules.refuse_once.discard(message.seq)
                return [self._error("bad_message", "refused by the test peer", message)]
            if message.seq <= acked:
                return [self._ack(name, message)] if rules.ack else []
            if rules.fail_commit_once and message.seq == acked + 1:
                rules.fail_commit_once = False
                return [self._error("unavailable", "cannot commit", message)]
            if message.seq > acked + 1:
                return [self._error("seq_gap", "gap", message), self._ack(name, message)]
            self.acked[name] = message.seq
            replies: list[Message] = []
            refused = self._refused_workstream(message)
            if refused:
                replies.append(self._error("unknown_workstream", refused, message, message.seq))
            else:
                self.applied.append(message)
            if rules.ack and message.seq - self.last_ack_sent.get(name, 0) >= rules.ack_every:
                replies.append(self._ack(name, message))
            return replies

    def _refused_workstream(self, message: Durable) -> str:
        ids = (
            message.affected_workstreams if isinstance(message, Escalation) else message.workstreams
        )
        unknown = sorted(set(ids) & self.rules.unknown_workstreams)
        return f"the plan has no workstream {unknown[0]!r}" if unknown else ""

    def _ack(self, name: str, message: Message) -> Ack:
        acked = self.acked.get(name, 0)
        self.last_ack_sent[name] = acked
        return Ack(acked_seq=acked, re=message.id)

    @staticmethod
    def _error(code: ErrorCode, text: str, message: Message, rejected_seq: int = 0) -> Error:
        return Error(code=code, message=text, re=message.id, rejected_seq=rejected_seq)


# --- fixtures and helpers ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def endpoint(state_dir: Path) -> str:
    return f"ipc://{state_dir}/bus.sock"


@pytest.fixture
def peer(endpoint: str) -> Iterator[BusPeer]:
    bus = BusPeer(endpoint).start()
    try:
        yield bus
    finally:
        bus.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(
    state_dir: Path, endpoint: str, clock: FakeClock
) -> Callable[..., OrchestratorClient]:
    """A client on a fresh outbox, ticking only by hand (enter it with ``async with`` in the test:
    its task group must live in the test's own task)."""

    def make(**kw: object) -> OrchestratorClient:
        options: dict[str, object] = {"heartbeat_s": NO_AUTO_TICK_S, "clock": clock}
        options.update(kw)
        return OrchestratorClient(NAME, endpoint, state_dir / "outbox.db", **options)  # type: ignore[arg-type]

    return make


def status(progress: float = 0.5, ws: str = "WS-01") -> Status:
    return Status(
        orchestrator=NAME,
        workstreams={ws: WorkstreamReport(status="in_progress", progress=progress)},
    )


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds (real async events: sockets, threads)."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


# --- delivery -----------------------------------------------------------------------------


async def test_delivers_messages_and_the_acks_empty_the_outbox(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """Sent messages are applied in order once each, and acks leave nothing pending."""
    async with make_client() as client:
        await client.send_many([status(0.1), status(0.2)])
        await client.send(status(0.3))
        assert await client.wait_acked(5)
        assert peer.applied_seqs() == [1, 2, 3]
        assert client.pending == 0


async def test_acked_seq_is_visible(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient], state_dir: Path
) -> None:
    """The acked seq ("acked up to N") is on the client and in the outbox file."""
    async with make_client() as client:
        await client.send_many([status() for _ in range(4)])
        assert await client.wait_acked(5)
        assert client.acked_seq == 4
        with Outbox.open(state_dir / "outbox.db", NAME) as box:
            assert box.counters().acked_seq == 4


async def test_messages_sent_before_any_daemon_wait_for_the_welcome(
    state_dir: Path, endpoint: str, make_client: Callable[..., OrchestratorClient]
) -> None:
    """With no daemon, send still returns (on disk); the first welcome numbers them from A+1."""
    async with make_client() as client:
        await client.send_many([status(0.1), status(0.2)])
        assert client.pending == 2
        bus = BusPeer(endpoint, acked={NAME: 10}).start()
        try:
            assert await client.wait_acked(5)
            assert bus.applied_seqs() == [11, 12]
            assert client.acked_seq == 12
        finally:
            bus.close()


async def test_rejected_messages_are_reported_and_not_resent(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """A message the daemon consumed with an error is in ``rejected`` and leaves the outbox."""
    async with make_client() as client:
        peer.rules.unknown_workstreams = {"WS-99"}
        await client.send_many([status(), status(ws="WS-99"), status()])
        assert await client.wait_acked(5)
        assert [(e.code, e.rejected_seq) for e in client.rejected] == [("unknown_workstream", 2)]
        assert peer.applied_seqs() == [1, 3]
        assert peer.durable_received() == [1, 2, 3]

    # --- resend -------------------------------------------------------------------------------


async def test_resends_what_a_restarted_daemon_never_committed(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """Frames lost in a daemon crash are resent after the reconnect and applied once."""
    async with make_client() as client:
        peer.rules.commit = False
        await client.send_many([status(0.1), status(0.2), status(0.3)])
        await wait_until(lambda: peer.durable_received() == [1, 2, 3])
        peer.restart(commit=True)
        assert await client.wait_acked(5)
        assert peer.applied_seqs() == [1, 2, 3]
        assert peer.count(Register) == 2


async def test_lost_acks_do_not_cause_a_second_apply(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """Applied-but-unacked messages are dropped on the welcome, not sent again."""
    async with make_client() as client:
        peer.rules.ack = False
        await client.send_many([status() for _ in range(3)])
        await wait_until(lambda: peer.applied_seqs() == [1, 2, 3])
        peer.restart(ack=True)
        assert await client.wait_acked(5)
        assert peer.applied_seqs() == [1, 2, 3]
        assert peer.durable_received() == [1, 2, 3]


async def test_daemon_reset_renumbers_pending_from_its_seq(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """A daemon that lost its state (welcome below our acked seq) gets pending as 1, 2, ..."""
    async with make_client() as client:
        await client.send_many([status() for _ in range(3)])
        assert await client.wait_acked(5)
        peer.rules.commit = False
        await client.send_many([status(0.7), status(0.8)])  # 4, 5: never committed
        await wait_until(lambda: peer.durable_received()[-2:] == [4, 5])
        peer.acked.clear()
        peer.applied.clear()
        peer.restart(commit=True)
        assert await client.wait_acked(5)
        assert peer.applied_seqs() == [1, 2]
        assert [m.workstreams["WS-01"].progress for m in peer.applied] == [0.7, 0.8]  # type: ignore[union-attr]
        assert client.acked_seq == 2


async def test_seq_gap_resends_from_the_hole_once(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """A lost frame draws seq_gap for each later one; the client goes back once, not per error."""
    async with make_client() as client:
        peer.rules.lose_once = {2}
        await client.send_many([status() for _ in range(5)])
        assert await client.wait_acked(5)
        assert peer.applied_seqs() == [1, 2, 3, 4, 5]
        assert peer.durable_received() == [1, 2, 3, 4, 5, 2, 3, 4, 5]


async def test_decoder_refusal_drops_the_message_and_closes_the_hole(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """A durable frame the daemon could not decode is dropped; later ones move down by one."""
    async with make_client() as client:
        peer.rules.refuse_once = {2}
        await client.send_many([status(0.1), status(0.2), status(0.3), status(0.4)])
        assert await client.wait_acked(5)
        assert peer.applied_seqs() == [1, 2, 3]
        assert [m.workstreams["WS-01"].progress for m in peer.applied] == [0.1, 0.3, 0.4]  # type: ignore[union-attr]
        assert [e.code for e in client.rejected] == ["bad_message"]


async def test_window_bounds_unacked_messages_in_flight(
    peer: BusPeer, state_dir: Path, endpoint: str, clock: FakeClock
) -> None:
    """With window=8, never more than 8 durable frames run ahead of the last ack sent."""
    peer.rules.ack_every = 8  # the peer acks only full windows: a 9th frame would show
    async with OrchestratorClient(
        NAME, endpoint, state_dir / "w.db", window=8, heartbeat_s=NO_AUTO_TICK_S, clock=clock
    ) as c:
        await c.send_many([status() for _ in range(96)])
        assert await c.wait_acked(10)
    assert peer.applied_seqs() == list(range(1, 97))
    assert peer.max_ahead == 8


# --- liveness -----------------------------------------------------------------------------


async def test_silent_daemon_with_pending_messages_is_registered_again(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient], clock: FakeClock
) -> None:
    """Nothing heard for 3 heartbeats while a message is pending: register again, which resends."""
    async with make_client() as client:
        peer.rules.commit = False
        peer.rules.answer_heartbeats = False
        await client.send(status())
        await wait_until(lambda: peer.durable_received() == [1])
        hb = client.heartbeat_s
        peer.rules.commit = True
        clock.now += 3 * hb
        await client.tick()
        assert await client.wait_acked(5)
        assert peer.count(Register) == 2
        assert peer.applied_seqs() == [1]


async def test_stuck_message_is_sent_again_while_the_daemon_answers(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient], clock: FakeClock
) -> None:
    """In flight with no ack progress for 3 heartbeats, though the daemon talks: re-register."""
    async with make_client() as client:
        peer.rules.commit = False
        await client.send(status())
        await wait_until(lambda: peer.durable_received() == [1])
        peer.rules.commit = True
        clock.now += 3 * client.heartbeat_s
        peer.push(Poll(id="p1"))  # a sign of life: the daemon is not silent
        commands = client.commands()
        assert (await anext(commands)).id == "p1"
        await client.tick()
        assert await client.wait_acked(5)
        assert peer.count(Register) == 2
        assert peer.applied_seqs() == [1]


async def test_unavailable_daemon_is_registered_again_after_a_backoff(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient], clock: FakeClock
) -> None:
    """After `unavailable` the client stops, backs off, re-registers and resends."""
    async with make_client() as client:
        peer.rules.fail_commit_once = True
        await client.send(status())
        await wait_until(lambda: peer.count(Error, sent=True) == 1)
        await wait_until(lambda: not client.registered)
        await client.tick()  # too early: the backoff has not passed
        assert peer.count(Register) == 1
        clock.now += 2 * client.heartbeat_s  # beyond the first backoff (one period, +-20 %)
        await client.tick()
        assert await client.wait_acked(5)
        assert peer.count(Register) == 2
        assert peer.applied_seqs() == [1]


async def test_heartbeat_goes_out_after_a_quiet_period(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient], clock: FakeClock
) -> None:
    """A tick a heartbeat period after the last send sends a heartbeat (answered by an ack)."""
    async with make_client() as client:
        await wait_until(lambda: client.registered)
        clock.now += client.heartbeat_s
        await client.tick()
        await wait_until(lambda: peer.count(Ack, sent=True) == 1)
        assert peer.count(Heartbeat) == 1


async def test_commands_arrive_in_order(
    peer: BusPeer, make_client: Callable[..., OrchestratorClient]
) -> None:
    """Polls and commands from the daemon come out of ``commands()`` in arrival order."""
    async with make_client() as client:
        await wait_until(lambda: client.registered)
        peer.push(Poll(id="p1", deadline_s=5.0))
        peer.push(Command(id="c1", action="halt", workstream="WS-01"))
        commands = client.commands()
        got = [await anext(commands), await anext(commands)]
        assert [(type(m).__name__, m.id) for m in got] == [("Poll", "p1"), ("Command", "c1")]


async def test_unknown_orchestrator_is_reported_and_ends_the_wait(
    peer: BusPeer, state_dir: Path, endpoint: str
) -> None:
    """A name the daemon does not know sets ``refused``; wait_acked returns False at once."""
    async with OrchestratorClient(
        "nobody", endpoint, state_dir / "n.db", heartbeat_s=NO_AUTO_TICK_S
    ) as c:
        await c.send(Status(orchestrator="nobody"))
        with anyio.fail_after(5):
            assert not await c.wait_acked()
        assert c.refused is not None
        assert c.refused.code == "unknown_orchestrator"
        assert c.pending == 1
