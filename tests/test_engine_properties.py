"""Properties of the engine over random valid plans and random event sequences (hypothesis).

- No workstream ever starts (or becomes ready) before its dependencies complete.
- Replaying the accepted events rebuilds the identical state, and the same effects, also when
  the replay starts from a snapshot taken half-way.
- A refused request changes nothing; a tick with no effects changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixels_daemon.core.engine import (
    AckEscalation,
    AddDependency,
    ApproveDecision,
    ChangeEstimate,
    CheckGate,
    Defer,
    DropDependency,
    Effect,
    Event,
    GateCheckResult,
    GpuIdle,
    Halt,
    Received,
    RejectDecision,
    ResolveEscalation,
    Resume,
    RunGateCheck,
    SnoozeEscalation,
    StartWorkstream,
    Tick,
    effective_deps,
    new_state,
    step,
)
from pixels_daemon.core.machine import STARTED, EngineError
from pixels_daemon.core.state import State
from pixels_daemon.plan import Plan, parse_plan
from protocol.messages import Escalation, Status, WorkstreamReport, WorkstreamStatus

T0 = 1_800_000_000.0
HOUR = 3600.0

#: Enough to explore gates failing and passing, halts, re-plans and escalations in one run,
#: while the whole file stays within a few seconds.
MAX_EXAMPLES = 300
MAX_EVENTS = 40

REPORTED: tuple[WorkstreamStatus, ...] = ("not_started", "in_progress", "blocked", "complete")
METRIC = "speed"


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A random valid plan: a DAG of workstreams over 1-3 orchestrators, gates with checks and
    metrics, and activation that only ever waits for earlier orchestrators' work (no deadlock)."""
    n_orch = draw(st.integers(1, 3))
    n_ws = draw(st.integers(2, 8))
    orchs = [f"o{i}" for i in range(n_orch)]
    # Owners in orchestrator order along the workstream order: a dependency (always an earlier
    # workstream) then belongs to the same or an earlier orchestrator, so activation (which only
    # waits for earlier orchestrators' work) can never deadlock.
    indices = sorted(draw(st.lists(st.integers(0, n_orch - 1), min_size=n_ws, max_size=n_ws)))
    owner = {f"W{j}": orchs[i] for j, i in enumerate(indices)}
    ws_ids = list(owner)
    lines = ['[plan]\nname = "random"\nweeks = 12\n']
    lines.append('[[phases]]\nid = 1\nname = "all"\nweeks = [1, 12]\nmilestones = ["M0"]\n')
    lines.append('[[milestones]]\nid = "M0"\n')
    gates: dict[str, list[str]] = {}
    for n in range(draw(st.integers(0, 3))):
        members = draw(st.lists(st.sampled_from(ws_ids), min_size=1, max_size=3, unique=True))
        gates[f"g{n}"] = members
    for i, o in enumerate(orchs):
        earlier = set(orchs[:i])
        ok_gates = [g for g, members in gates.items() if {owner[w] for w in members} <= earlier]
        ok_ws = [w for w in ws_ids if owner[w] in earlier]
        after_gates = (
            draw(st.lists(st.sampled_from(ok_gates), max_size=2, unique=True)) if (ok_gates) else []
        )
        after_ws = draw(st.lists(st.sampled_from(ok_ws), max_size=2, unique=True)) if ok_ws else []
        lines.append(
            f'[[orchestrators]]\nid = "{o}"\nafter_gates = {after_gates!r}\n'
            f"after_workstreams = {after_ws!r}\n".replace("'", '"')
        )
    for j, w in enumerate(ws_ids):
        deps = draw(st.lists(st.sampled_from(ws_ids[:j]), max_size=3, unique=True)) if j else []
        low = draw(st.integers(1, 3))
        high = low + draw(st.integers(0, 3))
        gpu = "true" if draw(st.booleans()) else "false"
        lines.append(
            f'[[workstreams]]\nid = "{w}"\norchestrator = "{owner[w]}"\nmilestone = "M0"\n'
            f"days = [{low}, {high}]\ndepends_on = {deps!r}\ngpu_bound = {gpu}\n".replace("'", '"')
        )
    for g, members in gates.items():
        n_checks = draw(st.integers(0, 2))
        check_list = ", ".join(f'{{ name = "c{k}", command = "true" }}' for k in range(n_checks))
        metric = draw(st.booleans())
        metrics = f'{{ metric = "{METRIC}", op = ">=", value = 10 }}' if metric else ""
        lines.append(
            f'[[gates]]\nid = "{g}"\nworkstreams = {members!r}\nchecks = [{check_list}]\n'
            f"metrics = [{metrics}]\n".replace("'", '"')
        )
    return parse_plan("\n".join(lines), "hypothesis")


