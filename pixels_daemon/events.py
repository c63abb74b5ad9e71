"""Live events for `pixelsctl watch`: a pure diff of successive states, and an XPUB to send them.

``EventFeed`` compares the state after each commit with what it saw last and says, one human line
each, what an operator watching would want to see: workstreams changing state or moving on,
blockers, orchestrators activated or held, the escalation lifecycle, gate verdicts, decisions and
runtime plan changes. It keeps a few small tuples per item (never references into the state, which
the engine mutates in place), so a call costs O(workstreams + gates + orchestrators + unresolved
escalations + pending decisions), not O(history).

``EventPublisher`` binds an XPUB socket and sends each event as two frames, ``[kind, msgpack]``,
so a watcher subscribes to the kinds it wants by prefix. Delivery is best effort: a watcher that
stops reading loses events (its own, no one else's) and never slows the daemon. Each event carries
a per-kind sequence number, so a watcher knows when it missed some.

Lean on purpose: pixelsctl imports this module for ``WatchEvent`` (only msgspec and zmq, which it
loads anyway; the state and plan types are for type checking only).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

if TYPE_CHECKING:
    import zmq.asyncio

    from pixels_daemon.core.state import DecisionRecord, EscalationRecord, State, WorkstreamState
    from pixels_daemon.plan import Plan

#: Every event kind, in the order `pixelsctl watch --help` lists them. No kind is a prefix of
#: another: a subscription is a prefix match on the first frame.
KINDS = ("workstream", "orchestrator", "escalation", "gate", "decision", "report", "plan")

#: Progress is reported as a 0..1 ratio, often every percent; a watcher wants to see it move, not
#: every step: an event once it has moved 5 points from the last one shown.
PROGRESS_STEP = 0.05
#: Slack for float ratios: 0.20 - 0.15 is 0.0499999..., which is five points all the same.
_EPSILON = 1e-9

#: Per-subscriber queue of the XPUB. A watcher that stops reading must never slow the daemon: XPUB
#: drops for that subscriber (only) once its queue is full. 1,000 events is far more than any burst
#: a healthy `pixelsctl watch` falls behind by (a whole plan's worth of state changes is ~200).
SNDHWM = 1000


class WatchEvent(msgspec.Struct, kw_only=True):
    """One thing that happened, as `pixelsctl watch` shows it.

    kind: one of KINDS. at: the daemon's clock (scaled under --time-scale: see clock.py).
    subject: what it is about ("WS-04", "E-3", "gate-1", "foundation", "week 3").
    text: one human line. data: the facts behind the line, for --json.
    seq: numbered per kind by the publisher (1, 2, ...); a gap means this watcher missed events.
    """

    kind: str
    at: float
    subject: str
    text: str
    data: dict[str, Any] = {}
    seq: int = 0


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def _local(ts: float) -> str:
    """The daemon's local time to the minute, as the rest of pixelsd writes times for people."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def report_event(week: int, path: str, now: float) -> WatchEvent:
    """What the daemon publishes when it has written week ``week``'s report to ``path``."""
    return WatchEvent(
        kind="report",
        at=now,
        subject=f"week {week}",
        text=f"week {week} report written: {path}",
        data={"week": week, "path": path},
    )


# What the feed remembers of each item: small immutable tuples, compared by value.
#: workstream: (status, progress last shown, blocker)
_Ws = tuple[str, float, str | None]
#: orchestrator: (activated, holds)
_Orch = tuple[bool, tuple[str, ...]]
#: escalation: (state, count, severity, snoozed_until)
_Esc = tuple[str, int, str, float | None]
#: gate: (state, run)
_Gate = tuple[str, int]


def _esc_key(e: EscalationRecord) -> _Esc:
    return (e.state, e.count, e.severity, e.snoozed_until)


