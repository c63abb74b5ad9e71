"""pixels_daemon/reports.py: the weekly status report, meta_status.json, the completion report.

States are built by driving the real engine (core/engine.step) with a fixed clock: the plan starts
Monday 2026-01-05 09:00 Europe/Berlin. Golden files in tests/golden/ hold the reviewed output:
``week_02_status.md`` and ``meta_status.json`` for the same two weeks of DGX-Pixels work, and
``completion_report.md`` for a whole simulated run. After an intended change, regenerate them with
``PIXELS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_reports.py`` and review the diff.
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from pixels_daemon import reports
from pixels_daemon.core.engine import (
    AckEscalation,
    ApproveDecision,
    ChangeEstimate,
    EngineConfig,
    Event,
    Halt,
    Received,
    ResolveEscalation,
    Resume,
    Tick,
    new_state,
    projection,
    step,
)
from pixels_daemon.core.state import State
from pixels_daemon.plan import Plan, default_plan
from pixels_daemon.reports import (
    WEEK,
    completion_report,
    meta_status,
    plan_start,
    report_filename,
    week_of,
    weekly_report,
)
from protocol.messages import Escalation, Status, WorkstreamReport

GOLDEN = Path(__file__).parent / "golden"
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
DAY = 24 * HOUR


def local(text: str, tz: ZoneInfo = BERLIN) -> float:
    """Unix time of a local wall-clock time, ``2026-01-05 09:00``."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


T0 = local("2026-01-05 09:00")  # a Monday

#: What the DGX-Pixels metric gate (m1-inference) needs reported with WS-05.
GOOD_METRICS = {"inference_time_s": 2.5, "batch_images_per_min": 20.0, "memory_gb": 80.0}


class Project:
    """A plan, its state and a clock, driven through the real engine. Orchestrators' standing
    blockers and decisions_needed are repeated in each of their status messages, as a real
    orchestrator's full status would."""

    def __init__(self, plan: Plan | None = None, start: float = T0) -> None:
        self.plan = plan or default_plan()
        self.config = EngineConfig(plan_start=start)
        self.state = new_state(self.plan)
        self.now = start
        self.seq: dict[str, int] = {}
        self.blockers: dict[str, list[str]] = {}
        self.decisions: dict[str, list[str]] = {}
        self.tick()

    def at(self, when: str) -> Project:
        t = local(when)
        assert t >= self.now, f"the clock only moves forward: {when}"
        self.now = t
        return self

    def do(self, event: Event) -> None:
        step(self.state, self.plan, event, self.now, self.config)

    def tick(self) -> None:
        active = [o for o, st in self.state.orchestrators.items() if st.activated_at is not None]
        self.do(Tick(last_seen=dict.fromkeys(active, self.now)))

    def _next(self, orch: str) -> int:
        n = self.seq[orch] = self.seq.get(orch, 0) + 1
        return n

    def status(self, orch: str, workstreams: dict[str, WorkstreamReport], **fields: Any) -> None:
        n = self._next(orch)
        message = Status(
            orchestrator=orch,
            seq=n,
            id=f"{orch}-{n}",
            workstreams=workstreams,
            blockers=self.blockers.get(orch, []),
            decisions_needed=self.decisions.get(orch, []),
            **fields,
        )
        self.do_received(message)

    def do_received(self, message: Status | Escalation) -> None:
        self.do(Received(message=message))

    def report(
        self,
        metrics: dict[str, float] | None = None,
        **states: tuple[str, float] | tuple[str, float, str],
    ) -> None:
        """report(WS_01=("in_progress", 0.4), WS_03=("blocked", 0.3, "why")): one status per
        orchestrator. Model's carries ``metrics`` (default: ones that pass the metric gate)."""
        by_orch: dict[str, dict[str, WorkstreamReport]] = {}
        for key, value in states.items():
            ws_id = key.replace("_", "-")
            status, progress, *blocker = value
            owner = self.plan.workstreams[ws_id].orchestrator
            by_orch.setdefault(owner, {})[ws_id] = WorkstreamReport(
                status=status,  # type: ignore[arg-type]
                progress=progress,  # type: ignore[arg-type]
                blocker=blocker[0] if blocker else None,  # type: ignore[misc]
            )
        for orch, workstreams in by_orch.items():
            reported = (GOOD_METRICS if metrics is None else metrics) if orch == "model" else {}
            self.status(orch, workstreams, performance_metrics=reported)

    def escalate(self, orch: str, issue: str, affected: list[str], **fields: Any) -> None:
        n = self._next(orch)
        self.do_received(
            Escalation(
                orchestrator=orch,
                seq=n,
                id=f"{orch}-{n}",
                issue=issue,
                affected_workstreams=affected,
                **fields,
            )
        )

    def weekly(self, week: int, tz: ZoneInfo = BERLIN) -> str:
        return weekly_report(self.plan, self.state, self.now, week, self.config, tz)

    def completion(self, tz: ZoneInfo = BERLIN) -> str:
        return completion_report(self.plan, self.state, self.now, self.config, tz)

    def meta(self) -> dict[str, object]:
        return meta_status(self.plan, self.state, self.now, config=self.config)


