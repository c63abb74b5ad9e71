"""Building pixelsctl's views (protocol.views) from the plan and the state. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from pixels_daemon.core.state import State
from pixels_daemon.plan import Plan
from protocol.views import (
    BlockerView,
    EscalationView,
    OrchestratorView,
    StatusView,
    WorkstreamView,
)

#: An orchestrator heard from within this many heartbeat intervals counts as connected (the
#: Paranoid Pirate rule: a peer is dead after ~3 missed heartbeats).
LIVENESS_HEARTBEATS = 3


def phase_of(plan: Plan, state: State) -> str:
    """The first phase (in plan order) that still has unfinished workstreams."""
    for phase in plan.phases:
        for ws in plan.workstreams.values():
            if ws.milestone in phase.milestones and state.workstreams[ws.id].status != "complete":
                return f"Phase {phase.id}: {phase.name}"
    return "complete"


def workstream_views(plan: Plan, state: State) -> list[WorkstreamView]:
    views = []
    for ws in plan.workstreams.values():
        st = state.workstreams[ws.id]
        views.append(
            WorkstreamView(
                id=ws.id,
                name=ws.name,
                orchestrator=ws.orchestrator,
                milestone=ws.milestone,
                status=st.status,
                progress=st.progress,
                eta=st.eta,
                completion_time=st.completion_time,
                blocker=st.blocker,
                updated_at=st.updated_at,
                estimate_days=[ws.min_days, ws.max_days],
                depends_on=list(ws.depends_on),
                priority=ws.priority,
            )
        )
    return views


def orchestrator_views(
    plan: Plan, state: State, last_seen: Mapping[str, float], now: float, heartbeat_s: float
) -> list[OrchestratorView]:
    views = []
    for orch in plan.orchestrators.values():
        st = state.orchestrators[orch.id]
        seen = last_seen.get(orch.id, st.last_report)
        if seen is None:
            connection = "never_seen"
        elif now - seen <= LIVENESS_HEARTBEATS * heartbeat_s:
            connection = "connected"
        else:
            connection = "silent"
        views.append(
            OrchestratorView(
                name=orch.id,
                display_name=orch.name,
                connection=connection,
                last_seen=seen,
                last_report=st.last_report,
                acked_seq=st.acked_seq,
                status=st.status,
                workstreams=[ws.id for ws in plan.workstreams_of(orch.id)],
            )
        )
    return views


def blocker_views(plan: Plan, state: State) -> list[BlockerView]:
    views = [
        BlockerView(orchestrator=name, workstream=None, text=text, since=since)
        for name, orch in state.orchestrators.items()
        for text, since in orch.blockers.items()
    ]
    views.extend(
        BlockerView(
            orchestrator=plan.workstreams[ws_id].orchestrator,
            workstream=ws_id,
            text=ws.blocker,
            since=ws.blocker_since if ws.blocker_since is not None else 0.0,
        )
        for ws_id, ws in state.workstreams.items()
        if ws.blocker
    )
    return views


def escalation_views(state: State, include_closed: bool = False) -> list[EscalationView]:
    return [
        EscalationView(
            id=esc.id,
            orchestrator=esc.orchestrator,
            type=esc.type,
            severity=esc.severity,
            issue=esc.issue,
            affected_workstreams=list(esc.affected_workstreams),
            help_needed=esc.help_needed,
            raised_at=esc.raised_at,
            state=esc.state,
        )
        for esc in state.escalations.values()
        if include_closed or esc.state != "resolved"
    ]


def status_view(
    plan: Plan, state: State, last_seen: Mapping[str, float], now: float, heartbeat_s: float
) -> StatusView:
    return StatusView(
        plan=plan.name,
        phase=phase_of(plan, state),
        now=now,
        events=state.events,
        orchestrators=orchestrator_views(plan, state, last_seen, now, heartbeat_s),
        workstreams=workstream_views(plan, state),
        blockers=blocker_views(plan, state),
        escalations=escalation_views(state),
    )