class EventFeed:
    """Pure diff of successive states: what an operator watching would want to see.

    The constructor takes the baseline and emits nothing; each ``changes`` call reports what moved
    since the previous call (or the baseline) and becomes the new baseline. The state may be
    mutated in place between calls or replaced by another object (a replay, a plan reload).
    """

    def __init__(self, plan: Plan, state: State) -> None:
        self._ws: dict[str, _Ws] = {
            ws_id: (ws.status, ws.progress, ws.blocker) for ws_id, ws in state.workstreams.items()
        }
        self._orch: dict[str, _Orch] = {
            name: (o.activated_at is not None, tuple(o.holds))
            for name, o in state.orchestrators.items()
        }
        self._gates: dict[str, _Gate] = {g: (gs.state, gs.run) for g, gs in state.gates.items()}
        # Only what can still change is kept: a resolved escalation and a decided decision are
        # final. New ones are found by their counters (ids are E-<n> and D-<n>).
        self._esc: dict[str, _Esc] = {
            e.id: _esc_key(e) for e in state.escalations.values() if e.state != "resolved"
        }
        self._esc_counter = state.escalation_counter
        self._pending: set[str] = {d.id for d in state.decisions.values() if d.state == "pending"}
        self._dec_counter = state.decision_counter
        self._plan_changes = len(state.plan_changes)
        self._completed = state.completed_at is not None
        self._ranks: dict[str, int] = {}
        self._ranked: object = None

    def changes(
        self, plan: Plan, state: State, now: float, only: Collection[str] | None = None
    ) -> list[WatchEvent]:
        """What changed since the last call, in a stable order: workstreams, orchestrators,
        escalations, gates, decisions, plan.

        ``only``: the workstreams the changes since the last call are confined to, with no
        orchestrator activated or held either (Batch.scope); the others are not looked at.
        Workstreams and orchestrators are the O(plan) part: per batch at 2,000 of each, they
        were a fifth of the daemon's loop under the scale bench."""
        out: list[WatchEvent] = []
        if only is None:
            self._workstreams(plan, state, now, out, state.workstreams)
            self._orchestrators(state, now, out)
        elif only:
            every = state.workstreams
            # In the state's order, as a full diff would report them.
            rank = self._rank(state)
            ids = sorted((w for w in only if w in every), key=rank.__getitem__)
            self._workstreams(plan, state, now, out, {w: every[w] for w in ids})
        self._escalations(state, now, out)
        self._gate_changes(state, now, out)
        self._decisions(state, now, out)
        self._plan(state, now, out)
        return out

    def _rank(self, state: State) -> dict[str, int]:
        """Each workstream's position in the state (rebuilt when the set of ids changes)."""
        if self._ranked is not state.workstreams or len(self._ranks) != len(state.workstreams):
            self._ranks = {ws_id: i for i, ws_id in enumerate(state.workstreams)}
            self._ranked = state.workstreams
        return self._ranks

    # --- per kind ---------------------------------------------------------------------------

    def _workstreams(
        self,
        plan: Plan,
        state: State,
        now: float,
        out: list[WatchEvent],
        workstreams: Mapping[str, WorkstreamState],
    ) -> None:
        seen = self._ws
        for ws_id, ws in workstreams.items():
            old = seen.get(ws_id)
            if old is None:  # a workstream a reloaded plan added: a baseline, not news
                seen[ws_id] = (ws.status, ws.progress, ws.blocker)
                continue
            status, shown, blocker = old
            moved = abs(ws.progress - shown) >= PROGRESS_STEP - _EPSILON
            if not moved and (ws.status, ws.blocker) == (status, blocker):
                continue  # the common case: nothing, or a progress step too small to show
            spec = plan.workstreams.get(ws_id)
            name = spec.name if spec is not None else ws_id
            if ws.status != status:
                text = f"{ws_id} {status} -> {ws.status}"
                if ws.blocker != blocker:  # one line for both: "-> blocked: waiting for X"
                    text += f": {ws.blocker}" if ws.blocker else " (blocker cleared)"
                out.append(
                    WatchEvent(
                        kind="workstream",
                        at=now,
                        subject=ws_id,
                        text=text,
                        data={
                            "name": name,
                            "from": status,
                            "to": ws.status,
                            "progress": ws.progress,
                            "blocker": ws.blocker,
                            "holds": list(ws.holds),
                        },
                    )
                )
                shown = ws.progress
            else:
                if moved:
                    out.append(
                        WatchEvent(
                            kind="workstream",
                            at=now,
                            subject=ws_id,
                            text=f"{ws_id} progress {_pct(shown)} -> {_pct(ws.progress)}",
                            data={"name": name, "from": shown, "to": ws.progress},
                        )
                    )
                    shown = ws.progress
                if ws.blocker != blocker:
                    if ws.blocker is not None:
                        text = f"{ws_id} blocker: {ws.blocker}"
                    else:
                        text = f"{ws_id} blocker cleared (was: {blocker})"
                    out.append(
                        WatchEvent(
                            kind="workstream",
                            at=now,
                            subject=ws_id,
                            text=text,
                            data={"name": name, "blocker": ws.blocker, "was": blocker},
                        )
                    )
            seen[ws_id] = (ws.status, shown, ws.blocker)

    def _orchestrators(self, state: State, now: float, out: list[WatchEvent]) -> None:
        seen = self._orch
        for name, orch in state.orchestrators.items():
            new: _Orch = (orch.activated_at is not None, tuple(orch.holds))
            old = seen.get(name)
            seen[name] = new
            if old is None or old == new:
                continue
            if new[0] and not old[0]:
                out.append(
                    WatchEvent(kind="orchestrator", at=now, subject=name, text=f"{name} activated")
                )
            if new[1] != old[1]:
                holds, was = new[1], old[1]
                if holds and not was:
                    text = f"{name} halted: {', '.join(holds)}"
                elif was and not holds:
                    text = f"{name} resumed (was held by {', '.join(was)})"
                else:
                    text = f"{name} held by {', '.join(holds)} (was {', '.join(was)})"
                out.append(
                    WatchEvent(
                        kind="orchestrator",
                        at=now,
                        subject=name,
                        text=text,
                        data={"holds": list(holds), "was": list(was)},
                    )
                )

    def _escalations(self, state: State, now: float, out: list[WatchEvent]) -> None:
        tracked = self._esc
        records = state.escalations
        for esc_id, old in list(tracked.items()):
            record = records.get(esc_id)
            if record is None:  # gone from a rebuilt state: nothing to say about it
                del tracked[esc_id]
                continue
            new = _esc_key(record)
            if new != old:
                out.extend(self._escalation_moved(record, old, now))
            if record.state == "resolved":
                del tracked[esc_id]
            else:
                tracked[esc_id] = new
        first, last = self._esc_counter + 1, state.escalation_counter
        self._esc_counter = last
        for n in range(first, last + 1):
            record = records.get(f"E-{n}")
            if record is None:
                continue
            out.append(self._escalation_event(record, now, "opened"))
            if record.state != "open":  # opened and acted on since the last call
                out.extend(self._escalation_moved(record, ("open", 1, record.severity, None), now))
            if record.state != "resolved":
                tracked[record.id] = _esc_key(record)

    def _escalation_moved(self, e: EscalationRecord, old: _Esc, now: float) -> list[WatchEvent]:
        state, count, severity, snoozed = old
        events: list[WatchEvent] = []
        if e.count > count or e.severity != severity:
            events.append(self._escalation_event(e, now, "raised again"))
        if e.snoozed_until != snoozed and e.snoozed_until is not None and e.state != "resolved":
            events.append(self._escalation_event(e, now, "snoozed"))
        if e.state != state:
            events.append(self._escalation_event(e, now, e.state))
        return events

    @staticmethod
    def _escalation_event(e: EscalationRecord, now: float, what: str) -> WatchEvent:
        if what == "opened":
            text = f"{e.id} opened ({e.severity}): {e.issue}"
        elif what == "raised again":
            text = f"{e.id} raised again (x{e.count}, {e.severity}): {e.issue}"
        elif what == "snoozed":
            assert e.snoozed_until is not None
            text = f"{e.id} snoozed until {_local(e.snoozed_until)}"
        else:  # acknowledged, resolved
            text = f"{e.id} {what}" + (f": {e.note}" if e.note else "")
        return WatchEvent(
            kind="escalation",
            at=now,
            subject=e.id,
            text=text,
            data={
                "event": what,
                "state": e.state,
                "severity": e.severity,
                "kind": e.kind or e.type,
                "orchestrator": e.orchestrator,
                "affected": list(e.affected_workstreams),
                "count": e.count,
                "snoozed_until": e.snoozed_until,
            },
        )

    def _gate_changes(self, state: State, now: float, out: list[WatchEvent]) -> None:
        seen = self._gates
        for gate_id, gs in state.gates.items():
            new: _Gate = (gs.state, gs.run)
            old = seen.get(gate_id)
            seen[gate_id] = new
            if old is None or old == new:
                continue
            text = f"{gate_id} {old[0]} -> {gs.state} (run {gs.run})"
            if old[0] == gs.state:  # re-evaluated and decided alike between two calls
                text = f"{gate_id} {gs.state} again (run {gs.run})"
            if gs.state == "failed" and gs.failures:
                text += ": " + "; ".join(gs.failures)
            out.append(
                WatchEvent(
                    kind="gate",
                    at=now,
                    subject=gate_id,
                    text=text,
                    data={
                        "from": old[0],
                        "to": gs.state,
                        "run": gs.run,
                        "failures": list(gs.failures),
                    },
                )
            )

    def _decisions(self, state: State, now: float, out: list[WatchEvent]) -> None:
        records = state.decisions
        for dec_id in sorted(self._pending):
            record = records.get(dec_id)
            if record is None:
                self._pending.discard(dec_id)
            elif record.state != "pending":
                self._pending.discard(dec_id)
                out.append(self._decision_event(record, now, decided=True))
        first, last = self._dec_counter + 1, state.decision_counter
        self._dec_counter = last
        for n in range(first, last + 1):
            record = records.get(f"D-{n}")
            if record is None:
                continue
            out.append(self._decision_event(record, now, decided=False))
            if record.state == "pending":
                self._pending.add(record.id)
            else:  # recorded at once (--adr-mode auto), or decided since the last call
                out.append(self._decision_event(record, now, decided=True))

    @staticmethod
    def _decision_event(d: DecisionRecord, now: float, *, decided: bool) -> WatchEvent:
        if not decided:
            text = f"{d.id} opened ({d.kind}): {d.title}"
        elif d.state == "recorded":
            text = f"{d.id} recorded (ADR {d.adr}): {d.title}"
        else:
            adr = f" (ADR {d.adr})" if d.adr else ""
            text = f"{d.id} {d.state}{adr}: {d.decision or d.title}"
        return WatchEvent(
            kind="decision",
            at=now,
            subject=d.id,
            text=text,
            data={
                "event": "decided" if decided else "opened",
                "state": d.state,
                "kind": d.kind,
                "title": d.title,
                "decision": d.decision,
                "workstreams": list(d.workstreams),
                "adr": d.adr,
            },
        )

    def _plan(self, state: State, now: float, out: list[WatchEvent]) -> None:
        changes = state.plan_changes
        # A rebuilt state may hold fewer changes than seen (a failed commit rolled back): resync.
        for change in changes[min(self._plan_changes, len(changes)) :]:
            why = f"{change.source}: {change.reason}" if change.reason else change.source
            out.append(
                WatchEvent(
                    kind="plan",
                    at=now,
                    subject=change.workstream,
                    text=f"plan change {change.n}: {change.detail} ({why})",
                    data={
                        "n": change.n,
                        "change": change.kind,
                        "detail": change.detail,
                        "source": change.source,
                        "reason": change.reason,
                    },
                )
            )
        self._plan_changes = len(changes)
        completed = state.completed_at is not None
        if completed and not self._completed:
            out.append(
                WatchEvent(
                    kind="plan",
                    at=now,
                    subject="plan",
                    text="plan complete: every workstream complete or deferred, every gate passed",
                    data={"completed_at": state.completed_at},
                )
            )
        self._completed = completed