def two_weeks() -> Project:
    """DGX-Pixels, weeks 1 and 2: Foundation finishes (WS-03 blocked on a broken node for three
    days, escalated, resolved), gate 1 passes, Model starts WS-04 with a blocker of its own and a
    decision pending from Foundation. Ends Friday of week 2, 17:00."""
    p = Project()
    p.at("2026-01-05 10:00").report(WS_01=("in_progress", 0.1))
    p.at("2026-01-06 16:00").report(WS_01=("in_progress", 0.6))
    p.at("2026-01-08 15:00").report(WS_01=("complete", 1.0))
    p.at("2026-01-08 16:00").report(WS_02=("in_progress", 0.1), WS_03=("in_progress", 0.2))
    p.at("2026-01-09 11:00").report(
        WS_02=("in_progress", 0.3), WS_03=("blocked", 0.3, "benchmark node dgx-02 is offline")
    )
    p.at("2026-01-09 12:00").escalate(
        "foundation",
        "dgx-02 power supply failed; the benchmark suite cannot run",
        ["WS-03"],
        severity="high",
        help_needed="replace the PSU or lend another node",
    )
    p.at("2026-01-10 12:00").tick()  # the blocker is 25 h old: blocker_aged
    p.at("2026-01-12 10:00").report(WS_02=("in_progress", 0.7), WS_03=("in_progress", 0.5))
    p.at("2026-01-12 10:30").do(AckEscalation(escalation="E-1", note="ops on it"))
    p.at("2026-01-12 11:00").do(ResolveEscalation(escalation="E-1", note="PSU replaced"))
    p.decisions["foundation"] = ["Pin CUDA 12.4 or 12.6 in the WS-04 images?"]
    p.at("2026-01-13 11:00").report(WS_02=("complete", 1.0), WS_03=("in_progress", 0.8))
    p.at("2026-01-14 14:00").report(WS_03=("complete", 1.0))  # gate 1 passes: Model starts
    p.at("2026-01-14 15:00").report(WS_04=("in_progress", 0.2))
    p.blockers["model"] = ["HF token for the SDXL weights not issued yet"]
    p.at("2026-01-15 12:00").report(WS_04=("in_progress", 0.55))
    p.at("2026-01-16 17:00").tick()
    return p


#: How long each workstream takes in the simulated whole run (days). WS-06 overruns its 10 days.
DURATIONS = {
    "WS-01": 3.0,
    "WS-02": 4.0,
    "WS-03": 3.5,
    "WS-04": 4.5,
    "WS-05": 6.0,
    "WS-06": 16.0,
    "WS-07": 5.0,
    "WS-08": 7.0,
    "WS-09": 4.0,
    "WS-10": 5.5,
    "WS-11": 3.0,
    "WS-12": 4.0,
    "WS-13": 5.0,
    "WS-14": 6.5,
    "WS-15": 4.0,
    "WS-16": 5.0,
    "WS-17": 4.5,
    "WS-18": 7.0,
}


Hook = tuple[str, Callable[["Project"], None]]


