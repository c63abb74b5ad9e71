"""The daemon without its sockets: frames in, log rows and replies out.

``Daemon`` owns the plan, the state and presence. The shell (server.py) feeds it frames in batches:

    for frame in drained: daemon.on_bus_frame(route, payload, now)
    batch = daemon.take_batch()
    store.append(batch.rows)          # one commit (in a worker thread)
    send(batch.replies())             # acks, welcomes, errors: only after the commit

Replies are built after the commit on purpose: every ack and welcome then states a seq that is on
disk. If the commit fails, ``recover`` rebuilds the state from the log (the uncommitted changes are
dropped, nothing is acked, and senders resend).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import msgspec
import structlog

from pixels_daemon import __version__
from pixels_daemon.core import engine, ingest
from pixels_daemon.core.machine import EngineError
from pixels_daemon.core.state import CORE_VERSION, State
from pixels_daemon.core.views import (
    LIVENESS_HEARTBEATS,
    ViewCache,
    decision_view,
    decision_views,
    escalation_view,
    escalation_views,
    gate_view,
    gate_views,
    hold_view,
    orchestrator_views,
    plan_change_views,
    status_view,
    workstream_views,
)
from pixels_daemon.plan import Plan
from pixels_daemon.ratelimit import RateLimitedLog
from pixels_daemon.reports import plan_start, report_filename, week_of
from pixels_daemon.security.guard import LOCAL_OPERATOR, Guard, Peer
from pixels_daemon.store import EventStore, NewEvent
from pixels_daemon.when import WhenError, parse_when
from protocol import codec
from protocol.codec import FrameError
from protocol.messages import (
    DURABLE_TO_DAEMON,
    Ack,
    Command,
    Error,
    ErrorCode,
    Heartbeat,
    Message,
    Poll,
    Register,
    Reply,
    Request,
    Status,
    Welcome,
)
from protocol.views import OrchestratorView, ProcessView

if TYPE_CHECKING:
    from pixels_daemon.notify.delivery import NotifyService

log = structlog.get_logger("pixelsd")

Route = tuple[bytes, ...]  # the ROUTER frames before the payload: identity (and b"" for REQ peers)
Outgoing = tuple[Route, bytes]

#: Default heartbeat interval told to orchestrators in ``welcome``. 2 s: liveness known within ~6 s
#: (3 missed), while 2,000 clients cost only 1,000 heartbeats/s.
DEFAULT_HEARTBEAT_S = 2.0

#: Take a snapshot every this many applied events: restart replays at most this many, and a
#: snapshot of the state costs a few KiB, so frequent is cheap.
DEFAULT_SNAPSHOT_EVERY = 10_000


class CtlError(Exception):
    """A pixelsctl request that cannot be served: becomes an ``error`` reply with ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


@dataclass
class Batch:
    """What one drained batch produced: rows to commit, and the replies owed once they are."""

    rows: list[NewEvent] = field(default_factory=list)
    errors: list[Outgoing] = field(default_factory=list)
    registers: dict[str, tuple[Route, str]] = field(default_factory=dict)  # name -> route, msg id
    acks: dict[str, tuple[Route, str]] = field(default_factory=dict)  # name -> route, last msg id
    #: What the engine asked for while applying this batch: executed by the shell only once the
    #: batch is committed (commands on the bus, gate checks, notifications, ADR files).
    effects: list[engine.Effect] = field(default_factory=list)
    #: The workstreams this batch's changes are confined to, as far as a watcher can see
    #: (engine.receive's "local" messages only); None: anything may have changed.
    scope: set[str] | None = field(default_factory=set)


@dataclass
class Counters:
    """Monotonic counters shown by ``pixelsctl ping`` (and later as metrics)."""

    frames: int = 0
    applied: int = 0
    duplicates: int = 0
    gaps: int = 0
    rejected: int = 0
    frame_errors: dict[str, int] = field(default_factory=dict)
    commit_failures: int = 0
    unroutable: int = 0


