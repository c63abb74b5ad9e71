"""The daemon's state: exactly what replaying the event log rebuilds.

Everything here is a msgspec Struct so a snapshot is one ``msgpack.encode(state)``. Presence (which
socket identity an orchestrator uses now, when it last sent a heartbeat) is not here: it is not in
the log and lives in the shell (the engine sees it only through the ``Tick`` events it is given).

``core/ingest.py`` fills the reported fields; ``core/engine.py`` owns the rest (the workstream state
machine, activation, gates, holds, the escalation lifecycle, decisions and runtime plan changes).
"""

from __future__ import annotations

from msgspec import Struct, field

from pixels_daemon.core.machine import WsState

#: Bump when the meaning of the state or of applying an event changes: snapshots taken by an older
#: core are then ignored and the state is rebuilt from the log.
#: 2: the coordination engine (machine states, holds, gates, escalation lifecycle, decisions).
#: 3: polls (pending, missed), reports written, plan completion.
#: 4: in_progress_since and gpu_idle_since (the hidden-stall rule); operator_stopped and flapping
#:    (supervision).
CORE_VERSION = 4


class WorkstreamState(Struct, kw_only=True):
    """One workstream: its machine state (core/machine.py) and the latest reported facts.

    holds: why it is halted ("gate:<id>", "operator"); it is halted while it or its orchestrator
    holds any. progress_changed_at: when progress (or the state) last changed: the stall clock.
    paused_s: time spent halted after it started (not counted against its estimate).
    in_progress_since: when it last entered in_progress (the hidden-stall clock starts there).
    """

    status: WsState = "not_started"
    progress: float = 0.0
    eta: float | None = None
    completion_time: float | None = None
    blocker: str | None = None
    blocker_since: float | None = None
    updated_at: float | None = None
    started_at: float | None = None
    holds: list[str] = field(default_factory=list)
    progress_changed_at: float | None = None
    halted_at: float | None = None
    paused_s: float = 0.0
    in_progress_since: float | None = None


class OrchestratorState(Struct, kw_only=True):
    """What the log says about one orchestrator.

    activated_at: when its activation conditions (after_gates, after_workstreams) were first met
    and it was told to start; None while pending. holds: as for workstreams; a hold on an
    orchestrator halts all its unfinished workstreams.
    """

    acked_seq: int = 0
    status: str = "unknown"
    last_report: float | None = None
    blockers: dict[str, float] = field(default_factory=dict)  # text -> first reported at
    decisions_needed: list[str] = field(default_factory=list)
    performance_metrics: dict[str, float] = field(default_factory=dict)
    activated_at: float | None = None
    holds: list[str] = field(default_factory=list)
    #: Polls: when the unanswered poll was sent (None: none pending); how many in a row went
    #: unanswered past their deadline, and since when (the stall clock for a mute orchestrator).
    poll_sent_at: float | None = None
    missed_polls: int = 0
    unanswered_since: float | None = None
    #: Supervision: `pixelsctl stop` (not restarted until `pixelsctl spawn`); crashed too often
    #: (not restarted, escalated, until spawned).
    operator_stopped: bool = False
    flapping: bool = False


class EscalationRecord(Struct, kw_only=True):
    """An escalation: from an orchestrator, or raised by the daemon itself (orchestrator="pixelsd").

    Lifecycle: state open -> acknowledged -> resolved; snoozed_until silences notifications until
    then. Deduplicated by ``fingerprint`` (source, kind, subject, affected workstreams): a repeat
    while unresolved updates this record (count, updated_at, text) instead of making another.
    kind: the type for orchestrators' escalations, the rule for the daemon's ("ws_stalled", ...).
    subject: what a daemon escalation is about beyond workstreams (a gate, an orchestrator).
    inhibited_by: gates whose failure halted all the work it is about: kept, not notified, until
    they pass. last_notified: when people were last told (None: never).
    """

    id: str
    orchestrator: str
    type: str
    severity: str
    issue: str
    affected_workstreams: list[str]
    attempted_resolutions: list[str]
    help_needed: str
    raised_at: float
    state: str = "open"
    kind: str = ""
    subject: str = ""
    fingerprint: str = ""
    updated_at: float | None = None
    count: int = 1
    last_notified: float | None = None
    snoozed_until: float | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None
    note: str = ""
    inhibited_by: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    details: dict[str, float | str] = field(default_factory=dict)


