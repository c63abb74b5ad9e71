"""``pixelsd demo``: the scenario picker and the demo plan (pure), what the demo prints about
changes, its usage errors, and the whole run end to end as a subprocess (the issue's check: 12
weekly reports, a completion report, the exercised escalations in `pixelsctl --json escalations
--all`)."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import msgspec
import pytest

from pixels_daemon.demo import (
    BROKEN_GATE,
    END_WINDOW_DAYS,
    FIX_FILE,
    OVERRUN,
    Snapshot,
    changes,
    demo_plan_text,
    embedded_plan_text,
    next_monday,
    pick_scenario,
    unmet,
)
from pixels_daemon.plan import Plan, parse_plan
from protocol.views import EscalationView, GateView, StatusView, WorkstreamView
from tests.support import BIN, DaemonProcess

#: The engine's overrun rule: more than 150 % of the max estimate.
ENGINE_OVERRUN_RATIO = 1.5


@pytest.fixture(scope="module")
def plan() -> Plan:
    return parse_plan(demo_plan_text(embedded_plan_text()), "demo plan")


def test_same_seed_gives_the_same_scenario(plan: Plan) -> None:
    """A seed decides everything: two picks with seed 7 are equal, seed 8 differs."""
    assert pick_scenario(plan, 7) == pick_scenario(plan, 7)
    assert pick_scenario(plan, 7) != pick_scenario(plan, 8)


@pytest.mark.parametrize("seed", range(20))
def test_every_scenario_ends_in_weeks_10_to_12(plan: Plan, seed: int) -> None:
    """The projected end lies between week 10's start and week 12's Wednesday."""
    end = pick_scenario(plan, seed).projected_end_days
    assert END_WINDOW_DAYS[0] <= end <= END_WINDOW_DAYS[1]
    assert 9 * 7 <= end < 12 * 7


@pytest.mark.parametrize("seed", range(20))
def test_only_the_overrun_workstream_crosses_the_engines_threshold(plan: Plan, seed: int) -> None:
    """The overrun one takes 170 % of its max days; every other one, stall or blocker included,
    stays at least 0.3 days clear of 150 % (no overrun the scenario did not ask for)."""
    scenario = pick_scenario(plan, seed)
    for ws_id, agent in scenario.agents.items():
        limit = ENGINE_OVERRUN_RATIO * plan.workstreams[ws_id].max_days
        if ws_id == scenario.overrun:
            assert agent.calendar_days == pytest.approx(OVERRUN * plan.workstreams[ws_id].max_days)
        else:
            assert agent.calendar_days < limit - 0.3, ws_id


def test_three_different_workstreams_misbehave(plan: Plan) -> None:
    """Stall, overrun and blocker each get their own workstream, never the first one, and the
    stall and blocker last long enough to cross the engine's 24 h rules."""
    for seed in range(20):
        s = pick_scenario(plan, seed)
        assert len({s.stall, s.overrun, s.blocker}) == 3
        assert "WS-01" not in (s.stall, s.overrun, s.blocker)
        assert s.agents[s.stall].stall_hours > 24
        assert s.agents[s.blocker].blocker_hours > 24


def test_inference_metrics_meet_the_m1_gate(plan: Plan) -> None:
    """WS-05 reports the m1-inference metrics, each within its target."""
    metrics = pick_scenario(plan, 1).agents["WS-05"].metrics
    for criterion in plan.gates["m1-inference"].metrics:
        assert criterion.holds(metrics[criterion.metric]), criterion


def test_demo_plan_is_the_embedded_plan_plus_a_failing_check_on_gate_1(plan: Plan) -> None:
    """Gate 1 gets one check, `test -f gate-1.fixed`; nothing else changes."""
    embedded = parse_plan(embedded_plan_text(), "embedded")
    (check,) = plan.gates[BROKEN_GATE].checks
    assert check.command == f"test -f {FIX_FILE}"
    assert plan.workstreams == embedded.workstreams
    assert [g for g in plan.gates if g != BROKEN_GATE] == [
        g for g in embedded.gates if g != BROKEN_GATE
    ]


def test_the_plan_starts_on_the_next_monday_at_nine() -> None:
    """From a Wednesday or from a Monday, week 1 starts the following Monday, 09:00 UTC."""
    wednesday = datetime.datetime(2026, 11, 25, 5, 0, tzinfo=datetime.UTC).timestamp()
    monday = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC).timestamp()
    assert next_monday(wednesday) == datetime.datetime(2026, 11, 30, 9, tzinfo=datetime.UTC)
    assert next_monday(monday) == datetime.datetime(2026, 12, 7, 9, tzinfo=datetime.UTC)


# --- what the demo prints ----------------------------------------------------------------------


def ws(ws_id: str, status: str, holds: list[str] | None = None) -> WorkstreamView:
    return WorkstreamView(
        id=ws_id,
        name=f"name of {ws_id}",
        orchestrator="model",
        milestone="M1",
        status=status,
        progress=0.0,
        eta=None,
        completion_time=None,
        blocker=None,
        updated_at=None,
        estimate_days=[1, 2],
        depends_on=[],
        priority="P1",
        holds=holds or [],
    )


