"""The shapes of pixelsctl results: what ``reply.result`` holds for each command.

These are the stable JSON fields of ``pixelsctl ... --json`` (docs/protocol.md, "Control").
Add fields freely; never rename or remove one.
"""

from __future__ import annotations

from msgspec import Struct


class OrchestratorView(Struct, kw_only=True):
    """One orchestrator of the plan.

    connection: "connected" (heard from within 3 heartbeats), "silent" (known but not heard from
    lately) or "never_seen". last_seen: unix seconds of the last message of any kind, or null.
    acked_seq: highest durable seq applied.
    """

    name: str
    display_name: str
    connection: str
    last_seen: float | None
    last_report: float | None
    acked_seq: int
    status: str
    workstreams: list[str]


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


class BlockerView(Struct, kw_only=True):
    """An open blocker, as reported (orchestrator-level or on a workstream)."""

    orchestrator: str
    workstream: str | None
    text: str
    since: float


class EscalationView(Struct, kw_only=True):
    """An escalation received from an orchestrator (lifecycle fields arrive with the engine)."""

    id: str
    orchestrator: str
    type: str
    severity: str
    issue: str
    affected_workstreams: list[str]
    help_needed: str
    raised_at: float
    state: str


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
