"""The coordination engine: what may start, what is stuck, what is late, what must stop, and what
needs a person. Pure and deterministic: ``step(state, plan, event, now, config) -> effects``.

Rules (everything the engine decides lives here; the workstream transitions are core/machine.py):

- Activation: an orchestrator activates once every gate in its ``after_gates`` has passed and every
  workstream in its ``after_workstreams`` is complete (or deferred), and nothing holds it:
  ``StartOrchestrator``. A workstream becomes ready when its orchestrator is active, nothing holds
  it and every (effective) dependency is complete: ``StartWorkstream`` (once: work that was already
  started and is resumed gets ``ResumeWorkstream`` instead).
- Reports: an orchestrator may report only its own workstreams; every reported change goes through
  the machine. A refused message changes nothing but its seq (consumed) and yields ``Reject``, whose
  message says why.
- Gates: evaluated when all their (non-deferred) workstreams are complete, on ``CheckGate``, and,
  once failed, when a metric they test is reported with a new value. Check commands are not run
  here: ``RunGateCheck`` asks the shell, ``GateCheckResult`` brings the outcome back (results of an
  older run are ignored). Metrics are compared with the latest reported performance_metrics.
  Pass: the gate's holds are released and its dependents activate. Fail: every transitive dependent
  workstream and orchestrator (through depends_on, after_workstreams and after_gates, including
  gates that need held work) gets the hold ``gate:<id>`` and halts; a recovery entry records what
  failed and what it blocks; a ``failure`` escalation is raised, and a ``performance`` one when a
  metric missed its target. The gate's own workstreams are never held by it: they are the fix.
- Holds: a workstream is halted while it or its orchestrator holds anything ("gate:<id>",
  "operator"); when the last hold goes it resumes (back to not_started, readiness afresh).
- Inhibition: an unresolved escalation all of whose work is held by failed gates (every affected
  workstream, or for one without workstreams its orchestrator) is inhibited: kept, not notified.
  When the gates pass it is released and notified.
- Escalations share one lifecycle, orchestrators' and the daemon's: open -> acknowledged ->
  resolved, snooze until a time. Fingerprint (source, kind, subject, affected workstreams): a
  repeat while unresolved updates the record (count, text; severity only ever rises) instead of
  making another. Open, un-snoozed, uninhibited ones are re-notified every ``renotify_s``; a snooze
  ending notifies once.
- Conditions the daemon raises itself, re-evaluated at every step (orchestrator silence: on
  ``Tick`` only, the one event that carries presence), resolved by the daemon when they clear:
  - stall: in_progress, not waiting on an unmet dependency, progress unchanged for ``stall_s``
    (>=). Waiting work (not_started, ready, halted) is never stalled.
  - orchestrator stalled: active, unfinished work, nothing heard (message or heartbeat) for
    ``stall_s`` since the later of its last message and its activation.
  - overrun: time in progress (halted time excluded) strictly above ``overrun_ratio`` x max_days.
  - blocker ageing: a reported blocker (or a blocked workstream) open ``blocker_escalate_s`` ->
    high, ``blocker_critical_s`` -> critical (the same escalation, escalated).
  - schedule slip: the critical-path projection ends more than ``slip_tolerance_days`` after
    the plan's last week.
  - hidden stall: a ``gpu_bound`` workstream in progress while every GPU has been idle (as
    telemetry reports with ``GpuIdle``) for ``stall_s`` (>=), counted from the later of the idle
    span's start and the workstream's entry into in_progress. Not raised while the workstream is
    stalled in plain sight (ws_stalled says more); resolved when the GPU is busy again (or
    telemetry can no longer tell) or the workstream leaves in_progress.
- Supervision: ``Stop`` (`pixelsctl stop`) marks an orchestrator operator-stopped and sends it
  ``stop`` (``StopOrchestrator``; again in its standing orders if it reconnects); ``Spawn`` clears
  that and flapping, resolves its ``orchestrator_flapping`` escalation and yields
  ``StartOrchestrator(by_operator=True)``. ``SupervisionAlert`` (from the spawner's policy, as
  ``TelemetryAlert`` from telemetry) raises ``orchestrator_flapping`` and marks it. Processes are
  the shell's: the engine only keeps what must survive a restart. A stopped or flapping
  orchestrator is never ``orchestrator_stalled``.
- Decisions: a new entry in an orchestrator's decisions_needed, and a cross-domain conflict (two
  orchestrators escalating on, or asking for decisions about, the same workstream; or one reporting
  broken a workstream its owner reported complete) make a decision record. ADRs are data
  (``WriteAdr`` carries the rendered file): with ``adr_mode="auto"`` written at once (Proposed),
  otherwise on approve / reject.
- Plan changes (add/drop dependency, estimate, defer) are validated (a cycle is refused, named;
  counting activation: an orchestrator's work waits for its after_gates and after_workstreams),
  applied as layers over the plan file, and listed in ``State.plan_changes``.
- Refused operator requests raise EngineError (NotFound, BadRequest, NotAllowed,
  IllegalTransition) and change nothing. A ``Tick`` that returns no effects changed nothing: the
  shell may leave it out of the log.

Time is the ``now`` argument; nothing here reads a clock.
"""

from __future__ import annotations

import collections
import datetime
import functools
import heapq
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from msgspec import Struct

from pixels_daemon.core import ingest
from pixels_daemon.core.machine import (
    FINAL,
    STARTED,
    WHY_NOT,
    EngineError,
    IllegalTransition,
    WsState,
    on_report,
    transition,
    unmet,
)
from pixels_daemon.core.state import (
    CheckResult,
    DecisionRecord,
    EscalationRecord,
    GateState,
    PlanChange,
    RecoveryRecord,
    State,
    WorkstreamState,
    initial_state,
)
from pixels_daemon.plan import Plan, Workstream
from protocol.messages import (
    DependencyFound,
    ErrorCode,
    Escalation,
    PollReply,
    Severity,
    Status,
)

DAY = 86_400.0
HOUR = 3_600.0

#: The ``orchestrator`` (source) of escalations the daemon raises itself.
DAEMON = "pixelsd"

#: Why a stopped orchestrator was stopped, when the operator gave no reason.
_STOPPED = "stopped by an operator"

#: A gate check's captured output is kept to its last this many characters: enough for the end of
#: a failing script's log, while the state (and every snapshot) stays small.
MAX_CHECK_OUTPUT = 4096

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}

#: Kinds of the escalations the daemon raises for a condition, and resolves when it clears.
CONDITION_KINDS = frozenset(
    {
        "ws_stalled",
        "orchestrator_stalled",
        "overrun",
        "blocker_aged",
        "schedule_slip",
        "hidden_stall",
    }
)

OVERRUN_OPTIONS = ["re-scope", "add resources", "defer"]

AdrMode = Literal["auto", "approve"]