class Daemon:
    """The daemon's logic with no I/O: fed frames and time, it yields rows and replies."""

    def __init__(
        self,
        plan: Plan,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        clock: Callable[[], float],
        config: engine.EngineConfig = engine.DEFAULT_CONFIG,
        time_scale: float = 1.0,
    ) -> None:
        self.plan = plan
        self.config = config
        self.heartbeat_s = heartbeat_s
        #: Heartbeats are real seconds; the clock may run time_scale times faster. Liveness is
        #: judged on the clock, so its window is heartbeat_s * time_scale of clock time.
        self.time_scale = time_scale
        #: Set by the server when telemetry runs: the `telemetry` request's answer.
        self.telemetry: Callable[[], object] | None = None
        #: Set by the server when it spawns orchestrators: each one's process, as the spawner sees
        #: it. None: launcher none (someone else starts them).
        self.processes: Callable[[str, Literal["spawn", "stop"] | None], ProcessView] | None = None
        # Each orchestrator's view with its process, reused while both are unchanged.
        self._process_views: ViewCache[OrchestratorView] = ViewCache()
        #: Set by the server when notification sinks are configured (notify/delivery.py).
        self.notifications: NotifyService | None = None
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.ownership = _ownership(plan)
        self.state = self._fresh_state()
        self.last_seen: dict[str, float] = {}
        self.routes: dict[str, Route] = {}
        self.counters = Counters()
        self._batch = Batch()
        self._ids = itertools.count(1)
        self._boot = f"{os.getpid():x}"
        self._frame_log = RateLimitedLog(log, interval_s=10.0)
        #: Authorization and per-peer limits (security/): who may say what, and how much.
        self.guard = Guard()
        self._last_snapshot = 0

    # --- state and the log ---------------------------------------------------------------------

    @property
    def snapshot_key(self) -> str:
        """Snapshots are only reused by the same core, plan and engine thresholds: each of them
        shapes what replaying the log produces (a changed stall_s, say, changes the state)."""
        config = hashlib.sha256(msgspec.json.encode(self.config)).hexdigest()[:16]
        return f"core{CORE_VERSION}:{self.plan.fingerprint}:{config}"

    def _fresh_state(self) -> State:
        return engine.new_state(self.plan)

    def replay(self, store: EventStore) -> int:
        """Rebuild the state from the newest usable snapshot and the log after it (blocking).

        Returns the number of events replayed after the snapshot.
        """
        self.state = self._fresh_state()
        start = 0
        snap = store.latest_snapshot(self.snapshot_key)
        if snap is not None:
            start, blob = snap
            self.state = msgspec.msgpack.decode(blob, type=State)
        replayed = 0
        for row in store.events(after=start):
            replayed += 1
            self._replay_row(row.kind, row.body, row.at)
        self._last_snapshot = store.last_id
        return replayed

    def _replay_row(self, kind: str, body: bytes, at: float) -> None:
        """Re-apply one logged event; its effects were executed when it first happened."""
        if kind == "event":
            event = engine.decode_event(body)
            try:
                engine.step(self.state, self.plan, event, at, self.config)
            except EngineError as exc:  # refused now (e.g. the plan changed): skip, as live would
                log.warning("replay_skips_refused_event", event=type(event).__name__, why=str(exc))
            return
        message = codec.to_daemon.decode(body)
        if not isinstance(message, DURABLE_TO_DAEMON):
            return
        if message.orchestrator not in self.ownership.orchestrators:
            log.warning("replay_skips_unknown_orchestrator", orchestrator=message.orchestrator)
            return
        if ingest.admit(self.state, message.orchestrator, message.seq) is ingest.Admission.NEXT:
            engine.step(self.state, self.plan, engine.Received(message=message), at, self.config)

    def replace_plan(self, plan: Plan, store: EventStore) -> int:
        """Adopt a new, already validated plan (blocking): ownership rebuilt, state replayed.

        The state becomes what a restart with the new plan would give: the log is replayed under
        the new plan (its snapshots are keyed by plan fingerprint, so the old plan's are not used).
        On failure the old plan and state stay. Returns the number of events replayed.
        """
        if plan.fingerprint == self.plan.fingerprint:
            return 0
        old = (self.plan, self.ownership, self.state, self._last_snapshot)
        self.plan = plan
        self.ownership = _ownership(plan)
        try:
            return self.replay(store)
        except BaseException:
            self.plan, self.ownership, self.state, self._last_snapshot = old
            raise

    def snapshot_due(self, last_id: int) -> bool:
        return last_id - self._last_snapshot >= self.snapshot_every

    def snapshot(self, last_id: int) -> bytes:
        """The encoded state as of log position ``last_id`` (call right after its commit)."""
        self._last_snapshot = last_id
        return msgspec.msgpack.encode(self.state)

    # --- time ----------------------------------------------------------------------------------

    @property
    def liveness_s(self) -> float:
        """The heartbeat interval in clock time (what the liveness window is measured against)."""
        return self.heartbeat_s * self.time_scale

    @property
    def poll_deadline_s(self) -> float:
        """The poll timeout in real seconds, as told to orchestrators on the wire."""
        return self.config.poll_timeout_s / self.time_scale

    def connected(self, now: float) -> list[str]:
        """Orchestrators heard from within the liveness window and reachable (plan order)."""
        window = LIVENESS_HEARTBEATS * self.liveness_s
        return [
            name
            for name in self.plan.orchestrators
            if name in self.routes and now - self.last_seen.get(name, -math.inf) <= window
        ]

    def plan_start(self) -> float | None:
        """Week 1's start: configured, else when the first orchestrator activated."""
        return plan_start(self.state, self.config)

    def current_week(self, now: float) -> int | None:
        start = self.plan_start()
        return None if start is None else week_of(now, start)

    # --- the bus -------------------------------------------------------------------------------

    def _message_id(self) -> str:
        return f"pixelsd-{self._boot}-{next(self._ids)}"

    def _encode(self, message: Message) -> bytes:
        message.id = self._message_id()
        message.ts = self.clock()
        return codec.encode(message)

    def _error(
        self, route: Route, code: ErrorCode, text: str, re: str | None, rejected_seq: int = 0
    ) -> None:
        frame = self._encode(
            Error(code=code, message=text, re=re or None, rejected_seq=rejected_seq)
        )
        self._batch.errors.append((route, frame))

    def on_bus_frame(
        self, route: Route, payload: bytes, now: float, peer: Peer | None = None
    ) -> None:
        """Take one frame from an orchestrator; effects wait in the current batch.

        ``peer``: who sent it as the shell knows (tcp://: its key's role); None: an ipc:// peer.
        """
        # This runs for every frame on the bus: the usual case (a status in sequence from an
        # ipc:// peer already speaking as its orchestrator) takes no step it does not need.
        self.counters.frames += 1
        try:
            message = codec.to_daemon.decode(payload)
        except FrameError as exc:
            self._count_frame_error(exc)
            self.guard.bad(peer or Peer(route[0], "ipc"))
            self._error(route, exc.code, exc.message, exc.msg_id)
            return
        name = message.orchestrator
        if name not in self.ownership.orchestrators:
            # Checked before the connection is bound: a name the plan lacks binds nothing.
            denial = self.guard.check_bus(peer or Peer(route[0], "ipc"), name)
            if denial is not None:
                self._error(route, denial.code, denial.message, message.id)
                return
            known = ", ".join(sorted(self.ownership.orchestrators))
            self._error(
                route,
                "unknown_orchestrator",
                f"the plan has no orchestrator {name!r}; it has: {known}",
                message.id,
            )
            return
        denial = self.guard.speak_as(peer, route[0], name)
        if denial is not None:
            self._error(route, denial.code, denial.message, message.id)
            return
        self.last_seen[name] = now
        self.routes[name] = route
        batch = self._batch
        if isinstance(message, Register):
            batch.registers[name] = (route, message.id)
            return
        if isinstance(message, Heartbeat):
            batch.acks[name] = (route, message.id)
            return
        # A durable message: status, poll_reply or escalation.
        if message.seq <= 0:
            self._error(
                route, "bad_message", f"{type(message).__name__.lower()} needs seq >= 1", message.id
            )
            return
        admission = ingest.admit(self.state, name, message.seq)
        batch.acks[name] = (route, message.id)
        if admission is ingest.Admission.DUPLICATE:
            self.counters.duplicates += 1
            return
        if admission is ingest.Admission.GAP:
            self.counters.gaps += 1
            expected = self.state.orchestrators[name].acked_seq + 1
            self._error(
                route,
                "seq_gap",
                f"seq {message.seq} arrived before seq {expected}; resend from {expected}",
                message.id,
            )
            return
        effects, local = engine.receive(self.state, self.plan, message, now, self.config)
        batch.rows.append((now, "msg", name, message.seq, payload))
        if not (local and isinstance(message, Status)):
            batch.scope = None
        elif batch.scope is not None:
            batch.scope.update(message.workstreams)
        rejected = False
        for effect in effects:  # none, for a progress report
            if isinstance(effect, engine.Reject):
                rejected = True
                self._error(route, effect.code, effect.message, message.id, message.seq)
            else:
                batch.effects.append(effect)
        if rejected:
            self.counters.rejected += 1
        else:
            self.counters.applied += 1

    def apply_event(self, event: engine.Event, now: float) -> list[engine.Effect]:
        """Step the engine with a daemon-side event (a tick, a gate check's result, an operator's
        request) into the current batch; raises EngineError (nothing changed) if it is refused.

        Logged unless it is a tick that changed nothing (the engine's promise: a tick without
        effects left the state as it was), so replay rebuilds exactly this state.
        """
        effects = engine.step(self.state, self.plan, event, now, self.config)
        self._batch.scope = None
        if effects or not isinstance(event, engine.Tick):
            self._batch.rows.append((now, "event", None, None, engine.encode_event(event)))
        self._batch.effects.extend(effects)
        return effects

    def on_bad_envelope(self, route: Route, parts: int, peer: Peer | None = None) -> None:
        """A multipart message that is neither [payload] nor [b"", payload] from the peer."""
        exc = _bad_envelope(parts)
        self._count_frame_error(exc)
        self.guard.bad(peer or Peer(route[0], "ipc"))
        self._error(route, exc.code, exc.message, None)

    def bad_envelope_reply(self, parts: int) -> bytes:
        """The error frame answering a control peer's malformed multipart message."""
        exc = _bad_envelope(parts)
        self._count_frame_error(exc)
        return self._encode(Error(code=exc.code, message=exc.message))

    def _count_frame_error(self, exc: FrameError) -> None:
        errors = self.counters.frame_errors
        errors[exc.code] = errors.get(exc.code, 0) + 1
        self._frame_log.warning(exc.code, "bad_frame", code=exc.code, detail=exc.message)

    def take_batch(self) -> Batch:
        """Hand over the current batch and start a new one."""
        batch, self._batch = self._batch, Batch()
        return batch

    def replies(self, batch: Batch) -> list[Outgoing]:
        """Replies a committed batch owes: errors, welcomes (each followed by the orchestrator's
        standing orders), one ack per orchestrator, then the commands its effects send."""
        out = list(batch.errors)
        for name, (route, msg_id) in batch.registers.items():
            welcome = Welcome(
                orchestrator=name,
                acked_seq=self.state.orchestrators[name].acked_seq,
                heartbeat_s=self.heartbeat_s,
                daemon=__version__,
                plan=self.plan.name,
                re=msg_id,
            )
            out.append((route, self._encode(welcome)))
            # Commands on the bus are not durable: a (re)registering orchestrator is told again
            # what it should be doing now.
            out.extend(self.commands(engine.standing_orders(self.state, self.plan, name)))
        for name, (route, msg_id) in batch.acks.items():
            ack = Ack(acked_seq=self.state.orchestrators[name].acked_seq, re=msg_id)
            out.append((route, self._encode(ack)))
        out.extend(self.commands(batch.effects))
        return out

    def commands(self, effects: list[engine.Effect]) -> list[Outgoing]:
        """The ``command`` frames for the effects that address an orchestrator, to those that
        are connected (one that is not gets its standing orders when it registers)."""
        out = []
        for effect in effects:
            command: Message | None = _command_of(effect)
            if isinstance(effect, engine.SendPoll):
                command = Poll(deadline_s=self.poll_deadline_s)
            if command is None:
                continue
            route = self.routes.get(effect.orchestrator)  # type: ignore[union-attr]
            if route is not None:
                out.append((route, self._encode(command)))
        return out

    def throttled_reply(self) -> bytes:
        """The error answering the first frame dropped from a peer over its frame budget."""
        return self._encode(
            Error(
                code="throttled",
                message="too many frames (or too many bad ones): this and the following frames "
                "are dropped until the budget refills; slow down",
            )
        )

    def unavailable_reply(self) -> bytes:
        """The control reply when the commit of what was asked failed (nothing was done)."""
        return self._encode(
            Error(
                code="unavailable",
                message="the daemon could not commit to its event log; nothing was changed, "
                "try again later",
            )
        )

    def recover(self, store: EventStore, batch: Batch) -> list[Outgoing]:
        """After a failed commit: drop uncommitted changes and tell senders to retry later."""
        self.counters.commit_failures += 1
        self.replay(store)
        out = []
        for route, msg_id in batch.acks.values():
            err = Error(
                code="unavailable",
                message="the daemon could not commit to its event log; resend later",
                re=msg_id,
            )
            out.append((route, self._encode(err)))
        return out

    # --- control -------------------------------------------------------------------------------

    def on_ctl_frame(self, payload: bytes, now: float, peer: Peer = LOCAL_OPERATOR) -> bytes:
        """Serve one pixelsctl request from ``peer`` (its role decides what it may ask); always
        returns a reply frame."""
        try:
            request = codec.ctl_request.decode(payload)
        except FrameError as exc:
            self._count_frame_error(exc)
            self.guard.bad(peer)
            return self._encode(Error(code=exc.code, message=exc.message, re=exc.msg_id or None))
        denial = (
            self.guard.check_ctl(peer, request.command)
            if request.command in _CTL_COMMANDS  # an unknown one is answered unknown_command
            else None
        )
        if denial is not None:
            return self._encode(
                Error(code=denial.code, message=denial.message, re=request.id or None)
            )
        try:
            result = self.handle_request(request, now)
        except CtlError as exc:
            return self._encode(Error(code=exc.code, message=exc.message, re=request.id or None))
        except EngineError as exc:  # refused by the engine: nothing changed, nothing logged
            return self._encode(Error(code=exc.code, message=str(exc), re=request.id or None))
        return self._encode(Reply(result=result, re=request.id or None))

    def handle_request(self, request: Request, now: float) -> object:
        """Dispatch a control command to its handler; raises CtlError for bad requests."""
        handler = _CTL_COMMANDS.get(request.command)
        if handler is None:
            known = ", ".join(sorted(_CTL_COMMANDS))
            raise CtlError(
                "unknown_command", f"unknown command {request.command!r}; known: {known}"
            )
        return handler(self, request.args, now)

    def ctl_ping(self, args: dict[str, object], now: float) -> object:
        """Liveness and counters."""
        c = self.counters
        return {
            "daemon": __version__,
            "pid": os.getpid(),
            "plan": self.plan.name,
            "now": now,
            "counters": {
                "frames": c.frames,
                "applied": c.applied,
                "duplicates": c.duplicates,
                "gaps": c.gaps,
                "rejected": c.rejected,
                "frame_errors": dict(c.frame_errors),
                "commit_failures": c.commit_failures,
                "unroutable": c.unroutable,
            },
            "security": self.guard.view(),
        }

    def ctl_status(self, args: dict[str, object], now: float) -> object:
        """The whole picture: phase, orchestrators, workstreams, blockers, open escalations."""
        view = status_view(self.plan, self.state, self.last_seen, now, self.liveness_s)
        view.orchestrators = [self._with_process(o) for o in view.orchestrators]
        return view

    def ctl_workstreams(self, args: dict[str, object], now: float) -> object:
        return workstream_views(self.plan, self.state)

    def ctl_orchestrators(self, args: dict[str, object], now: float) -> object:
        views = orchestrator_views(self.plan, self.state, self.last_seen, now, self.liveness_s)
        return [self._with_process(o) for o in views]

    def _orchestrator(
        self, name: str, now: float, after: Literal["spawn", "stop"]
    ) -> OrchestratorView:
        views = orchestrator_views(self.plan, self.state, self.last_seen, now, self.liveness_s)
        (view,) = (o for o in views if o.name == name)
        return self._with_process(view, after)

    def _with_process(
        self, view: OrchestratorView, after: Literal["spawn", "stop"] | None = None
    ) -> OrchestratorView:
        """The orchestrator's view with its process: the spawner's (``after``: as it will be
        once that request is carried out), or (launcher none) what the log knows."""
        if self.processes is not None:
            process = self.processes(view.name, after)
        else:
            orch = self.state.orchestrators[view.name]
            process = ProcessView(
                launcher="none",
                state="unmanaged",
                flapping=orch.flapping,
                operator_stopped=orch.operator_stopped,
            )
        # The copy is reused while the view (by identity: views.py reuses unchanged ones) and the
        # process are unchanged: `status` asks this for every orchestrator.
        facts = (process,)
        cached = self._process_views.get(view, view.name, facts)
        if cached is not None:
            return cached
        out = msgspec.structs.replace(view, process=process)
        return self._process_views.put(view, view.name, facts, out, len(self.plan.orchestrators))

    def ctl_escalations(self, args: dict[str, object], now: float) -> object:
        """Unresolved escalations (all: every one)."""
        return escalation_views(self.state, include_closed=bool(args.get("all", False)))

    def ctl_gates(self, args: dict[str, object], now: float) -> object:
        return gate_views(self.plan, self.state)

    def ctl_decisions(self, args: dict[str, object], now: float) -> object:
        return decision_views(self.state, include_closed=bool(args.get("all", False)))

    def ctl_plan_changes(self, args: dict[str, object], now: float) -> object:
        return plan_change_views(self.state)

    # Requests that change something: an engine event, logged and committed before the reply.

    def ctl_ack(self, args: dict[str, object], now: float) -> object:
        esc = _arg(args, "id")
        self.apply_event(engine.AckEscalation(escalation=esc, note=_opt(args, "note")), now)
        return escalation_view(self.state.escalations[esc])

    def ctl_resolve(self, args: dict[str, object], now: float) -> object:
        esc = _arg(args, "id")
        self.apply_event(engine.ResolveEscalation(escalation=esc, note=_opt(args, "note")), now)
        return escalation_view(self.state.escalations[esc])

    def ctl_snooze(self, args: dict[str, object], now: float) -> object:
        esc = _arg(args, "id")
        try:
            until = parse_when(_arg(args, "until"), now)
        except WhenError as exc:
            raise CtlError("bad_args", str(exc)) from None
        self.apply_event(engine.SnoozeEscalation(escalation=esc, until=until), now)
        return escalation_view(self.state.escalations[esc])

    def ctl_gate_check(self, args: dict[str, object], now: float) -> object:
        gate = _arg(args, "id")
        self.apply_event(engine.CheckGate(gate=gate), now)
        return gate_view(self.plan, self.state, gate)

    def ctl_spawn(self, args: dict[str, object], now: float) -> object:
        """Clear an operator's stop and flapping; the spawner starts the orchestrator now."""
        name = _arg(args, "name")
        self.apply_event(engine.Spawn(orchestrator=name, reason=_opt(args, "reason")), now)
        return self._orchestrator(name, now, "spawn")

    def ctl_stop(self, args: dict[str, object], now: float) -> object:
        """Send the orchestrator ``stop``; the spawner ends its process and does not restart it."""
        name = _arg(args, "name")
        self.apply_event(engine.Stop(orchestrator=name, reason=_opt(args, "reason")), now)
        return self._orchestrator(name, now, "stop")

    def ctl_halt(self, args: dict[str, object], now: float) -> object:
        target = _arg(args, "target")
        self.apply_event(engine.Halt(target=target, reason=_opt(args, "reason")), now)
        return hold_view(self.state, target)

    def ctl_resume(self, args: dict[str, object], now: float) -> object:
        target = _arg(args, "target")
        self.apply_event(engine.Resume(target=target, reason=_opt(args, "reason")), now)
        return hold_view(self.state, target)

    def ctl_decision_approve(self, args: dict[str, object], now: float) -> object:
        dec = _arg(args, "id")
        self.apply_event(engine.ApproveDecision(decision=dec, note=_opt(args, "note")), now)
        return decision_view(self.state.decisions[dec])

    def ctl_decision_reject(self, args: dict[str, object], now: float) -> object:
        dec = _arg(args, "id")
        self.apply_event(engine.RejectDecision(decision=dec, note=_opt(args, "note")), now)
        return decision_view(self.state.decisions[dec])

    def ctl_plan_add_dep(self, args: dict[str, object], now: float) -> object:
        event = engine.AddDependency(
            workstream=_arg(args, "workstream"),
            depends_on=_arg(args, "depends_on"),
            reason=_opt(args, "reason"),
        )
        return self._plan_change(event, now)

    def ctl_plan_drop_dep(self, args: dict[str, object], now: float) -> object:
        event = engine.DropDependency(
            workstream=_arg(args, "workstream"),
            depends_on=_arg(args, "depends_on"),
            reason=_opt(args, "reason"),
        )
        return self._plan_change(event, now)

    def ctl_plan_estimate(self, args: dict[str, object], now: float) -> object:
        event = engine.ChangeEstimate(
            workstream=_arg(args, "workstream"),
            min_days=_int_arg(args, "min_days"),
            max_days=_int_arg(args, "max_days"),
            reason=_opt(args, "reason"),
        )
        return self._plan_change(event, now)

    def ctl_telemetry(self, args: dict[str, object], now: float) -> object:
        """The latest telemetry sample, or why there is none."""
        if self.telemetry is None:
            return {"enabled": False, "reason": "telemetry is off (--telemetry-interval 0)"}
        return self.telemetry()

    def ctl_notifications(self, args: dict[str, object], now: float) -> object:
        """The notification outbox, oldest first (``failed``: only the given-up ones)."""
        if self.notifications is None:
            return []
        return self.notifications.listing(bool(args.get("failed", False)))

    def ctl_notify_test(self, args: dict[str, object], now: float) -> object:
        """Enqueue a test message to a sink; its outbox id."""
        from pixels_daemon.notify.delivery import UnknownSink

        sink = args.get("sink")
        if not isinstance(sink, str) or not sink:
            raise CtlError("bad_args", "notify_test needs `sink`: a configured sink's name")
        if self.notifications is None:
            raise CtlError(
                "not_found",
                f"no sink named {sink!r}: no notification sinks are configured "
                "(pixelsd run --config FILE with [notifications.sinks.NAME])",
            )
        try:
            return self.notifications.test(sink)
        except UnknownSink as exc:
            raise CtlError("not_found", str(exc)) from None

    def ctl_notify_retry(self, args: dict[str, object], now: float) -> object:
        """Send a failed or waiting notification again now; its outbox row."""
        row_id = args.get("id")
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise CtlError("bad_args", "notify_retry needs `id`: a notification's outbox id")
        row = None if self.notifications is None else self.notifications.retry(row_id)
        if row is None:
            raise CtlError("not_found", f"no notification {row_id} in the outbox")
        return row

    def ctl_poll(self, args: dict[str, object], now: float) -> object:
        """Poll every connected orchestrator now (as the 4-hourly schedule does)."""
        names = self.connected(now)
        if names:
            self.apply_event(engine.PollAll(orchestrators=names), now)
        return {"polled": names, "deadline_s": self.poll_deadline_s}

    def ctl_report_now(self, args: dict[str, object], now: float) -> object:
        """Write this week's report now (the server writes the file before the reply leaves)."""
        week = self.current_week(now)
        if week is None:
            raise CtlError(
                "not_found",
                "the plan has not started (no orchestrator activated yet): there is no week to "
                "report on",
            )
        self.apply_event(engine.ReportDue(week=week, reason="operator"), now)

        return {"week": week, "path": f"reports/{report_filename(week)}"}

    def ctl_plan_defer(self, args: dict[str, object], now: float) -> object:
        event = engine.Defer(workstream=_arg(args, "workstream"), reason=_opt(args, "reason"))
        return self._plan_change(event, now)

    def _plan_change(self, event: engine.Event, now: float) -> object:
        self.apply_event(event, now)
        return plan_change_views(self.state)[-1]