def whole_run(
    durations: dict[str, float] = DURATIONS,
    blocked: dict[str, tuple[float, float, str]] | None = None,
    hooks: list[Hook] | None = None,
    step_h: float = 6.0,
) -> Project:
    """Every DGX-Pixels workstream from start to finish: each starts when it becomes ready and
    reports progress every ``step_h`` hours until it has taken its ``durations`` days (blocked
    from day a to day b of its work with ``blocked[ws] = (a, b, text)``); orchestrators heartbeat
    at every step. ``hooks``: (local time, action), run at the first step at or after that time,
    before the step's reports."""
    p = Project()
    blocked = blocked or {}
    todo = sorted(hooks or [], key=lambda h: local(h[0]))
    started: dict[str, float] = {}
    t = p.now
    while any(ws.status != "complete" for ws in p.state.workstreams.values()):
        t += step_h * HOUR
        assert t < T0 + 20 * WEEK, "the simulated run did not finish"
        p.now = t
        while todo and local(todo[0][0]) <= t:
            todo.pop(0)[1](p)
        states: dict[str, tuple[str, float] | tuple[str, float, str]] = {}
        for w, ws in p.state.workstreams.items():
            key = w.replace("-", "_")
            if ws.status == "ready":
                started[w] = t
                states[key] = ("in_progress", 0.0)
            elif ws.status in ("in_progress", "blocked"):
                days = (t - started[w]) / DAY
                done = round(min(1.0, days / durations[w]), 2)
                a, b, text = blocked.get(w, (0.0, 0.0, ""))
                if done >= 1:
                    states[key] = ("complete", 1.0)
                elif a <= days < b:
                    states[key] = ("blocked", ws.progress, text)
                else:
                    states[key] = ("in_progress", done)
        if states:
            p.report(**states)
        p.tick()
    return p


def open_escalation(p: Project, kind: str) -> str:
    """The id of the unresolved escalation of that kind."""
    (found,) = [
        e.id for e in p.state.escalations.values() if e.kind == kind and e.state != "resolved"
    ]
    return found


def eventful_run() -> Project:
    """The whole run with what a real one meets: a blocked workstream (WS-09, 36 h: escalated at
    24 h), a resource escalation an operator resolves, a decision asked for and approved, and WS-06
    overrunning until it is re-estimated."""

    def ask(p: Project) -> None:
        p.decisions["model"] = ["Train the LoRA on SDXL base or SDXL Turbo?"]

    def approve(p: Project) -> None:
        p.do(ApproveDecision(decision="D-1", note="SDXL base: Turbo LoRAs lose detail"))
        p.decisions["model"] = []

    hooks: list[Hook] = [
        ("2026-01-24 10:00", ask),
        ("2026-01-26 10:00", approve),
        (
            "2026-01-30 10:00",
            lambda p: p.escalate(
                "interface",
                "backend tests need a second GPU",
                ["WS-10"],
                type="resource",
                help_needed="lend dgx-03 for two days",
            ),
        ),
        (
            "2026-01-30 16:00",
            lambda p: p.do(
                ResolveEscalation(escalation=open_escalation(p, "resource"), note="dgx-03 lent")
            ),
        ),
        (
            "2026-02-08 12:00",
            lambda p: p.do(
                ChangeEstimate(
                    workstream="WS-06", min_days=12, max_days=16, reason="dataset twice as large"
                )
            ),
        ),
    ]
    return whole_run(blocked={"WS-09": (1.0, 2.5, "zmq 4.3 ABI mismatch on aarch64")}, hooks=hooks)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PIXELS_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), text.splitlines(), "golden", "now", lineterm=""
        )
        pytest.fail(f"output differs from tests/golden/{name}:\n" + "\n".join(diff))


def meta_json(meta: dict[str, object]) -> str:
    """As the daemon writes it."""
    return json.dumps(meta, sort_keys=False, indent=2) + "\n"


# --- golden files -------------------------------------------------------------------------------