class EngineConfig(Struct, frozen=True, kw_only=True):
    """Thresholds of the engine's rules (seconds unless named otherwise).

    stall_s: 24 h, the spec's "no progress for 24 h". overrun_ratio: 1.5, the spec's "> 150 % of its
    estimate" (of max days). blocker_escalate_s / blocker_critical_s: 24 h / 48 h, the spec's
    "escalate after 24 h; none may stay unresolved > 48 h". renotify_s: 4 h, the spec's status
    cadence: an open escalation is repeated at most as often as status arrives. adr_mode: "approve"
    (a person approves each ADR) unless configured "auto". slip_tolerance_days: 7, the spec's
    "within 12 weeks (+- 1 week)". plan_start: unix time of week 1's start; None = when the first
    orchestrator activates.
    """

    stall_s: float = 24 * HOUR
    overrun_ratio: float = 1.5
    blocker_escalate_s: float = 24 * HOUR
    blocker_critical_s: float = 48 * HOUR
    renotify_s: float = 4 * HOUR
    adr_mode: AdrMode = "approve"
    slip_tolerance_days: float = 7.0
    plan_start: float | None = None
    #: A poll unanswered this long is missed (counted; a run of them as long as stall_s is a
    #: stall). 10 min: orchestrators answer from their last known state, in well under a second.
    poll_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in (
            "stall_s",
            "blocker_escalate_s",
            "blocker_critical_s",
            "renotify_s",
            "poll_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if not self.overrun_ratio > 0:
            raise ValueError("overrun_ratio must be positive (1.5 = 150 % of the estimate)")
        if self.blocker_critical_s < self.blocker_escalate_s:
            raise ValueError("blocker_critical_s must not be shorter than blocker_escalate_s")
        if self.slip_tolerance_days < 0:
            raise ValueError("slip_tolerance_days must not be negative")


DEFAULT_CONFIG = EngineConfig()


# --- errors -------------------------------------------------------------------------------------


class NotFound(EngineError):
    """Raised when a request names an id (gate, escalation, decision, workstream, orchestrator)
    that does not exist."""

    code: ErrorCode = "not_found"


class BadRequest(EngineError):
    """Raised when a request's arguments are invalid (a cycle, a bad estimate, a past time)."""

    code: ErrorCode = "bad_args"


class NotAllowed(EngineError):
    """Raised when the target's current state forbids the request (resolve a resolved escalation,
    check a gate whose work is not complete, resume what no operator halted)."""

    code: ErrorCode = "illegal_transition"


# --- events (in) --------------------------------------------------------------------------------


class _Event(Struct, frozen=True, kw_only=True, tag_field="event"):
    pass


#: The orchestrator messages the engine applies (each consumes a seq).
Durable = Status | PollReply | Escalation | DependencyFound


class Received(_Event, frozen=True, tag="received"):
    """A durable orchestrator message, admitted as next (core/ingest.admit). Consumes its seq."""

    message: Durable


class Tick(_Event, frozen=True, tag="tick"):
    """Time passed. last_seen: when each orchestrator was last heard (any frame, heartbeats too)."""

    last_seen: dict[str, float] = {}


class GateCheckResult(_Event, frozen=True, tag="gate_check_result"):
    """A RunGateCheck finished. exit_status None: timed out (or could not run)."""

    gate: str
    run: int
    check: str
    exit_status: int | None
    output: str = ""
    duration_s: float = 0.0


class CheckGate(_Event, frozen=True, tag="check_gate"):
    """``pixelsctl gate check ID``: evaluate the gate now (runs its checks again)."""

    gate: str


class Halt(_Event, frozen=True, tag="halt"):
    """``pixelsctl halt ORCH|WS``."""

    target: str
    reason: str = ""


class Resume(_Event, frozen=True, tag="resume"):
    """``pixelsctl resume ORCH|WS``: lifts an operator's halt (not a failed gate's)."""

    target: str
    reason: str = ""


class AckEscalation(_Event, frozen=True, tag="ack_escalation"):
    escalation: str
    note: str = ""


class ResolveEscalation(_Event, frozen=True, tag="resolve_escalation"):
    escalation: str
    note: str = ""


class SnoozeEscalation(_Event, frozen=True, tag="snooze_escalation"):
    escalation: str
    until: float


class ApproveDecision(_Event, frozen=True, tag="approve_decision"):
    decision: str
    note: str = ""


class RejectDecision(_Event, frozen=True, tag="reject_decision"):
    decision: str
    note: str = ""


class AddDependency(_Event, frozen=True, tag="add_dependency"):
    """``workstream`` must wait for ``depends_on`` (from an operator, or an orchestrator that
    found the dependency while implementing)."""

    workstream: str
    depends_on: str
    source: str = "operator"
    reason: str = ""


class DropDependency(_Event, frozen=True, tag="drop_dependency"):
    workstream: str
    depends_on: str
    source: str = "operator"
    reason: str = ""


class ChangeEstimate(_Event, frozen=True, tag="change_estimate"):
    """Re-scope: the workstream's estimate becomes min_days..max_days."""

    workstream: str
    min_days: int
    max_days: int
    source: str = "operator"
    reason: str = ""


class Defer(_Event, frozen=True, tag="defer"):
    """Take the workstream out of the plan (its gates no longer wait for it)."""

    workstream: str
    source: str = "operator"
    reason: str = ""


class PollAll(_Event, frozen=True, tag="poll_all"):
    """The poll schedule (or an operator) polls these orchestrators: the connected ones."""

    orchestrators: list[str] = []


class ReportDue(_Event, frozen=True, tag="report_due"):
    """Week ``week``'s report is to be written now (schedule: Friday; reason "catch_up" after
    downtime; "operator" for `pixelsctl report --now`)."""

    week: int
    reason: str = "schedule"


class TelemetryAlert(_Event, frozen=True, tag="telemetry_alert"):
    """A telemetry threshold crossed (telemetry/thresholds.py): ``raised`` opens (or updates) the
    escalation ``telemetry_<rule>`` about ``subject`` ("gpu0", "host"); ``cleared`` resolves it."""

    rule: str
    subject: str
    direction: Literal["raised", "cleared"]
    severity: Severity = "high"
    message: str = ""


class GpuIdle(_Event, frozen=True, tag="gpu_idle"):
    """Telemetry's word on the GPUs (telemetry/weekly.py): every GPU has been idle (below the busy
    line, no gap in the samples) since ``since``, for at least the stall window; None: not any
    more (a GPU is busy, the samples have a gap, or telemetry stopped). Sent only when it changes,
    so a GPU idling between jobs costs the log nothing."""

    since: float | None = None


class SupervisionAlert(_Event, frozen=True, tag="supervision_alert"):
    """The spawner's policy (spawner.py) about an orchestrator's process: ``raised`` opens the
    escalation ``orchestrator_<rule>`` ("flapping": crashed too often, no longer restarted) about
    ``orchestrator`` and marks it; ``cleared`` resolves it."""

    rule: Literal["flapping"]
    orchestrator: str
    direction: Literal["raised", "cleared"]
    severity: Severity = "high"
    message: str = ""
    help_needed: str = ""
    details: dict[str, float | str] = {}


class NotificationFailed(_Event, frozen=True, tag="notification_failed"):
    """The notifier (notify/delivery.py) gave up on notification ``key`` to sink ``sink``: it
    raises (or updates) the escalation ``notification_failed`` about that sink, so a receiver
    that is down is itself something people hear of (through the other sinks, and pixelsctl)."""

    sink: str
    key: str
    error: str
    severity: Severity = "high"


class Spawn(_Event, frozen=True, tag="spawn"):
    """``pixelsctl spawn NAME``: clears an operator's stop and flapping; the spawner starts it."""

    orchestrator: str
    reason: str = ""


class Stop(_Event, frozen=True, tag="stop"):
    """``pixelsctl stop NAME``: the orchestrator is told to stop and is not restarted until
    ``Spawn``."""

    orchestrator: str
    reason: str = ""


Event = (
    Received
    | Tick
    | PollAll
    | ReportDue
    | TelemetryAlert
    | SupervisionAlert
    | NotificationFailed
    | Spawn
    | Stop
    | GpuIdle
    | GateCheckResult
    | CheckGate
    | Halt
    | Resume
    | AckEscalation
    | ResolveEscalation
    | SnoozeEscalation
    | ApproveDecision
    | RejectDecision
    | AddDependency
    | DropDependency
    | ChangeEstimate
    | Defer
)

_event_decoder: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """An event as msgpack, for the event log."""
    return msgspec.msgpack.encode(event)


def decode_event(data: bytes) -> Event:
    """The inverse of ``encode_event``."""
    return _event_decoder.decode(data)


# --- effects (out) ------------------------------------------------------------------------------


class _Effect(Struct, frozen=True, kw_only=True, tag_field="effect"):
    pass


class StartOrchestrator(_Effect, frozen=True, tag="start_orchestrator"):
    """The orchestrator should run: activated by the plan, or (``by_operator``) `pixelsctl
    spawn`, which also clears its flapping. The spawner starts its process."""

    orchestrator: str
    reason: str
    by_operator: bool = False


class StopOrchestrator(_Effect, frozen=True, tag="stop_orchestrator"):
    """`pixelsctl stop`: the orchestrator is sent ``stop`` (it stops its agents and exits); the
    spawner makes sure its process ends and does not restart it."""

    orchestrator: str
    reason: str


class StartWorkstream(_Effect, frozen=True, tag="start_workstream"):
    orchestrator: str
    workstream: str


class HaltOrchestrator(_Effect, frozen=True, tag="halt_orchestrator"):
    orchestrator: str
    reason: str


class HaltWorkstream(_Effect, frozen=True, tag="halt_workstream"):
    orchestrator: str
    workstream: str
    reason: str


class ResumeOrchestrator(_Effect, frozen=True, tag="resume_orchestrator"):
    orchestrator: str
    reason: str


class ResumeWorkstream(_Effect, frozen=True, tag="resume_workstream"):
    orchestrator: str
    workstream: str
    reason: str


class StopWorkstream(_Effect, frozen=True, tag="stop_workstream"):
    """The workstream was deferred while started: its orchestrator should stop working on it."""

    orchestrator: str
    workstream: str
    reason: str


class RunGateCheck(_Effect, frozen=True, tag="run_gate_check"):
    """Run ``command`` (``/bin/sh -c``, in the plan file's directory, killed after timeout_s) and
    answer with GateCheckResult(gate, run, check, ...)."""

    gate: str
    run: int
    check: str
    command: str
    timeout_s: float


class GateDecided(_Effect, frozen=True, tag="gate_decided"):
    gate: str
    run: int
    passed: bool
    failures: list[str]


class Reject(_Effect, frozen=True, tag="reject"):
    """Tell the orchestrator its durable message ``seq`` (id ``re``) was consumed but refused."""

    orchestrator: str
    seq: int
    re: str
    code: ErrorCode
    message: str


NotifyReason = Literal["raised", "escalated", "renotify", "snooze_ended", "released", "resolved"]


class Notify(_Effect, frozen=True, tag="notify"):
    """Tell people about escalation ``escalation`` (read it from the state)."""

    escalation: str
    reason: NotifyReason


class Inhibition(_Effect, frozen=True, tag="inhibition"):
    """Escalation ``escalation`` is now inhibited by the failed gates ``by`` (kept, not notified);
    ``by`` empty: released."""

    escalation: str
    by: list[str]


class DecisionOpened(_Effect, frozen=True, tag="decision_opened"):
    decision: str


class WriteAdr(_Effect, frozen=True, tag="write_adr"):
    """Write (or overwrite) STATE_DIR/decisions/``filename`` with ``text``."""

    decision: str
    number: int
    filename: str
    text: str


class SendPoll(_Effect, frozen=True, tag="send_poll"):
    """Send ``poll`` to the orchestrator (answer due within the poll timeout)."""

    orchestrator: str


class PollMissed(_Effect, frozen=True, tag="poll_missed"):
    """The orchestrator let a poll pass its deadline; ``missed`` in a row so far."""

    orchestrator: str
    missed: int


class WriteReport(_Effect, frozen=True, tag="write_report"):
    """Render and write week ``week``'s status report (reports.weekly_report of the state)."""

    week: int


class PlanCompleted(_Effect, frozen=True, tag="plan_completed"):
    """Every workstream complete (or deferred) and every gate passed: write the completion
    report."""


Effect = (
    StartOrchestrator
    | StopOrchestrator
    | StartWorkstream
    | HaltOrchestrator
    | HaltWorkstream
    | ResumeOrchestrator
    | ResumeWorkstream
    | StopWorkstream
    | RunGateCheck
    | GateDecided
    | Reject
    | Notify
    | Inhibition
    | DecisionOpened
    | SendPoll
    | PollMissed
    | WriteReport
    | PlanCompleted
    | WriteAdr
)


# --- entry points -------------------------------------------------------------------------------


def new_state(plan: Plan) -> State:
    """The state before any event, with every plan orchestrator, workstream and gate."""
    return initial_state(list(plan.orchestrators), list(plan.workstreams), list(plan.gates))


def step(
    state: State, plan: Plan, event: Event, now: float, config: EngineConfig = DEFAULT_CONFIG
) -> list[Effect]:
    """Apply ``event`` at time ``now``: mutate ``state``, return the effects for the shell.

    Raises EngineError (state unchanged) for a refused operator request. An orchestrator message
    is never refused by raising: it is consumed, and a refusal comes back as a ``Reject`` effect.
    """
    return _Run(state, plan, now, config).handle(event)


def receive(
    state: State, plan: Plan, message: Durable, now: float, config: EngineConfig = DEFAULT_CONFIG
) -> tuple[list[Effect], bool]:
    """``step`` with ``Received(message)``, without building the event: the daemon's per-message
    entry point (replay steps the logged message as a Received and takes the same path).

    Returns the effects, and whether the message was local: it took the progress path
    (_progress_only), so of the state it changed only its own workstreams, its orchestrator's
    reported facts and seq, and at most resolved its stall. No activation, hold, gate, decision or
    other workstream moved: a caller diffing states (events.EventFeed) may look at those alone.
    """
    run = _Run(state, plan, now, config)
    effects = run.received(message)
    return effects, run.local


def effective_deps(state: State, plan: Plan, ws_id: str) -> tuple[str, ...]:
    """The workstream's dependencies now: the plan's, minus dropped, plus added at runtime."""
    return _graph(state, plan).deps[ws_id]


def all_effective_deps(state: State, plan: Plan) -> Mapping[str, tuple[str, ...]]:
    """``effective_deps`` for every workstream at once (one cache lookup, not one per id)."""
    return _graph(state, plan).deps


class _Graph:
    """The dependency graph the state's runtime plan changes make of the plan: each workstream's
    effective dependencies, its schedule edges (dependencies and activation waits) and a
    topological order. Derived data only, rebuilt when the plan or a runtime change differs."""

    __slots__ = ("all_deps", "deps", "order")

    def __init__(self, state: State, plan: Plan) -> None:
        self.deps: dict[str, tuple[str, ...]] = {}
        for ws_id, w in plan.workstreams.items():
            dropped = state.dropped_deps.get(ws_id, ())
            base = tuple(d for d in w.depends_on if d not in dropped)
            self.deps[ws_id] = base + tuple(state.added_deps.get(ws_id, ()))
        activation = {o: _activation_deps(plan, o) for o in plan.orchestrators}
        self.all_deps: dict[str, tuple[str, ...]] = {
            ws_id: tuple(dict.fromkeys([*self.deps[ws_id], *activation[w.orchestrator]]))
            for ws_id, w in plan.workstreams.items()
        }
        self.order: tuple[str, ...] = _topo_order(plan, self.all_deps)


def _changes_key(state: State) -> tuple[object, ...]:
    if not state.added_deps and not state.dropped_deps:
        return ()  # the common case, asked millions of times: no tuples built
    return (
        tuple((k, tuple(v)) for k, v in state.added_deps.items()),
        tuple((k, tuple(v)) for k, v in state.dropped_deps.items()),
    )


class _PlanCache:
    """Derived plan data, kept for the last plan (by identity) it was built for.

    graph: the dependency graph and the runtime changes it was built for. Whole-state passes ask
    for dependencies thousands of times per event on a large plan (2,000 workstreams: millions
    of calls per wave of reports); they change only with a plan change. ownership: who owns which
    workstream (built per message, it was O(workstreams) per message). One entry each: a daemon
    runs one plan. Each is replaced whole (one assignment), so a reader in a worker thread
    (reports) sees an old or a new entry, never half of one.
    """

    graph: tuple[Plan, tuple[object, ...], _Graph] | None = None
    ownership: tuple[Plan, ingest.Ownership] | None = None


_CACHE = _PlanCache()


def _ownership(plan: Plan) -> ingest.Ownership:
    cached = _CACHE.ownership
    if cached is not None and cached[0] is plan:
        return cached[1]
    ownership = ingest.Ownership(
        owner_of={w.id: w.orchestrator for w in plan.workstreams.values()},
        orchestrators=frozenset(plan.orchestrators),
    )
    _CACHE.ownership = (plan, ownership)
    return ownership


def _graph(state: State, plan: Plan) -> _Graph:
    key = _changes_key(state)
    cached = _CACHE.graph
    if cached is not None and cached[0] is plan and cached[1] == key:
        return cached[2]
    graph = _Graph(state, plan)
    _CACHE.graph = (plan, key, graph)
    return graph


def estimate_days(state: State, plan: Plan, ws_id: str) -> tuple[int, int]:
    """(min_days, max_days) now: the plan's, or the last ChangeEstimate."""
    override = state.estimates.get(ws_id)
    if override is not None:
        return override[0], override[1]
    ws = plan.workstreams[ws_id]
    return ws.min_days, ws.max_days


def standing_orders(state: State, plan: Plan, orchestrator: str) -> list[Effect]:
    """The commands an orchestrator should be following now: for one that (re)registers, since
    commands on the bus are not durable and it may have missed them."""
    orch = state.orchestrators[orchestrator]
    if orch.operator_stopped:
        # Stopped by an operator yet connected (started by hand, or its stop was missed): again.
        return [StopOrchestrator(orchestrator=orchestrator, reason=_STOPPED)]
    if orch.holds:
        return [HaltOrchestrator(orchestrator=orchestrator, reason=_describe_holds(orch.holds))]
    if orch.activated_at is None:
        return []
    out: list[Effect] = [StartOrchestrator(orchestrator=orchestrator, reason="active")]
    for w in plan.workstreams_of(orchestrator):
        ws = state.workstreams[w.id]
        if ws.status == "halted":
            out.append(
                HaltWorkstream(
                    orchestrator=orchestrator, workstream=w.id, reason=_describe_holds(ws.holds)
                )
            )
        elif ws.status == "ready" and ws.started_at is None:
            out.append(StartWorkstream(orchestrator=orchestrator, workstream=w.id))
        elif ws.status == "ready":
            out.append(ResumeWorkstream(orchestrator=orchestrator, workstream=w.id, reason="ready"))
    return out


class Projection(Struct, frozen=True, kw_only=True):
    """Where the plan is heading: week 1 started at ``start``; the last week ends at
    ``planned_end``; at the current pace it ends at ``projected_end`` (slip_days late, negative =
    early), along ``critical_path`` (the unfinished chain that decides the end)."""

    start: float
    planned_end: float
    projected_end: float
    slip_days: float
    critical_path: list[str]


def projection(
    state: State, plan: Plan, now: float, config: EngineConfig = DEFAULT_CONFIG
) -> Projection | None:
    """Critical-path projection from actual progress and remaining estimates (max days), counting
    activation (an orchestrator's work starts after its gates). None before the plan started."""
    start = config.plan_start if config.plan_start is not None else state.plan_started_at
    if start is None:
        return None
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for w in _order(state, plan):
        ws = state.workstreams[w]
        deps = [d for d in _all_deps(state, plan, w) if d in finish]
        before = max(deps, key=lambda d: finish[d], default=None)
        earliest = max(now, finish[before]) if before is not None else now
        _, max_days = estimate_days(state, plan, w)
        if ws.status == "complete":
            end = ws.completion_time if ws.completion_time is not None else now
            before = None
        elif ws.status == "deferred":
            end = start
            before = None
        elif ws.started_at is not None:
            end = earliest + max_days * (1.0 - ws.progress) * DAY
        else:
            end = earliest + max_days * DAY
        finish[w] = end
        via[w] = before
    planned_end = start + plan.weeks * 7 * DAY
    last = max(finish, key=lambda w: finish[w], default=None)
    if last is None:
        return None
    path: list[str] = []
    node: str | None = last
    while node is not None and state.workstreams[node].status not in FINAL:
        path.append(node)
        node = via[node]
    return Projection(
        start=start,
        planned_end=planned_end,
        projected_end=finish[last],
        slip_days=(finish[last] - planned_end) / DAY,
        critical_path=path[::-1],
    )


def adr_filename(number: int, title: str) -> str:
    """``0007-cross-domain-conflict-on-ws-10.md``: numbered, with a short slug of the title."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48].rstrip("-")
    return f"{number:04d}-{slug or 'decision'}.md"


_ADR_STATUS = {
    "pending": "Proposed",
    "recorded": "Proposed",
    "approved": "Accepted",
    "rejected": "Rejected",
}


def render_adr(record: DecisionRecord, number: int, now: float) -> str:
    """The ADR file for a decision record (Markdown: context, options, decision, consequences)."""
    date = datetime.datetime.fromtimestamp(now, datetime.UTC).date().isoformat()
    options = "\n".join(f"{n}. {o}" for n, o in enumerate(record.options, start=1))
    decision = record.decision or "Not decided yet."
    lines = [
        f"# ADR {number:04d}: {record.title}",
        "",
        f"- Status: {_ADR_STATUS.get(record.state, record.state)}",
        f"- Date: {date}",
        f"- Decision record: {record.id} ({record.kind}, raised by {record.source})",
        f"- Parties: {', '.join(record.parties) or '-'}",
        f"- Workstreams: {', '.join(record.workstreams) or '-'}",
        "",
        "## Context",
        "",
        record.context,
        "",
        "## Options",
        "",
        options or "None were given.",
        "",
        "## Decision",
        "",
        decision,
        "",
        "## Consequences",
        "",
        record.consequences,
        "",
    ]
    return "\n".join(lines)


# --- helpers over state and plan ----------------------------------------------------------------


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _describe_holds(holds: Iterable[str]) -> str:
    parts = []
    for h in holds:
        if h.startswith("gate:"):
            parts.append(f"gate {h[5:]} failed")
        else:
            parts.append("halted by an operator")
    return "; ".join(parts) or "not halted"


def _activation_deps(plan: Plan, orchestrator: str) -> list[str]:
    """What an orchestrator's work waits for before it may start: after_workstreams, and the
    workstreams of its after_gates."""
    orch = plan.orchestrators[orchestrator]
    out = list(orch.after_workstreams)
    for g in orch.after_gates:
        out.extend(plan.gates[g].workstreams)
    return list(dict.fromkeys(out))


def _all_deps(state: State, plan: Plan, ws_id: str) -> list[str]:
    """Dependencies and activation waits together: the edges of the schedule graph."""
    return list(_graph(state, plan).all_deps[ws_id])


def _order(state: State, plan: Plan) -> list[str]:
    """Every workstream after all it waits for (dependencies and activation); file order first."""
    return list(_graph(state, plan).order)


def _topo_order(plan: Plan, all_deps: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    ids = list(plan.workstreams)
    position = {w: n for n, w in enumerate(ids)}
    deps = {w: set(all_deps[w]) - {w} for w in ids}
    waiting = {w: len(d) for w, d in deps.items()}
    children: dict[str, list[str]] = {w: [] for w in ids}
    for w, ds in deps.items():
        for d in ds:
            children[d].append(w)
    ready = [position[w] for w in ids if waiting[w] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        w = ids[heapq.heappop(ready)]
        order.append(w)
        for c in children[w]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, position[c])
    seen = set(order)
    order.extend(w for w in ids if w not in seen)  # only if a cycle slipped in: stay total
    return tuple(order)


def _dependents(state: State, plan: Plan, roots: Iterable[str]) -> set[str]:
    """Every workstream that depends (effectively, transitively) on one of ``roots``."""
    children: dict[str, list[str]] = {w: [] for w in plan.workstreams}
    for w in plan.workstreams:
        for d in effective_deps(state, plan, w):
            children[d].append(w)
    found: set[str] = set()
    todo = list(roots)
    while todo:
        for c in children[todo.pop()]:
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _fingerprint(source: str, kind: str, subject: str, affected: Iterable[str]) -> str:
    return "|".join((source, kind, subject, ",".join(sorted(affected))))


@dataclass
class _Spec:
    """An escalation to raise (or to update, if its fingerprint is open)."""

    type: str
    kind: str
    severity: str
    issue: str
    affected: list[str]
    source: str = DAEMON
    subject: str = ""
    help_needed: str = ""
    attempted: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    details: dict[str, float | str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.source, self.kind, self.subject, self.affected)


_WS_ID_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _named_workstreams(plan: Plan, text: str) -> list[str]:
    """Plan workstream ids mentioned in free text (a decision request)."""
    out = []
    for w in plan.workstreams:
        pattern = _WS_ID_RE_CACHE.get(w)
        if pattern is None:
            pattern = re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])", re.IGNORECASE)
            _WS_ID_RE_CACHE[w] = pattern
        if pattern.search(text):
            out.append(w)
    return out


# --- one step -----------------------------------------------------------------------------------


class _Run:
    """One call of ``step``: the state, the plan, the time, and the effects so far."""

    def __init__(self, state: State, plan: Plan, now: float, config: EngineConfig) -> None:
        self.state = state
        self.plan = plan
        # Everything stored is a float where the state says float: an int that slipped in would
        # come back from a snapshot as a float, and the replayed state would encode differently.
        self.now = float(now)
        self.config = config
        self.effects: list[Effect] = []
        self.resumed_orchs: set[str] = set()
        #: Set when a message took the progress path (see ``receive``).
        self.local = False

    # --- dispatch ---

    def handle(self, event: Event) -> list[Effect]:
        # Validate (raising leaves the state untouched), then settle what the state implies
        # (first event on a fresh state: activate the first orchestrators), then apply.
        presence: Mapping[str, float] | None = None
        match event:
            case Received(message=message):
                return self.received(message)
            case Tick(last_seen=last_seen):
                presence = last_seen
                self._settle()
                self._poll_deadlines()
                self._renotify()
            case PollAll(orchestrators=names):
                self._poll(names)
            case TelemetryAlert():
                self._telemetry_alert(event)
            case SupervisionAlert():
                self._supervision_alert(event)
            case NotificationFailed():
                self._notification_failed(event)
            case Spawn():
                self._spawn(event)
            case Stop():
                self._stop(event)
            case GpuIdle(since=since):
                if since is not None and since > self.now:
                    raise BadRequest(f"gpu idle since {_iso(since)} is in the future")
                self.state.gpu_idle_since = _float_or_none(since)
            case ReportDue(week=week):
                if week < 1:
                    raise BadRequest(f"week {week}: weeks are numbered from 1")
                self.state.reports[week] = self.now
                self.emit(WriteReport(week=week))
            case GateCheckResult():
                self._gate_result(event)
            case CheckGate(gate=gate):
                self._check_gate_request(gate)
            case Halt():
                self._halt(event)
            case Resume():
                self._resume(event)
            case AckEscalation() | ResolveEscalation() | SnoozeEscalation():
                self._lifecycle(event)
            case ApproveDecision() | RejectDecision():
                self._decide(event)
            case AddDependency() | DropDependency() | ChangeEstimate() | Defer():
                self._plan_change(event)
        return self._settled(presence)

    def received(self, message: Durable) -> list[Effect]:
        """An orchestrator's durable message (status, poll_reply, escalation, dependency)."""
        self._check_orchestrator(message.orchestrator)
        # Never a poll_reply: answering a poll is bookkeeping of its own.
        if type(message) is Status:
            path = self._progress_only(message)
            if path is not None:
                self.local = True
                # The common case, by far: skip the whole-state passes (_progress_only says
                # why); progress within in_progress skips even _status's checks.
                if path == "progress":
                    self._progress(message)
                else:
                    self._status(message)
                return self.effects
        self._settle()
        if isinstance(message, Escalation):
            self._escalation(message)
        elif isinstance(message, DependencyFound):
            self._dependency_found(message)
        else:
            if isinstance(message, PollReply):
                self._poll_answered(message.orchestrator)
            self._status(message)
        return self._settled(None)

    def _settled(self, presence: Mapping[str, float] | None) -> list[Effect]:
        """The whole-state passes after an event: what it implies for activation, conditions,
        inhibition and completion. ``presence``: a tick's last-seen times."""
        self._settle()
        self._conditions(presence)
        self._inhibition()
        self._completion()
        return self.effects

    def _progress_only(self, message: Status) -> Literal["progress", "first_start"] | None:
        """A status that only moves work forward within in_progress: each workstream in progress
        already, or ready and never started (its first start); no new or cleared blocker, no new
        decision, no changed metric, nothing held, every workstream its sender's own (the
        orchestrator's own status may change: no rule reads it). Such a report cannot change
        activation, readiness, holds, gates or decisions (those wait for completions, gate
        results and operators), and raises or clears no escalation at once (a first start has
        no stall or overrun yet), so the whole-state passes (settle, conditions, inhibition) are
        skipped for it. Those passes are O(workstreams) per message (~0.8 ms on the DGX plan,
        ~10 ms with 2,000 workstreams), and these reports are most of the traffic: a plan's first
        wave of starts, then progress. Conditions that depend on time or progress (stall,
        overrun, slip) are re-evaluated at the next Tick (every minute) or slower event.
        Deterministic, so a replay takes the same path and rebuilds the same state."""
        name = message.orchestrator
        orch = self.state.orchestrators[name]
        if orch.holds:
            return None
        # Compared only when either side has any: most reports carry none.
        if (message.blockers or orch.blockers) and list(message.blockers) != list(orch.blockers):
            return None
        if message.decisions_needed != orch.decisions_needed:
            return None
        if message.performance_metrics:
            metrics = orch.performance_metrics
            if any(metrics.get(k) != float(v) for k, v in message.performance_metrics.items()):
                return None
        path: Literal["progress", "first_start"] = "progress"
        plan_ws = self.plan.workstreams
        state_ws = self.state.workstreams
        for ws_id, report in message.workstreams.items():
            w = plan_ws.get(ws_id)
            if w is None or w.orchestrator != name:
                return None
            ws = state_ws[ws_id]
            if report.status != "in_progress" or ws.holds or report.blocker != ws.blocker:
                return None
            if ws.status != "in_progress":
                if ws.status != "ready" or ws.started_at is not None:
                    return None
                path = "first_start"
        return path

    def _progress(self, message: Status) -> None:
        """``_status`` for a report _progress_only found to be progress within in_progress: no
        state, blocker, decision or metric changes, every workstream its sender's and in
        progress. Only what such a report can change is written; the result is the state
        ``_status`` would leave (tests/test_engine_fastpath.py holds it to that)."""
        name = message.orchestrator
        now = self.now
        state = self.state
        orch = state.orchestrators[name]
        orch.acked_seq = message.seq
        state.events += 1
        orch.status = message.status
        orch.last_report = now
        workstreams = state.workstreams
        for ws_id, report in message.workstreams.items():
            ws = workstreams[ws_id]
            if ws.started_at is None:
                ws.started_at = now
            progress = float(report.progress)
            if progress != ws.progress:
                ws.progress_changed_at = now
            ws.progress = progress
            ws.eta = _float_or_none(report.eta)
            ws.completion_time = _float_or_none(report.completion_time)
            ws.updated_at = now
        self._heard_from(name)

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    # --- lookups ---

    def _check_orchestrator(self, name: str) -> None:
        if name not in self.plan.orchestrators:
            known = ", ".join(self.plan.orchestrators)
            raise NotFound(f"the plan has no orchestrator {name!r}; it has: {known}")

    def _ws(self, ws_id: str) -> WorkstreamState:
        if ws_id not in self.plan.workstreams:
            known = ", ".join(self.plan.workstreams)
            raise NotFound(f"no workstream {ws_id!r}; the plan has: {known}")
        return self.state.workstreams[ws_id]

    def _gate(self, gate_id: str) -> GateState:
        if gate_id not in self.plan.gates:
            known = ", ".join(self.plan.gates)
            raise NotFound(f"no gate {gate_id!r}; the plan has: {known}")
        return self.state.gates.setdefault(gate_id, GateState())

    def _escalation_record(self, esc_id: str) -> EscalationRecord:
        esc = self.state.escalations.get(esc_id)
        if esc is None:
            raise NotFound(f"no escalation {esc_id!r}; `pixelsctl escalations --all` lists them")
        return esc

    def _holds_of(self, ws_id: str) -> list[str]:
        """A workstream's effective holds: its own and its orchestrator's."""
        ws = self.state.workstreams[ws_id]
        orch = self.state.orchestrators[self.plan.workstreams[ws_id].orchestrator]
        if not orch.holds:
            return list(ws.holds)
        return list(dict.fromkeys([*ws.holds, *orch.holds]))

    def _status_of(self) -> dict[str, WsState]:
        return {w: ws.status for w, ws in self.state.workstreams.items()}

    def _why_not_ready(self, ws_id: str) -> str:
        """Why a not_started workstream may not start, specifically."""
        owner = self.plan.workstreams[ws_id].orchestrator
        orch = self.state.orchestrators[owner]
        reasons = []
        missing = unmet(effective_deps(self.state, self.plan, ws_id), self._status_of())
        if missing:
            waits = ", ".join(f"{d} ({self.state.workstreams[d].status})" for d in missing)
            reasons.append(f"it waits for {waits}")
        if orch.activated_at is None:
            reasons.append(f"orchestrator {owner} is not active yet ({self._waits_for(owner)})")
        return "; ".join(reasons) or "it is not ready yet"

    def _waits_for(self, orchestrator: str) -> str:
        o = self.plan.orchestrators[orchestrator]
        parts = [
            f"gate {g} ({self.state.gates[g].state})"
            for g in o.after_gates
            if self.state.gates[g].state != "passed"
        ]
        parts += [
            f"{w} ({self.state.workstreams[w].status})"
            for w in o.after_workstreams
            if self.state.workstreams[w].status not in FINAL
        ]
        return "waits for " + ", ".join(parts) if parts else "held"

    # --- settling: activation, holds, readiness, gates -----------------------------------------

    def _settle(self) -> None:
        """Bring the state to what it implies, repeating until nothing changes."""
        while True:
            changed = self._activate()
            changed = self._apply_holds() or changed
            changed = self._readiness() or changed
            changed = self._auto_gates() or changed
            if not changed:
                return

    def _activate(self) -> bool:
        changed = False
        for o in self.plan.orchestrators.values():
            orch = self.state.orchestrators[o.id]
            if orch.activated_at is not None or orch.holds:
                continue
            if any(self.state.gates[g].state != "passed" for g in o.after_gates):
                continue
            if any(self.state.workstreams[w].status not in FINAL for w in o.after_workstreams):
                continue
            orch.activated_at = self.now
            if self.state.plan_started_at is None:
                self.state.plan_started_at = self.now
            waited = [*(f"gate {g} passed" for g in o.after_gates), *o.after_workstreams]
            reason = ("after " + ", ".join(waited)) if waited else "first in the plan"
            self.emit(StartOrchestrator(orchestrator=o.id, reason=reason))
            changed = True
        return changed

    def _apply_holds(self) -> bool:
        changed = False
        for w in self.plan.workstreams.values():
            ws = self.state.workstreams[w.id]
            holds = self._holds_of(w.id)
            orch_held = bool(self.state.orchestrators[w.orchestrator].holds)
            if holds and ws.status not in FINAL and ws.status != "halted":
                ws.status = transition(ws.status, "halt")
                ws.halted_at = self.now
                changed = True
                if not orch_held:
                    self.emit(
                        HaltWorkstream(
                            orchestrator=w.orchestrator,
                            workstream=w.id,
                            reason=_describe_holds(holds),
                        )
                    )
            elif not holds and ws.status == "halted":
                ws.status = transition(ws.status, "resume")
                if ws.started_at is not None and ws.halted_at is not None:
                    ws.paused_s += self.now - ws.halted_at
                ws.halted_at = None
                ws.progress_changed_at = self.now
                changed = True
                if w.orchestrator not in self.resumed_orchs:
                    self.emit(
                        ResumeWorkstream(
                            orchestrator=w.orchestrator, workstream=w.id, reason="hold lifted"
                        )
                    )
        return changed

    def _readiness(self) -> bool:
        changed = False
        status_of = self._status_of()
        for w in self.plan.workstreams.values():
            ws = self.state.workstreams[w.id]
            if ws.status not in ("not_started", "ready"):
                continue
            ok = (
                self.state.orchestrators[w.orchestrator].activated_at is not None
                and not self._holds_of(w.id)
                and not unmet(effective_deps(self.state, self.plan, w.id), status_of)
            )
            if ok and ws.status == "not_started":
                ws.status = transition(ws.status, "ready")
                status_of[w.id] = ws.status
                changed = True
                if ws.started_at is None:
                    self.emit(StartWorkstream(orchestrator=w.orchestrator, workstream=w.id))
            elif not ok and ws.status == "ready":
                # Only a dependency added at runtime does this (holds halt, activation is for
                # good): the orchestrator was told to start it, so it is told to hold off.
                ws.status = transition(ws.status, "unready")
                status_of[w.id] = ws.status
                changed = True
                missing = unmet(effective_deps(self.state, self.plan, w.id), status_of)
                waits = ", ".join(f"{d} ({status_of[d]})" for d in missing)
                self.emit(
                    HaltWorkstream(
                        orchestrator=w.orchestrator, workstream=w.id, reason=f"waits for {waits}"
                    )
                )
        return changed

    def _required(self, gate_id: str) -> list[str]:
        """The gate's workstreams that must be complete (deferred ones left the plan)."""
        return [
            w
            for w in self.plan.gates[gate_id].workstreams
            if self.state.workstreams[w].status != "deferred"
        ]

    def _auto_gates(self) -> bool:
        changed = False
        for gate_id in self.plan.gates:
            gs = self._gate(gate_id)
            if gs.state != "pending":
                continue
            if all(self.state.workstreams[w].status == "complete" for w in self._required(gate_id)):
                self._begin_gate(gate_id)
                changed = True
        return changed

    # --- gates ---------------------------------------------------------------------------------

    def _check_gate_request(self, gate_id: str) -> None:
        self._gate(gate_id)
        missing = [
            f"{w} ({self.state.workstreams[w].status})"
            for w in self._required(gate_id)
            if self.state.workstreams[w].status != "complete"
        ]
        if missing:
            raise NotAllowed(
                f"gate {gate_id} cannot be checked yet: its workstreams {', '.join(missing)} are "
                "not complete"
            )
        self._begin_gate(gate_id)

    def _begin_gate(self, gate_id: str) -> None:
        gate = self.plan.gates[gate_id]
        gs = self._gate(gate_id)
        gs.run += 1
        gs.state = "checking"
        gs.results = {}
        gs.started_at = self.now
        if not gate.checks:
            self._decide_gate(gate_id)
            return
        for check in gate.checks:
            self.emit(
                RunGateCheck(
                    gate=gate_id,
                    run=gs.run,
                    check=check.name,
                    command=check.command,
                    timeout_s=check.timeout_s,
                )
            )

    def _gate_result(self, result: GateCheckResult) -> None:
        gate = self.plan.gates.get(result.gate)
        if gate is None:
            raise NotFound(f"no gate {result.gate!r}")
        gs = self._gate(result.gate)
        names = {c.name for c in gate.checks}
        if gs.state != "checking" or result.run != gs.run or result.check not in names:
            return  # a superseded run's result, or a repeat: nothing to decide
        gs.results[result.check] = CheckResult(
            exit_status=result.exit_status,
            output=result.output[-MAX_CHECK_OUTPUT:],
            duration_s=float(result.duration_s),
        )
        if names <= gs.results.keys():
            self._decide_gate(result.gate)

    def _observed(self, gate_id: str, metric: str) -> float | None:
        """The latest reported value of a metric: the gate's own orchestrators first."""
        gate = self.plan.gates[gate_id]
        owners = [self.plan.workstreams[w].orchestrator for w in gate.workstreams]
        for name in [*dict.fromkeys(owners), *self.plan.orchestrators]:
            value = self.state.orchestrators[name].performance_metrics.get(metric)
            if value is not None:
                return value
        return None

    def _decide_gate(self, gate_id: str) -> None:
        gate = self.plan.gates[gate_id]
        gs = self._gate(gate_id)
        failures: list[str] = []
        for check in gate.checks:
            res = gs.results[check.name]
            if res.exit_status is None:
                failures.append(f"check {check.name} did not finish within {check.timeout_s:g} s")
            elif res.exit_status != 0:
                failures.append(f"check {check.name} exited {res.exit_status}")
        missed: list[str] = []
        gs.metrics = {}
        for m in gate.metrics:
            observed = self._observed(gate_id, m.metric)
            if observed is None:
                missed.append(f"{m.metric} not reported (target {m.op} {m.value:g})")
                continue
            gs.metrics[m.metric] = observed
            if not m.holds(observed):
                missed.append(f"{m.metric} = {observed:g} (target {m.op} {m.value:g})")
        failures.extend(missed)
        gs.failures = failures
        gs.decided_at = self.now
        self.emit(GateDecided(gate=gate_id, run=gs.run, passed=not failures, failures=failures))
        if failures:
            gs.state = "failed"
            self._gate_failed(gate_id, failures, missed)
        else:
            gs.state = "passed"
            gs.passed_at = self.now
            self._gate_passed(gate_id)

    def _fail_scope(self, gate_id: str) -> tuple[list[str], list[str]]:
        """(workstreams, orchestrators) a failure of the gate holds, in plan order."""
        base = set(self.plan.gates[gate_id].workstreams)
        owners_of_base = {self.plan.workstreams[w].orchestrator for w in base}
        held = _dependents(self.state, self.plan, base)
        gates = {gate_id}
        orchs: set[str] = set()
        grew = True
        while grew:
            grew = False
            for g in self.plan.gates.values():
                if g.id not in gates and held & set(g.workstreams):
                    gates.add(g.id)
                    grew = True
            for o in self.plan.orchestrators.values():
                if o.id in orchs:
                    continue
                if gates & set(o.after_gates) or held & set(o.after_workstreams):
                    own = {w.id for w in self.plan.workstreams_of(o.id)}
                    new = own | _dependents(self.state, self.plan, own)
                    if o.id not in owners_of_base:  # never halt the work that must fix the gate
                        orchs.add(o.id)
                        grew = True
                    if not new <= held:
                        held |= new
                        grew = True
        held -= base
        return (
            [w for w in self.plan.workstreams if w in held],
            [o for o in self.plan.orchestrators if o in orchs],
        )

    def _gate_failed(self, gate_id: str, failures: list[str], missed: list[str]) -> None:
        gate = self.plan.gates[gate_id]
        hold = f"gate:{gate_id}"
        held_ws, held_orchs = self._fail_scope(gate_id)
        for w in held_ws:
            ws = self.state.workstreams[w]
            if hold not in ws.holds:
                ws.holds.append(hold)
        for o in held_orchs:
            orch = self.state.orchestrators[o]
            if hold not in orch.holds:
                orch.holds.append(hold)
                if len(orch.holds) == 1:
                    self.emit(HaltOrchestrator(orchestrator=o, reason=f"gate {gate_id} failed"))
        blocked = [w for w in held_ws if self.state.workstreams[w].status not in FINAL]
        summary = "; ".join(failures)
        spec = _Spec(
            type="failure",
            kind="gate_failed",
            severity="high",
            subject=gate_id,
            affected=list(gate.workstreams),
            issue=(
                f"gate {gate_id} ({gate.name}) failed: {summary}. Halted: "
                f"{', '.join(held_orchs) or 'no orchestrator'}; {len(blocked)} workstream(s)"
            ),
            help_needed=f"fix what failed, then run `pixelsctl gate check {gate_id}`",
            details={"failures": summary, "halted_orchestrators": ", ".join(held_orchs)},
        )
        esc = self._raise(spec, repeat_updates=True)
        rec = self._open_recovery(gate_id)
        if rec is None:
            self.state.recovery_counter += 1
            rec = RecoveryRecord(
                id=f"R-{self.state.recovery_counter}",
                gate=gate_id,
                opened_at=self.now,
                failures=[],
                blocks_workstreams=[],
                blocks_orchestrators=[],
            )
            self.state.recoveries[rec.id] = rec
        rec.failures = list(failures)
        rec.blocks_workstreams = blocked
        rec.blocks_orchestrators = list(held_orchs)
        rec.escalation = esc.id
        if missed:
            self._raise(
                _Spec(
                    type="performance",
                    kind="performance_target",
                    severity="medium",
                    subject=gate_id,
                    affected=list(gate.workstreams),
                    issue=f"performance target not met at gate {gate_id}: {'; '.join(missed)}",
                    help_needed=(
                        "re-scope the target or the work (`pixelsctl plan estimate ...`), add "
                        f"resources, or improve and report again; then `pixelsctl gate check "
                        f"{gate_id}`"
                    ),
                    options=["re-scope", "add resources", "defer"],
                    details={"missed": "; ".join(missed)},
                ),
                repeat_updates=True,
            )

    def _open_recovery(self, gate_id: str) -> RecoveryRecord | None:
        for rec in self.state.recoveries.values():
            if rec.gate == gate_id and rec.closed_at is None:
                return rec
        return None

    def _gate_passed(self, gate_id: str) -> None:
        hold = f"gate:{gate_id}"
        for ws in self.state.workstreams.values():
            if hold in ws.holds:
                ws.holds.remove(hold)
        for name, orch in self.state.orchestrators.items():
            if hold in orch.holds:
                orch.holds.remove(hold)
                if not orch.holds:
                    self.resumed_orchs.add(name)
                    reason = f"gate {gate_id} passed"
                    self.emit(ResumeOrchestrator(orchestrator=name, reason=reason))
        rec = self._open_recovery(gate_id)
        if rec is not None:
            rec.closed_at = self.now
        for kind in ("gate_failed", "performance_target"):
            for esc in list(self._unresolved()):
                if esc.orchestrator == DAEMON and esc.kind == kind and esc.subject == gate_id:
                    self._resolve(esc, f"gate {gate_id} passed")

    # --- orchestrator messages -----------------------------------------------------------------

    def _consume(self, orchestrator: str, seq: int) -> None:
        self.state.orchestrators[orchestrator].acked_seq = seq
        self.state.events += 1

    def _reject(
        self, message: Status | Escalation | DependencyFound, code: ErrorCode, text: str
    ) -> None:
        self.emit(
            Reject(
                orchestrator=message.orchestrator,
                seq=message.seq,
                re=message.id,
                code=code,
                message=text,
            )
        )

    def _status(self, message: Status) -> None:
        name = message.orchestrator
        self._consume(name, message.seq)
        rejection = ingest.check_workstreams(_ownership(self.plan), name, list(message.workstreams))
        if rejection is not None:
            self._reject(message, rejection.code, rejection.message)
            return
        events = {}
        for ws_id, report in message.workstreams.items():
            current = self.state.workstreams[ws_id].status
            try:
                events[ws_id] = on_report(
                    current,
                    report.status,
                    why=functools.partial(self._why_report_refused, ws_id),
                    subject=ws_id,
                )
            except IllegalTransition as exc:
                self._reject(message, exc.code, exc.message)
                return
        orch = self.state.orchestrators[name]
        new_decisions = [t for t in message.decisions_needed if t not in orch.decisions_needed]
        old_metrics = orch.performance_metrics
        changed_metrics = {
            k for k, v in message.performance_metrics.items() if old_metrics.get(k) != v
        }
        orch.status = message.status
        orch.last_report = self.now
        orch.blockers = {text: orch.blockers.get(text, self.now) for text in message.blockers}
        orch.decisions_needed = list(message.decisions_needed)
        orch.performance_metrics.update(
            {k: float(v) for k, v in message.performance_metrics.items()}
        )
        for ws_id, report in message.workstreams.items():
            ws = self.state.workstreams[ws_id]
            before_status, before_blocker = ws.status, _blocker_text(ws)
            event = events[ws_id]
            if event is not None:
                ws.status = transition(ws.status, event)
            if ws.status in STARTED | {"complete"} and ws.started_at is None:
                ws.started_at = self.now
            if ws.status == "in_progress" and before_status != "in_progress":
                ws.in_progress_since = self.now
            if report.progress != ws.progress or ws.status != before_status:
                ws.progress_changed_at = self.now
            ws.progress = float(report.progress)
            ws.eta = _float_or_none(report.eta)
            ws.completion_time = _float_or_none(report.completion_time)
            ws.blocker = report.blocker
            if ws.status == "complete":
                ws.blocker = None
                if ws.completion_time is None:
                    ws.completion_time = self.now
            after_blocker = _blocker_text(ws)
            if after_blocker != before_blocker:
                ws.blocker_since = self.now if after_blocker else None
            ws.updated_at = self.now
        self._heard_from(name)
        for text in new_decisions:
            self._decision_needed(name, text)
        if changed_metrics:
            self._recheck_metric_gates(changed_metrics)

    def _why_report_refused(self, ws_id: str) -> str:
        ws = self.state.workstreams[ws_id]
        if ws.status == "not_started":
            return self._why_not_ready(ws_id)
        if ws.status == "halted":
            return f"it is halted ({_describe_holds(self._holds_of(ws_id))})"
        return WHY_NOT[ws.status]

    def _recheck_metric_gates(self, metrics: set[str]) -> None:
        for gate in self.plan.gates.values():
            gs = self._gate(gate.id)
            if gs.state != "failed" or not metrics & {m.metric for m in gate.metrics}:
                continue
            if all(self.state.workstreams[w].status == "complete" for w in self._required(gate.id)):
                self._begin_gate(gate.id)

    def _escalation(self, message: Escalation) -> None:
        name = message.orchestrator
        self._consume(name, message.seq)
        rejection = ingest.check_workstreams(
            _ownership(self.plan), None, message.affected_workstreams
        )
        if rejection is not None:
            self._reject(message, rejection.code, rejection.message)
            return
        affected = list(dict.fromkeys(message.affected_workstreams))
        before = self.state.escalation_counter
        esc = self._raise(
            _Spec(
                source=name,
                type=message.type,
                kind=message.type,
                severity=message.severity,
                issue=message.issue,
                affected=affected,
                help_needed=message.help_needed,
                attempted=list(message.attempted_resolutions),
            ),
            repeat_updates=True,
        )
        self.state.orchestrators[name].last_report = self.now
        self._heard_from(name)
        if self.state.escalation_counter != before:
            self._escalation_conflicts(esc)

    def _dependency_found(self, message: DependencyFound) -> None:
        """An orchestrator's discovered dependency: a runtime plan change from that source,
        validated like an operator's (a cycle is refused, named); the seq is consumed either way."""
        name = message.orchestrator
        self._consume(name, message.seq)
        owner = self.plan.workstreams.get(message.workstream)
        for ws_id in (message.workstream, message.depends_on):
            if ws_id not in self.plan.workstreams:
                self._reject(message, "unknown_workstream", f"the plan has no workstream {ws_id!r}")
                return
        assert owner is not None  # checked just above
        if owner.orchestrator != name:
            self._reject(
                message,
                "not_owner",
                f"workstream {message.workstream} belongs to {owner.orchestrator}, not to {name}",
            )
            return
        change = AddDependency(
            workstream=message.workstream,
            depends_on=message.depends_on,
            source=name,
            reason=message.reason,
        )
        try:
            self._plan_change(change)
        except EngineError as exc:
            self._reject(message, exc.code, exc.message)
            return
        self._heard_from(name)

    # --- polls and completion --------------------------------------------------------------------

    def _poll(self, names: list[str]) -> None:
        """Poll each named orchestrator of the plan. A poll still pending keeps its sent time (a
        mute orchestrator's deadline does not move because it was polled again)."""
        for name in names:
            self._check_orchestrator(name)
        for name in dict.fromkeys(names):
            orch = self.state.orchestrators[name]
            if orch.poll_sent_at is None:
                orch.poll_sent_at = self.now
            self.emit(SendPoll(orchestrator=name))

    def _poll_answered(self, name: str) -> None:
        orch = self.state.orchestrators[name]
        orch.poll_sent_at = None
        orch.missed_polls = 0
        orch.unanswered_since = None

    def _poll_deadlines(self) -> None:
        for name, orch in self.state.orchestrators.items():
            sent = orch.poll_sent_at
            if sent is None or self.now - sent < self.config.poll_timeout_s:
                continue
            orch.poll_sent_at = None
            orch.missed_polls += 1
            if orch.unanswered_since is None:
                orch.unanswered_since = sent
            # An effect on purpose: a tick that changes the state must say so, or it is not
            # logged and a replay would miss the change.
            self.emit(PollMissed(orchestrator=name, missed=orch.missed_polls))

    def _telemetry_alert(self, event: TelemetryAlert) -> None:
        kind = f"telemetry_{event.rule}"
        if event.direction == "cleared":
            self._resolve_condition(kind, event.subject, event.message or "back under the line")
            return
        lost = event.rule == "gpu_lost"
        self._raise(
            _Spec(
                type="failure" if lost else "resource",
                kind=kind,
                severity=event.severity,
                issue=event.message or f"{event.rule} alarm on {event.subject}",
                affected=[],
                subject=event.subject,
                help_needed="check the GPU (nvidia-smi, dmesg for Xid) and the jobs using it"
                if lost or event.rule == "xid"
                else f"reduce the load on {event.subject} or raise the threshold",
            ),
            repeat_updates=True,
        )

    def _supervision_alert(self, event: SupervisionAlert) -> None:
        self._check_orchestrator(event.orchestrator)
        orch = self.state.orchestrators[event.orchestrator]
        kind = f"orchestrator_{event.rule}"
        if event.direction == "cleared":
            orch.flapping = False
            self._resolve_condition(kind, event.orchestrator, event.message or "cleared")
            return
        orch.flapping = True
        self._raise(
            _Spec(
                type="failure",
                kind=kind,
                severity=event.severity,
                issue=event.message or f"orchestrator {event.orchestrator} is {event.rule}",
                affected=[],
                subject=event.orchestrator,
                help_needed=event.help_needed
                or f"fix it, then `pixelsctl spawn {event.orchestrator}` to try again",
                details=dict(event.details),
            ),
            repeat_updates=True,
        )

    def _notification_failed(self, event: NotificationFailed) -> None:
        self._raise(
            _Spec(
                type="failure",
                kind="notification_failed",
                severity=event.severity,
                issue=f"notification {event.key} to sink {event.sink} was not delivered: "
                f"{event.error}",
                affected=[],
                subject=event.sink,
                help_needed=f"check sink {event.sink} (`pixelsctl notifications --failed`), "
                f"then `pixelsctl notify test {event.sink}`",
            ),
            repeat_updates=True,
        )

    def _spawn(self, event: Spawn) -> None:
        self._check_orchestrator(event.orchestrator)
        orch = self.state.orchestrators[event.orchestrator]
        orch.operator_stopped = False
        orch.flapping = False
        # Trying again is the operator's answer to a flapping escalation: it is dealt with.
        self._resolve_condition(
            "orchestrator_flapping", event.orchestrator, "spawned again by an operator"
        )
        self.emit(
            StartOrchestrator(
                orchestrator=event.orchestrator,
                reason=event.reason or "spawned by an operator",
                by_operator=True,
            )
        )

    def _stop(self, event: Stop) -> None:
        self._check_orchestrator(event.orchestrator)
        self.state.orchestrators[event.orchestrator].operator_stopped = True
        self.emit(
            StopOrchestrator(orchestrator=event.orchestrator, reason=event.reason or _STOPPED)
        )

    def _completion(self) -> None:
        """Mark the plan complete the first time every workstream is complete or deferred and
        every gate has passed."""
        state = self.state
        if state.completed_at is not None:
            return
        if any(ws.status not in ("complete", "deferred") for ws in state.workstreams.values()):
            return
        if any(g.state != "passed" for g in state.gates.values()):
            return
        state.completed_at = self.now
        self.emit(PlanCompleted())

    def _heard_from(self, orchestrator: str) -> None:
        # Looked up by fingerprint (a stall names no workstreams): this runs for every message,
        # and a scan of every open escalation would make each one O(open escalations).
        open_ = self.state.open_escalations
        if not open_:
            return
        esc_id = open_.get(_fingerprint(DAEMON, "orchestrator_stalled", orchestrator, ()))
        if esc_id is not None:
            self._resolve(self.state.escalations[esc_id], "heard from it again")

    # --- escalation lifecycle ------------------------------------------------------------------

    def _unresolved(self) -> Iterator[EscalationRecord]:
        for esc_id in list(self.state.open_escalations.values()):
            yield self.state.escalations[esc_id]

    def _raise(self, spec: _Spec, *, repeat_updates: bool) -> EscalationRecord:
        """Raise an escalation, or update the unresolved one with the same fingerprint.

        repeat_updates: a repeat refreshes count and text (a message arrived); False for a
        condition re-evaluated at every step, which changes the record only to raise severity.
        """
        fp = spec.fingerprint
        existing = self.state.open_escalations.get(fp)
        if existing is not None:
            esc = self.state.escalations[existing]
            higher = SEVERITY_RANK.get(spec.severity, 0) > SEVERITY_RANK.get(esc.severity, 0)
            if repeat_updates or higher:
                esc.count += 1
                esc.updated_at = self.now
                esc.issue = spec.issue
                if spec.help_needed:
                    esc.help_needed = spec.help_needed
                for a in spec.attempted:
                    if a not in esc.attempted_resolutions:
                        esc.attempted_resolutions.append(a)
                esc.details.update(spec.details)
            if higher:
                esc.severity = spec.severity
                if esc.inhibited_by:
                    self.emit(Inhibition(escalation=esc.id, by=list(esc.inhibited_by)))
                else:
                    esc.last_notified = self.now
                    self.emit(Notify(escalation=esc.id, reason="escalated"))
            return esc
        self.state.escalation_counter += 1
        esc = EscalationRecord(
            id=f"E-{self.state.escalation_counter}",
            orchestrator=spec.source,
            type=spec.type,
            severity=spec.severity,
            issue=spec.issue,
            affected_workstreams=list(spec.affected),
            attempted_resolutions=list(spec.attempted),
            help_needed=spec.help_needed,
            raised_at=self.now,
            kind=spec.kind,
            subject=spec.subject,
            fingerprint=fp,
            updated_at=self.now,
            options=list(spec.options),
            details=dict(spec.details),
        )
        self.state.escalations[esc.id] = esc
        self.state.open_escalations[fp] = esc.id
        esc.inhibited_by = self._inhibitors(esc)
        if esc.inhibited_by:
            self.emit(Inhibition(escalation=esc.id, by=list(esc.inhibited_by)))
        else:
            esc.last_notified = self.now
            self.emit(Notify(escalation=esc.id, reason="raised"))
        return esc

    def _resolve(self, esc: EscalationRecord, note: str) -> None:
        esc.state = "resolved"
        esc.resolved_at = self.now
        esc.updated_at = self.now
        esc.note = note
        esc.inhibited_by = []
        if self.state.open_escalations.get(esc.fingerprint) == esc.id:
            del self.state.open_escalations[esc.fingerprint]
        self.emit(Notify(escalation=esc.id, reason="resolved"))

    def _resolve_condition(self, kind: str, subject: str, note: str) -> None:
        for esc in list(self._unresolved()):
            if esc.orchestrator == DAEMON and esc.kind == kind and esc.subject == subject:
                self._resolve(esc, note)

    def _inhibitors(self, esc: EscalationRecord) -> list[str]:
        """The failed gates holding all the work an escalation is about (empty: not inhibited)."""

        def gate_holds(holds: Iterable[str]) -> set[str]:
            return {h[5:] for h in holds if h.startswith("gate:")}

        if esc.affected_workstreams:
            per_ws = [gate_holds(self._holds_of(w)) for w in esc.affected_workstreams]
            if all(per_ws):
                return sorted(set().union(*per_ws))
            return []
        who = esc.subject if esc.subject in self.plan.orchestrators else esc.orchestrator
        if who in self.plan.orchestrators:
            return sorted(gate_holds(self.state.orchestrators[who].holds))
        return []

    def _inhibition(self) -> None:
        for esc in self._unresolved():
            by = self._inhibitors(esc)
            if by == esc.inhibited_by:
                continue
            was = esc.inhibited_by
            esc.inhibited_by = by
            self.emit(Inhibition(escalation=esc.id, by=list(by)))
            snoozed = esc.snoozed_until is not None and self.now < esc.snoozed_until
            if was and not by and esc.state == "open" and not snoozed:
                esc.last_notified = self.now
                self.emit(Notify(escalation=esc.id, reason="released"))

    def _renotify(self) -> None:
        for esc in self._unresolved():
            if esc.inhibited_by:
                continue
            snooze = esc.snoozed_until
            if snooze is not None and self.now < snooze:
                continue
            if snooze is not None and (esc.last_notified is None or snooze > esc.last_notified):
                esc.last_notified = self.now
                self.emit(Notify(escalation=esc.id, reason="snooze_ended"))
                continue
            if esc.state != "open":
                continue
            base = esc.last_notified if esc.last_notified is not None else esc.raised_at
            if self.now - base >= self.config.renotify_s:
                esc.last_notified = self.now
                self.emit(Notify(escalation=esc.id, reason="renotify"))

    def _lifecycle(self, event: AckEscalation | ResolveEscalation | SnoozeEscalation) -> None:
        esc = self._escalation_record(event.escalation)
        if esc.state == "resolved":
            raise NotAllowed(f"escalation {esc.id} is already resolved")
        match event:
            case AckEscalation():
                if esc.state == "acknowledged":
                    return  # idempotent: a retried ack changes nothing
                esc.state = "acknowledged"
                esc.acknowledged_at = self.now
                esc.updated_at = self.now
                if event.note:
                    esc.note = event.note
            case ResolveEscalation():
                self._resolve(esc, event.note)
            case SnoozeEscalation(until=until):
                if not until > self.now:
                    raise BadRequest(
                        f"snooze until {_iso(until)} is not in the future (now {_iso(self.now)})"
                    )
                esc.snoozed_until = float(until)
                esc.updated_at = self.now

    # --- conditions the daemon raises itself ---------------------------------------------------

    def _conditions(self, presence: Mapping[str, float] | None) -> None:
        wanted = {spec.fingerprint: spec for spec in self._wanted(presence)}
        for spec in wanted.values():
            self._raise(spec, repeat_updates=False)
        for esc in list(self._unresolved()):
            if esc.orchestrator != DAEMON or esc.kind not in CONDITION_KINDS:
                continue
            if esc.fingerprint in wanted:
                continue
            if esc.kind == "orchestrator_stalled" and presence is None:
                continue  # only a Tick knows presence
            self._resolve(esc, "condition cleared")

    def _wanted(self, presence: Mapping[str, float] | None) -> Iterator[_Spec]:
        """Every condition that holds now, as the escalation it calls for."""
        status_of = self._status_of()
        slip = projection(self.state, self.plan, self.now, self.config)
        for w in self.plan.workstreams.values():
            ws = self.state.workstreams[w.id]
            waiting = unmet(effective_deps(self.state, self.plan, w.id), status_of)
            stall = self._stall_spec(w, ws, waiting)
            specs = (
                stall,
                self._hidden_stall_spec(w, ws) if stall is None else None,
                self._overrun_spec(w, ws, slip),
                self._ws_blocker_spec(w, ws),
            )
            yield from (spec for spec in specs if spec is not None)
        for name, orch in self.state.orchestrators.items():
            for text, since in orch.blockers.items():
                spec = self._blocker_spec(name, [], text, since)
                if spec is not None:
                    yield spec
        if presence is not None:
            yield from self._silent(presence)
        if slip is not None and slip.slip_days > self.config.slip_tolerance_days:
            yield _Spec(
                type="overrun",
                kind="schedule_slip",
                severity="medium",
                affected=[],
                issue=(
                    f"plan {self.plan.name} projected to end {slip.slip_days:.1f} days after its "
                    f"{self.plan.weeks}-week schedule (critical path: "
                    f"{' -> '.join(slip.critical_path) or '-'})"
                ),
                help_needed="re-scope, add resources or defer work on the critical path",
                options=list(OVERRUN_OPTIONS),
                details={"projected_end": slip.projected_end, "planned_end": slip.planned_end},
            )

    def _stall_spec(self, w: Workstream, ws: WorkstreamState, waiting: list[str]) -> _Spec | None:
        """In progress, not waiting, progress unchanged for stall_s (>=)."""
        since = ws.progress_changed_at
        if ws.status != "in_progress" or waiting or since is None:
            return None
        if self.now - since < self.config.stall_s:
            return None
        return _Spec(
            type="stall",
            kind="ws_stalled",
            severity="high",
            affected=[w.id],
            subject=w.orchestrator,
            issue=(
                f"{w.id} ({w.name}) stalled: progress {ws.progress:.0%} unchanged since "
                f"{_iso(since)}"
            ),
            help_needed=f"ask {w.orchestrator} what holds {w.id}; unblock or re-plan",
            details={"last_progress": ws.progress, "last_change": since},
        )

    def _hidden_stall_spec(self, w: Workstream, ws: WorkstreamState) -> _Spec | None:
        """GPU-bound, in progress, and every GPU idle for stall_s (>=) of that time."""
        idle = self.state.gpu_idle_since
        if not w.gpu_bound or idle is None or ws.status != "in_progress":
            return None
        entered = ws.in_progress_since if ws.in_progress_since is not None else ws.started_at
        since = max(idle, entered) if entered is not None else idle
        if self.now - since < self.config.stall_s:
            return None
        return _Spec(
            type="stall",
            kind="hidden_stall",
            severity="medium",  # "likely": the GPU may be idle for a reason the plan cannot see
            affected=[w.id],
            subject=w.orchestrator,
            issue=(
                f"{w.id} ({w.name}) likely stalled: in progress (progress "
                f"{ws.progress:.0%}) but every GPU has been idle since {_iso(idle)}"
            ),
            help_needed=(
                f"ask {w.orchestrator} whether {w.id}'s GPU jobs are running (nvidia-smi); an "
                "agent waiting on input or a hung job looks busy but leaves the GPU idle"
            ),
            details={"gpu_idle_since": idle, "progress": ws.progress},
        )

    def _overrun_spec(
        self, w: Workstream, ws: WorkstreamState, slip: Projection | None
    ) -> _Spec | None:
        """Started, and in progress (halted time excluded) strictly longer than ratio x max."""
        if ws.status not in STARTED or ws.started_at is None:
            return None
        min_days, max_days = estimate_days(self.state, self.plan, w.id)
        elapsed = self.now - ws.started_at - ws.paused_s
        limit = self.config.overrun_ratio * max_days * DAY
        if not elapsed > limit:
            return None
        details: dict[str, float | str] = {
            "estimate_min_days": float(min_days),
            "estimate_max_days": float(max_days),
            "elapsed_days": round(elapsed / DAY, 2),
            "threshold_days": round(limit / DAY, 2),
        }
        if slip is not None:
            details["plan_slip_days"] = round(slip.slip_days, 1)
        return _Spec(
            type="overrun",
            kind="overrun",
            severity="medium",
            affected=[w.id],
            subject=w.orchestrator,
            issue=(
                f"{w.id} ({w.name}) overran: {elapsed / DAY:.1f} days in progress, estimate "
                f"{min_days}-{max_days} days (limit {self.config.overrun_ratio:.0%} = "
                f"{limit / DAY:.1f} days)"
            ),
            help_needed="find the root cause; re-scope, add resources, or defer",
            options=list(OVERRUN_OPTIONS),
            details=details,
        )

    def _ws_blocker_spec(self, w: Workstream, ws: WorkstreamState) -> _Spec | None:
        text = _blocker_text(ws)
        if not text or ws.status in FINAL or ws.blocker_since is None:
            return None
        return self._blocker_spec(w.orchestrator, [w.id], text, ws.blocker_since)

    def _blocker_spec(
        self, orchestrator: str, affected: list[str], text: str, since: float
    ) -> _Spec | None:
        age = self.now - since
        if age >= self.config.blocker_critical_s:
            severity = "critical"
        elif age >= self.config.blocker_escalate_s:
            severity = "high"
        else:
            return None
        where = affected[0] if affected else orchestrator
        return _Spec(
            type="blocker",
            kind="blocker_aged",
            severity=severity,
            affected=affected,
            subject=orchestrator if affected else f"{orchestrator}: {text}",
            issue=f"blocker on {where} open since {_iso(since)}: {text}",
            help_needed=f"resolve the blocker or re-plan; {orchestrator} reported it",
            details={"blocker": text, "since": since},
        )

    def _silent(self, presence: Mapping[str, float]) -> Iterator[_Spec]:
        for o in self.plan.orchestrators.values():
            orch = self.state.orchestrators[o.id]
            if orch.activated_at is None or orch.holds:
                continue
            if orch.operator_stopped or orch.flapping:
                continue  # silent on purpose, or escalated as flapping already
            own = [w.id for w in self.plan.workstreams_of(o.id)]
            if all(self.state.workstreams[w].status in FINAL for w in own):
                continue
            heard = [t for t in (presence.get(o.id), orch.last_report) if t is not None]
            last = max(heard) if heard else None
            baseline = max(last, orch.activated_at) if last is not None else orch.activated_at
            mute = orch.unanswered_since
            if mute is not None and self.now - mute >= self.config.stall_s:
                # Heartbeats but no answers: alive, not working. Counted as a stall.
                last, baseline = mute, mute
                seen = f"{orch.missed_polls} polls unanswered since {_iso(mute)}"
            elif self.now - baseline >= self.config.stall_s:
                seen = f"last heard {_iso(last)}" if last is not None else "never heard from"
            else:
                continue
            yield _Spec(
                type="stall",
                kind="orchestrator_stalled",
                severity="high",
                affected=[],
                subject=o.id,
                issue=f"orchestrator {o.id} stalled: {seen}",
                help_needed=f"check that {o.id} is running and can reach pixelsd",
                details={"last_seen": float(last) if last is not None else 0.0},
            )

    # --- operator: halt and resume -------------------------------------------------------------

    def _target(self, target: str) -> str:
        if target in self.plan.orchestrators:
            return "orchestrator"
        if target in self.plan.workstreams:
            return "workstream"
        raise NotFound(
            f"no orchestrator or workstream {target!r}; orchestrators: "
            f"{', '.join(self.plan.orchestrators)}; workstreams: {', '.join(self.plan.workstreams)}"
        )

    def _halt(self, event: Halt) -> None:
        reason = event.reason or "halted by an operator"
        if self._target(event.target) == "orchestrator":
            orch = self.state.orchestrators[event.target]
            if "operator" in orch.holds:
                raise NotAllowed(f"{event.target} is already halted by an operator")
            orch.holds.append("operator")
            if len(orch.holds) == 1:
                self.emit(HaltOrchestrator(orchestrator=event.target, reason=reason))
            return
        ws = self.state.workstreams[event.target]
        if ws.status in FINAL:
            why = f"{event.target} is {ws.status}; there is nothing to halt"
            transition(ws.status, "halt", why)
        if "operator" in ws.holds:
            raise NotAllowed(f"{event.target} is already halted by an operator")
        ws.holds.append("operator")

    def _resume(self, event: Resume) -> None:
        kind = self._target(event.target)
        holds = (
            self.state.orchestrators[event.target].holds
            if kind == "orchestrator"
            else self.state.workstreams[event.target].holds
        )
        if "operator" not in holds:
            if holds:
                gates = [h[5:] for h in holds if h.startswith("gate:")]
                raise NotAllowed(
                    f"{event.target} is held by failed gate {', '.join(gates)}, not by an "
                    f"operator: fix it and run `pixelsctl gate check {gates[0]}`"
                )
            raise NotAllowed(f"{event.target} is not halted by an operator")
        holds.remove("operator")
        if kind == "orchestrator" and not holds:
            self.resumed_orchs.add(event.target)
            self.emit(
                ResumeOrchestrator(
                    orchestrator=event.target, reason=event.reason or "resumed by an operator"
                )
            )

    # --- decisions -----------------------------------------------------------------------------

    def _new_decision(
        self,
        *,
        kind: str,
        source: str,
        title: str,
        context: str,
        options: list[str],
        workstreams: list[str],
        parties: list[str],
        consequences: str,
    ) -> DecisionRecord:
        self.state.decision_counter += 1
        rec = DecisionRecord(
            id=f"D-{self.state.decision_counter}",
            kind=kind,
            source=source,
            title=title,
            context=context,
            options=options,
            workstreams=workstreams,
            parties=parties,
            consequences=consequences,
            created_at=self.now,
        )
        self.state.decisions[rec.id] = rec
        self.emit(DecisionOpened(decision=rec.id))
        if self.config.adr_mode == "auto":
            rec.state = "recorded"
            self._write_adr(rec)
        return rec

    def _write_adr(self, rec: DecisionRecord) -> None:
        if rec.adr == 0:
            self.state.adr_counter += 1
            rec.adr = self.state.adr_counter
        self.emit(
            WriteAdr(
                decision=rec.id,
                number=rec.adr,
                filename=adr_filename(rec.adr, rec.title),
                text=render_adr(rec, rec.adr, self.now),
            )
        )

    def _consequences(self, workstreams: list[str]) -> str:
        if not workstreams:
            return "Recorded for the plan's history; no workstream is named."
        after = sorted(_dependents(self.state, self.plan, workstreams) - set(workstreams))
        tail = f"; downstream: {', '.join(after)}" if after else ""
        return f"Affects {', '.join(workstreams)}{tail}."

    def _decision_needed(self, orchestrator: str, text: str) -> None:
        named = _named_workstreams(self.plan, text)
        self._new_decision(
            kind="decision_needed",
            source=orchestrator,
            title=text,
            context=f"Orchestrator {orchestrator} reported a decision it needs: {text}",
            options=[],
            workstreams=named,
            parties=[orchestrator],
            consequences=self._consequences(named),
        )
        for other, orch in self.state.orchestrators.items():
            if other == orchestrator:
                continue
            for their in orch.decisions_needed:
                for w in named:
                    if w in _named_workstreams(self.plan, their):
                        self._conflict(
                            w,
                            [orchestrator, other],
                            f"both ask for decisions on {w}: {orchestrator}: {text!r}; "
                            f"{other}: {their!r}",
                            key=f"decide|{w}|{orchestrator}:{text}|{other}:{their}",
                        )

    def _escalation_conflicts(self, esc: EscalationRecord) -> None:
        me = esc.orchestrator
        for w in esc.affected_workstreams:
            for other in list(self._unresolved()):
                if other.orchestrator in (me, DAEMON) or w not in other.affected_workstreams:
                    continue
                self._conflict(
                    w,
                    [other.orchestrator, me],
                    f"both escalate on {w}: {other.orchestrator} ({other.id}: {other.issue}); "
                    f"{me} ({esc.id}: {esc.issue})",
                    key=f"escalate|{w}|{other.id}|{esc.id}",
                )
            owner = self.plan.workstreams[w].orchestrator
            broken = esc.type in ("blocker", "failure", "conflict")
            if owner != me and broken and self.state.workstreams[w].status == "complete":
                self._conflict(
                    w,
                    [owner, me],
                    f"{owner} reports {w} complete; {me} reports it broken ({esc.id}: {esc.issue})",
                    key=f"broken|{w}|{esc.id}",
                )

    def _conflict(self, ws_id: str, parties: list[str], what: str, key: str) -> None:
        if key in self.state.conflicts_seen:
            return
        self.state.conflicts_seen.append(key)
        a, b = parties
        self._new_decision(
            kind="conflict",
            source=DAEMON,
            title=f"Cross-domain conflict on {ws_id}: {a} and {b}",
            context=f"Cross-domain conflict: {what}.",
            options=[
                f"follow {a}",
                f"follow {b}",
                f"re-plan {ws_id} (add or drop a dependency, re-scope, or defer)",
            ],
            workstreams=[ws_id],
            parties=[a, b],
            consequences=self._consequences([ws_id]),
        )

    def _decide(self, event: ApproveDecision | RejectDecision) -> None:
        rec = self.state.decisions.get(event.decision)
        if rec is None:
            raise NotFound(f"no decision {event.decision!r}; `pixelsctl decisions` lists them")
        if rec.state in ("approved", "rejected"):
            raise NotAllowed(f"decision {rec.id} is already {rec.state}")
        approve = isinstance(event, ApproveDecision)
        rec.state = "approved" if approve else "rejected"
        rec.decided_at = self.now
        rec.decision = event.note or ("Approved." if approve else "Rejected.")
        self._write_adr(rec)

    # --- plan changes --------------------------------------------------------------------------

    def _plan_change(self, event: AddDependency | DropDependency | ChangeEstimate | Defer) -> None:
        ws = self._ws(event.workstream)
        match event:
            case AddDependency(workstream=w, depends_on=dep):
                self._ws(dep)
                self._validate_add(w, dep)
                dropped = self.state.dropped_deps.get(w, [])
                if dep in dropped:
                    dropped.remove(dep)
                    if not dropped:
                        del self.state.dropped_deps[w]
                else:
                    self.state.added_deps.setdefault(w, []).append(dep)
                detail = f"{w} now depends on {dep}"
                kind = "add_dep"
            case DropDependency(workstream=w, depends_on=dep):
                self._ws(dep)
                deps = effective_deps(self.state, self.plan, w)
                if dep not in deps:
                    raise BadRequest(
                        f"{w} does not depend on {dep}; its dependencies: {', '.join(deps) or '-'}"
                    )
                added = self.state.added_deps.get(w, [])
                if dep in added:
                    added.remove(dep)
                    if not added:
                        del self.state.added_deps[w]
                else:
                    self.state.dropped_deps.setdefault(w, []).append(dep)
                detail = f"{w} no longer depends on {dep}"
                kind = "drop_dep"
            case ChangeEstimate(workstream=w, min_days=lo, max_days=hi):
                if lo < 1 or hi < lo:
                    raise BadRequest(
                        f"estimate {lo}..{hi} days for {w}: need whole days with 1 <= min <= max"
                    )
                old = estimate_days(self.state, self.plan, w)
                self.state.estimates[w] = [lo, hi]
                detail = f"{w} estimate {old[0]}-{old[1]} -> {lo}-{hi} days"
                kind = "estimate"
            case Defer(workstream=w):
                transition(ws.status, "defer", f"{w} is {ws.status}; it cannot be deferred")
                waiting = [
                    d
                    for d in sorted(_dependents(self.state, self.plan, [w]))
                    if w in effective_deps(self.state, self.plan, d)
                    and self.state.workstreams[d].status not in FINAL
                ]
                if waiting:
                    raise NotAllowed(
                        f"{w} cannot be deferred: {', '.join(waiting)} depend on it; drop those "
                        f"dependencies first (`pixelsctl plan drop-dep {waiting[0]} {w}`) or "
                        "defer them"
                    )
                was_started = ws.started_at is not None and ws.status != "complete"
                ws.status = transition(ws.status, "defer")
                owner = self.plan.workstreams[w].orchestrator
                if was_started:
                    self.emit(
                        StopWorkstream(
                            orchestrator=owner, workstream=w, reason=event.reason or "deferred"
                        )
                    )
                detail = f"{w} deferred"
                kind = "defer"
        self.state.plan_changes.append(
            PlanChange(
                n=len(self.state.plan_changes) + 1,
                at=self.now,
                kind=kind,
                workstream=event.workstream,
                detail=detail,
                source=event.source,
                reason=event.reason,
            )
        )

    def _validate_add(self, ws_id: str, dep: str) -> None:
        if ws_id == dep:
            raise BadRequest(f"{ws_id} cannot depend on itself")
        if dep in effective_deps(self.state, self.plan, ws_id):
            raise BadRequest(f"{ws_id} already depends on {dep}")
        if self.state.workstreams[dep].status == "deferred":
            raise NotAllowed(f"{dep} is deferred: nothing can wait for it")
        cycle = self._path(dep, ws_id)
        if cycle is not None:
            raise BadRequest(
                f"adding {dep} as a dependency of {ws_id} would make a cycle: "
                f"{' -> '.join([ws_id, *cycle])} (each waits for the next, counting the gates "
                "and workstreams an orchestrator waits for before it starts)"
            )

    def _path(self, start: str, goal: str) -> list[str] | None:
        """The shortest chain start -> ... -> goal along 'waits for' edges, or None (breadth
        first, so a refused change names the tightest cycle)."""
        parent: dict[str, str | None] = {start: None}
        todo = collections.deque([start])
        while todo:
            node = todo.popleft()
            if node == goal:
                path = []
                cur: str | None = node
                while cur is not None:
                    path.append(cur)
                    cur = parent[cur]
                return path[::-1]
            for nxt in _all_deps(self.state, self.plan, node):
                if nxt not in parent:
                    parent[nxt] = node
                    todo.append(nxt)
        return None


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _blocker_text(ws: WorkstreamState) -> str | None:
    """The blocker that ages: the reported text, or the bare fact of being blocked."""
    if ws.blocker:
        return ws.blocker
    if ws.status == "blocked":
        return "blocked (no reason given)"
    return None
