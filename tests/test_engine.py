"""The coordination engine (core/engine.py): every rule, driven by events and an injected clock."""

from __future__ import annotations

import importlib.resources
from typing import Any, TypeVar

import msgspec
import pytest

from pixels_daemon.core.engine import (
    DEFAULT_CONFIG,
    AckEscalation,
    AddDependency,
    ApproveDecision,
    BadRequest,
    ChangeEstimate,
    CheckGate,
    Defer,
    DropDependency,
    Effect,
    EngineConfig,
    Event,
    GateCheckResult,
    GateDecided,
    Halt,
    HaltOrchestrator,
    HaltWorkstream,
    Inhibition,
    NotAllowed,
    NotFound,
    Notify,
    Received,
    Reject,
    RejectDecision,
    ResolveEscalation,
    Resume,
    ResumeOrchestrator,
    ResumeWorkstream,
    RunGateCheck,
    SnoozeEscalation,
    StartOrchestrator,
    StartWorkstream,
    StopWorkstream,
    Tick,
    WriteAdr,
    decode_event,
    encode_event,
    new_state,
    projection,
    standing_orders,
    step,
)
from pixels_daemon.core.machine import EngineError, IllegalTransition
from pixels_daemon.core.state import EscalationRecord, State, WorkstreamState
from pixels_daemon.plan import Plan, default_plan, parse_plan
from protocol.messages import Escalation, Status, WorkstreamReport

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY = 24 * HOUR

MINI = """
[plan]
name = "mini"
weeks = 4

[[phases]]
id = 1
name = "All"
weeks = [1, 4]
milestones = ["M0", "M1"]

[[milestones]]
id = "M0"

[[milestones]]
id = "M1"

[[orchestrators]]
id = "alpha"

[[orchestrators]]
id = "beta"
after_gates = ["g1"]

[[workstreams]]
id = "A1"
orchestrator = "alpha"
milestone = "M0"
days = [1, 2]

[[workstreams]]
id = "A2"
orchestrator = "alpha"
milestone = "M0"
days = 2
depends_on = ["A1"]

[[workstreams]]
id = "B1"
orchestrator = "beta"
milestone = "M1"
days = [1, 2]
depends_on = ["A1"]

[[workstreams]]
id = "B2"
orchestrator = "beta"
milestone = "M1"
days = [2, 4]
depends_on = ["B1"]

[[gates]]
id = "g1"
workstreams = ["A1", "A2"]
checks = [{ name = "smoke", command = "true", timeout_s = 10 }]

[[gates]]
id = "g2"
workstreams = ["B1"]
metrics = [{ metric = "speed", op = ">=", value = 15 }]
"""

E = TypeVar("E")


def mini() -> Plan:
    return parse_plan(MINI, "mini")


def dgx_with_gate_1_check() -> Plan:
    """The embedded plan with a check command on gate 1 (the embedded file has none)."""
    text = (
        importlib.resources.files("pixels_daemon.plans")
        .joinpath("dgx_pixels.toml")
        .read_text(encoding="utf-8")
    )
    text = text.replace(
        'id = "gate-1"\n', 'id = "gate-1"\nchecks = [{ name = "m0", command = "./check_m0.sh" }]\n'
    )
    return parse_plan(text, "dgx-check")