def test_week_2_report_matches_the_golden_file() -> None:
    """Week 2 of the DGX-Pixels story, rendered on its Friday 17:00, is the reviewed report."""
    check_golden("week_02_status.md", two_weeks().weekly(2))


def test_meta_status_matches_the_golden_file() -> None:
    """meta_status.json at the same moment, as the daemon writes it (indent 2, keys in order)."""
    check_golden("meta_status.json", meta_json(two_weeks().meta()))


def test_completion_report_matches_the_golden_file() -> None:
    """The completion report of a whole simulated run is the reviewed report."""
    check_golden("completion_report.md", eventful_run().completion())


# --- weeks --------------------------------------------------------------------------------------


def test_week_1_is_the_first_seven_days_from_the_start() -> None:
    """[start, start + 7 days) is week 1; the next instant begins week 2."""
    assert week_of(T0, T0) == 1
    assert week_of(T0 + WEEK - 0.001, T0) == 1
    assert week_of(T0 + WEEK, T0) == 2
    assert week_of(T0 + 11 * WEEK + 3 * DAY, T0) == 12


def test_times_before_the_start_count_as_week_1() -> None:
    """A time before the plan's start is clamped to week 1."""
    assert week_of(T0 - 3 * DAY, T0) == 1


def test_report_filename_has_two_digits_and_three_past_99() -> None:
    """week_07_status.md sorts before week_12_status.md; week 100 gets three digits."""
    assert report_filename(7) == "week_07_status.md"
    assert report_filename(12) == "week_12_status.md"
    assert report_filename(100) == "week_100_status.md"


def test_report_filename_refuses_week_0() -> None:
    """Weeks are numbered from 1."""
    with pytest.raises(ValueError, match="numbered from 1"):
        report_filename(0)


def test_weekly_report_refuses_week_0() -> None:
    """Asking for week 0 is a ValueError, not a report of nonsense dates."""
    p = Project()
    with pytest.raises(ValueError, match="numbered from 1"):
        p.weekly(0)


def test_plan_start_is_the_configured_start_else_the_first_activation() -> None:
    """config.plan_start wins; without it the state's plan_started_at; None before either."""
    plan = default_plan()
    state = new_state(plan)
    assert plan_start(state, EngineConfig()) is None
    step(state, plan, Tick(), T0 + HOUR)
    assert plan_start(state, EngineConfig()) == T0 + HOUR
    assert plan_start(state, EngineConfig(plan_start=T0)) == T0


# --- the weekly report --------------------------------------------------------------------------


def test_weekly_report_is_the_same_bytes_after_a_snapshot_round_trip() -> None:
    """Rendering depends on the state's content only: a state decoded from its snapshot (as the
    daemon restores it) renders the same bytes."""
    p = two_weeks()
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(p.state), type=State)
    again = weekly_report(p.plan, restored, p.now, 2, p.config, BERLIN)
    assert again == p.weekly(2)


def test_times_in_a_dst_week_carry_their_own_offset() -> None:
    """A week spanning the switch to summer time (29 March 2026 in Berlin) shows each time in
    the offset in force then: CET before, CEST after; the next week's start moves to 10:00."""
    start = local("2026-03-23 09:00")
    p = Project(start=start)
    p.at("2026-03-27 10:00").report(WS_01=("in_progress", 0.2))
    p.at("2026-03-30 10:30").report(WS_01=("complete", 1.0))
    text = p.weekly(1)
    assert (
        "| WS-01 | Hardware Baselines | complete | 3-4 d | 2026-03-27 10:00 CET | "
        "2026-03-30 10:30 CEST |" in text
    )
    assert "- Period: Mon 2026-03-23 to Fri 2026-03-27 (week 1 of 12)" in text
    assert "## Next week's plan (week 2: Mon 2026-03-30 to Fri 2026-04-03)" in text
    assert "WS-01 actual :done, a_WS_01, 2026-03-27 10:00, 2026-03-30 10:30" in text
    assert "| gate-1 | Foundation -> Model/Interface | 2026-04-06 10:00 CEST |" in text