class EventPublisher:
    """XPUB bound at an endpoint (ipc://STATE/run/events.sock by default).

    Synchronous sends on the daemon's event loop are fine: every send is NOBLOCK and XPUB never
    waits for a slow subscriber (it drops that subscriber's copy instead).
    """

    def __init__(self, ctx: zmq.Context[Any] | zmq.asyncio.Context, endpoint: str) -> None:
        # Lazily: server imports this module, and pixelsctl must not load the server's imports.
        from pixels_daemon.server import DaemonError, _prepare_ipc

        self.endpoint = endpoint
        #: Events handed to zmq (a subscriber gets those it subscribed to unless it fell behind).
        self.published = 0
        self._subscriptions = 0
        self._seq: dict[str, int] = {}
        self._path: str | None = None
        _prepare_ipc(endpoint)  # before the socket exists: an error here must leave none to close
        # A plain socket even on an asyncio context (shadowing its libzmq context): every call is
        # NOBLOCK, and a plain send costs less than zmq.asyncio's future per call.
        sync_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(ctx.underlying)
        sock: zmq.Socket[bytes] = sync_ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, SNDHWM)
        # Events are best effort: nothing queued is worth waiting for at shutdown.
        sock.setsockopt(zmq.LINGER, 0)
        # Sockets are created 0660 like the daemon's others: the umask is set around bind (a
        # chmod after it would leave a window with the default mode).
        old = os.umask(0o117)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise DaemonError(f"cannot bind {endpoint}: {exc}") from exc
        finally:
            os.umask(old)
        if endpoint.startswith("ipc://"):
            self._path = endpoint[len("ipc://") :]
        self._sock = sock

    def wants_events(self) -> bool:
        """True while at least one subscriber subscribes to something.

        Reads the XPUB's pending (un)subscription frames without blocking. XPUB passes on a topic's
        first subscription and its last unsubscription only (a disconnecting subscriber's included),
        so the count is of distinct topics subscribed: above zero while anyone listens.
        """
        sock = self._sock
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return self._subscriptions > 0
            if frame[:1] == b"\x01":
                self._subscriptions += 1
            elif frame[:1] == b"\x00":
                self._subscriptions = max(0, self._subscriptions - 1)

    def publish(self, events: list[WatchEvent]) -> int:
        """Send each event as ``[kind, msgpack(event)]``, numbering it per kind (``seq``); returns
        how many were sent. Never blocks: a subscriber whose queue is full misses them (it sees the
        gap in ``seq``)."""
        sent = 0
        sock = self._sock
        encode = msgspec.msgpack.encode
        for event in events:
            seq = self._seq.get(event.kind, 0) + 1
            self._seq[event.kind] = seq
            event.seq = seq
            try:
                sock.send_multipart([event.kind.encode(), encode(event)], zmq.NOBLOCK)
            except zmq.Again:
                continue  # XPUB drops rather than refuses; kept in case a socket option changes it
            sent += 1
        self.published += sent
        return sent

    def close(self) -> None:
        """Close the socket and remove its ipc file (this publisher bound it)."""
        self._sock.close(0)
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None