@dataclass
class Run:
    """One random run: the state, the clock, and the log of accepted events with their times."""

    plan: Plan
    state: State
    now: float = T0
    seq: dict[str, int] = field(default_factory=dict)
    log: list[tuple[Event, float]] = field(default_factory=list)
    effects: list[list[Effect]] = field(default_factory=list)
    pending_checks: list[RunGateCheck] = field(default_factory=list)


#: What an orchestrator would sensibly report next, by machine state: most reports follow the
#: work forward (so runs reach gates, halts and releases); the rest are random (often illegal).
SENSIBLE: dict[str, tuple[WorkstreamStatus, ...]] = {
    "not_started": ("not_started", "blocked"),
    "ready": ("in_progress", "complete"),
    "in_progress": ("in_progress", "complete", "complete", "blocked"),
    "blocked": ("in_progress", "complete"),
    "halted": ("in_progress", "blocked"),
    "complete": ("complete",),
    "deferred": ("not_started",),
}


def report_for(current: str) -> st.SearchStrategy[WorkstreamStatus]:
    return st.one_of(st.sampled_from(SENSIBLE[current]), st.sampled_from(REPORTED))


def encoded(state: State) -> bytes:
    return msgspec.msgpack.encode(state)


def draw_event(data: st.DataObject, run: Run) -> Event:
    """One random event, valid or not: requests the engine must refuse are part of the game."""
    plan = run.plan
    orchs = list(plan.orchestrators)
    ws_ids = list(plan.workstreams)
    kind = data.draw(
        st.sampled_from(
            [
                "tick",
                "status",
                "status",
                "status",
                "escalation",
                "gate_result",
                "check_gate",
                "halt",
                "resume",
                "lifecycle",
                "decide",
                "replan",
                "gpu_idle",
            ]
        )
    )
    if kind == "tick":
        run.now += data.draw(st.sampled_from([0.0, HOUR, 6 * HOUR, 25 * HOUR, 50 * HOUR]))
        seen = data.draw(st.lists(st.sampled_from(orchs), unique=True))
        return Tick(last_seen=dict.fromkeys(seen, run.now - HOUR))
    if kind in ("status", "escalation"):
        run.now += data.draw(st.sampled_from([0.0, 60.0, HOUR]))
        orch = data.draw(st.sampled_from(orchs))
        n = run.seq[orch] = run.seq.get(orch, 0) + 1
        # Mostly its own workstreams, sometimes another's (refused: not_owner).
        own = [w.id for w in plan.workstreams_of(orch)] or ws_ids
        pool = own if data.draw(st.integers(0, 4)) else ws_ids
        chosen = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
        if kind == "escalation":
            return Received(
                message=Escalation(
                    orchestrator=orch,
                    seq=n,
                    id=f"{orch}-{n}",
                    type=data.draw(st.sampled_from(["blocker", "failure", "stall"])),
                    issue="trouble",
                    affected_workstreams=chosen,
                )
            )
        reports = {
            w: WorkstreamReport(
                status=data.draw(report_for(run.state.workstreams[w].status)),
                progress=data.draw(st.sampled_from([0.0, 0.3, 0.6, 1.0])),
                blocker=data.draw(st.sampled_from([None, None, "waiting on vendor"])),
            )
            for w in chosen
        }
        metrics = data.draw(st.sampled_from([{}, {METRIC: 5.0}, {METRIC: 20.0}]))
        decisions = data.draw(st.sampled_from([[], ["pick W0 or W1?"], ["which W1 API?"]]))
        return Received(
            message=Status(
                orchestrator=orch,
                seq=n,
                id=f"{orch}-{n}",
                workstreams=reports,
                performance_metrics=metrics,
                decisions_needed=decisions,
                blockers=data.draw(st.sampled_from([[], ["no disk"]])),
            )
        )
    if kind == "gate_result":
        # Mostly checks of the gate's current run (a stale one now and then: ignored).
        gates_now = run.state.gates
        current = [
            c
            for c in run.pending_checks
            if gates_now[c.gate].state == "checking" and gates_now[c.gate].run == c.run
        ]
        if not run.pending_checks:
            return Tick()
        check = data.draw(st.sampled_from(current or run.pending_checks))
        return GateCheckResult(
            gate=check.gate,
            run=check.run,
            check=check.check,
            exit_status=data.draw(st.sampled_from([0, 0, 1, None])),
            output="log",
        )
    gates = [*plan.gates, "nope"]
    targets = [*orchs, *ws_ids, "nope"]
    if kind == "check_gate":
        failed = [g for g, gs in run.state.gates.items() if gs.state == "failed"]
        return CheckGate(gate=data.draw(st.sampled_from(failed or gates)))
    if kind == "halt":
        return Halt(target=data.draw(st.sampled_from(targets)))
    if kind == "resume":
        halted = [o for o, orch in run.state.orchestrators.items() if "operator" in orch.holds]
        halted += [w for w, ws in run.state.workstreams.items() if "operator" in ws.holds]
        return Resume(target=data.draw(st.sampled_from(halted or targets)))
    if kind == "lifecycle":
        ids = [*run.state.escalations, "E-999"]
        esc = data.draw(st.sampled_from(ids))
        which = data.draw(st.sampled_from(["ack", "resolve", "snooze"]))
        if which == "ack":
            return AckEscalation(escalation=esc)
        if which == "resolve":
            return ResolveEscalation(escalation=esc, note="done")
        until = run.now + data.draw(st.sampled_from([-1.0, 5e3]))  # the past is refused
        return SnoozeEscalation(escalation=esc, until=until)
    if kind == "gpu_idle":  # telemetry: every GPU idle since then (or no longer); future refused
        ago = data.draw(st.sampled_from([None, -1.0, 0.0, HOUR, 30 * HOUR]))
        return GpuIdle(since=None if ago is None else run.now - ago)
    if kind == "decide":
        dec = data.draw(st.sampled_from([*run.state.decisions, "D-999"]))
        if data.draw(st.booleans()):
            return ApproveDecision(decision=dec)
        return RejectDecision(decision=dec)
    a = data.draw(st.sampled_from(ws_ids))
    b = data.draw(st.sampled_from(ws_ids))
    change = data.draw(st.sampled_from(["add", "drop", "estimate", "defer"]))
    if change == "add":
        return AddDependency(workstream=a, depends_on=b)
    if change == "drop":
        return DropDependency(workstream=a, depends_on=b)
    if change == "estimate":
        low = data.draw(st.integers(0, 3))
        high = low + data.draw(st.integers(0, 2))
        return ChangeEstimate(workstream=a, min_days=low, max_days=high)  # min 0 is refused
    return Defer(workstream=a)