def test_report_renders_in_the_zone_it_is_given() -> None:
    """The same state in UTC reads UTC times."""
    p = two_weeks()
    text = p.weekly(2, tz=ZoneInfo("UTC"))
    assert "- Generated: 2026-01-16 16:00 UTC" in text
    assert "CET" not in text


def test_blocked_workstream_shows_its_blocker() -> None:
    """A blocked workstream's state cell says why, and it is listed under open blockers."""
    p = Project()
    p.at("2026-01-05 10:00").report(WS_01=("in_progress", 0.2))
    p.at("2026-01-06 11:00").report(WS_01=("blocked", 0.4, "BIOS update bricked dgx-01"))
    p.at("2026-01-06 17:00")
    text = p.weekly(1)
    assert "| WS-01 | Hardware Baselines | blocked (BIOS update bricked dgx-01) |" in text
    assert "| WS-01 (foundation) | BIOS update bricked dgx-01 | 2026-01-06 11:00 CET | 6h |" in text
    assert "WS-01 actual :crit, active, a_WS_01, 2026-01-05 10:00, 2026-01-06 17:00" in text


def test_pipes_and_newlines_in_reported_text_stay_inside_their_cell() -> None:
    """Reported text is data: a '|' is escaped and a newline folded, so tables keep their shape."""
    p = Project()
    p.at("2026-01-05 10:00").report(WS_01=("blocked", 0.0, "fan | PSU\nboth dead"))
    text = p.weekly(1)
    assert "| blocked (fan \\| PSU both dead) |" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| WS-01 |")]
    assert len(re.findall(r"(?<!\\)\|", row)) == 7  # six cells


def test_next_week_lists_a_workstream_whose_dependencies_just_completed() -> None:
    """WS-01 completing makes WS-02 and WS-03 ready: next week's plan says to start them."""
    p = Project()
    p.at("2026-01-05 10:00").report(WS_01=("in_progress", 0.5))
    p.at("2026-01-09 16:00").report(WS_01=("complete", 1.0))
    section = p.weekly(1).split("## Next week's plan")[1].split("## Schedule")[0]
    assert "- WS-02 Reproducibility Framework (foundation, P0): ready now" in section
    assert "- WS-03 Benchmark Suite (foundation, P1): ready now" in section


def test_next_week_lists_work_projected_to_become_startable_in_it() -> None:
    """A workstream whose dependency is projected to finish during next week is listed with its
    projected start; one whose dependencies finish later is not."""
    p = Project()
    p.at("2026-01-05 10:00").report(WS_01=("in_progress", 0.5))
    p.at("2026-01-09 16:00")
    section = p.weekly(1).split("## Next week's plan")[1].split("## Schedule")[0]
    # WS-01: 50% of 4 days left -> ends Sun 11 Jan 16:00, within week 2 (12-19 Jan).
    assert "- WS-02 Reproducibility Framework (foundation, P0): after WS-01 (projected start " in (
        section
    )
    assert "WS-05" not in section  # after gate 1 and WS-04: beyond week 2


def test_halted_workstream_shows_the_failed_gate_and_is_listed_next_week() -> None:
    """A metric gate failing halts dependent work: its state says which gate, and next week's
    plan lists it as halted."""
    p = Project()
    for ws in ("WS_01", "WS_02", "WS_03", "WS_04"):
        p.report(**{ws: ("complete", 1.0)})
    p.at("2026-01-07 10:00").report(
        metrics={"inference_time_s": 4.2, "batch_images_per_min": 20.0, "memory_gb": 80.0},
        WS_05=("complete", 1.0),
    )
    text = p.weekly(1)
    assert "| WS-06 | LoRA Training Pipeline | halted (gate m1-inference failed) |" in text
    assert "- WS-06 LoRA Training Pipeline (model, P1): halted (gate m1-inference failed)" in text
    assert "| m1-inference | M1 inference ready | - | failed | 1 |" in text


def test_projected_finishes_agree_with_the_engines_projection() -> None:
    """The per-workstream schedule behind next week's plan ends where the engine's projection
    does (the two implement one rule)."""
    for p in (Project(), two_weeks()):
        proj = projection(p.state, p.plan, p.now, p.config)
        assert proj is not None
        sched = reports._projected(p.plan, p.state, p.now, T0)
        assert max(end for _, end in sched.values()) == proj.projected_end


