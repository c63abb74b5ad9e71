"""Building pixelsctl's views (protocol.views) from the plan and the state. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from pixels_daemon.core.engine import adr_filename, all_effective_deps, estimate_days
from pixels_daemon.core.state import DecisionRecord, EscalationRecord, State, WorkstreamState
from pixels_daemon.plan import Plan, Workstream
from protocol.views import (
    BlockerView,
    CheckResultView,
    DecisionView,
    EscalationView,
    GateView,
    HoldView,
    OrchestratorView,
    PlanChangeView,
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


V = TypeVar("V")


class ViewCache(Generic[V]):
    """The last view built for each id, with the plan entry and the facts it was built from.

    ``pixelsctl status`` on a large plan builds thousands of views per query (2,000
    orchestrators and workstreams: ~10 ms of the daemon's loop, most of it struct
    construction), while most of them did not change since the last query. A view is reused
    while its plan entry (by identity) and every fact it shows are unchanged. Views are only
    ever encoded (or copied with ``msgspec.structs.replace``), never modified, so sharing one
    between replies is safe. Used on the loop thread only.
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[object, tuple[object, ...], V]] = {}

    def get(self, entry: object, key: str, facts: tuple[object, ...]) -> V | None:
        cached = self.entries.get(key)
        if cached is not None and cached[0] is entry and cached[1] == facts:
            return cached[2]
        return None

    def put(self, entry: object, key: str, facts: tuple[object, ...], view: V, size: int) -> V:
        if len(self.entries) > 2 * size:
            self.entries.clear()  # a smaller plan replaced a larger one: drop what is gone
        self.entries[key] = (entry, facts, view)
        return view


_WS_VIEWS: ViewCache[WorkstreamView] = ViewCache()
_ORCH_VIEWS: ViewCache[OrchestratorView] = ViewCache()


def workstream_views(plan: Plan, state: State) -> list[WorkstreamView]:
    # Runs for every `status` over every workstream: the dependency map is looked up once, and
    # the cache is read inline (ViewCache.get's test, without a call per item: ~0.25 ms of a
    # status at 2,000 workstreams and orchestrators).
    deps_of = all_effective_deps(state, plan)
    states = state.workstreams
    cached_views = _WS_VIEWS.entries
    views = []
    for ws_id, ws in plan.workstreams.items():
        st = states[ws_id]
        estimate = estimate_days(state, plan, ws_id)
        deps = deps_of[ws_id]
        facts = (
            st.status,
            st.progress,
            st.eta,
            st.completion_time,
            st.blocker,
            st.updated_at,
            tuple(st.holds),
            estimate,
            deps,
        )
        cached = cached_views.get(ws_id)
        if cached is not None and cached[0] is ws and cached[1] == facts:
            views.append(cached[2])
            continue
        views.append(
            _WS_VIEWS.put(ws, ws_id, facts, _ws_view(ws, st, estimate, deps), len(plan.workstreams))
        )
    return views


def _ws_view(
    ws: Workstream, st: WorkstreamState, estimate: tuple[int, int], deps: tuple[str, ...]
) -> WorkstreamView:
    return WorkstreamView(
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
        estimate_days=list(estimate),
        depends_on=list(deps),
        priority=ws.priority,
        holds=list(st.holds),
    )


def orchestrator_views(
    plan: Plan, state: State, last_seen: Mapping[str, float], now: float, heartbeat_s: float
) -> list[OrchestratorView]:
    views = []
    states = state.orchestrators
    cached_views = _ORCH_VIEWS.entries  # read inline, as in workstream_views
    live_for = LIVENESS_HEARTBEATS * heartbeat_s
    for orch in plan.orchestrators.values():
        st = states[orch.id]
        seen = last_seen.get(orch.id, st.last_report)
        if seen is None:
            connection = "never_seen"
        elif now - seen <= live_for:
            connection = "connected"
        else:
            connection = "silent"
        facts = (connection, seen, st.last_report, st.acked_seq, st.status, st.missed_polls)
        cached = cached_views.get(orch.id)
        if cached is not None and cached[0] is orch and cached[1] == facts:
            view = cached[2]
        else:
            view = OrchestratorView(
                name=orch.id,
                display_name=orch.name,
                connection=connection,
                last_seen=seen,
                last_report=st.last_report,
                acked_seq=st.acked_seq,
                status=st.status,
                workstreams=[ws.id for ws in plan.workstreams_of(orch.id)],
                missed_polls=st.missed_polls,
            )
            _ORCH_VIEWS.put(orch, orch.id, facts, view, len(plan.orchestrators))
        views.append(view)
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