class CheckResult(Struct, kw_only=True):
    """One gate check's outcome. exit_status None: it did not finish within its timeout."""

    exit_status: int | None
    output: str = ""
    duration_s: float = 0.0


class GateState(Struct, kw_only=True):
    """A gate: pending (never evaluated) -> checking (checks running) -> passed | failed.

    run: the evaluation number; check results of an older run are ignored. failures: what failed
    in the last decided run, one line each. metrics: the observed value per metric criterion.
    """

    state: str = "pending"
    run: int = 0
    results: dict[str, CheckResult] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    started_at: float | None = None
    decided_at: float | None = None
    passed_at: float | None = None


class RecoveryRecord(Struct, kw_only=True):
    """A failed gate's recovery entry: what failed and what it blocks, until the gate passes."""

    id: str
    gate: str
    opened_at: float
    failures: list[str]
    blocks_workstreams: list[str]
    blocks_orchestrators: list[str]
    escalation: str = ""
    closed_at: float | None = None


class DecisionRecord(Struct, kw_only=True):
    """A decision a person must make or record, and the data of its ADR.

    kind: "decision_needed" (an orchestrator asked) or "conflict" (two domains disagree).
    state: pending (awaiting approve/reject) | approved | rejected | recorded (ADR written without
    approval, by configuration). adr: the ADR number once written, else 0.
    """

    id: str
    kind: str
    source: str
    title: str
    context: str
    options: list[str]
    workstreams: list[str]
    parties: list[str]
    consequences: str
    created_at: float
    state: str = "pending"
    decision: str = ""
    decided_at: float | None = None
    adr: int = 0


class PlanChange(Struct, kw_only=True):
    """A runtime change to the plan (add_dep, drop_dep, estimate, defer), as applied."""

    n: int
    at: float
    kind: str
    workstream: str
    detail: str
    source: str
    reason: str = ""


class State(Struct, kw_only=True):
    """The whole replayable state.

    added_deps / dropped_deps / estimates: runtime plan changes layered over the plan file (the
    effective dependencies of a workstream are the plan's, minus dropped, plus added).
    open_escalations: fingerprint -> id of the unresolved escalation carrying it.
    plan_started_at: when the first orchestrator activated (the schedule's week 1 starts then).
    gpu_idle_since: since when every GPU has been idle, as telemetry last told (``GpuIdle``); set
    only once the idle span has lasted the stall window, None otherwise.
    """

    events: int = 0  # orchestrator messages applied, rejected ones included (each consumed a seq)
    orchestrators: dict[str, OrchestratorState] = field(default_factory=dict)
    workstreams: dict[str, WorkstreamState] = field(default_factory=dict)
    escalations: dict[str, EscalationRecord] = field(default_factory=dict)
    escalation_counter: int = 0
    gates: dict[str, GateState] = field(default_factory=dict)
    recoveries: dict[str, RecoveryRecord] = field(default_factory=dict)
    recovery_counter: int = 0
    decisions: dict[str, DecisionRecord] = field(default_factory=dict)
    decision_counter: int = 0
    adr_counter: int = 0
    conflicts_seen: list[str] = field(default_factory=list)
    open_escalations: dict[str, str] = field(default_factory=dict)
    added_deps: dict[str, list[str]] = field(default_factory=dict)
    dropped_deps: dict[str, list[str]] = field(default_factory=dict)
    estimates: dict[str, list[int]] = field(default_factory=dict)  # ws -> [min_days, max_days]
    plan_changes: list[PlanChange] = field(default_factory=list)
    plan_started_at: float | None = None
    reports: dict[int, float] = field(default_factory=dict)  # week -> when its report was written
    completed_at: float | None = None  # every workstream complete (or deferred), every gate passed
    gpu_idle_since: float | None = None


def initial_state(
    orchestrators: list[str], workstreams: list[str], gates: list[str] | None = None
) -> State:
    """The state before any event: plan orchestrators, workstreams and gates known, nothing
    reported."""
    return State(
        orchestrators={name: OrchestratorState() for name in orchestrators},
        workstreams={ws: WorkstreamState() for ws in workstreams},
        gates={g: GateState() for g in gates or ()},
    )