def test_unfinished_actual_bar_ends_now_and_planned_bars_follow_dependencies() -> None:
    """Gantt: in-progress work's actual bar runs to now; a planned bar starts when the latest of
    its dependencies is planned to end (WS-10 after WS-09, the later of WS-04 and WS-09)."""
    text = two_weeks().weekly(2)
    assert "WS-04 actual :active, a_WS_04, 2026-01-14 15:00, 2026-01-16 17:00" in text
    assert "WS-09 planned :p_WS_09, 2026-01-27 09:00, 2026-02-01 09:00" in text
    assert "WS-10 planned :p_WS_10, 2026-02-01 09:00, 2026-02-07 09:00" in text


def test_burn_up_counts_the_max_days_complete_by_each_weeks_end() -> None:
    """Week 1: WS-01 (4 d) complete; week 2: + WS-02 (5 d) and WS-03 (4 d) = 13; none later."""
    text = two_weeks().weekly(2)
    assert "    bar [4, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]" in text
    assert '    y-axis "days" 0 --> 106' in text


def test_mermaid_text_drops_characters_with_a_meaning_in_mermaid() -> None:
    """A plan named with ':' '#' ';' still gives a title Mermaid parses as one."""
    plan = msgspec.structs.replace(default_plan(), name="Pixels: phase #2; final")
    p = Project(plan=plan)
    rendered = p.weekly(1)
    assert "    title Pixels phase 2 final - planned against actual" in rendered
    assert '    title "Pixels phase 2 final - estimate complete, days"' in rendered


def test_decisions_needed_name_the_record_the_engine_opened() -> None:
    """An orchestrator's decisions_needed entry is listed with its decision record and state."""
    text = two_weeks().weekly(2)
    assert (
        "- foundation asks: Pin CUDA 12.4 or 12.6 in the WS-04 images? "
        "(D-1, pending, since 2026-01-13 11:00 CET)" in text
    )


def test_blocker_escalations_show_their_lifecycle() -> None:
    """A blocker escalation resolved this week shows when it was acknowledged and resolved."""
    text = two_weeks().weekly(2)
    assert (
        "| E-1 | blocker | high | resolved | WS-03: dgx-02 power supply failed; the benchmark "
        "suite cannot run | 2026-01-09 12:00 CET | 2026-01-12 10:30 CET | 2026-01-12 11:00 CET "
        "(after 2d 23h) |" in text
    )


# --- meta_status --------------------------------------------------------------------------------


def test_meta_status_starts_with_the_four_spec_keys() -> None:
    """phase, active_orchestrators, completed_workstreams, blockers first, then the extras."""
    assert list(two_weeks().meta()) == [
        "phase",
        "active_orchestrators",
        "completed_workstreams",
        "blockers",
        "plan",
        "updated_at",
        "week",
        "progress",
        "open_escalations",
    ]


def test_active_orchestrators_leave_out_pending_finished_and_halted_ones() -> None:
    """Foundation finished and Interface pending are not active; Model is until it is halted."""
    p = two_weeks()
    assert p.meta()["active_orchestrators"] == ["model"]
    p.at("2026-01-16 18:00").do(Halt(target="model", reason="budget review"))
    assert p.meta()["active_orchestrators"] == []


def test_orchestrator_whose_open_work_is_all_halted_is_not_active() -> None:
    """Halting Foundation's only unfinished workstream leaves nothing for it to do."""
    p = Project()
    p.at("2026-01-05 10:00").report(WS_01=("in_progress", 0.1))
    assert p.meta()["active_orchestrators"] == ["foundation"]
    p.at("2026-01-05 11:00").do(Halt(target="WS-01"))
    assert p.meta()["active_orchestrators"] == []