def _arg(args: dict[str, object], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise CtlError("bad_args", f"argument {name!r} is required (a non-empty string)")
    return value


def _opt(args: dict[str, object], name: str) -> str:
    value = args.get(name, "")
    if not isinstance(value, str):
        raise CtlError("bad_args", f"argument {name!r} must be a string")
    return value


def _int_arg(args: dict[str, object], name: str) -> int:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CtlError("bad_args", f"argument {name!r} is required (a whole number of days)")
    return value


def _ownership(plan: Plan) -> ingest.Ownership:
    return ingest.Ownership(
        owner_of={ws.id: ws.orchestrator for ws in plan.workstreams.values()},
        orchestrators=frozenset(plan.orchestrators),
    )


def _command_of(effect: engine.Effect) -> Command | None:
    """The bus command an engine effect sends to its orchestrator, if any."""
    match effect:
        case engine.StartWorkstream(workstream=ws):
            return Command(action="start_workstream", workstream=ws)
        case engine.HaltWorkstream(workstream=ws, reason=reason):
            return Command(action="halt", workstream=ws, reason=reason)
        case engine.HaltOrchestrator(reason=reason):
            return Command(action="halt", reason=reason)
        case engine.ResumeWorkstream(workstream=ws, reason=reason):
            return Command(action="resume", workstream=ws, reason=reason)
        case engine.ResumeOrchestrator(reason=reason):
            return Command(action="resume", reason=reason)
        case engine.StopWorkstream(workstream=ws, reason=reason):
            return Command(action="stop", workstream=ws, reason=reason)
        case engine.StopOrchestrator(reason=reason):
            return Command(action="stop", reason=reason)
    # StartOrchestrator: a connected orchestrator is already running; starting a process is the
    # spawner's job (server.py -> supervise.py). Everything else is not for the bus.
    return None


def _bad_envelope(parts: int) -> FrameError:
    return FrameError(
        "bad_frame",
        f"expected one frame (or an empty delimiter then one frame), got {parts - 1} frames",
    )


_CTL_COMMANDS: dict[str, Callable[[Daemon, dict[str, object], float], object]] = {
    "ping": Daemon.ctl_ping,
    "status": Daemon.ctl_status,
    "workstreams": Daemon.ctl_workstreams,
    "orchestrators": Daemon.ctl_orchestrators,
    "escalations": Daemon.ctl_escalations,
    "gates": Daemon.ctl_gates,
    "decisions": Daemon.ctl_decisions,
    "plan_changes": Daemon.ctl_plan_changes,
    "ack": Daemon.ctl_ack,
    "resolve": Daemon.ctl_resolve,
    "snooze": Daemon.ctl_snooze,
    "gate_check": Daemon.ctl_gate_check,
    "spawn": Daemon.ctl_spawn,
    "stop": Daemon.ctl_stop,
    "halt": Daemon.ctl_halt,
    "resume": Daemon.ctl_resume,
    "decision_approve": Daemon.ctl_decision_approve,
    "decision_reject": Daemon.ctl_decision_reject,
    "plan_add_dep": Daemon.ctl_plan_add_dep,
    "plan_drop_dep": Daemon.ctl_plan_drop_dep,
    "plan_estimate": Daemon.ctl_plan_estimate,
    "plan_defer": Daemon.ctl_plan_defer,
    "poll": Daemon.ctl_poll,
    "report_now": Daemon.ctl_report_now,
    "telemetry": Daemon.ctl_telemetry,
    "notifications": Daemon.ctl_notifications,
    "notify_test": Daemon.ctl_notify_test,
    "notify_retry": Daemon.ctl_notify_retry,
}
