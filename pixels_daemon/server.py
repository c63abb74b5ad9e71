"""The I/O shell: one ``serve()`` that owns every task, sockets, the store and the lock.

Start-up order: state-dir lock -> store -> replay -> bind -> serve (ready). Shutdown runs in
reverse: stop receiving, finish and commit the batch in hand, send its acks, snapshot, close the
sockets with a bounded linger, close the store, release the lock.

Under systemd (sdnotify.py): STATUS= through start-up, READY=1 once the sockets are served, a
one-line STATUS= summary when it changes, WATCHDOG=1 from the event loop, STOPPING=1 when stop
begins. SIGHUP reloads the plan file (validated first; a bad file keeps the current plan).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import gc
import json
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import anyio.abc
import msgspec
import structlog
import zmq
import zmq.asyncio
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from pixels_daemon import reports, schedule
from pixels_daemon.clock import ScaledClock
from pixels_daemon.core import engine
from pixels_daemon.core.machine import EngineError
from pixels_daemon.core.views import escalation_views, orchestrator_views, phase_of
from pixels_daemon.daemon import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_SNAPSHOT_EVERY,
    Batch,
    Daemon,
    Outgoing,
)
from pixels_daemon.events import EventFeed, EventPublisher, report_event
from pixels_daemon.gaterunner import run_check
from pixels_daemon.journal import log_escalation
from pixels_daemon.notify.config import Notifications
from pixels_daemon.notify.outbox import enqueue
from pixels_daemon.paths import StatePaths, ipc_path
from pixels_daemon.plan import EMBEDDED_SOURCE, Plan, PlanError, load_plan
from pixels_daemon.sdnotify import Notifier
from pixels_daemon.security.guard import Peer
from pixels_daemon.security.transport import SecurityConfig, Transport, TransportError
from pixels_daemon.store import EventStore, StoreError, Synchronous
from pixels_daemon.supervise import SpawnConfig, SpawnService
from pixels_daemon.telemetry.prometheus import PlanMetrics, TelemetryCollector, TelemetryStats
from pixels_daemon.telemetry.recorder import WeekRecorder
from pixels_daemon.telemetry.sampler import NvmlSampler, TelemetrySample, import_nvml
from pixels_daemon.telemetry.service import DEFAULT_INTERVAL_S, Sampler, TelemetryService
from pixels_daemon.telemetry.thresholds import DEFAULT_THRESHOLDS, Crossing, ThresholdConfig
from pixels_daemon.telemetry.weekly import TelemetryFacts
from protocol.messages import SOCKET_MAX_MSGSIZE

if TYPE_CHECKING:
    from pixels_daemon.notify.delivery import NotifyService

log = structlog.get_logger("pixelsd")

#: Most frames taken from the bus per commit. Bounds the latency one batch adds to its first
#: message and the memory a burst holds, while letting a burst share one fsync.
BATCH_MAX = 2048

#: Per-peer queue limits. Outbound we send ~1 cumulative ack per batch, so 1,000 queued frames
#: means a peer that stopped reading; inbound, 10,000 covers a client's full window of unacked
#: messages plus heartbeats without libzmq pushing back on a healthy peer.
SNDHWM = 1000
RCVHWM = 10_000

#: On close, wait at most this long for queued acks to leave. Bounded so shutdown cannot hang on a
#: dead peer (the default, -1, waits forever); acks lost here are resent on reconnect anyway.
LINGER_MS = 500

#: How often the STATUS= summary is recomputed; it is sent only when it changed. "Connected"
#: changes with time as well as with messages, hence a timer; 1 s is as fresh as `systemctl status`
#: needs while costing nothing.
STATUS_INTERVAL_S = 1.0


#: Queued scheduler wake-ups. Each kind is idempotent (a tick, a poll round, a report), so a
#: full queue drops the extra wake-up instead of blocking APScheduler's callback.
WAKE_QUEUE = 16
#: status/meta_status.json is rebuilt at most this often (real seconds) under a stream of batches:
#: building it is O(workstreams), ~9 ms with 2,000 of them, too much for every batch. A batch that
#: writes a report rebuilds it at once; after a skipped batch a flush follows within the interval.
META_INTERVAL_S = 1.0


class DaemonError(Exception):
    """Raised when the daemon cannot start: another daemon holds the state dir, a path is unusable,
    the event log cannot be opened. The message is for the operator."""


@dataclass(frozen=True)
class Config:
    state_dir: Path
    runtime_dir: Path | None = None
    synchronous: Synchronous = "FULL"
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    bus_endpoint: str | None = None  # default: ipc under the runtime dir
    ctl_endpoint: str | None = None
    events_endpoint: str | None = (
        None  # XPUB for `pixelsctl watch`; default: ipc in the runtime dir
    )
    engine: engine.EngineConfig = engine.DEFAULT_CONFIG
    #: Polls, rule checks and the weekly report, in the clock's (possibly scaled) time.
    schedule: schedule.Schedule = schedule.DEFAULT_SCHEDULE
    #: Seconds between telemetry samples (real time: it is hardware, not the plan); None = off.
    #: Off here so embedding code and tests opt in; `pixelsd run` turns it on (15 s).
    telemetry_interval_s: float | None = None
    thresholds: ThresholdConfig = DEFAULT_THRESHOLDS
    #: Prometheus /metrics on metrics_addr:metrics_port; None = no endpoint.
    metrics_port: int | None = None
    #: Loopback only by default: the metrics carry no secrets but the endpoint has no auth.
    metrics_addr: str = "127.0.0.1"
    #: Starting and supervising orchestrators (supervise.py). Launcher "none" here, so embedding
    #: code and tests opt in; `pixelsd run` defaults to "subprocess".
    spawn: SpawnConfig = field(default_factory=SpawnConfig)
    #: tcp:// endpoints with CURVE, and who is an operator on ctl (security/transport.py).
    security: SecurityConfig = field(default_factory=SecurityConfig)
    #: The config file's [notifications]; None or no sinks: nothing is sent (journald only).
    notifications: Notifications | None = None
    #: Tune CPython's cyclic GC for a long-running daemon (process-wide, so `pixelsd run` turns it
    #: on, not embedding code or tests): GC_THRESHOLDS from the start, and what replay built
    #: frozen out of the collector's scans (set_gc_thresholds, freeze_long_lived).
    tune_gc: bool = False

    @property
    def paths(self) -> StatePaths:
        return StatePaths.under(self.state_dir, str(self.runtime_dir) if self.runtime_dir else None)


#: CPython's defaults are (700, 10, 10): a gen0 collection every 700 net allocations. The daemon
#: allocates a few objects per message, nearly all freed at once by reference counting, and keeps
#: a large long-lived state; under bench/scale.py (2,000 orchestrators, 2,000 msg/s) the defaults
#: spent ~5 % of the loop in the collector and paused it 30-90 ms in full collections. 20,000
#: keeps cyclic garbage to a few MB between collections.
GC_THRESHOLDS = (20_000, 10, 10)


def set_gc_thresholds() -> None:
    """Set GC_THRESHOLDS (process-wide: call once, in the daemon's process)."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_long_lived() -> None:
    """Move every object alive now (the plan, the replayed state) out of the cyclic collector's
    scans: they live as long as the daemon, and full collections no longer walk them. Reference
    counting still frees them; only a cycle among them would never be collected (none is made:
    state and plan are trees of structs)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def state_dir_lock(paths: StatePaths) -> Iterator[IO[str]]:
    """Hold an exclusive flock on DIR/pixelsd.lock, or fail naming the daemon that holds it.

    A second bind to the same ipc path would silently steal the first daemon's sockets; this lock
    makes a second daemon on the same state dir fail loudly instead.
    """
    paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    handle = open(paths.lock, "a+")  # noqa: SIM115 - held for the daemon's lifetime
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise DaemonError(
                f"another pixelsd (pid {holder}) is already running on state dir "
                f"{paths.state_dir}; stop it first or use another --state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def _prepare_ipc(endpoint: str) -> None:
    """Make the socket's directory (0750) and clear a stale socket left by a crashed daemon.

    Only called while holding the state-dir lock, so a socket file found here belongs to no live
    daemon. Anything that is not a socket is left alone and refused.
    """
    path = ipc_path(endpoint)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    os.chmod(path.parent, 0o750)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise DaemonError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()
    log.info("removed_stale_socket", path=str(path))


def _router(ctx: zmq.asyncio.Context, endpoint: str) -> zmq.asyncio.Socket:
    _prepare_ipc(endpoint)  # before the socket exists: an error here must leave none to close
    sock = ctx.socket(zmq.ROUTER)
    # Fail loudly (EHOSTUNREACH) instead of silently dropping a reply to a peer that left.
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDHWM, SNDHWM)
    sock.setsockopt(zmq.RCVHWM, RCVHWM)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_MSGSIZE)
    # Sockets are created 0660 (owner and group may connect): set the umask around bind instead of
    # chmod after it, which would leave a window with the default mode.
    old = os.umask(0o117)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise DaemonError(f"cannot bind {endpoint}: {exc}") from exc
    finally:
        os.umask(old)
    return sock


def _drain_frames(sock: zmq.Socket[bytes], limit: int) -> list[list[zmq.Frame]]:
    """As ``_drain``, as zmq Frames: their properties say who sent them (Peer-Address,
    User-Id). Used where that matters: the control socket and the tcp:// sockets."""
    frames: list[list[zmq.Frame]] = []
    while len(frames) < limit:
        try:
            frames.append(sock.recv_multipart(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            break
    return frames


def _prop(frame: zmq.Frame, name: str) -> str | None:
    try:
        value = frame.get(name)
        return value if isinstance(value, str) else None
    except zmq.ZMQError:  # not set on this transport or mechanism
        return None


def _drain(sock: zmq.Socket[bytes], limit: int) -> list[list[bytes]]:
    """Take up to ``limit`` queued multipart frames without blocking (one await per batch, not per
    message: zmq.asyncio costs several microseconds per await).

    Not recv_multipart: it asks getsockopt(RCVMORE) after every part, ~1.2 us each in pyzmq, more
    than the two receives of a DEALER's [identity, payload] together. A ROUTER always delivers the
    identity and at least one part after it, so the identity is taken without asking, and the
    next part as a Frame, whose ``more`` is a field read."""
    frames: list[list[bytes]] = []
    recv = sock.recv
    nowait = zmq.NOBLOCK
    while len(frames) < limit:
        try:
            identity = recv(nowait)
        except zmq.Again:
            break
        part = recv(nowait, copy=False)
        parts = [identity, part.bytes]
        while part.more:  # a REQ peer's [b"", payload], or a malformed message
            part = recv(nowait, copy=False)
            parts.append(part.bytes)
        frames.append(parts)
    return frames


def _write_files(files: list[tuple[Path, str]]) -> None:
    """Write each file atomically: a reader sees the old file or the new one, never half."""
    for path, text in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text if text.endswith("\n") else text + "\n")
        os.replace(tmp, path)


def _split(frames: list[bytes]) -> tuple[tuple[bytes, ...], bytes] | None:
    """[identity, payload] (DEALER) or [identity, b"", payload] (REQ) -> (route, payload)."""
    if len(frames) == 2:
        return (frames[0],), frames[1]
    if len(frames) == 3 and frames[1] == b"":
        return (frames[0], b""), frames[2]
    return None


class Server:
    """Runs one daemon: sockets and loops around a ``Daemon``."""

    def __init__(
        self,
        config: Config,
        plan: Plan,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self.config = config
        #: The telemetry sampler (tests give a fake); default NVML + /proc, made at start.
        self._sampler = sampler
        self.plan = plan
        #: The scaled clock the schedules run on; a plain callable (tests) is the wall clock.
        self.sclock = clock if isinstance(clock, ScaledClock) else ScaledClock(1.0, real=clock)
        self.clock = clock
        self.paths = config.paths
        self.bus_endpoint = config.bus_endpoint or self.paths.bus_endpoint
        self.ctl_endpoint = config.ctl_endpoint or self.paths.ctl_endpoint
        self.events_endpoint = config.events_endpoint or self.paths.events_endpoint
        self._events: EventPublisher | None = None
        self._feed: EventFeed | None = None  # the state watchers last heard of
        self.telemetry: TelemetryService | None = None
        #: The per-week telemetry figures for the weekly report (opened at start).
        self.weeks: WeekRecorder | None = None
        #: The plan's numbers for /metrics, swapped by reference after each commit (the scrape
        #: runs on prometheus-client's thread and must never read the state being changed).
        self._plan_metrics: PlanMetrics | None = None
        self._metrics_server: Any = None
        self.daemon = Daemon(
            plan,
            heartbeat_s=config.heartbeat_s,
            snapshot_every=config.snapshot_every,
            clock=clock,
            config=config.engine,
            time_scale=self.sclock.scale,
        )
        self.stopping = anyio.Event()
        #: Set once both sockets are bound and served (what READY=1 will announce).
        self.ready = anyio.Event()
        # Held while the state changes and commits, and while control reads it: pixelsctl sees
        # committed state only, never a batch that might still roll back.
        self._core_lock = anyio.Lock()
        self._store: EventStore | None = None
        self._bus_raw: zmq.Socket[bytes] | None = None  # sends commands from any task
        self._tg: anyio.abc.TaskGroup | None = None  # owns gate check runs
        #: sd_notify client; by default what systemd's environment asks for (a no-op outside it).
        self.notifier = notifier if notifier is not None else Notifier.from_environ()
        self._status_sent = ""
        # Set by request_reload(); a burst of SIGHUPs coalesces into one reload.
        self._reload_wanted = anyio.Event()
        self._meta_written: dict[str, object] | None = None
        self._meta_at = -float("inf")  # time.monotonic() of the last rebuild of meta_status.json
        self._meta_flush_pending = False
        #: The spawner (launcher subprocess or systemd); None: orchestrators are started by others.
        self.spawner: SpawnService | None = None
        #: Keys, the allow list and the tcp:// sockets (made at start: it reads key files).
        self.transport: Transport | None = None
        #: Notifications (notify/): the outbox and its delivery loop; None when none configured.
        self.notify: NotifyService | None = None

    def stop(self) -> None:
        """Ask the server to shut down gracefully (safe from a signal handler on the loop)."""
        self.stopping.set()

    def request_reload(self) -> None:
        """Ask for the plan file to be read again (SIGHUP); served once the sockets are."""
        self._reload_wanted.set()

    def status_line(self) -> str:
        """The one-line summary sent as STATUS=: plan phase, connected orchestrators, open
        escalations."""
        daemon = self.daemon
        now = self.clock()
        views = orchestrator_views(
            daemon.plan, daemon.state, daemon.last_seen, now, daemon.heartbeat_s
        )
        connected = sum(1 for v in views if v.connection == "connected")
        open_escalations = len(escalation_views(daemon.state))
        plural = "" if open_escalations == 1 else "s"
        return (
            f"{phase_of(daemon.plan, daemon.state)}; {connected}/{len(views)} orchestrators "
            f"connected; {open_escalations} open escalation{plural}"
        )

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until ``stop()``; ``task_status.started()`` fires once the sockets answer."""
        if self.config.tune_gc:
            set_gc_thresholds()
        with state_dir_lock(self.paths):
            self.notifier.status("starting: opening the event log")
            store = await anyio.to_thread.run_sync(
                EventStore.open, self.paths.db, self.config.synchronous
            )
            self._store = store
            try:
                await self._open_notifier()
                self.notifier.status("starting: replaying the event log")
                started = time.monotonic()
                replayed = await anyio.to_thread.run_sync(self.daemon.replay, store)
                self._feed = EventFeed(self.daemon.plan, self.daemon.state)
                if self.config.tune_gc:
                    freeze_long_lived()
                log.info(
                    "replayed",
                    events=store.last_id,
                    after_snapshot=replayed,
                    seconds=round(time.monotonic() - started, 3),
                )
                await self._serve_sockets(task_status)
                await anyio.to_thread.run_sync(self._final_snapshot, store)
            finally:
                if self.notify is not None:
                    self.notify.close()
                store.close()

    async def _open_notifier(self) -> None:
        """The notification outbox (a table in the event log's database) and the sinks, their
        secrets read now: a missing token stops the start, not the first notification."""
        notes = self.config.notifications
        if notes is None or not notes.sinks:
            return
        from pixels_daemon.notify.delivery import NotifyService

        self.notify = await anyio.to_thread.run_sync(
            functools.partial(
                NotifyService, notes, self.paths.db, alert=self.apply_event, clock=self._real_now
            )
        )
        self.daemon.notifications = self.notify

    def _final_snapshot(self, store: EventStore) -> None:
        if store.last_id:
            store.save_snapshot(
                self.daemon.snapshot_key, store.last_id, self.daemon.snapshot(store.last_id)
            )

    async def _serve_sockets(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        ctx = zmq.asyncio.Context()
        # tcp:// sockets on a context of their own: its ZAP handler then sees only them.
        tcp_ctx = zmq.asyncio.Context()
        bus = ctl = tcp_bus = tcp_ctl = None
        try:
            try:
                self.transport = transport = Transport(self.config.security, self.paths.state_dir)
            except (TransportError, OSError) as exc:
                raise DaemonError(str(exc)) from None
            bus = _router(ctx, self.bus_endpoint)
            ctl = _router(ctx, self.ctl_endpoint)
            transport.start(tcp_ctx)
            sec = self.config.security
            try:
                if sec.tcp_bus:
                    tcp_bus = transport.router(tcp_ctx, sec.tcp_bus)
                if sec.tcp_ctl:
                    tcp_ctl = transport.router(tcp_ctx, sec.tcp_ctl)
            except TransportError as exc:
                raise DaemonError(str(exc)) from None
            if sec.tcp:
                log.info(
                    "listening_tcp", bus=sec.tcp_bus, ctl=sec.tcp_ctl, curve=bool(transport.curve)
                )
            self._events = EventPublisher(ctx, self.events_endpoint)
            log.info("listening", bus=self.bus_endpoint, ctl=self.ctl_endpoint, plan=self.plan.name)
            self._bus_raw = zmq.Socket.shadow(bus.underlying)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._prepare_spawner()
                # Before anyone is served: run the rules once (on a fresh log this activates the
                # plan's first orchestrators; after a restart it catches up with the downtime)
                # and write the weekly report a downtime skipped.
                await self._open_weeks(tg)
                await self._scheduled("check")
                await self._catch_up_report()
                # /metrics before the ctl loop: once `ping` answers, everything the daemon was
                # asked to serve is served (tests and health checks rely on that order).
                if self.config.metrics_port is not None:
                    self._start_metrics(self.config.metrics_port)
                tg.start_soon(self._bus_loop, bus)
                tg.start_soon(self._ctl_loop, ctl)
                if tcp_bus is not None:
                    tg.start_soon(self._bus_loop, tcp_bus, True)
                if tcp_ctl is not None:
                    tg.start_soon(self._ctl_loop, tcp_ctl, True)
                tg.start_soon(self._schedule_loop)
                if self.config.telemetry_interval_s is not None:
                    await self._start_telemetry(tg, self.config.telemetry_interval_s)
                tg.start_soon(self._resume_gate_checks)
                tg.start_soon(self._reload_loop)
                if self.spawner is not None:
                    await tg.start(self.spawner.run)
                if self.notify is not None:
                    await tg.start(self.notify.run)
                if self.notifier.watchdog_interval_s is not None:
                    tg.start_soon(self._watchdog_loop, self.notifier.watchdog_interval_s)
                if self.notifier.enabled:
                    tg.start_soon(self._status_loop)
                task_status.started()
                self.ready.set()
                # The store is open, the log replayed and both sockets bound: a request sent now
                # is answered (queued by libzmq until the loops above run).
                self._status_sent = self.status_line()
                self.notifier.ready(self._status_sent)
                await self.stopping.wait()
                log.info("stopping")
                self.notifier.stopping("stopping: committing and acking what was received")
                tg.cancel_scope.cancel()
        finally:
            bound = [e for e, sock in ((self.bus_endpoint, bus), (self.ctl_endpoint, ctl)) if sock]
            for sock in (bus, ctl, tcp_bus, tcp_ctl):
                if sock is not None:
                    sock.close(LINGER_MS)
            if self.transport is not None:
                self.transport.stop()
            tcp_ctx.term()
            if self._events is not None:
                self._events.close()
                self._events = None
            self._stop_metrics()
            ctx.term()
            for endpoint in bound:  # only what this daemon bound: never a file it refused to touch
                path = ipc_path(endpoint)
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    async def _bus_loop(self, bus: zmq.asyncio.Socket, tcp: bool = False) -> None:
        raw: zmq.Socket[bytes] = zmq.Socket.shadow(bus.underlying)
        daemon = self.daemon
        guard = daemon.guard
        while True:
            await bus.poll()  # POLLIN by default
            # Shielded: once frames are taken off the socket, they are committed and acked even if
            # shutdown arrives meanwhile (what was received is flushed, never dropped half-way).
            with anyio.CancelScope(shield=True):
                drained: list[tuple[list[bytes], Peer | None]]
                if tcp:
                    drained = list(self._drain_tcp(raw, BATCH_MAX, ctl=False))
                else:
                    drained = [(frames, None) for frames in _drain(raw, BATCH_MAX)]
                if not drained:
                    continue
                throttled: list[Outgoing] = []
                async with self._core_lock:
                    now = self.clock()
                    taken = guard.now()  # one reading for the batch: its frames came together
                    for frames, peer in drained:
                        # A flooding peer's frames are dropped here, before any decoding.
                        verdict = guard.admit(frames[0], peer.label if peer else "ipc", taken)
                        if not verdict:
                            if verdict is None:  # the first of a dry spell is answered
                                throttled.append(((frames[0],), daemon.throttled_reply()))
                            continue
                        parts = _split(frames)
                        if parts is None:
                            daemon.on_bad_envelope((frames[0],), len(frames), peer)
                            continue
                        daemon.on_bus_frame(parts[0], parts[1], now, peer)
                    replies, effects, _ = await self._commit(daemon.take_batch())
                self._send(raw, throttled + replies)
                await self._execute(effects)

    def _drain_tcp(
        self, raw: zmq.Socket[bytes], limit: int, *, ctl: bool
    ) -> list[tuple[list[bytes], Peer]]:
        """Frames from a tcp:// socket, each with its peer (its key's role, looked up now)."""
        transport = self.transport
        assert transport is not None
        transport.allow.refresh()  # once a batch: trust and revoke apply without a restart
        out = []
        for frames in _drain_frames(raw, limit):
            peer = transport.tcp_peer(frames[0].bytes, _prop(frames[-1], "User-Id"), ctl)
            out.append(([f.bytes for f in frames], peer))
        return out

    def _drain_ctl(self, raw: zmq.Socket[bytes], limit: int) -> list[tuple[list[bytes], Peer]]:
        """Frames from the ipc:// control socket, each with its peer: its uid's role."""
        transport = self.transport
        assert transport is not None
        out = []
        for frames in _drain_frames(raw, limit):
            peer = transport.ipc_ctl_peer(frames[0].bytes, _prop(frames[-1], "Peer-Address"))
            out.append(([f.bytes for f in frames], peer))
        return out

    async def _commit(self, batch: Batch) -> tuple[list[Outgoing], list[engine.Effect], bool]:
        """Commit a batch (hold the core lock); return the bus frames it owes, the effects to
        execute now that it is on disk, and whether it committed. A failed commit rebuilds the
        state from the log: its senders are told ``unavailable`` and nothing of it is executed."""
        daemon = self.daemon
        store = self._store
        assert store is not None
        # Reports are rendered before the commit: a notification carries its report, and is
        # enqueued in the batch's own transaction (notify/outbox.py says why).
        documents = self._render_reports(batch.effects) if batch.rows else []
        also = self._outbox_rows(batch.effects, documents)
        try:
            if batch.rows or also is not None:
                last_id = await anyio.to_thread.run_sync(store.append, batch.rows, also)
                if daemon.snapshot_due(last_id):
                    blob = daemon.snapshot(last_id)
                    await anyio.to_thread.run_sync(
                        store.save_snapshot, daemon.snapshot_key, last_id, blob
                    )
        except StoreError as exc:
            log.critical("commit_failed", error=str(exc))
            self._feed = None  # the state is rebuilt from the log: start watching it afresh
            return await anyio.to_thread.run_sync(daemon.recover, store, batch), [], False
        if batch.rows:
            # Under the core lock, before anyone is answered: `pixelsctl report --now` finds the
            # file written, and a report shows exactly the state that was committed.
            await self._write_documents(documents, batch.scope)
        if also is not None and self.notify is not None:
            self.notify.wake()
        return daemon.replies(batch), batch.effects, True

    def _outbox_rows(
        self, effects: list[engine.Effect], documents: list[tuple[Path, str]]
    ) -> Callable[[sqlite3.Connection], None] | None:
        """What the batch's effects owe the sinks, as a write for its commit (None: nothing)."""
        notify = self.notify
        if notify is None or not effects:
            return None
        msgs = notify.messages_for(
            effects, self.daemon.state, {path.name: text for path, text in documents}
        )
        rows = notify.rows_for(msgs)
        if not rows:
            return None
        return functools.partial(enqueue, rows=rows)

    async def apply_event(self, event: engine.Event) -> bool:
        """Apply a daemon-side event (a tick, a gate check's result): step, commit, then send and
        execute what it asks for. Returns False if the engine refused it (logged)."""
        with anyio.CancelScope(shield=True):  # a half-applied event would not match the log
            async with self._core_lock:
                try:
                    self.daemon.apply_event(event, self.clock())
                except EngineError as exc:
                    self.daemon.take_batch()
                    log.warning("event_refused", event=type(event).__name__, why=str(exc))
                    return False
                replies, effects, _ = await self._commit(self.daemon.take_batch())
            self._send_bus(replies)
            await self._execute(effects)
        return True

    def _send_bus(self, replies: list[Outgoing]) -> None:
        if self._bus_raw is not None:
            self._send(self._bus_raw, replies)

    async def _execute(self, effects: list[engine.Effect]) -> None:
        """Carry out a committed batch's effects that are not frames on the bus."""
        for effect in effects:
            match effect:
                case engine.RunGateCheck():
                    assert self._tg is not None
                    self._tg.start_soon(self._run_gate_check, effect)
                case engine.Notify(escalation=esc_id, reason=reason):
                    record = self.daemon.state.escalations.get(esc_id)
                    if record is not None:
                        log_escalation(record, reason=reason)
                case engine.WriteAdr():
                    await anyio.to_thread.run_sync(self._write_adr, effect)
                case engine.GateDecided(gate=gate, passed=passed, failures=failures):
                    log.info("gate_decided", gate=gate, passed=passed, failures=failures)
                case engine.StartOrchestrator(orchestrator=name, reason=reason):
                    log.info("orchestrator_activated", orchestrator=name, reason=reason)
                    if self.spawner is not None:
                        self.spawner.on_effect(effect)
                case engine.StopOrchestrator(orchestrator=name, reason=reason):
                    log.info("orchestrator_stop_requested", orchestrator=name, reason=reason)
                    if self.spawner is not None:
                        self.spawner.on_effect(effect)
                case engine.DecisionOpened(decision=dec):
                    log.info("decision_opened", decision=dec)
                case engine.PollMissed(orchestrator=name, missed=missed):
                    log.warning("poll_missed", orchestrator=name, missed_in_a_row=missed)
                case engine.PlanCompleted():
                    log.info("plan_completed")
                case engine.Inhibition(escalation=esc_id, by=by):
                    log.info(
                        "escalation_inhibited" if by else "escalation_released",
                        escalation=esc_id,
                        gates=by,
                    )

    def _prepare_spawner(self) -> None:
        """With a launcher: the spawner, seeded from the replayed state (before the first check,
        whose activations it must hear), adopting the orchestrators a previous daemon started."""
        config = self.config.spawn
        if config.launcher == "none":
            return
        daemon = self.daemon
        spawner = SpawnService(
            config,
            names=list(daemon.plan.orchestrators),
            paths=self.paths,
            bus_endpoint=self.bus_endpoint,
            plan_source=lambda: daemon.plan.source,
            connected=self._heard_from,
            alert=self.apply_event,
            clock=self._real_now,
        )
        spawner.seed(daemon.state)
        self.spawner = spawner
        daemon.processes = spawner.view

    def _real_now(self) -> float:
        """Real time (processes live in it, whatever --time-scale says)."""
        return self.sclock.to_real(self.sclock.now())

    def _heard_from(self) -> dict[str, float]:
        """Connected orchestrators, each with when it was last heard from, in real time."""
        daemon = self.daemon
        return {
            name: self.sclock.to_real(daemon.last_seen[name])
            for name in daemon.connected(self.clock())
        }

    async def _run_gate_check(self, effect: engine.RunGateCheck) -> None:
        """Run one gate check command off the loop, then feed its result back to the engine."""
        result = await run_check(effect.check, effect.command, self._plan_dir(), effect.timeout_s)
        await self.apply_event(
            engine.GateCheckResult(
                gate=effect.gate,
                run=effect.run,
                check=effect.check,
                exit_status=result.exit_code,
                output=result.output,
                duration_s=result.duration_s,
            )
        )

    def _plan_dir(self) -> Path:
        """Checks run from the plan file's directory; the embedded plan's run in the state dir."""
        source = Path(self.daemon.plan.source)
        return source.parent if source.is_file() else self.paths.state_dir

    def _write_adr(self, effect: engine.WriteAdr) -> None:
        """Write STATE_DIR/decisions/FILE atomically (a reader never sees half an ADR)."""
        folder = self.paths.decisions
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{effect.filename}.tmp"
        tmp.write_text(effect.text)
        os.replace(tmp, folder / effect.filename)
        log.info("adr_written", decision=effect.decision, file=str(folder / effect.filename))

    # --- time: the schedule ------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        """Serve APScheduler's wake-ups until cancelled."""
        send, receive = anyio.create_memory_object_stream[str](WAKE_QUEUE)

        async def wake(kind: str) -> None:
            # A coroutine job: APScheduler's AsyncIOExecutor runs it on this loop (a plain
            # function would run on its thread pool).
            with contextlib.suppress(anyio.WouldBlock):
                send.send_nowait(kind)

        sched = self.config.schedule
        clock = self.sclock
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=schedule.UTC)
        jobs = {
            "check": schedule.interval_trigger(sched.check_interval_s, clock),
            "poll": schedule.interval_trigger(sched.poll_interval_s, clock),
            "report": schedule.ScaledTrigger(sched.report_trigger(), clock),
        }
        for kind, trigger in jobs.items():
            # coalesce: a blocked loop runs a job once, not once per missed period; no grace
            # limit: a late run is still right (each job is judged against the clock when it runs).
            scheduler.add_job(
                wake,
                trigger,
                args=[kind],
                id=kind,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        scheduler.start()
        try:
            async with receive:
                async for kind in receive:
                    await self._scheduled(kind)
        finally:
            scheduler.shutdown(wait=False)

    async def _scheduled(self, kind: str) -> None:
        daemon = self.daemon
        if kind == "check":
            await self.apply_event(engine.Tick(last_seen=dict(daemon.last_seen)))
        elif kind == "poll":
            names = daemon.connected(self.clock())
            if names:
                await self.apply_event(engine.PollAll(orchestrators=names))
        elif kind == "report":
            now = self.clock()
            week = daemon.current_week(now)
            if week is None:
                log.info("report_skipped", reason="the plan has not started")
                return
            log.info("report_due", week=week, due=schedule.last_due(self.config.schedule, now))
            await self.apply_event(engine.ReportDue(week=week))

    async def _catch_up_report(self) -> None:
        """A Friday that passed while the daemon was down gets its report once, now."""
        daemon = self.daemon
        week = schedule.missed_report(
            self.config.schedule,
            daemon.state.reports,
            daemon.plan_start(),
            self.clock(),
        )
        if week is not None:
            log.info("report_catch_up", week=week)
            await self.apply_event(engine.ReportDue(week=week, reason="catch_up"))

    def _render_reports(self, effects: list[engine.Effect]) -> list[tuple[Path, str]]:
        """The reports the effects ask for, rendered from the batch's state."""
        daemon = self.daemon
        now = self.clock()
        tz = self.config.schedule.report_tz
        files: list[tuple[Path, str]] = []
        for effect in effects:
            if isinstance(effect, engine.WriteReport):
                telemetry = self._telemetry_facts(effect.week)
                text = reports.weekly_report(
                    daemon.plan, daemon.state, now, effect.week, daemon.config, tz, telemetry
                )
                files.append((self.paths.reports / reports.report_filename(effect.week), text))
            elif isinstance(effect, engine.PlanCompleted):
                text = reports.completion_report(daemon.plan, daemon.state, now, daemon.config, tz)
                files.append((self.paths.reports / "completion_report.md", text))
        return files

    async def _write_documents(
        self, reports_: list[tuple[Path, str]], scope: set[str] | None = None
    ) -> None:
        """The files people read, from the state just committed: the reports rendered for it,
        and status/meta_status.json whenever its content changed."""
        daemon = self.daemon
        now = self.clock()
        files = list(reports_)
        if self._meta_due(forced=bool(reports_)):
            meta = reports.meta_status(daemon.plan, daemon.state, now, config=daemon.config)
            compared = {k: v for k, v in meta.items() if k != "updated_at"}
            if compared != self._meta_written:
                self._meta_written = compared
                files.append((self.paths.status / "meta_status.json", json.dumps(meta, indent=2)))
        if files:
            await anyio.to_thread.run_sync(_write_files, files)
            for path, _ in files:
                if path.name != "meta_status.json":
                    log.info("report_written", file=str(path), at=now)
        weeks = [path for path, _ in files if path.name.startswith("week_")]
        self._publish_changes(now, weeks, scope)
        if self._metrics_server is not None:
            self._refresh_plan_metrics()

    def _meta_due(self, forced: bool) -> bool:
        """Rebuild meta_status.json now? Yes once META_INTERVAL_S has passed since the last
        rebuild, or with a report; else a flush is scheduled for when it has (under the core
        lock, like a batch), so the last change is on disk within the interval."""
        mono = time.monotonic()
        if forced or mono - self._meta_at >= META_INTERVAL_S:
            self._meta_at = mono
            return True
        if not self._meta_flush_pending and self._tg is not None:
            self._meta_flush_pending = True
            self._tg.start_soon(self._flush_meta, self._meta_at + META_INTERVAL_S - mono)
        return False

    async def _flush_meta(self, delay_s: float) -> None:
        await anyio.sleep(delay_s)
        async with self._core_lock:
            self._meta_flush_pending = False
            await self._write_documents([], set())  # a flush: nothing changed meanwhile

    def _publish_changes(self, now: float, written: list[Path], scope: set[str] | None) -> None:
        """Tell watchers what the committed batch changed. The diff is kept current even while
        nobody watches, so a watcher that just connected sees the very next change; it is only
        sent while someone listens. ``scope``: the batch's (Batch.scope): a batch of progress
        reports costs O(its workstreams), any other O(plan)."""
        events = self._events
        if events is None:
            return
        daemon = self.daemon
        if self._feed is None:
            self._feed = EventFeed(daemon.plan, daemon.state)
            return
        out = self._feed.changes(daemon.plan, daemon.state, now, scope)
        for path in written:
            week = int(path.name.split("_")[1])
            out.append(report_event(week, str(path), now))
        if out and events.wants_events():
            events.publish(out)

    async def _resume_gate_checks(self) -> None:
        """Checks that were running when the daemon stopped never reported: run them again."""
        for gate_id, gate in self.daemon.state.gates.items():
            if gate.state == "checking":
                log.info("gate_check_restarted", gate=gate_id)
                await self.apply_event(engine.CheckGate(gate=gate_id))

    def _send(self, raw: zmq.Socket[bytes], replies: list[Outgoing]) -> None:
        for route, frame in replies:
            try:
                raw.send_multipart([*route, frame], zmq.NOBLOCK)
            except zmq.Again:
                # The peer's queue is full: it is not reading. Acks are idempotent and the client
                # resends what is unacked, so dropping is safe; count it.
                self.daemon.counters.unroutable += 1
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self.daemon.counters.unroutable += 1  # the peer disconnected meanwhile

    async def _ctl_loop(self, ctl: zmq.asyncio.Socket, tcp: bool = False) -> None:
        raw: zmq.Socket[bytes] = zmq.Socket.shadow(ctl.underlying)
        guard = self.daemon.guard
        while True:
            await ctl.poll()  # POLLIN by default
            drained = self._drain_tcp(raw, 64, ctl=True) if tcp else self._drain_ctl(raw, 64)
            with anyio.CancelScope(shield=True):  # requests that change something commit whole
                replies: list[Outgoing] = []
                async with self._core_lock:
                    now = self.clock()
                    for frames, peer in drained:
                        verdict = guard.admit(frames[0], peer.label)
                        if not verdict:
                            if verdict is None:  # the first of a dry spell is answered
                                replies.append(((frames[0],), self.daemon.throttled_reply()))
                            continue
                        parts = _split(frames)
                        if parts is None:
                            guard.bad(peer)
                            bad = self.daemon.bad_envelope_reply(len(frames))
                            replies.append(((frames[0],), bad))
                            continue
                        replies.append((parts[0], self.daemon.on_ctl_frame(parts[1], now, peer)))
                    # Changes (ack, halt, gate check, ...) are on disk before anyone is answered.
                    bus_replies, effects, committed = await self._commit(self.daemon.take_batch())
                    if not committed:  # nothing they asked for happened: say so, not "ok"
                        replies = [(route, self.daemon.unavailable_reply()) for route, _ in replies]
                self._send(raw, replies)
                self._send_bus(bus_replies)
                await self._execute(effects)

    # --- telemetry and /metrics ---------------------------------------------------------------

    async def _start_telemetry(self, tg: anyio.abc.TaskGroup, interval_s: float) -> None:
        """Sample NVML and /proc off the loop; threshold crossings become escalations."""

        def on_sample(sample: TelemetrySample, crossings: tuple[Crossing, ...]) -> None:
            for crossing in crossings:
                alert = engine.TelemetryAlert(
                    rule=crossing.rule,
                    subject=crossing.subject,
                    direction=crossing.direction,
                    severity=crossing.severity,
                    message=crossing.message,
                )
                tg.start_soon(self.apply_event, alert)
            self._record_week(tg, sample)

        sampler = self._sampler if self._sampler is not None else NvmlSampler(import_nvml())
        service = TelemetryService(sampler, thresholds=self.config.thresholds, on_sample=on_sample)
        self.telemetry = service
        self.daemon.telemetry = self.telemetry_view
        await tg.start(service.run, interval_s)

    async def _open_weeks(self, tg: anyio.abc.TaskGroup) -> None:
        """The weekly telemetry figures (telemetry/recorder.py). A restart is a gap: what the
        engine knew of an idle GPU before it no longer holds."""
        interval = self.config.telemetry_interval_s or DEFAULT_INTERVAL_S
        self.weeks = weeks = await anyio.to_thread.run_sync(
            functools.partial(
                WeekRecorder.open,
                self.paths.state_dir,
                period_s=interval * self.sclock.scale,  # the sampling period in plan time
                window_s=self.daemon.config.stall_s,
            )
        )
        if self.daemon.state.gpu_idle_since is not None:
            await self.apply_event(engine.GpuIdle(since=None))
        if self.config.telemetry_interval_s is not None:
            tg.start_soon(weeks.run_saver)

    def _record_week(self, tg: anyio.abc.TaskGroup, sample: TelemetrySample) -> None:
        """Fold a sample into its plan week; tell the engine when the GPU-idle signal changes."""
        start = self.daemon.plan_start()
        if self.weeks is None or start is None:
            return  # weeks are counted from the plan's start
        event = self.weeks.record(sample, self.clock(), start)
        if event is not None:
            tg.start_soon(self.apply_event, event)

    def _telemetry_facts(self, week: int) -> TelemetryFacts | None:
        if self.weeks is None:
            return None
        return self.weeks.facts(
            week,
            sampling=self.config.telemetry_interval_s is not None,
            interval_s=self.config.telemetry_interval_s,
        )

    def telemetry_view(self) -> dict[str, object]:
        """What `pixelsctl telemetry` shows: the latest sample and what this box cannot report."""
        service = self.telemetry
        if service is None:
            return {"enabled": False, "reason": "telemetry is off (--telemetry-interval 0)"}
        info = service.info
        latest = service.latest
        return {
            "enabled": info is not None and info.gpu_enabled,
            "reason": info.disabled_reason if info is not None else "starting",
            "info": msgspec.to_builtins(info) if info is not None else None,
            "sample": msgspec.to_builtins(latest) if latest is not None else None,
            "samples": service.taken,
            "skipped": service.skipped,
        }

    def _start_metrics(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)

        def stats() -> TelemetryStats:
            service = self.telemetry
            if service is None:
                return TelemetryStats()
            return TelemetryStats(samples=service.taken, skipped=service.skipped)

        registry.register(
            TelemetryCollector(
                lambda: self.telemetry.latest if self.telemetry is not None else None,
                lambda: self._plan_metrics,
                stats,
            )
        )
        self._refresh_plan_metrics()
        try:
            server, _thread = start_http_server(
                port, addr=self.config.metrics_addr, registry=registry
            )
        except OSError as exc:
            raise DaemonError(
                f"cannot serve metrics on {self.config.metrics_addr}:{port}: "
                f"{exc.strerror or exc}; pick another --metrics-port"
            ) from exc
        self._metrics_server = server
        log.info("metrics_listening", addr=self.config.metrics_addr, port=port)

    def _stop_metrics(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

    def _refresh_plan_metrics(self) -> None:
        """A new PlanMetrics from the committed state (only while /metrics is served)."""
        daemon = self.daemon
        state = daemon.state
        open_by_severity: dict[str, int] = {}
        for esc in state.escalations.values():
            if esc.state != "resolved":
                open_by_severity[esc.severity] = open_by_severity.get(esc.severity, 0) + 1
        self._plan_metrics = PlanMetrics(
            workstream_progress={k: w.progress for k, w in state.workstreams.items()},
            workstream_status={k: w.status for k, w in state.workstreams.items()},
            escalations_open=open_by_severity,
            gate_states={k: g.state for k, g in state.gates.items()},
            orchestrator_last_seen=dict(daemon.last_seen),
            messages_ingested={k: o.acked_seq for k, o in state.orchestrators.items()},
        )

    # --- systemd: watchdog, status, reload ----------------------------------------------------

    async def _watchdog_loop(self, interval_s: float) -> None:
        # On the event loop on purpose: if the loop hangs, the pings stop and systemd restarts us.
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval_s)

    async def _status_loop(self) -> None:
        while True:
            await anyio.sleep(STATUS_INTERVAL_S)
            async with self._core_lock:  # committed state only, as pixelsctl sees it
                line = self.status_line()
            if line != self._status_sent:
                self.notifier.status(line)
                self._status_sent = line

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted = anyio.Event()
            await self.reload_plan()

    async def reload_plan(self) -> bool:
        """Read the plan file again; adopt it only if it is valid. True if the plan changed.

        A file that does not load or validate is logged (one line naming file and fault) and the
        current plan stays. The embedded plan has no file to re-read.
        """
        source = self.plan.source
        if source == EMBEDDED_SOURCE:
            log.info("reload_skipped", reason="the embedded plan has no file; use --plan FILE")
            return False
        self.notifier.reloading("reloading the plan")
        try:
            try:
                plan = await anyio.to_thread.run_sync(load_plan, source)
            except PlanError as exc:
                log.error("reload_failed", error=str(exc), kept=self.plan.name)  # noqa: TRY400 - expected: one line, no traceback
                return False
            if plan.fingerprint == self.plan.fingerprint:
                log.info("reload_unchanged", plan=plan.name, source=source)
                return False
            store = self._store
            assert store is not None
            async with self._core_lock:
                try:
                    replayed = await anyio.to_thread.run_sync(self.daemon.replace_plan, plan, store)
                except StoreError as exc:
                    log.error("reload_failed", error=str(exc), kept=self.plan.name)  # noqa: TRY400 - expected: one line, no traceback
                    return False
                self.plan = plan
                self._feed = EventFeed(plan, self.daemon.state)  # the old baseline is moot
                self._status_sent = self.status_line()
            log.info("plan_reloaded", plan=plan.name, source=source, replayed=replayed)
            return True
        finally:
            self.notifier.ready(self._status_sent)


async def run_server(server: Server) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the plan (handlers only set events)."""
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            # Kept listening until serve() returns: a second SIGTERM or a SIGHUP during shutdown
            # must not fall back to the default action (terminate at once).
            with anyio.open_signal_receiver(
                signal.SIGTERM, signal.SIGINT, signal.SIGHUP
            ) as signals:
                async for signum in signals:
                    log.info("signal", signal=signal.Signals(signum).name)
                    if signum == signal.SIGHUP:
                        server.request_reload()
                    else:
                        server.stop()

        tg.start_soon(watch_signals)
        await server.serve()
        tg.cancel_scope.cancel()