def test_meta_status_lists_workstream_and_orchestrator_blockers() -> None:
    """Both kinds of open blocker, with their owner, workstream (null for an orchestrator's own),
    text and since."""
    p = Project()
    p.blockers["foundation"] = ["rack power budget not approved"]
    p.at("2026-01-05 10:00").report(WS_01=("blocked", 0.0, "no GPU driver"))
    assert p.meta()["blockers"] == [
        {
            "orchestrator": "foundation",
            "workstream": None,
            "text": "rack power budget not approved",
            "since": p.now,
        },
        {
            "orchestrator": "foundation",
            "workstream": "WS-01",
            "text": "no GPU driver",
            "since": p.now,
        },
    ]


def test_meta_status_does_not_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """meta_status runs after every committed change: it never calls the projection."""

    def boom(*_: object) -> None:
        raise AssertionError("meta_status called projection")

    monkeypatch.setattr(reports, "projection", boom)
    assert two_weeks().meta()["week"] == 2


def test_meta_status_week_is_null_before_the_plan_starts() -> None:
    """No activation and no configured start: no week yet."""
    plan = default_plan()
    meta = meta_status(plan, new_state(plan), T0)
    assert meta["week"] is None
    assert meta["active_orchestrators"] == []


# --- the completion report ----------------------------------------------------------------------


def test_completion_report_computes_time_to_resolve_per_kind() -> None:
    """Two blocker escalations resolved after 2 h and 6 h, and one still open: mean 4h, max 6h,
    one open."""
    p = Project()
    p.at("2026-01-05 10:00").escalate("foundation", "no rack space", ["WS-01"])
    p.at("2026-01-05 11:00").escalate("foundation", "no network", ["WS-02"])
    p.at("2026-01-05 12:00").escalate("foundation", "no badge access", ["WS-03"])
    p.at("2026-01-05 12:00").do(ResolveEscalation(escalation="E-1"))
    p.at("2026-01-05 17:00").do(ResolveEscalation(escalation="E-2"))
    assert "| blocker | 3 | 2 | 1 | 4h | 6h |" in p.completion()


def test_completion_verdict_is_success_for_a_run_within_the_plan() -> None:
    """Everything done early, every gate passed, nothing unresolved: Success."""
    text = eventful_run().completion()
    assert "**Success**: the spec's success criteria." in text


def test_completion_verdict_fails_a_run_that_slips_past_the_tolerance() -> None:
    """Twice the time on every workstream ends weeks late: the verdict says by how much."""
    slow = {w: 2.4 * d for w, d in DURATIONS.items()}
    text = whole_run(slow).completion()
    assert "**Not met**" in text
    assert "- All workstreams within 12 weeks (± 7 days): no (" in text
    assert "days late, tolerance 7 days)" in text


def test_completion_report_of_an_unfinished_plan_names_the_open_work() -> None:
    """Asked for before the end, it says what is unfinished and projects the end."""
    text = two_weeks().completion()
    assert "- Not finished: 15 workstreams open; projected end 2026-03-06 23:00 CET" in text
    assert "no: 15 workstreams unfinished (WS-04, WS-05," in text
    assert "- No unresolved blockers or cross-domain conflicts: no: model: HF token" in text


def test_actual_days_leave_out_time_halted() -> None:
    """WS-01 runs 3 days, of which 1 halted by an operator: 2.0 days actual, 1d halted."""
    p = Project()
    p.at("2026-01-05 09:00").report(WS_01=("in_progress", 0.1))
    p.at("2026-01-06 09:00").do(Halt(target="WS-01"))
    p.at("2026-01-07 09:00").do(Resume(target="WS-01"))
    p.report(WS_01=("in_progress", 0.5))
    p.at("2026-01-08 09:00").report(WS_01=("complete", 1.0))
    assert "| WS-01 | Hardware Baselines | foundation | 3-4 d | 2.0 d | 1d | under |" in (
        p.completion()
    )


def test_a_reestimated_workstream_is_judged_against_both_estimates() -> None:
    """WS-06 took 16 days: over the plan's 10 by 60%, within its 12-16 re-estimate."""
    text = eventful_run().completion()
    assert (
        "| WS-06 | LoRA Training Pipeline | model | 7-10 d, re-estimated 12-16 d | 16.0 d | - | "
        "over by 60%; within the re-estimate |" in text
    )