def of(effects: list[Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def snapshot(state: State) -> bytes:
    return msgspec.msgpack.encode(state)


class Sim:
    """A plan, its state and a clock, with helpers speaking as orchestrators and operators."""

    def __init__(self, plan: Plan | None = None, config: EngineConfig = DEFAULT_CONFIG) -> None:
        self.plan = plan or mini()
        self.state = new_state(self.plan)
        self.config = config
        self.now = T0
        self.seq: dict[str, int] = {}
        self.first = self.do(Tick())

    def do(self, event: Event) -> list[Effect]:
        return step(self.state, self.plan, event, self.now, self.config)

    def later(self, seconds: float) -> None:
        self.now += seconds

    def tick(self, **last_seen: float) -> list[Effect]:
        return self.do(Tick(last_seen=last_seen))

    def send(self, message: Status | Escalation) -> list[Effect]:
        return self.do(Received(message=message))

    def status(
        self, orch: str, workstreams: dict[str, WorkstreamReport] | None = None, **fields: Any
    ) -> list[Effect]:
        n = self.seq[orch] = self.seq.get(orch, 0) + 1
        return self.send(
            Status(
                orchestrator=orch, seq=n, id=f"{orch}-{n}", workstreams=workstreams or {}, **fields
            )
        )

    def report(
        self,
        ws_id: str,
        status: Any,
        progress: float = 0.0,
        blocker: str | None = None,
        **fields: Any,
    ) -> list[Effect]:
        owner = self.plan.workstreams[ws_id].orchestrator
        report = WorkstreamReport(status=status, progress=progress, blocker=blocker)
        return self.status(owner, {ws_id: report}, **fields)

    def finish(self, *ws_ids: str, **fields: Any) -> list[Effect]:
        out: list[Effect] = []
        for ws_id in ws_ids:
            out += self.report(ws_id, "complete", 1.0, **fields)
        return out

    def escalate(
        self,
        orch: str,
        issue: str = "stuck",
        affected: tuple[str, ...] = (),
        type: Any = "blocker",
        severity: Any = "medium",
    ) -> list[Effect]:
        n = self.seq[orch] = self.seq.get(orch, 0) + 1
        return self.send(
            Escalation(
                orchestrator=orch,
                seq=n,
                id=f"{orch}-{n}",
                type=type,
                severity=severity,
                issue=issue,
                affected_workstreams=list(affected),
            )
        )

    def gate_result(
        self, gate: str, check: str, exit_status: int | None, output: str = ""
    ) -> list[Effect]:
        run = self.state.gates[gate].run
        return self.do(
            GateCheckResult(gate=gate, run=run, check=check, exit_status=exit_status, output=output)
        )

    def ws(self, ws_id: str) -> WorkstreamState:
        return self.state.workstreams[ws_id]

    def escalations(self, kind: str) -> list[EscalationRecord]:
        return [e for e in self.state.escalations.values() if e.kind == kind]

    def open_beta(self) -> list[Effect]:
        """Mini plan: finish A1 and A2 and pass g1, so beta activates."""
        self.finish("A1", "A2")
        return self.gate_result("g1", "smoke", 0)


def failed_gate_1() -> Sim:
    """Embedded plan with a gate-1 check: Foundation done, the check fails."""
    sim = Sim(dgx_with_gate_1_check())
    sim.finish("WS-01", "WS-02", "WS-03")
    sim.gate_result("gate-1", "m0", 1, "GPU not found\n")
    return sim


# --- activation in dependency order --------------------------------------------------------------


def test_first_step_starts_foundation_and_its_first_workstream() -> None:
    """Foundation waits for nothing: it starts first, with WS-01 (the only one without deps)."""
    sim = Sim(default_plan())
    assert sim.first == [
        StartOrchestrator(orchestrator="foundation", reason="first in the plan"),
        StartWorkstream(orchestrator="foundation", workstream="WS-01"),
    ]


def test_workstream_starts_when_its_dependencies_complete() -> None:
    """Completing WS-01 makes WS-02 and WS-03 ready."""
    sim = Sim(default_plan())
    effects = sim.finish("WS-01")
    assert of(effects, StartWorkstream) == [
        StartWorkstream(orchestrator="foundation", workstream="WS-02"),
        StartWorkstream(orchestrator="foundation", workstream="WS-03"),
    ]
    assert sim.ws("WS-02").status == "ready"


def test_model_starts_after_gate_1_but_interface_waits_for_ws_04() -> None:
    """Gate 1 passing starts Model; Interface also needs WS-04 complete."""
    sim = Sim(default_plan())
    effects = sim.finish("WS-01", "WS-02", "WS-03")
    assert GateDecided(gate="gate-1", run=1, passed=True, failures=[]) in effects
    assert of(effects, StartOrchestrator) == [
        StartOrchestrator(orchestrator="model", reason="after gate gate-1 passed")
    ]
    assert sim.state.orchestrators["interface"].activated_at is None


def test_interface_starts_once_ws_04_completes() -> None:
    """Interface: after gate 1 and WS-04; its first workstream WS-08 starts with it."""
    sim = Sim(default_plan())
    sim.finish("WS-01", "WS-02", "WS-03")
    effects = sim.finish("WS-04")
    assert StartOrchestrator(
        orchestrator="interface", reason="after gate gate-1 passed, WS-04"
    ) in (effects)
    assert StartWorkstream(orchestrator="interface", workstream="WS-08") in effects


def test_integration_starts_after_gate_2() -> None:
    """Integration activates only when gate 2 (all Model and Interface work) passes."""
    sim = Sim(default_plan())
    metrics = {"inference_time_s": 2.5, "batch_images_per_min": 20.0, "memory_gb": 80.0}
    sim.finish("WS-01", "WS-02", "WS-03", "WS-04")
    sim.finish("WS-05", performance_metrics=metrics)
    before = sim.finish("WS-06", "WS-07", "WS-08", "WS-09", "WS-10", "WS-11")
    assert of(before, StartOrchestrator) == []
    effects = sim.finish("WS-12")
    assert GateDecided(gate="gate-2", run=1, passed=True, failures=[]) in effects
    assert of(effects, StartOrchestrator) == [
        StartOrchestrator(orchestrator="integration", reason="after gate gate-2 passed")
    ]
    assert [e.workstream for e in of(effects, StartWorkstream)] == ["WS-13", "WS-16"]


def test_standing_orders_repeat_commands_to_a_reconnecting_orchestrator() -> None:
    """Commands are not durable: a re-registering orchestrator is told what it should be doing."""
    sim = Sim()
    sim.finish("A1")
    assert standing_orders(sim.state, sim.plan, "alpha") == [
        StartOrchestrator(orchestrator="alpha", reason="active"),
        StartWorkstream(orchestrator="alpha", workstream="A2"),
    ]
    assert standing_orders(sim.state, sim.plan, "beta") == []


# --- reports through the machine -----------------------------------------------------------------


def test_report_on_another_orchestrators_workstream_is_rejected() -> None:
    """An orchestrator may report only its own workstreams."""
    sim = Sim()
    effects = sim.status("beta", {"A1": WorkstreamReport(status="in_progress")})
    assert effects == [
        Reject(
            orchestrator="beta",
            seq=1,
            re="beta-1",
            code="not_owner",
            message="workstream A1 belongs to alpha, not to beta",
        )
    ]


def test_starting_before_dependencies_complete_is_rejected_naming_them() -> None:
    """An illegal transition is refused, and the reply says from, to and why."""
    sim = Sim(default_plan())
    sim.report("WS-01", "in_progress", 0.5)
    effects = sim.report("WS-02", "in_progress", 0.1)
    assert of(effects, Reject)[0].message == (
        "WS-02: not_started -> in_progress is not allowed: it waits for WS-01 (in_progress)"
    )
    assert of(effects, Reject)[0].code == "illegal_transition"


def test_starting_before_the_orchestrator_is_active_is_rejected() -> None:
    """Model cannot start WS-04 before gate 1: the reason names the gate."""
    sim = Sim(default_plan())
    sim.finish("WS-01")
    (reject,) = of(sim.report("WS-04", "in_progress"), Reject)
    assert reject.message == (
        "WS-04: not_started -> in_progress is not allowed: orchestrator model is not active yet "
        "(waits for gate gate-1 (pending))"
    )


def test_refused_status_changes_nothing_but_its_seq() -> None:
    """A refused message is consumed (acked) but leaves every other field as it was."""
    sim = Sim()
    events = sim.state.events
    before = snapshot(sim.state)
    sim.status(
        "alpha",
        {"A1": WorkstreamReport(status="in_progress"), "A2": WorkstreamReport(status="complete")},
        blockers=["x"],
    )
    assert sim.state.orchestrators["alpha"].acked_seq == 1
    assert sim.state.events == events + 1
    sim.state.orchestrators["alpha"].acked_seq = 0
    sim.state.events -= 1
    assert snapshot(sim.state) == before


def test_complete_work_cannot_restart() -> None:
    """complete is final: a later in_progress report is refused."""
    sim = Sim()
    sim.finish("A1")
    (reject,) = of(sim.report("A1", "in_progress"), Reject)
    assert "complete -> in_progress is not allowed" in reject.message


def test_progress_report_on_halted_work_is_accepted_without_moving_it() -> None:
    """An orchestrator that has not heard the halt yet is not refused; the state stays halted."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    sim.do(Halt(target="A1"))
    effects = sim.report("A1", "in_progress", 0.3)
    assert of(effects, Reject) == []
    assert (sim.ws("A1").status, sim.ws("A1").progress) == ("halted", 0.3)


# --- gates ---------------------------------------------------------------------------------------


def test_gate_runs_its_checks_when_its_workstreams_complete() -> None:
    """Completing a gate's last workstream asks the shell to run its check commands."""
    sim = Sim()
    sim.finish("A1")
    effects = sim.finish("A2")
    assert of(effects, RunGateCheck) == [
        RunGateCheck(gate="g1", run=1, check="smoke", command="true", timeout_s=10.0)
    ]
    assert sim.state.gates["g1"].state == "checking"


def test_gate_passes_when_every_check_exits_zero_and_dependents_start() -> None:
    """Pass: the gate's dependent orchestrator activates and its ready work starts."""
    sim = Sim()
    effects = sim.open_beta()
    assert effects[:3] == [
        GateDecided(gate="g1", run=1, passed=True, failures=[]),
        StartOrchestrator(orchestrator="beta", reason="after gate g1 passed"),
        StartWorkstream(orchestrator="beta", workstream="B1"),
    ]


def test_result_of_a_superseded_run_is_ignored() -> None:
    """A re-check starts a new run; a late result of the old one decides nothing."""
    sim = Sim()
    sim.finish("A1", "A2")
    sim.do(CheckGate(gate="g1"))
    effects = sim.do(GateCheckResult(gate="g1", run=1, check="smoke", exit_status=1))
    assert effects == []
    assert sim.state.gates["g1"].state == "checking"


def test_failed_gate_halts_every_transitive_dependent_orchestrator() -> None:
    """Gate 1 failing halts Model, Interface and (through gate 2) Integration, not Foundation."""
    sim = Sim(dgx_with_gate_1_check())
    sim.finish("WS-01", "WS-02", "WS-03")
    effects = sim.gate_result("gate-1", "m0", 1)
    assert [e.orchestrator for e in of(effects, HaltOrchestrator)] == [
        "model",
        "interface",
        "integration",
    ]
    halted = [w for w, ws in sim.state.workstreams.items() if ws.status == "halted"]
    assert halted == [f"WS-{n:02d}" for n in range(4, 19)]


def test_failed_gate_halts_dependent_workstreams_of_an_unheld_orchestrator() -> None:
    """Where the orchestrator itself does not wait on the gate, its dependent work halts alone."""
    sim = Sim()
    sim.open_beta()
    sim.report("B1", "complete", 1.0, performance_metrics={"speed": 10.0})
    assert sim.ws("B2").status == "halted"
    assert sim.state.orchestrators["beta"].holds == []


def test_halt_of_a_single_workstream_is_a_workstream_command() -> None:
    """B2 halts on its own (beta is not held), so the command names the workstream."""
    sim = Sim()
    sim.open_beta()
    effects = sim.report("B1", "complete", 1.0, performance_metrics={"speed": 10.0})
    assert of(effects, HaltWorkstream) == [
        HaltWorkstream(orchestrator="beta", workstream="B2", reason="gate g2 failed")
    ]


def test_gates_own_workstreams_are_not_halted_by_it() -> None:
    """The work that must fix a failed gate stays workable."""
    sim = failed_gate_1()
    assert [sim.ws(w).status for w in ("WS-01", "WS-02", "WS-03")] == ["complete"] * 3
    assert sim.state.orchestrators["foundation"].holds == []


def test_failed_gate_records_a_recovery_entry() -> None:
    """The recovery entry says what failed and what it blocks."""
    sim = failed_gate_1()
    (rec,) = sim.state.recoveries.values()
    assert rec.gate == "gate-1"
    assert rec.failures == ["check m0 exited 1"]
    assert rec.blocks_orchestrators == ["model", "interface", "integration"]
    assert rec.blocks_workstreams[:2] == ["WS-04", "WS-05"]
    assert rec.closed_at is None


def test_failed_gate_raises_an_escalation() -> None:
    """Gate failure is escalated by the daemon itself, naming the fix."""
    sim = failed_gate_1()
    (esc,) = sim.escalations("gate_failed")
    assert (esc.orchestrator, esc.type, esc.severity, esc.subject) == (
        "pixelsd",
        "failure",
        "high",
        "gate-1",
    )
    assert "check m0 exited 1" in esc.issue
    assert esc.help_needed == "fix what failed, then run `pixelsctl gate check gate-1`"


def test_check_output_is_captured_in_the_gate_record() -> None:
    """A check's output is kept (its tail) with its exit status."""
    sim = Sim()
    sim.finish("A1", "A2")
    sim.gate_result("g1", "smoke", 3, "x" * 10_000 + "the end")
    result = sim.state.gates["g1"].results["smoke"]
    assert result.exit_status == 3
    assert result.output.endswith("the end")
    assert len(result.output) == 4096


def test_check_that_timed_out_fails_the_gate() -> None:
    """No exit status (killed at its timeout) is a failure that says so."""
    sim = Sim()
    sim.finish("A1", "A2")
    effects = sim.gate_result("g1", "smoke", None)
    assert of(effects, GateDecided)[0].failures == ["check smoke did not finish within 10 s"]


def test_passing_recheck_resumes_halted_work_and_closes_recovery() -> None:
    """Fixing and re-checking: the gate passes, holds lift, Model starts, recovery closes."""
    sim = failed_gate_1()
    sim.do(CheckGate(gate="gate-1"))
    effects = sim.gate_result("gate-1", "m0", 0)
    assert [e.orchestrator for e in of(effects, ResumeOrchestrator)] == [
        "model",
        "interface",
        "integration",
    ]
    assert StartOrchestrator(orchestrator="model", reason="after gate gate-1 passed") in effects
    assert sim.ws("WS-04").status == "ready"
    (rec,) = sim.state.recoveries.values()
    assert rec.closed_at == sim.now
    (esc,) = sim.escalations("gate_failed")
    assert (esc.state, esc.note) == ("resolved", "gate gate-1 passed")


def test_recheck_failing_halts_started_work_and_pass_resumes_it() -> None:
    """Re-checking a passed gate that now fails halts work in progress; passing resumes it."""
    sim = Sim(dgx_with_gate_1_check())
    sim.finish("WS-01", "WS-02", "WS-03")
    sim.gate_result("gate-1", "m0", 0)
    sim.report("WS-04", "in_progress", 0.4)
    sim.do(CheckGate(gate="gate-1"))
    halted = sim.gate_result("gate-1", "m0", 1)
    assert HaltOrchestrator(orchestrator="model", reason="gate gate-1 failed") in halted
    assert sim.ws("WS-04").status == "halted"
    sim.do(CheckGate(gate="gate-1"))
    resumed = sim.gate_result("gate-1", "m0", 0)
    assert ResumeOrchestrator(orchestrator="model", reason="gate gate-1 passed") in resumed
    assert of(resumed, StartWorkstream) == []  # WS-04 had started: resume, not start again
    assert sim.ws("WS-04").status == "ready"


def test_gate_check_before_its_workstreams_complete_is_refused() -> None:
    """`gate check` on a gate whose work is unfinished says which work."""
    sim = Sim()
    sim.finish("A1")
    with pytest.raises(NotAllowed, match=r"gate g1 cannot be checked yet: .*A2 \(ready\)"):
        sim.do(CheckGate(gate="g1"))


def test_gate_check_of_unknown_gate_is_not_found() -> None:
    """An unknown gate id is a not_found error listing the plan's gates."""
    sim = Sim()
    with pytest.raises(NotFound, match="no gate 'g9'; the plan has: g1, g2"):
        sim.do(CheckGate(gate="g9"))


def test_metric_missing_its_target_fails_the_gate_and_suggests_rescoping() -> None:
    """A reported metric below target: gate fails, a performance escalation offers re-scope."""
    sim = Sim()
    sim.open_beta()
    effects = sim.report("B1", "complete", 1.0, performance_metrics={"speed": 10.0})
    assert of(effects, GateDecided)[0].failures == ["speed = 10 (target >= 15)"]
    (esc,) = sim.escalations("performance_target")
    assert esc.type == "performance"
    assert esc.issue == "performance target not met at gate g2: speed = 10 (target >= 15)"
    assert esc.options[0] == "re-scope"


def test_metric_not_reported_fails_the_gate() -> None:
    """A metric criterion with no reported value is not met."""
    sim = Sim()
    sim.open_beta()
    effects = sim.finish("B1")
    assert of(effects, GateDecided)[0].failures == ["speed not reported (target >= 15)"]


def test_failed_metric_gate_passes_when_the_metric_improves() -> None:
    """A better reported value re-evaluates the failed gate; it passes and work resumes."""
    sim = Sim()
    sim.open_beta()
    sim.report("B1", "complete", 1.0, performance_metrics={"speed": 10.0})
    effects = sim.status("beta", performance_metrics={"speed": 16.0})
    assert GateDecided(gate="g2", run=2, passed=True, failures=[]) in effects
    assert ResumeWorkstream(orchestrator="beta", workstream="B2", reason="hold lifted") in effects
    assert [e.state for e in sim.escalations("performance_target")] == ["resolved"]


# --- inhibition ----------------------------------------------------------------------------------


def test_escalation_about_halted_work_is_inhibited_not_dropped() -> None:
    """A follow-on escalation of gate-halted work is kept but nobody is notified."""
    sim = failed_gate_1()
    effects = sim.escalate("interface", "cannot build TUI", affected=("WS-08",))
    assert of(effects, Notify) == []
    assert of(effects, Inhibition) == [Inhibition(escalation="E-2", by=["gate-1"])]
    assert sim.state.escalations["E-2"].state == "open"


def test_inhibited_escalation_is_not_renotified() -> None:
    """While its gate is failed, the re-notify interval does not apply."""
    sim = failed_gate_1()
    sim.escalate("interface", "cannot build TUI", affected=("WS-08",))
    sim.later(5 * HOUR)
    effects = sim.tick(model=sim.now, interface=sim.now, integration=sim.now, foundation=sim.now)
    assert Notify(escalation="E-2", reason="renotify") not in effects


def test_inhibited_escalation_is_released_when_the_gate_passes() -> None:
    """Gate passing releases the inhibited escalation: it is notified then."""
    sim = failed_gate_1()
    sim.escalate("interface", "cannot build TUI", affected=("WS-08",))
    sim.do(CheckGate(gate="gate-1"))
    effects = sim.gate_result("gate-1", "m0", 0)
    assert Inhibition(escalation="E-2", by=[]) in effects
    assert Notify(escalation="E-2", reason="released") in effects
    assert sim.state.escalations["E-2"].inhibited_by == []


def test_escalation_naming_unhalted_work_is_not_inhibited() -> None:
    """Only escalations whose every affected workstream is held are inhibited."""
    sim = failed_gate_1()
    effects = sim.escalate("interface", "shared issue", affected=("WS-08", "WS-01"))
    assert Notify(escalation="E-2", reason="raised") in effects


# --- stalls --------------------------------------------------------------------------------------


def test_in_progress_without_progress_for_24h_is_stalled() -> None:
    """At exactly 24 h with no progress change, a stall escalation is raised."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    sim.later(DAY)
    effects = sim.tick(alpha=sim.now)
    (esc,) = sim.escalations("ws_stalled")
    assert Notify(escalation=esc.id, reason="raised") in effects
    assert esc.affected_workstreams == ["A1"]
    assert "progress 20% unchanged since" in esc.issue


def test_not_stalled_a_second_before_24h() -> None:
    """23:59:59 without progress is not yet a stall."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    sim.later(DAY - 1)
    sim.tick(alpha=sim.now)
    assert sim.escalations("ws_stalled") == []


def test_progress_change_restarts_the_stall_clock() -> None:
    """A new progress value counts as progress; a repeat of the same value does not."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    sim.later(12 * HOUR)
    sim.report("A1", "in_progress", 0.3)
    sim.later(12 * HOUR)
    sim.report("A1", "in_progress", 0.3)
    sim.later(12 * HOUR - 1)
    sim.tick(alpha=sim.now)
    assert sim.escalations("ws_stalled") == []  # 36 h since start, 24 h - 1 s since the change
    sim.later(1)
    sim.tick(alpha=sim.now)
    assert len(sim.escalations("ws_stalled")) == 1  # the repeated 0.3 did not count


def test_waiting_on_an_unmet_dependency_is_not_stalled() -> None:
    """Work waiting for its dependencies for days is waiting, not stalled."""
    sim = Sim(default_plan())
    sim.report("WS-01", "in_progress", 0.1)
    sim.later(12 * HOUR)
    sim.report("WS-01", "in_progress", 0.9)
    sim.later(30 * HOUR)
    sim.tick(foundation=sim.now)
    stalled = [e.affected_workstreams for e in sim.escalations("ws_stalled")]
    assert stalled == [["WS-01"]]
    assert sim.ws("WS-02").status == "not_started"


def test_in_progress_work_waiting_on_a_dependency_found_later_is_not_stalled() -> None:
    """A dependency found while work is in progress makes it waiting: only the other stalls."""
    sim = Sim(default_plan())
    sim.finish("WS-01")
    sim.report("WS-02", "in_progress", 0.3)
    sim.report("WS-03", "in_progress", 0.3)
    sim.do(AddDependency(workstream="WS-02", depends_on="WS-03", source="foundation"))
    sim.later(2 * DAY)
    sim.tick(foundation=sim.now)
    assert [e.affected_workstreams for e in sim.escalations("ws_stalled")] == [["WS-03"]]


def test_halted_work_is_not_stalled() -> None:
    """Work held by a failed gate is waiting on it, not stalled."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    sim.do(Halt(target="A1"))
    sim.later(3 * DAY)
    sim.tick(alpha=sim.now)
    assert sim.escalations("ws_stalled") == []


def test_stall_escalation_resolves_when_progress_resumes() -> None:
    """The daemon resolves its own stall escalation at the first tick after progress changes."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    sim.later(DAY)
    sim.tick(alpha=sim.now)
    sim.report("A1", "in_progress", 0.4)
    effects = sim.tick(alpha=sim.now)
    (esc,) = sim.escalations("ws_stalled")
    assert (esc.state, esc.note) == ("resolved", "condition cleared")
    assert Notify(escalation=esc.id, reason="resolved") in effects


def test_progress_only_report_skips_the_whole_state_passes() -> None:
    """A report that only moves progress changes no escalation until the next tick."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    sim.later(DAY)
    sim.tick(alpha=sim.now)
    assert sim.report("A1", "in_progress", 0.4) == []
    (esc,) = sim.escalations("ws_stalled")
    assert esc.state == "open"  # resolved by the next tick, not by the report itself


def test_a_first_start_takes_the_fast_path_to_the_same_state_as_the_full_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ready -> in_progress (never started before), with a change of the orchestrator's own
    status, skips the whole-state passes and leaves exactly the state and effects they would."""
    import pixels_daemon.core.engine as engine_module

    def first_start(sim: Sim) -> list[Effect]:
        report = WorkstreamReport(status="in_progress", progress=0.1)
        return sim.status("alpha", {"A1": report}, status="active")

    fast, full = Sim(), Sim()
    assert fast.ws("A1").status == "ready"
    calls: list[str] = []
    settle = engine_module._Run._settle

    def counted(run: Any) -> None:
        calls.append("settle")
        settle(run)

    monkeypatch.setattr(engine_module._Run, "_settle", counted)
    fast_effects = first_start(fast)
    assert calls == []  # no whole-state pass ran
    monkeypatch.setattr(engine_module._Run, "_progress_only", lambda run, message: None)
    full_effects = first_start(full)
    assert calls  # the full path did run them
    assert fast_effects == full_effects
    assert snapshot(fast.state) == snapshot(full.state)
    assert fast.ws("A1").status == "in_progress"


def test_a_restart_after_a_halt_is_not_a_first_start() -> None:
    """ready again after a resume (started before): the full passes run (overrun may be due)."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.2)
    assert sim.ws("A1").started_at is not None
    report = WorkstreamReport(status="in_progress", progress=0.2)
    message = Status(orchestrator="alpha", seq=99, id="alpha-99", workstreams={"A1": report})
    sim.ws("A1").status = "ready"
    from pixels_daemon.core.engine import _Run

    run = _Run(sim.state, sim.plan, sim.now, sim.config)
    assert run._progress_only(message) is None


def test_silent_orchestrator_is_stalled_with_when_it_was_last_seen() -> None:
    """No message and no heartbeat for 24 h: the orchestrator is stalled."""
    sim = Sim()
    sim.later(DAY)
    sim.tick(alpha=T0 + 1)
    assert sim.escalations("orchestrator_stalled") == []
    sim.later(1)
    sim.tick(alpha=T0 + 1)
    (esc,) = sim.escalations("orchestrator_stalled")
    assert esc.subject == "alpha"
    assert esc.issue == "orchestrator alpha stalled: last heard 2027-01-15 08:00 UTC"


def test_heartbeats_keep_an_orchestrator_from_stalling() -> None:
    """Heartbeats alone (presence in the tick) count as being heard."""
    sim = Sim()
    sim.later(3 * DAY)
    sim.tick(alpha=sim.now - HOUR)
    assert sim.escalations("orchestrator_stalled") == []


def test_orchestrator_stall_resolves_when_it_is_heard_again() -> None:
    """A message from a stalled orchestrator resolves its stall escalation at once."""
    sim = Sim()
    sim.later(2 * DAY)
    sim.tick()
    sim.status("alpha")
    assert [e.state for e in sim.escalations("orchestrator_stalled")] == ["resolved"]


def test_orchestrator_not_yet_active_is_not_stalled() -> None:
    """An orchestrator waiting for its gate is not expected to say anything."""
    sim = Sim()
    sim.later(3 * DAY)
    sim.tick(alpha=sim.now)
    assert [e.subject for e in sim.escalations("orchestrator_stalled")] == []


# --- overrun and slip ----------------------------------------------------------------------------


def test_overrun_not_raised_at_exactly_the_threshold() -> None:
    """150 % of max_days exactly is not yet an overrun ("exceeds")."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.1)
    sim.later(3 * DAY)  # A1: max 2 days; 1.5 x 2 = 3 days
    sim.tick(alpha=sim.now)
    assert sim.escalations("overrun") == []


def test_overrun_raised_past_the_threshold_with_estimate_elapsed_and_options() -> None:
    """One second past 150 %: an overrun escalation with estimate, elapsed and the options."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.1)
    sim.later(3 * DAY + 1)
    sim.tick(alpha=sim.now)
    (esc,) = sim.escalations("overrun")
    assert esc.options == ["re-scope", "add resources", "defer"]
    assert esc.details["estimate_min_days"] == 1
    assert esc.details["estimate_max_days"] == 2
    assert esc.details["elapsed_days"] == 3.0
    assert esc.details["threshold_days"] == 3.0
    assert "plan_slip_days" in esc.details


def test_overrun_threshold_is_configurable() -> None:
    """overrun_ratio 1.0: overrun as soon as max_days is exceeded."""
    sim = Sim(config=EngineConfig(overrun_ratio=1.0))
    sim.report("A1", "in_progress", 0.1)
    sim.later(2 * DAY + 1)
    sim.tick(alpha=sim.now)
    assert len(sim.escalations("overrun")) == 1


def test_halted_time_does_not_count_toward_overrun() -> None:
    """Time spent halted is excluded from time in progress."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.1)
    sim.later(DAY)
    sim.do(Halt(target="A1"))
    sim.later(2 * DAY)
    sim.do(Resume(target="A1"))
    sim.report("A1", "in_progress", 0.2)
    sim.later(DAY + 1)  # 4 days since start, 2 of them halted
    sim.tick(alpha=sim.now)
    assert sim.escalations("overrun") == []


def test_reestimate_clears_an_overrun() -> None:
    """Re-scoping the estimate resolves the overrun escalation when it no longer applies."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.1)
    sim.later(4 * DAY)
    sim.tick(alpha=sim.now)
    sim.do(ChangeEstimate(workstream="A1", min_days=3, max_days=5))
    assert [e.state for e in sim.escalations("overrun")] == ["resolved"]


def test_projection_follows_the_critical_path_through_gates() -> None:
    """Projection: remaining estimates along dependencies and activation, against the schedule."""
    sim = Sim()
    proj = projection(sim.state, sim.plan, sim.now)
    assert proj is not None
    assert proj.critical_path == ["A1", "A2", "B1", "B2"]
    assert proj.projected_end == T0 + 10 * DAY  # 2 + 2 + 2 + 4 max days
    assert proj.slip_days == -18.0  # 4 weeks = 28 days


def test_projection_counts_actual_progress() -> None:
    """Work half done needs half its estimate."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.5)
    proj = projection(sim.state, sim.plan, sim.now)
    assert proj is not None
    assert proj.projected_end == T0 + 9 * DAY


def test_plan_slip_beyond_tolerance_is_escalated() -> None:
    """Projected end more than slip_tolerance_days past the schedule raises a slip escalation."""
    sim = Sim()
    sim.later(19 * DAY)  # nothing done: projected end 29 days, schedule 28
    sim.tick(alpha=sim.now)
    assert sim.escalations("schedule_slip") == []
    sim.later(7 * DAY)
    sim.tick(alpha=sim.now)
    (esc,) = sim.escalations("schedule_slip")
    assert "projected to end 8.0 days after its 4-week schedule" in esc.issue


# --- blockers ------------------------------------------------------------------------------------


def test_blocker_younger_than_24h_is_not_escalated() -> None:
    """A blocker is given 24 h before it is escalated."""
    sim = Sim()
    sim.report("A1", "blocked", 0.1, blocker="no GPU")
    sim.later(DAY - 1)
    sim.tick(alpha=sim.now)
    assert sim.escalations("blocker_aged") == []


def test_blocker_is_escalated_at_24h() -> None:
    """At 24 h a blocker escalation (high) is raised."""
    sim = Sim()
    sim.report("A1", "blocked", 0.1, blocker="no GPU")
    sim.later(DAY)
    effects = sim.tick(alpha=sim.now)
    (esc,) = sim.escalations("blocker_aged")
    assert (esc.severity, esc.affected_workstreams) == ("high", ["A1"])
    assert Notify(escalation=esc.id, reason="raised") in effects


def test_blocker_becomes_critical_at_48h_in_the_same_escalation() -> None:
    """At 48 h the same escalation is raised to critical and notified again."""
    sim = Sim()
    sim.report("A1", "blocked", 0.1, blocker="no GPU")
    sim.later(DAY)
    sim.tick(alpha=sim.now)
    sim.later(DAY)
    effects = sim.tick(alpha=sim.now)
    (esc,) = sim.escalations("blocker_aged")
    assert esc.severity == "critical"
    assert Notify(escalation=esc.id, reason="escalated") in effects


def test_cleared_blocker_resolves_its_escalation() -> None:
    """When the blocker is gone, the daemon resolves its ageing escalation."""
    sim = Sim()
    sim.report("A1", "blocked", 0.1, blocker="no GPU")
    sim.later(DAY)
    sim.tick(alpha=sim.now)
    sim.report("A1", "in_progress", 0.2)
    assert [e.state for e in sim.escalations("blocker_aged")] == ["resolved"]


def test_orchestrator_level_blocker_ages_too() -> None:
    """Blockers reported at the orchestrator level age from when first reported."""
    sim = Sim()
    sim.status("alpha", blockers=["waiting for hardware"])
    sim.later(12 * HOUR)
    sim.status("alpha", blockers=["waiting for hardware"])
    sim.later(12 * HOUR)
    sim.tick(alpha=sim.now)
    (esc,) = sim.escalations("blocker_aged")
    assert esc.subject == "alpha: waiting for hardware"


# --- the escalation lifecycle --------------------------------------------------------------------


def test_repeated_escalation_updates_the_open_one() -> None:
    """Same source, kind and affected workstreams: one record, its count raised, no new notice."""
    sim = Sim()
    sim.escalate("alpha", "disk full", affected=("A1",))
    sim.later(HOUR)
    effects = sim.escalate("alpha", "disk still full", affected=("A1",))
    (esc,) = sim.state.escalations.values()
    assert (esc.count, esc.issue, esc.updated_at) == (2, "disk still full", sim.now)
    assert of(effects, Notify) == []


def test_escalation_on_other_workstreams_is_a_separate_one() -> None:
    """A different affected set is a different fingerprint."""
    sim = Sim()
    sim.escalate("alpha", "disk full", affected=("A1",))
    sim.escalate("alpha", "disk full", affected=("A2",))
    assert len(sim.state.escalations) == 2


def test_repeat_after_resolution_opens_a_new_escalation() -> None:
    """Once resolved, the same fingerprint starts a fresh record."""
    sim = Sim()
    sim.escalate("alpha", "disk full", affected=("A1",))
    sim.do(ResolveEscalation(escalation="E-1", note="cleaned"))
    sim.escalate("alpha", "disk full", affected=("A1",))
    assert [e.state for e in sim.state.escalations.values()] == ["resolved", "open"]


def test_acknowledge_then_resolve() -> None:
    """open -> acknowledged -> resolved, with times and the note kept."""
    sim = Sim()
    sim.escalate("alpha", "disk full")
    sim.later(HOUR)
    sim.do(AckEscalation(escalation="E-1"))
    sim.later(HOUR)
    sim.do(ResolveEscalation(escalation="E-1", note="freed 200 GB"))
    esc = sim.state.escalations["E-1"]
    assert (esc.state, esc.acknowledged_at, esc.resolved_at, esc.note) == (
        "resolved",
        T0 + HOUR,
        T0 + 2 * HOUR,
        "freed 200 GB",
    )


def test_open_escalation_is_renotified_after_the_interval() -> None:
    """Open and unacknowledged: repeated every renotify_s (4 h), not sooner."""
    sim = Sim()
    sim.escalate("alpha", "disk full")
    sim.later(4 * HOUR - 1)
    assert of(sim.tick(alpha=sim.now), Notify) == []
    sim.later(1)
    assert of(sim.tick(alpha=sim.now), Notify) == [Notify(escalation="E-1", reason="renotify")]


def test_acknowledged_escalation_is_not_renotified() -> None:
    """Someone is on it: acknowledged escalations are not repeated."""
    sim = Sim()
    sim.escalate("alpha", "disk full")
    sim.do(AckEscalation(escalation="E-1"))
    sim.later(9 * HOUR)
    assert of(sim.tick(alpha=sim.now), Notify) == []


def test_snoozed_escalation_is_silent_until_the_snooze_ends() -> None:
    """Snoozed until a time: no notice before it, one notice when it ends."""
    sim = Sim()
    sim.escalate("alpha", "disk full")
    sim.do(SnoozeEscalation(escalation="E-1", until=T0 + 10 * HOUR))
    sim.later(9 * HOUR)
    assert of(sim.tick(alpha=sim.now), Notify) == []
    sim.later(HOUR)
    assert of(sim.tick(alpha=sim.now), Notify) == [Notify(escalation="E-1", reason="snooze_ended")]


def test_snooze_into_the_past_is_refused() -> None:
    """A snooze must end in the future."""
    sim = Sim()
    sim.escalate("alpha", "disk full")
    with pytest.raises(BadRequest, match="is not in the future"):
        sim.do(SnoozeEscalation(escalation="E-1", until=T0 - 1))


def test_unknown_escalation_is_not_found() -> None:
    """Acting on an id that does not exist is a not_found error saying how to list them."""
    sim = Sim()
    with pytest.raises(NotFound, match=r"no escalation 'E-9'; `pixelsctl escalations --all`"):
        sim.do(AckEscalation(escalation="E-9"))


def test_resolving_a_resolved_escalation_is_refused() -> None:
    """Resolved is final for an escalation."""
    sim = Sim()
    sim.escalate("alpha", "disk full")
    sim.do(ResolveEscalation(escalation="E-1"))
    with pytest.raises(NotAllowed, match="E-1 is already resolved"):
        sim.do(ResolveEscalation(escalation="E-1"))


def test_repeated_acknowledge_changes_nothing() -> None:
    """A retried ack is harmless."""
    sim = Sim()
    sim.escalate("alpha", "disk full")
    sim.do(AckEscalation(escalation="E-1"))
    before = snapshot(sim.state)
    sim.later(HOUR)
    assert sim.do(AckEscalation(escalation="E-1")) == []
    assert snapshot(sim.state) == before


# --- decisions -----------------------------------------------------------------------------------


def test_decision_needed_creates_a_pending_decision() -> None:
    """A new decisions_needed entry makes a decision record, pending approval by default."""
    sim = Sim()
    effects = sim.status("alpha", decisions_needed=["SDXL or SD3 for A2?"])
    assert [type(e).__name__ for e in effects] == ["DecisionOpened"]
    rec = sim.state.decisions["D-1"]
    assert (rec.kind, rec.state, rec.workstreams, rec.adr) == (
        "decision_needed",
        "pending",
        ["A2"],
        0,
    )


def test_approving_a_decision_writes_a_numbered_adr() -> None:
    """approve: the ADR is written with context, options, decision and consequences."""
    sim = Sim()
    sim.status("alpha", decisions_needed=["SDXL or SD3 for A2?"])
    (adr,) = of(sim.do(ApproveDecision(decision="D-1", note="SDXL: proven on GB10")), WriteAdr)
    assert (adr.number, adr.filename) == (1, "0001-sdxl-or-sd3-for-a2.md")
    for part in ("# ADR 0001: SDXL or SD3 for A2?", "- Status: Accepted", "## Context"):
        assert part in adr.text
    assert "## Decision\n\nSDXL: proven on GB10\n" in adr.text
    assert "## Consequences\n\nAffects A2.\n" in adr.text


def test_rejecting_a_decision_writes_it_as_rejected() -> None:
    """reject: the ADR records the rejection."""
    sim = Sim()
    sim.status("alpha", decisions_needed=["SDXL or SD3 for A2?"])
    (adr,) = of(sim.do(RejectDecision(decision="D-1")), WriteAdr)
    assert "- Status: Rejected" in adr.text


def test_auto_mode_writes_the_adr_at_once() -> None:
    """adr_mode auto: no approval step; the ADR is written (Proposed) as the record is made."""
    sim = Sim(config=EngineConfig(adr_mode="auto"))
    (adr,) = of(sim.status("alpha", decisions_needed=["SDXL or SD3?"]), WriteAdr)
    assert "- Status: Proposed" in adr.text
    assert sim.state.decisions["D-1"].state == "recorded"


def test_decision_still_listed_is_not_recorded_again() -> None:
    """Statuses repeat decisions_needed; only a newly listed one makes a record."""
    sim = Sim()
    sim.status("alpha", decisions_needed=["SDXL or SD3?"])
    sim.status("alpha", decisions_needed=["SDXL or SD3?", "Which sampler?"])
    assert [d.title for d in sim.state.decisions.values()] == ["SDXL or SD3?", "Which sampler?"]


def test_deciding_twice_is_refused() -> None:
    """An approved decision cannot be approved or rejected again."""
    sim = Sim()
    sim.status("alpha", decisions_needed=["SDXL or SD3?"])
    sim.do(ApproveDecision(decision="D-1"))
    with pytest.raises(NotAllowed, match="D-1 is already approved"):
        sim.do(RejectDecision(decision="D-1"))


def test_two_orchestrators_escalating_on_one_workstream_is_a_conflict() -> None:
    """Cross-domain conflict: both sides escalate on B1 -> a conflict decision."""
    sim = Sim()
    sim.escalate("alpha", "B1 needs our API v2", affected=("B1",))
    sim.escalate("beta", "B1 must keep API v1", affected=("B1",))
    (rec,) = sim.state.decisions.values()
    assert (rec.kind, rec.parties, rec.workstreams) == ("conflict", ["alpha", "beta"], ["B1"])
    assert rec.options[:2] == ["follow alpha", "follow beta"]


def test_one_side_reporting_complete_work_broken_is_a_conflict() -> None:
    """beta says A1 is broken while alpha reported it complete: a conflict decision."""
    sim = Sim()
    sim.finish("A1")
    sim.escalate("beta", "A1 baselines are wrong", affected=("A1",), type="failure")
    (rec,) = sim.state.decisions.values()
    assert rec.context.startswith("Cross-domain conflict: alpha reports A1 complete; beta reports")


def test_two_orchestrators_asking_decisions_on_one_workstream_is_a_conflict() -> None:
    """Decisions requested by two domains about the same workstream conflict."""
    sim = Sim()
    sim.status("alpha", decisions_needed=["B1 payload format?"])
    sim.status("beta", decisions_needed=["Who owns the B1 schema?"])
    kinds = [d.kind for d in sim.state.decisions.values()]
    assert kinds == ["decision_needed", "decision_needed", "conflict"]


def test_repeated_escalation_does_not_repeat_the_conflict() -> None:
    """A repeat updates the escalation; the conflict it caused is not recorded twice."""
    sim = Sim()
    sim.escalate("alpha", "B1 needs v2", affected=("B1",))
    sim.escalate("beta", "B1 keeps v1", affected=("B1",))
    sim.escalate("beta", "B1 keeps v1", affected=("B1",))
    assert len(sim.state.decisions) == 1


# --- plan changes --------------------------------------------------------------------------------


def test_added_dependency_holds_back_ready_work() -> None:
    """Ready work made to wait again: its orchestrator is told to hold it, then to start it."""
    sim = Sim(default_plan())
    sim.finish("WS-01")
    effects = sim.do(AddDependency(workstream="WS-02", depends_on="WS-03", reason="review"))
    assert effects == [
        HaltWorkstream(
            orchestrator="foundation", workstream="WS-02", reason="waits for WS-03 (ready)"
        )
    ]
    assert sim.ws("WS-02").status == "not_started"
    assert StartWorkstream(orchestrator="foundation", workstream="WS-02") in sim.finish("WS-03")


def test_dependency_making_a_cycle_is_refused_naming_it() -> None:
    """A change that would make a cycle is refused, and the cycle is named."""
    sim = Sim()
    with pytest.raises(BadRequest, match=r"would make a cycle: A1 -> A2 -> A1 "):
        sim.do(AddDependency(workstream="A1", depends_on="A2"))


def test_cycle_through_orchestrator_activation_is_refused() -> None:
    """A2 waiting for B1 deadlocks: beta starts only after g1, which needs A2."""
    sim = Sim()
    with pytest.raises(BadRequest, match=r"cycle: A2 -> B1 -> A2 "):
        sim.do(AddDependency(workstream="A2", depends_on="B1"))


def test_refused_plan_change_changes_nothing() -> None:
    """Validation comes first: a refused change leaves the state as it was."""
    sim = Sim()
    before = snapshot(sim.state)
    with pytest.raises(BadRequest):
        sim.do(AddDependency(workstream="A1", depends_on="A2"))
    assert snapshot(sim.state) == before


def test_dropped_dependency_makes_work_ready() -> None:
    """Dropping B2's dependency on B1 lets B2 start."""
    sim = Sim()
    sim.open_beta()
    effects = sim.do(DropDependency(workstream="B2", depends_on="B1"))
    assert effects == [StartWorkstream(orchestrator="beta", workstream="B2")]


def test_dropping_a_dependency_that_is_not_there_is_refused() -> None:
    """The error lists the workstream's actual dependencies."""
    sim = Sim()
    with pytest.raises(BadRequest, match="A2 does not depend on B1; its dependencies: A1"):
        sim.do(DropDependency(workstream="A2", depends_on="B1"))


def test_bad_estimate_is_refused() -> None:
    """min must be at least 1 and at most max."""
    sim = Sim()
    with pytest.raises(BadRequest, match="need whole days with 1 <= min <= max"):
        sim.do(ChangeEstimate(workstream="A1", min_days=3, max_days=2))


def test_deferring_started_work_stops_it() -> None:
    """Deferred while in progress: the orchestrator is told to stop it."""
    sim = Sim()
    sim.finish("A1")
    sim.report("A2", "in_progress", 0.5)
    effects = sim.do(Defer(workstream="A2", reason="out of scope"))
    assert effects[0] == StopWorkstream(
        orchestrator="alpha", workstream="A2", reason="out of scope"
    )
    assert sim.ws("A2").status == "deferred"


def test_deferring_a_gates_last_open_workstream_lets_the_gate_decide() -> None:
    """A deferred workstream leaves the gate's criteria: the gate is evaluated without it."""
    sim = Sim()
    sim.finish("A1")
    effects = sim.do(Defer(workstream="A2"))
    assert of(effects, RunGateCheck) == [
        RunGateCheck(gate="g1", run=1, check="smoke", command="true", timeout_s=10.0)
    ]


def test_deferring_work_others_depend_on_is_refused() -> None:
    """Dependents would wait forever: the error says which, and how to proceed."""
    sim = Sim()
    with pytest.raises(NotAllowed, match=r"A1 cannot be deferred: A2, B1 depend on it"):
        sim.do(Defer(workstream="A1"))


def test_plan_changes_are_listed_in_order() -> None:
    """Every applied change is in State.plan_changes for the next report."""
    sim = Sim(default_plan())
    sim.do(AddDependency(workstream="WS-03", depends_on="WS-02", source="foundation"))
    sim.do(ChangeEstimate(workstream="WS-05", min_days=6, max_days=9, reason="FP8 path"))
    assert [(c.n, c.kind, c.source, c.detail) for c in sim.state.plan_changes] == [
        (1, "add_dep", "foundation", "WS-03 now depends on WS-02"),
        (2, "estimate", "operator", "WS-05 estimate 5-7 -> 6-9 days"),
    ]


# --- operator halt and resume --------------------------------------------------------------------


def test_operator_halt_of_an_orchestrator_halts_its_work() -> None:
    """halt ORCH: one command to it; its unfinished workstreams are halted."""
    sim = Sim()
    effects = sim.do(Halt(target="alpha", reason="maintenance"))
    assert effects == [HaltOrchestrator(orchestrator="alpha", reason="maintenance")]
    assert [sim.ws(w).status for w in ("A1", "A2")] == ["halted", "halted"]


def test_operator_resume_of_an_orchestrator_restarts_its_ready_work() -> None:
    """resume ORCH: resumed, and work that never started is started again."""
    sim = Sim()
    sim.do(Halt(target="alpha"))
    effects = sim.do(Resume(target="alpha"))
    assert effects == [
        ResumeOrchestrator(orchestrator="alpha", reason="resumed by an operator"),
        StartWorkstream(orchestrator="alpha", workstream="A1"),
    ]


def test_operator_halt_of_a_workstream_is_a_workstream_command() -> None:
    """halt WS: the command names the workstream."""
    sim = Sim()
    effects = sim.do(Halt(target="A1"))
    assert effects == [
        HaltWorkstream(orchestrator="alpha", workstream="A1", reason="halted by an operator")
    ]


def test_resume_of_gate_held_work_is_refused_naming_the_gate() -> None:
    """A failed gate's hold is lifted by passing the gate, not by resume."""
    sim = failed_gate_1()
    with pytest.raises(
        NotAllowed, match=r"held by failed gate gate-1.*pixelsctl gate check gate-1"
    ):
        sim.do(Resume(target="model"))


def test_halting_complete_work_is_an_illegal_transition() -> None:
    """complete -> halted is not in the table."""
    sim = Sim()
    sim.finish("A1")
    with pytest.raises(
        IllegalTransition, match="complete -> halted is not allowed: A1 is complete"
    ):
        sim.do(Halt(target="A1"))


def test_halt_of_an_unknown_target_is_not_found() -> None:
    """The error lists the orchestrators and workstreams there are."""
    sim = Sim()
    with pytest.raises(NotFound, match="no orchestrator or workstream 'gamma'; orchestrators: "):
        sim.do(Halt(target="gamma"))


def test_halting_twice_is_refused() -> None:
    """An operator halt on already-halted work says so."""
    sim = Sim()
    sim.do(Halt(target="alpha"))
    with pytest.raises(NotAllowed, match="alpha is already halted by an operator"):
        sim.do(Halt(target="alpha"))


# --- the engine as a whole -----------------------------------------------------------------------


def test_tick_without_effects_changes_nothing() -> None:
    """The shell may leave effect-free ticks out of the log: they changed nothing."""
    sim = Sim()
    sim.report("A1", "in_progress", 0.3)
    sim.later(HOUR)
    before = snapshot(sim.state)
    assert sim.tick(alpha=sim.now) == []
    assert snapshot(sim.state) == before


def test_events_round_trip_through_the_log_encoding() -> None:
    """encode_event / decode_event preserve every event, orchestrator messages included."""
    events: list[Event] = [
        Tick(last_seen={"alpha": 1.5}),
        Received(message=Status(orchestrator="alpha", seq=3, id="x")),
        Received(message=Escalation(orchestrator="beta", seq=1, issue="i")),
        GateCheckResult(gate="g1", run=2, check="smoke", exit_status=None, output="o"),
        SnoozeEscalation(escalation="E-1", until=5.0),
        ChangeEstimate(workstream="A1", min_days=1, max_days=3),
    ]
    for event in events:
        assert decode_event(encode_event(event)) == event


def test_refused_request_raises_an_engine_error_with_a_wire_code() -> None:
    """Every refusal is an EngineError carrying a protocol error code for the reply."""
    sim = Sim()
    with pytest.raises(EngineError) as info:
        sim.do(ApproveDecision(decision="D-7"))
    assert (info.value.code, info.value.message) == (
        "not_found",
        "no decision 'D-7'; `pixelsctl decisions` lists them",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stall_s": 0}, "stall_s must be a positive number of seconds"),
        ({"overrun_ratio": -1}, "overrun_ratio must be positive"),
        ({"blocker_escalate_s": 10, "blocker_critical_s": 5}, "must not be shorter"),
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, float], message: str) -> None:
    """Thresholds are validated when the config is built."""
    with pytest.raises(ValueError, match=message):
        EngineConfig(**kwargs)  # type: ignore[arg-type]


def test_state_survives_a_snapshot_unchanged_even_with_int_times() -> None:
    """Ints given where the state holds floats are stored as floats: a decoded snapshot
    re-encodes to the same bytes (found by the property test)."""
    plan = mini()
    state = new_state(plan)
    step(state, plan, Tick(), 1_800_000_000)
    step(state, plan, Received(message=Status(orchestrator="alpha", seq=1)), 1_800_000_060)
    step(state, plan, Tick(last_seen={"alpha": 1_800_000_000}), 1_800_400_000)
    blob = snapshot(state)
    assert snapshot(msgspec.msgpack.decode(blob, type=State)) == blob