def snapshot(
    workstreams: list[WorkstreamView],
    gates: list[dict[str, object]] | None = None,
    escalations: list[dict[str, object]] | None = None,
    reports: list[str] | None = None,
) -> Snapshot:
    status = StatusView(
        plan="DGX-Pixels",
        phase="Phase 2",
        now=0.0,
        events=0,
        orchestrators=[],
        workstreams=workstreams,
        blockers=[],
        escalations=[],
    )
    gate_defaults = {
        "name": "g",
        "week": None,
        "run": 1,
        "workstreams": [],
        "criteria": [],
        "checks": [],
        "failures": [],
        "results": {},
        "metrics": {},
        "started_at": None,
        "decided_at": None,
        "passed_at": None,
    }
    esc_defaults = {
        "orchestrator": "pixelsd",
        "type": "stall",
        "severity": "high",
        "affected_workstreams": [],
        "help_needed": "",
        "raised_at": 0.0,
    }
    return Snapshot(
        status=status,
        gates=msgspec.convert([{**gate_defaults, **g} for g in gates or []], list[GateView]),
        escalations=msgspec.convert(
            [{**esc_defaults, **e} for e in escalations or []], list[EscalationView]
        ),
        reports=reports or [],
    )


def test_changes_share_one_line_for_workstreams_halted_together() -> None:
    """A failed gate halting five workstreams is one line; a single change names the
    workstream."""
    ids = ["WS-04", "WS-05", "WS-06", "WS-07", "WS-08"]
    before = snapshot([ws(i, "not_started") for i in ids] + [ws("WS-02", "in_progress")])
    after = snapshot([ws(i, "halted", ["gate:gate-1"]) for i in ids] + [ws("WS-02", "complete")])
    assert changes(before, after) == [
        "5 workstreams (WS-04..WS-08): halted (gate:gate-1)",
        "WS-02 name of WS-02: complete",
    ]


def test_changes_report_gates_escalations_and_reports() -> None:
    """A failed gate with its failure, a new escalation, one resolved, a new report file."""
    before = snapshot(
        [],
        gates=[{"id": "gate-1", "state": "checking"}],
        escalations=[{"id": "E-1", "kind": "ws_stalled", "issue": "old", "state": "open"}],
    )
    after = snapshot(
        [],
        gates=[{"id": "gate-1", "state": "failed", "failures": ["check m0 exited 1"]}],
        escalations=[
            {"id": "E-1", "kind": "ws_stalled", "issue": "old", "state": "resolved"},
            {"id": "E-2", "kind": "overrun", "issue": "WS-05 overran", "state": "open"},
        ],
        reports=["week_01_status.md"],
    )
    assert changes(before, after) == [
        "gate gate-1 failed: check m0 exited 1",
        "escalation E-1 resolved",
        "escalation E-2 overrun (high): WS-05 overran",
        "report written: reports/week_01_status.md",
    ]


def test_unmet_names_every_missing_end_condition() -> None:
    """Open work, unpassed gates, missing reports and escalation kinds never raised."""
    snap = snapshot(
        [ws("WS-18", "in_progress")],
        gates=[{"id": "gate-3", "state": "pending"}],
        escalations=[{"id": "E-1", "kind": "overrun", "issue": "x", "state": "resolved"}],
        reports=["week_12_status.md"],
    )
    assert unmet(snap) == [
        "workstreams not complete: WS-18",
        "gates not passed: gate-3",
        "no reports/completion_report.md yet",
        "escalations never raised: ws_stalled or orchestrator_stalled, blocker_aged, gate_failed",
    ]


# --- the command --------------------------------------------------------------------------------


def test_bad_seed_is_a_usage_error() -> None:
    """--seed must be a whole number: exit 2 with a line saying so."""
    done = subprocess.run(
        [str(BIN / "pixelsd"), "demo", "--seed", "one"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "'one' is not a seed" in done.stderr


def test_a_state_dir_with_an_earlier_run_is_refused(state_dir: Path) -> None:
    """A DIR that already holds pixels.db: exit 2, one line, nothing started."""
    (state_dir / "pixels.db").write_bytes(b"")
    done = subprocess.run(
        [str(BIN / "pixelsd"), "demo", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"pixelsd demo: error: {state_dir} holds an earlier run (pixels.db); give a new or empty "
        "directory\n"
    )
    assert not (state_dir / "demo").exists()


@pytest.mark.slow
def test_demo_seed_1_runs_12_weeks_and_leaves_reports_and_escalations(state_dir: Path) -> None:
    """`pixelsd demo --seed 1 --no-live` finishes by itself (exit 0) and leaves 12 weekly
    reports, a completion report, and the stall, overrun, aged blocker and failed gate in
    `pixelsctl --json escalations --all` (asked of a daemon restarted on its state dir)."""
    run_dir = state_dir / "d"
    done = subprocess.run(
        [str(BIN / "pixelsd"), "demo", "--seed", "1", "--no-live", "--state-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=420,  # a bound for a hung run; the demo's own deadline is 300 s
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = run_dir / "reports"
    weekly = sorted(p.name for p in reports.glob("week_*_status.md"))
    assert weekly[:12] == [f"week_{n:02d}_status.md" for n in range(1, 13)]
    assert (reports / "completion_report.md").is_file()
    assert f"completion report: {reports / 'completion_report.md'}" in done.stdout

    daemon = DaemonProcess(run_dir, "--plan", str(run_dir / "demo" / "plan.toml")).start()
    try:
        out = subprocess.run(
            [str(BIN / "pixelsctl"), "--json", "escalations", "--all", "--state-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    finally:
        daemon.terminate()
    kinds = {e["kind"] for e in json.loads(out.stdout)}
    assert kinds & {"ws_stalled", "orchestrator_stalled"}
    assert {"overrun", "blocker_aged", "gate_failed"} <= kinds