def check_no_early_start(run: Run, before: Mapping[str, str], effects: list[Effect]) -> None:
    """Nothing is ready, started or told to start while a dependency is incomplete."""
    state, plan = run.state, run.plan
    for w, ws in state.workstreams.items():
        deps = effective_deps(state, plan, w)
        incomplete = [d for d in deps if state.workstreams[d].status != "complete"]
        if ws.status == "ready":
            assert not incomplete, f"{w} ready while {incomplete} incomplete"
        started_now = ws.status in STARTED | {"complete"} and before[w] not in STARTED | {
            "complete"
        }
        if started_now:
            assert not incomplete, f"{w} started from {before[w]} while {incomplete} incomplete"
    for effect in effects:
        if isinstance(effect, StartWorkstream):
            deps = effective_deps(state, plan, effect.workstream)
            assert all(state.workstreams[d].status == "complete" for d in deps)


def replay(plan: Plan, log: list[tuple[Event, float]], state: State | None = None) -> State:
    state = state if state is not None else new_state(plan)
    for event, at in log:
        step(state, plan, event, at)
    return state


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=plans(), data=st.data())
def test_random_runs_keep_the_rules_and_replay_identically(plan: Plan, data: st.DataObject) -> None:
    """For random plans and events: no early start, refusals and idle ticks change nothing, and
    replaying the log (from scratch or from a snapshot) rebuilds the same state and effects."""
    run = Run(plan=plan, state=new_state(plan))
    halfway: tuple[bytes, int] | None = None
    for n in range(data.draw(st.integers(1, MAX_EVENTS))):
        if n == MAX_EVENTS // 2:
            halfway = (encoded(run.state), len(run.log))
        event = draw_event(data, run)
        before_bytes = encoded(run.state)
        before = {w: ws.status for w, ws in run.state.workstreams.items()}
        try:
            effects = step(run.state, plan, event, run.now)
        except EngineError:
            assert encoded(run.state) == before_bytes, "a refused request changed the state"
            continue
        if isinstance(event, Tick) and not effects:
            assert encoded(run.state) == before_bytes, "an effect-free tick changed the state"
        check_no_early_start(run, before, effects)
        run.log.append((event, run.now))
        run.effects.append(effects)
        run.pending_checks.extend(e for e in effects if isinstance(e, RunGateCheck))

    again = new_state(plan)
    replayed_effects = [step(again, plan, event, at) for event, at in run.log]
    assert encoded(again) == encoded(run.state)
    assert replayed_effects == run.effects
    if halfway is not None:
        snap, position = halfway
        resumed = replay(plan, run.log[position:], msgspec.msgpack.decode(snap, type=State))
        assert encoded(resumed) == encoded(run.state)


@settings(max_examples=40, deadline=None)
@given(plan=plans())
def test_random_plans_start_only_workstreams_without_dependencies(plan: Plan) -> None:
    """The first step starts exactly the active orchestrators' workstreams with no dependencies."""
    state = new_state(plan)
    effects = step(state, plan, Tick(), T0)
    started = {e.workstream for e in effects if isinstance(e, StartWorkstream)}
    assert started
    for w in started:
        assert plan.workstreams[w].depends_on == ()
