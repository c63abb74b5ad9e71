"""The shapes of pixelsctl results: what ``reply.result`` holds for each command.

These are the stable JSON fields of ``pixelsctl ... --json`` (docs/protocol.md, "Control").
Add fields freely; never rename or remove one.
"""

from __future__ import annotations

from msgspec import Struct


class ProcessView(Struct, kw_only=True):
    """An orchestrator's process, as the daemon's spawner sees it (pixels_daemon/spawner.py).

    launcher: "subprocess" | "systemd" | "none" (someone else starts orchestrators). state: idle
    (not activated yet), waiting (to start at next_start_at: first start or restart backoff),
    starting, running, connected (running, not started by this daemon), stopping, stopped (by an
    operator), exited (exit 0 on its own: not restarted), flapping (crashed too often: not
    restarted), unmanaged (launcher none). started_at, next_start_at: real unix seconds (not the
    plan's scaled clock). restarts: restarts after crashes since the daemon started.
    """

    launcher: str
    state: str
    pid: int | None = None
    adopted: bool = False
    started_at: float | None = None
    restarts: int = 0
    flapping: bool = False
    operator_stopped: bool = False
    last_exit: str | None = None
    next_start_at: float | None = None
    log: str | None = None


class OrchestratorView(Struct, kw_only=True):
    """One orchestrator of the plan.

    connection: "connected" (heard from within 3 heartbeats), "silent" (known but not heard from
    lately) or "never_seen". last_seen: unix seconds of the last message of any kind, or null.
    acked_seq: highest durable seq applied. missed_polls: polls in a row it let pass their
    deadline (0 once it answers one). process: its process (spawner), null where not known.
    """

    name: str
    display_name: str
    connection: str
    last_seen: float | None
    last_report: float | None
    acked_seq: int
    status: str
    workstreams: list[str]
    missed_polls: int = 0
    process: ProcessView | None = None


class WorkstreamView(Struct, kw_only=True):
    """One workstream: plan facts and the latest reported state.

    status: not_started | in_progress | blocked | complete. progress: 0..1.
    eta / completion_time / updated_at: unix seconds or null.
    """

    id: str
    name: str
    orchestrator: str
    milestone: str
    status: str
    progress: float
    eta: float | None
    completion_time: float | None
    blocker: str | None
    updated_at: float | None
    estimate_days: list[int]
    depends_on: list[str]
    priority: str
    holds: list[str] = []  # why it is halted ("gate:<id>", "operator"); empty when not halted


class BlockerView(Struct, kw_only=True):
    """An open blocker, as reported (orchestrator-level or on a workstream)."""

    orchestrator: str
    workstream: str | None
    text: str
    since: float


class EscalationView(Struct, kw_only=True):
    """An escalation, from an orchestrator or raised by the daemon itself (orchestrator "pixelsd").

    state: open | acknowledged | resolved. kind: the escalation type for orchestrators' ones, the
    rule for the daemon's (ws_stalled, orchestrator_stalled, overrun, blocker_aged, schedule_slip,
    hidden_stall, gate_failed, ...). count: how often it was raised while unresolved (repeats
    update it, they do not make another). inhibited_by: failed gates that halted all its work
    (kept, not notified). Times are unix seconds or null.
    """

    id: str
    orchestrator: str
    type: str
    severity: str
    issue: str
    affected_workstreams: list[str]
    help_needed: str
    raised_at: float
    state: str
    kind: str = ""
    subject: str = ""
    count: int = 1
    updated_at: float | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None
    snoozed_until: float | None = None
    inhibited_by: list[str] = []
    note: str = ""
    options: list[str] = []
    details: dict[str, float | str] = {}


class CheckResultView(Struct, kw_only=True):
    """One gate check command's outcome; exit_status null: timed out or could not run."""

    exit_status: int | None
    output: str
    duration_s: float


class GateView(Struct, kw_only=True):
    """A gate. state: pending | checking | passed | failed. run: evaluation number.

    failures: what failed in the last decided run, one line each. results: per check name.
    metrics: the observed value per metric criterion.
    """

    id: str
    name: str
    week: int | None
    state: str
    run: int
    workstreams: list[str]
    criteria: list[str]
    checks: list[str]
    failures: list[str]
    results: dict[str, CheckResultView]
    metrics: dict[str, float]
    started_at: float | None
    decided_at: float | None
    passed_at: float | None


class DecisionView(Struct, kw_only=True):
    """A decision record and its ADR. kind: decision_needed | conflict.

    state: pending | approved | rejected | recorded. adr: the ADR number once written, else 0;
    adr_file: its path relative to the state dir ("" until written).
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
    state: str
    decision: str
    decided_at: float | None
    adr: int
    adr_file: str = ""


class HoldView(Struct, kw_only=True):
    """The result of halt / resume: the target and what holds it now (empty: running)."""

    target: str
    kind: str  # "orchestrator" | "workstream"
    holds: list[str]


class PlanChangeView(Struct, kw_only=True):
    """A runtime plan change. kind: add_dep | drop_dep | estimate | defer."""

    n: int
    at: float
    kind: str
    workstream: str
    detail: str
    source: str
    reason: str


class StatusView(Struct, kw_only=True):
    """``pixelsctl status``: the whole picture.

    phase: the first plan phase with unfinished work (or "complete").
    now: the daemon's clock, unix seconds. events: events applied since the log began.
    """

    plan: str
    phase: str
    now: float
    events: int
    orchestrators: list[OrchestratorView]
    workstreams: list[WorkstreamView]
    blockers: list[BlockerView]
    escalations: list[EscalationView]
