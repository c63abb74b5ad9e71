"""``OrchestratorClient``: a domain orchestrator's connection to pixelsd, with a durable outbox.

    async with OrchestratorClient("foundation", endpoint, "outbox.db") as client:
        await client.send(Status(orchestrator="foundation", ...))   # returns once on disk
        await client.wait_acked(timeout=10)                         # until the daemon acked all

``send`` only enqueues (orchestrators/outbox.py has the seq rules); delivery runs in the client's
own tasks, all owned by one anyio task group: a DEALER connects to the daemon's bus, registers on
every (re)connection (seen through a zmq monitor socket), and on ``welcome`` resends everything
pending in seq order, at most ``window`` unacked in flight. Acks delete from the outbox. Liveness
and recovery follow docs/protocol.md section 5:

- heartbeat when nothing was sent for ``heartbeat_s`` (default: the welcome's); every frame from
  the daemon is a sign of life;
- silence (nothing heard for 3 heartbeats) or a stuck message (in flight, no ack progress for 3
  heartbeats) while messages are pending: re-register, which resends; register retries back off
  from ``heartbeat_s``, doubling to 30 s, with jitter;
- ``seq_gap``: go back to acked + 1 and resend (once per gap, not once per gapped message);
- ``unavailable`` (the daemon cannot commit): stop sending, back off, re-register;
- a durable message refused by the daemon's decoder (not consumed): dropped, later ones renumbered.

Timers read the injected ``clock`` (also the frames' ``ts``): ``tick()`` is one heartbeat period's
work, called by the heartbeat task, and by tests with a fake clock.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

import anyio
import anyio.abc
import structlog
import zmq
import zmq.asyncio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from zmq.utils.monitor import parse_monitor_message

from orchestrators.outbox import Counters, Durable, Outbox, WelcomeCase, message_id
from protocol import codec
from protocol.codec import FrameError
from protocol.messages import (
    SOCKET_MAX_MSGSIZE,
    Ack,
    Command,
    Error,
    Heartbeat,
    Poll,
    Register,
    Welcome,
)

log = structlog.get_logger("pixels.orchestrator")

CLIENT_SOFTWARE = "pixels-orchestrator 0.1.0"

#: Heartbeat period (and register retry) until a welcome says otherwise: the Paranoid Pirate ~1 s.
PRE_WELCOME_HEARTBEAT_S = 1.0
#: Missed heartbeats before the daemon counts as silent, or an unacked message as stuck.
MISSED_HEARTBEATS = 3
#: Register retries double up to this: a daemon down for an hour costs one register per 30 s.
REGISTER_BACKOFF_MAX_S = 30.0
#: Retries are spread by +-20 % so clients that lost the same daemon do not return in lockstep.
JITTER = 0.2

#: Reconnect 100 ms after a drop: local ipc, and a restarted daemon binds again within ~1 s.
RECONNECT_IVL_MS = 100
#: libzmq doubles the interval up to this cap: a daemon down for minutes costs a connect attempt
#: every 5 s, not a spin (docs/protocol.md's value).
RECONNECT_IVL_MAX_MS = 5000
#: ZMTP pings find a dead connection (mainly on tcp://, where a vanished host sends no FIN); they
#: do not replace the protocol heartbeat, which also carries the ack.
ZMTP_HEARTBEAT_IVL_MS = 2000
ZMTP_HEARTBEAT_TIMEOUT_MS = 6000
#: Queue room beyond the window, for register and heartbeats (sent) and for errors, polls and
#: commands (received) on top of at most one reply per message in flight.
HWM_SLACK = 64
#: After zmq.Again (pipe full, or connected but not attached yet) try again this soon: a local
#: pipe drains in well under a millisecond per frame; polling POLLOUT would need another waiter.
SEND_RETRY_S = 0.05
#: Frames taken off the socket per awaited poll (one await per batch, not per message).
DRAIN_MAX = 1024
#: Frames read from the outbox per worker-thread hop while resending.
READ_CHUNK = 512
#: Polls and commands held for ``commands()`` before new ones are dropped (and logged): they are
#: rare, and the daemon polls again.
COMMAND_BUFFER = 1000

#: Codes for which the daemon's decoder refused a frame: a durable one was not consumed.
_DECODER_REFUSALS = frozenset(
    {"bad_frame", "bad_message", "too_large", "unsupported_version", "unknown_type"}
)


class ClientError(Exception):
    """Raised by ``__aenter__`` when the client cannot start: an endpoint zmq refuses. (An
    unusable outbox raises ``orchestrators.outbox.OutboxError``.)"""


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


class OrchestratorClient:
    """One orchestrator's client: durable ``send``, delivery and acks in the background.

    ``acked_seq``: every durable message up to this seq is applied by the daemon (or consumed with
    an error, see ``rejected``). ``pending``: messages accepted but not acked yet. ``rejected``:
    what the daemon refused: errors with ``rejected_seq`` > 0 (consumed) and errors of its decoder
    for a message (dropped from the outbox). ``refused``: set while the daemon refuses this
    orchestrator's name (``unknown_orchestrator``) or its key may not speak as it (``forbidden``):
    nothing can be delivered.
    """

    def __init__(
        self,
        name: str,
        endpoint: str,
        outbox: str | os.PathLike[str],
        *,
        heartbeat_s: float | None = None,
        window: int = 1000,
        clock: Callable[[], float] = time.time,
        curve: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        if heartbeat_s is not None and not heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be positive, not {heartbeat_s}")
        self.name = name
        self.endpoint = endpoint
        self.outbox_path = Path(outbox)
        self.window = window
        self.clock = clock
        #: tcp:// with CURVE: (the daemon's public key, ours, our secret), Z85; None: no CURVE.
        self.curve = curve
        self.rejected: list[Error] = []
        self.refused: Error | None = None
        self.daemon_heartbeat_s: float | None = None  # the last welcome's
        self._heartbeat_override = heartbeat_s
        self._boot = os.urandom(3).hex()
        self._ids = itertools.count(1)
        # Mirrors of the outbox counters, updated under _lock after each outbox call.
        self._acked = 0
        self._last = 0
        self._pending = 0
        # Delivery state of the current connection.
        self._connected = False
        self._welcomed = False
        self._need_register = False
        self._register_due = math.inf  # when to retry register if no welcome came
        self._backoff = PRE_WELCOME_HEARTBEAT_S
        self._sent_upto = 0  # highest seq sent since the last welcome or rewind
        self._generation = 0  # bumped on every rewind/renumber: stale reads are discarded
        self._rewound_at: int | None = None  # acked seq at the last rewind (dampens seq_gap)
        self._rewound_when = 0.0
        self._last_heard = 0.0
        self._last_sent = 0.0
        self._last_progress = 0.0
        self._outbox: Outbox | None = None
        self._open = False  # between __aenter__ and __aexit__
        self._sock: zmq.asyncio.Socket | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._commands_in: MemoryObjectSendStream[Command | Poll]
        self._commands_out: MemoryObjectReceiveStream[Command | Poll]

    # --- public --------------------------------------------------------------------------------

    @property
    def acked_seq(self) -> int:
        """The daemon has applied (or consumed) every durable message of ours up to this seq."""
        return self._acked

    @property
    def pending(self) -> int:
        """Messages accepted by ``send`` and not yet acked by the daemon."""
        return self._pending

    @property
    def registered(self) -> bool:
        """Whether the current connection has been welcomed (durable messages may flow)."""
        return self._welcomed

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat period in use: the constructor's, else the daemon's, else 1 s."""
        return self._heartbeat_override or self.daemon_heartbeat_s or PRE_WELCOME_HEARTBEAT_S

    async def __aenter__(self) -> OrchestratorClient:
        async with AsyncExitStack() as stack:
            self._outbox = outbox = await anyio.to_thread.run_sync(
                Outbox.open, self.outbox_path, self.name
            )
            stack.callback(outbox.close)
            self._apply(await anyio.to_thread.run_sync(outbox.counters))
            self._lock = anyio.Lock()  # one outbox call at a time (one connection, one thread)
            self._wake = anyio.Event()
            self._changed = anyio.Event()
            self._commands_in, self._commands_out = anyio.create_memory_object_stream[
                Command | Poll
            ](COMMAND_BUFFER)
            # Closing the sending side ends ``commands()`` iterations cleanly (EndOfStream).
            stack.callback(self._commands_in.close)
            ctx = zmq.asyncio.Context()
            stack.callback(ctx.term)
            sock, monitor = self._socket(ctx)
            stack.callback(self._close_sockets, sock, monitor)
            self._sock = sock
            tg = anyio.create_task_group()
            await stack.enter_async_context(tg)
            self._open = True
            self._tg = tg
            tg.start_soon(self._monitor_loop, monitor)
            tg.start_soon(self._recv_loop, sock)
            tg.start_soon(self._send_loop)
            tg.start_soon(self._heartbeat_loop)
            self._stack = stack.pop_all()
        log.debug("client_started", orchestrator=self.name, endpoint=self.endpoint)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop the tasks, close the socket (linger 0: the outbox holds everything), close the
        outbox. Messages not acked stay in the outbox for the next run."""
        assert self._stack is not None and self._tg is not None
        self._open = False
        self._tg.cancel_scope.cancel()
        stack, self._stack = self._stack, None
        return await stack.__aexit__(exc_type, exc, tb)

    async def send(self, message: Durable) -> None:
        """Accept one status, poll_reply or escalation; returns once it is on disk.

        ``seq``, ``id`` and ``ts`` are set by the client. Raises ``InvalidMessage`` for a message
        the daemon could not decode or that names another orchestrator (nothing accepted).
        """
        await self.send_many([message])

    async def send_many(self, messages: Sequence[Durable]) -> None:
        """Accept several messages in one commit (one fsync); all or none."""
        if not messages:
            return
        outbox = self._require_outbox()
        batch = list(messages)
        # Shielded: once the commit runs, the mirrors must learn of it, or the pump would not
        # see the new rows until the next ack (cancelling a send cannot un-accept it anyway).
        with anyio.CancelScope(shield=True):
            async with self._lock:
                seqs = await anyio.to_thread.run_sync(outbox.enqueue_many, batch, self.clock())
                self._pending += len(batch)
                last = seqs[-1]
                if last is not None:
                    self._last = max(self._last, last)
        self._notify()
        self._wake.set()

    async def wait_acked(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending; False on timeout, or at once while ``refused`` is set."""
        with anyio.move_on_after(timeout):
            while self._pending > 0 and self.refused is None:
                await self._changed.wait()
        return self._pending == 0

    async def commands(self) -> AsyncIterator[Command | Poll]:
        """The daemon's polls and commands, in arrival order, until the client closes."""
        async for message in self._commands_out:
            yield message

    async def tick(self) -> None:
        """One heartbeat period's work: heartbeat, register retries, silence and stuck checks."""
        now = self.clock()
        interval = self.heartbeat_s
        if not self._connected:
            return  # with IMMEDIATE nothing can go out; the monitor says when a connection is up
        if not self._welcomed:
            if not self._need_register and now >= self._register_due:
                self._need_register = True
                self._wake.set()
            return
        self._last_heard = min(self._last_heard, now)  # a clock stepped back must not hide silence
        if now - self._last_sent >= interval:
            await self._send_frame(
                codec.encode(Heartbeat(orchestrator=self.name, id=self._new_id("h"), ts=now))
            )
        if self._pending == 0:
            return
        limit = MISSED_HEARTBEATS * interval
        if now - self._last_heard >= limit:
            log.warning("daemon_silent", orchestrator=self.name, pending=self._pending)
            self._reregister()
        elif self._sent_upto > self._acked and now - self._last_progress >= limit:
            log.warning(
                "ack_stuck", orchestrator=self.name, acked_seq=self._acked, sent=self._sent_upto
            )
            self._reregister()

    # --- plumbing ------------------------------------------------------------------------------

    def _require_outbox(self) -> Outbox:
        if self._outbox is None or not self._open:
            raise RuntimeError("use the client inside `async with OrchestratorClient(...)`")
        return self._outbox

    @property
    def _box(self) -> Outbox:
        """The outbox, for the client's own tasks (which run only while it is open)."""
        assert self._outbox is not None
        return self._outbox

    def _new_id(self, kind: str) -> str:
        return f"{self.name}-{self._boot}-{kind}{next(self._ids)}"

    def _apply(self, counters: Counters) -> None:
        self._acked, self._last, self._pending = (
            counters.acked_seq,
            counters.last_seq,
            counters.pending,
        )

    def _notify(self) -> None:
        """Wake ``wait_acked`` callers: the counters or ``refused`` changed."""
        self._changed.set()
        self._changed = anyio.Event()

    def _socket(self, ctx: zmq.asyncio.Context) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
        sock = ctx.socket(zmq.DEALER)
        # 0: unacked messages live in the outbox, not in libzmq; closing never waits on a peer.
        sock.setsockopt(zmq.LINGER, 0)
        # 1: while no connection is up, send fails at once (Again) instead of queueing frames
        # into a pipe that may never connect; the outbox resends after the welcome anyway.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        sock.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_HEARTBEAT_TIMEOUT_MS)
        # The window plus a little: a full window never hits the HWM (Again is for a stuck pipe).
        sock.setsockopt(zmq.SNDHWM, self.window + HWM_SLACK)
        sock.setsockopt(zmq.RCVHWM, self.window + HWM_SLACK)
        # Daemon frames are small; one this big is not from a daemon: drop the connection.
        sock.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_MSGSIZE)
        if self.curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve
        # The monitor exists before connect(), so the first handshake is not missed.
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            self._close_sockets(sock, monitor)
            raise ClientError(
                f"cannot connect to {self.endpoint!r}: {exc.strerror} "
                "(endpoints look like ipc:///path/to/bus.sock or tcp://host:port)"
            ) from None
        return sock, monitor

    @staticmethod
    def _close_sockets(sock: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket) -> None:
        if not sock.closed:
            sock.disable_monitor()
            sock.close(linger=0)
        monitor.close(linger=0)

    async def _send_frame(self, frame: bytes) -> bool:
        """Send without blocking; False when zmq says "not now" (no connection, or pipe full).

        Through the asyncio socket, not a shadow: it tells a waiting poll that a send just
        consumed the socket's edge-triggered signal (a missed wake-up otherwise). A NOBLOCK send
        returns a finished future: awaiting it does not suspend.
        """
        assert self._sock is not None
        try:
            await self._sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._last_sent = self.clock()
        return True

    def _reregister(self) -> None:
        """Stop sending durable messages until a new welcome; register now."""
        self._welcomed = False
        self._need_register = True
        self._wake.set()

    def _rewind(self, now: float) -> None:
        """Go back to acked + 1: everything after it is sent again, in order."""
        self._sent_upto = self._acked
        self._generation += 1
        self._rewound_at = self._acked
        self._rewound_when = now
        self._last_progress = now
        self._wake.set()

    # --- tasks ---------------------------------------------------------------------------------

    async def _monitor_loop(self, monitor: zmq.asyncio.Socket) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                log.debug("connected", orchestrator=self.name, endpoint=self.endpoint)
                self._connected = True
                self._welcomed = False
                self._backoff = self.heartbeat_s
                self._need_register = True
                self._wake.set()
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                log.info("disconnected", orchestrator=self.name, endpoint=self.endpoint)
                self._connected = False
                self._welcomed = False
                self._need_register = False

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_s)
            await self.tick()

    async def _send_loop(self) -> None:
        """The only task that sends register and durable frames (ordering lives here)."""
        while True:
            done = await self._send_work()
            # Not done: zmq said "not now"; try again shortly even if nothing else happens.
            with anyio.move_on_after(math.inf if done else SEND_RETRY_S):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _send_work(self) -> bool:
        if not self._connected:
            return True
        if self._need_register:
            now = self.clock()
            register = Register(
                orchestrator=self.name,
                pid=os.getpid(),
                host=socket.gethostname()[:255],
                client=CLIENT_SOFTWARE,
                id=self._new_id("r"),
                ts=now,
            )
            if not await self._send_frame(codec.encode(register)):
                return False
            self._need_register = False
            self._register_due = now + _jittered(self._backoff)
            self._backoff = min(self._backoff * 2, REGISTER_BACKOFF_MAX_S)
            log.debug("register_sent", orchestrator=self.name)
        if not self._welcomed:
            return True
        return await self._pump()

    async def _pump(self) -> bool:
        """Send pending frames after ``_sent_upto`` while the window has room."""
        outbox = self._box
        while self._welcomed and self._sent_upto < self._last:
            room = self.window - (self._sent_upto - self._acked)
            if room <= 0:
                return True  # the next ack wakes us
            generation, after = self._generation, self._sent_upto
            async with self._lock:
                rows = await anyio.to_thread.run_sync(outbox.frames, after, min(room, READ_CHUNK))
            if generation != self._generation or after != self._sent_upto:
                continue  # a welcome or rewind moved things while we read: read again
            if not rows:
                return True
            if self._sent_upto == self._acked:
                self._last_progress = self.clock()  # the window was empty: a fresh wait starts
            for seq, frame in rows:
                if not await self._send_frame(frame):
                    return False
                self._sent_upto = seq
        return True

    async def _recv_loop(self, sock: zmq.asyncio.Socket) -> None:
        raw: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        while True:
            await sock.poll()  # POLLIN
            frames: list[bytes] = []
            while len(frames) < DRAIN_MAX:
                try:
                    # The payload is the last part (a REQ-style peer would add a delimiter).
                    frames.append(raw.recv_multipart(zmq.NOBLOCK)[-1])
                except zmq.Again:
                    break
            if frames:
                await self._on_frames(frames)

    async def _on_frames(self, frames: list[bytes]) -> None:
        """Handle one drained batch. Acks are coalesced (one outbox commit per batch) and applied
        before the batch's seq_gap errors, so a rewind starts from the newest acked seq."""
        now = self.clock()
        self._last_heard = now
        ack: int | None = None
        gap = False
        for frame in frames:
            try:
                message = codec.to_orchestrator.decode(frame)
            except FrameError as exc:
                log.warning("bad_frame_from_daemon", code=exc.code, detail=exc.message)
                continue
            if isinstance(message, Ack):
                ack = message.acked_seq if ack is None else max(ack, message.acked_seq)
            elif isinstance(message, Welcome):
                if ack is not None:
                    await self._on_ack(ack, now)
                    ack = None
                await self._on_welcome(message, now)
            elif isinstance(message, Error):
                if message.code == "seq_gap":
                    gap = True
                else:
                    await self._on_error(message, now)
            elif isinstance(message, Poll | Command):
                self._deliver_command(message)
        if ack is not None:
            await self._on_ack(ack, now)
        if gap and self._welcomed:
            # Go-back-N once per gap: every message after a hole draws its own seq_gap.
            fresh = self._rewound_at != self._acked or now - self._rewound_when >= self.heartbeat_s
            if fresh:
                log.info("seq_gap", orchestrator=self.name, resend_from=self._acked + 1)
                self._rewind(now)

    async def _on_welcome(self, welcome: Welcome, now: float) -> None:
        if welcome.orchestrator != self.name:
            log.warning("welcome_for_another", orchestrator=self.name, named=welcome.orchestrator)
            return
        outbox = self._box
        self.daemon_heartbeat_s = welcome.heartbeat_s
        async with self._lock:
            outcome = await anyio.to_thread.run_sync(outbox.on_welcome, welcome.acked_seq)
            self._apply(outcome.counters)
        fields = {
            "orchestrator": self.name,
            "acked_seq": welcome.acked_seq,
            "pending": self._pending,
            "daemon": welcome.daemon,
        }
        if outcome.case is WelcomeCase.RESET:
            log.warning("daemon_state_reset", renumbered=outcome.renumbered, **fields)
        elif outcome.case is WelcomeCase.FOREIGN:
            log.warning("foreign_seqs", renumbered=outcome.renumbered, **fields)
        else:
            log.info("welcomed", case=outcome.case.value, dropped=outcome.dropped, **fields)
        self.refused = None
        self._welcomed = True
        self._need_register = False
        self._register_due = math.inf
        self._backoff = self.heartbeat_s
        self._rewind(now)
        self._notify()

    async def _on_ack(self, acked_seq: int, now: float) -> None:
        if acked_seq <= self._acked and acked_seq <= self._last:
            return  # a heartbeat's ack or a duplicate's: nothing new (no thread hop)
        outbox = self._box
        async with self._lock:
            outcome = await anyio.to_thread.run_sync(outbox.on_ack, acked_seq)
            if outcome.foreign:
                log.warning("foreign_ack", orchestrator=self.name, acked_seq=acked_seq)
                self._reregister()  # the welcome will renumber above the daemon's seq
                return
            advanced = outcome.counters.acked_seq > self._acked
            self._apply(outcome.counters)
        if advanced:
            self._last_progress = now
            self._notify()
            self._wake.set()  # the window has room again

    async def _on_error(self, error: Error, now: float) -> None:
        if error.rejected_seq > 0:
            # Consumed without effect; the ack that follows deletes it from the outbox.
            log.warning(
                "rejected",
                orchestrator=self.name,
                seq=error.rejected_seq,
                code=error.code,
                message=error.message,
            )
            self.rejected.append(error)
            return
        if error.code in ("unknown_orchestrator", "forbidden"):
            # Either way nothing of ours can be delivered (a wrong name, or a key or connection
            # not allowed to speak as it): say so instead of resending into a wall.
            if self.refused is None:
                log.error(error.code, orchestrator=self.name, message=error.message)
            self.refused = error
            self._welcomed = False
            self._notify()
            return
        if error.code == "unavailable":
            # Nothing of that batch was committed: back off, then re-register (which resends).
            delay = _jittered(self._backoff)
            log.warning("daemon_unavailable", orchestrator=self.name, retry_in=round(delay, 2))
            self._welcomed = False
            self._need_register = False
            self._register_due = now + delay
            self._backoff = min(self._backoff * 2, REGISTER_BACKOFF_MAX_S)
            return
        seq = self._seq_of(error.re)
        if error.code in _DECODER_REFUSALS and seq is not None:
            await self._drop_refused(seq, error, now)
            return
        log.warning("daemon_error", orchestrator=self.name, code=error.code, message=error.message)

    def _seq_of(self, msg_id: str | None) -> int | None:
        """The seq of one of our durable messages, from its id (``message_id``), else None."""
        prefix = f"{self.name}-"
        if msg_id is None or not msg_id.startswith(prefix):
            return None
        tail = msg_id[len(prefix) :]
        if not tail.isdigit():
            return None
        seq = int(tail)
        return seq if msg_id == message_id(self.name, seq) else None

    async def _drop_refused(self, seq: int, error: Error, now: float) -> None:
        """The daemon's decoder refused durable ``seq``: it was not consumed and every later seq
        gaps behind it. Drop it, move the later ones down, resend from it."""
        outbox = self._box
        async with self._lock:
            counters = await anyio.to_thread.run_sync(outbox.drop_refused, seq)
            if counters is None:
                return  # not pending any more (a stale error)
            self._apply(counters)
        log.error(
            "refused_by_decoder",
            orchestrator=self.name,
            seq=seq,
            code=error.code,
            message=error.message,
        )
        self.rejected.append(error)
        self._rewind(now)
        self._notify()

    def _deliver_command(self, message: Poll | Command) -> None:
        try:
            self._commands_in.send_nowait(message)
        except anyio.WouldBlock:
            log.warning("command_dropped", orchestrator=self.name, msg=type(message).__name__)