def escalation_view(esc: EscalationRecord) -> EscalationView:
    return EscalationView(
        id=esc.id,
        orchestrator=esc.orchestrator,
        type=esc.type,
        severity=esc.severity,
        issue=esc.issue,
        affected_workstreams=list(esc.affected_workstreams),
        help_needed=esc.help_needed,
        raised_at=esc.raised_at,
        state=esc.state,
        kind=esc.kind,
        subject=esc.subject,
        count=esc.count,
        updated_at=esc.updated_at,
        acknowledged_at=esc.acknowledged_at,
        resolved_at=esc.resolved_at,
        snoozed_until=esc.snoozed_until,
        inhibited_by=list(esc.inhibited_by),
        note=esc.note,
        options=list(esc.options),
        details=dict(esc.details),
    )


def escalation_views(state: State, include_closed: bool = False) -> list[EscalationView]:
    return [
        escalation_view(esc)
        for esc in state.escalations.values()
        if include_closed or esc.state != "resolved"
    ]


def gate_view(plan: Plan, state: State, gate_id: str) -> GateView:
    gate = plan.gates[gate_id]
    st = state.gates[gate_id]
    return GateView(
        id=gate.id,
        name=gate.name,
        week=gate.week,
        state=st.state,
        run=st.run,
        workstreams=list(gate.workstreams),
        criteria=list(gate.criteria),
        checks=[check.name for check in gate.checks],
        failures=list(st.failures),
        results={
            name: CheckResultView(
                exit_status=r.exit_status, output=r.output, duration_s=r.duration_s
            )
            for name, r in st.results.items()
        },
        metrics=dict(st.metrics),
        started_at=st.started_at,
        decided_at=st.decided_at,
        passed_at=st.passed_at,
    )


def gate_views(plan: Plan, state: State) -> list[GateView]:
    return [gate_view(plan, state, gate_id) for gate_id in plan.gates]


def decision_view(dec: DecisionRecord) -> DecisionView:
    return DecisionView(
        id=dec.id,
        kind=dec.kind,
        source=dec.source,
        title=dec.title,
        context=dec.context,
        options=list(dec.options),
        workstreams=list(dec.workstreams),
        parties=list(dec.parties),
        consequences=dec.consequences,
        created_at=dec.created_at,
        state=dec.state,
        decision=dec.decision,
        decided_at=dec.decided_at,
        adr=dec.adr,
        adr_file=f"decisions/{adr_filename(dec.adr, dec.title)}" if dec.adr else "",
    )


def decision_views(state: State, include_closed: bool = False) -> list[DecisionView]:
    return [
        decision_view(dec)
        for dec in state.decisions.values()
        if include_closed or dec.state == "pending"
    ]


def hold_view(state: State, target: str) -> HoldView:
    if target in state.orchestrators:
        return HoldView(
            target=target, kind="orchestrator", holds=list(state.orchestrators[target].holds)
        )
    return HoldView(target=target, kind="workstream", holds=list(state.workstreams[target].holds))


def plan_change_views(state: State) -> list[PlanChangeView]:
    return [
        PlanChangeView(
            n=c.n,
            at=c.at,
            kind=c.kind,
            workstream=c.workstream,
            detail=c.detail,
            source=c.source,
            reason=c.reason,
        )
        for c in state.plan_changes
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
