"""The reports: the weekly status report, meta_status.json and the completion report. Pure.

The daemon renders these from the plan and the state and writes them atomically under the state
dir (``reports/week_NN_status.md``, ``status/meta_status.json``, ``reports/completion_report.md``);
docs/operations.md, "Reports", says what each holds for the people who read them.

Rules:

- Same inputs, same bytes: nothing here reads a clock, the environment or the locale; lists follow
  the plan's order, or are sorted (escalations and decisions by when they were raised, then id).
- Times are rendered in the ``tz`` given (``2026-03-06 17:00 CET``), durations as ``2d 4h``.
- Weeks are counted from the plan's start (``plan_start``): week 1 is [start, start + 7 days).
  A week is 7 x 24 h of real time, as the engine counts estimates: across a daylight-saving change
  the week's local start moves by the hour the clocks moved.
- A report describes the state at ``now``; the week chosen selects what counts as "this week"
  (escalations opened, blockers resolved, decisions made) and which week is "next".
- "Planned" is the plan file's baseline: its dependencies and max days, scheduled from the plan's
  start (an orchestrator's work also waits for its after_gates' and after_workstreams' work).
  "Projected" follows the engine's projection (core/engine.projection): runtime plan changes,
  actual progress and the remaining max days.
- Estimate done (burn-up, progress): each workstream weighs its current max days; deferred ones
  are out of the plan and weigh nothing.
- Telemetry (GPU busy hours, peaks, throttling, idle spans) is not in the state: the daemon
  passes the week's aggregate (telemetry/weekly.py) as ``TelemetryFacts``; none means telemetry
  off. Likely hidden stalls come from the state: the engine's hidden_stall escalations.
"""

from __future__ import annotations

import datetime
import heapq
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pixels_daemon.core.engine import (
    EngineConfig,
    effective_deps,
    estimate_days,
    projection,
)
from pixels_daemon.core.machine import FINAL, STARTED
from pixels_daemon.core.state import DecisionRecord, EscalationRecord, State, WorkstreamState
from pixels_daemon.core.views import phase_of
from pixels_daemon.plan import Plan

if TYPE_CHECKING:  # telemetry/weekly.py imports this module (one definition of a plan week)
    from pixels_daemon.telemetry.weekly import GpuWeek, TelemetryFacts, WeekTelemetry

DAY = 86_400.0
WEEK = 7 * DAY

#: Escalation types (an orchestrator's) and kinds (the daemon's) that are about a blocker.
_BLOCKER_KINDS = frozenset({"blocker", "blocker_aged"})

_PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2}


# --- weeks --------------------------------------------------------------------------------------


def plan_start(state: State, config: EngineConfig) -> float | None:
    """When week 1 starts: the configured plan start, else when the first orchestrator activated;
    None before either is known."""
    return config.plan_start if config.plan_start is not None else state.plan_started_at


def week_of(t: float, start: float) -> int:
    """The 1-based week ``t`` falls in: [start, start + WEEK) is week 1. Times before the start
    count as week 1 (a report asked for before the plan started is week 1's)."""
    return max(1, int((t - start) // WEEK) + 1)


def report_filename(week: int) -> str:
    """``week_07_status.md``: two digits, so the files sort by week (three past week 99)."""
    if week < 1:
        raise ValueError(f"week {week}: weeks are numbered from 1")
    return f"week_{week:02d}_status.md"


# --- meta_status.json ---------------------------------------------------------------------------


def meta_status(
    plan: Plan, state: State, now: float, *, config: EngineConfig | None = None
) -> dict[str, object]:
    """The spec's ``status/meta_status.json``: phase, active_orchestrators, completed_workstreams,
    blockers (in that order), then plan, updated_at, week, progress and open_escalations.

    active_orchestrators: see ``is_active``. blockers: every open blocker, an orchestrator's own
    (workstream null) and each unfinished workstream's, as {orchestrator, workstream, text, since}.
    week: of ``now``, counted from ``plan_start`` (``config`` gives a configured start; without it,
    from the first activation); null before the plan started. progress: the fraction of the
    estimate that is complete.

    Called after every committed change, so it is linear in workstreams and orchestrators: no
    projection, no scan of the escalation history.
    """
    start = plan_start(state, config) if config is not None else state.plan_started_at
    own: dict[str, list[str]] = {o: [] for o in plan.orchestrators}
    for w in plan.workstreams.values():
        own[w.orchestrator].append(w.id)
    stuck: dict[str, bool] = {}  # shared: each workstream is looked at once
    return {
        "phase": phase_of(plan, state),
        "active_orchestrators": [
            o for o in plan.orchestrators if _active(plan, state, o, own[o], stuck)
        ],
        "completed_workstreams": [
            w for w in plan.workstreams if state.workstreams[w].status == "complete"
        ],
        "blockers": [
            {"orchestrator": orch, "workstream": ws, "text": text, "since": since}
            for orch, ws, text, since in _open_blockers(plan, state)
        ],
        "plan": plan.name,
        "updated_at": now,
        "week": week_of(now, start) if start is not None else None,
        "progress": round(_done_fraction(plan, state, in_progress=False), 4),
        "open_escalations": len(state.open_escalations),
    }


def is_active(plan: Plan, state: State, orchestrator: str) -> bool:
    """An orchestrator is active when it has been activated (told to start), nothing holds it, and
    it has work it can do or wait for: at least one workstream that is neither complete, deferred
    nor halted, nor waiting (through its dependencies) on halted work. So a finished orchestrator,
    a halted one, and one whose every open workstream is halted or stuck behind halted work (a
    failed gate, an operator's halt) are not active."""
    own = [w.id for w in plan.workstreams_of(orchestrator)]
    return _active(plan, state, orchestrator, own, {})


def _active(
    plan: Plan, state: State, orchestrator: str, own: list[str], stuck: dict[str, bool]
) -> bool:
    orch = state.orchestrators[orchestrator]
    if orch.activated_at is None or orch.holds:
        return False
    return any(
        state.workstreams[w].status not in FINAL and not _stuck(plan, state, w, stuck) for w in own
    )


def _stuck(plan: Plan, state: State, ws_id: str, memo: dict[str, bool]) -> bool:
    """Halted, or not started and waiting on an unfinished dependency that is stuck. Linear in
    the dependency graph with ``memo``."""
    if ws_id in memo:
        return memo[ws_id]
    memo[ws_id] = False  # a cycle (the engine refuses them) cannot recurse forever
    status = state.workstreams[ws_id].status
    if status == "halted":
        memo[ws_id] = True
    elif status in ("not_started", "ready"):
        memo[ws_id] = any(
            _stuck(plan, state, d, memo)
            for d in effective_deps(state, plan, ws_id)
            if state.workstreams[d].status != "complete"
        )
    return memo[ws_id]


# --- the weekly report --------------------------------------------------------------------------


def weekly_report(  # noqa: PLR0917 - the daemon's calling contract
    plan: Plan,
    state: State,
    now: float,
    week: int,
    config: EngineConfig,
    tz: ZoneInfo,
    telemetry: TelemetryFacts | None = None,
) -> str:
    """Week ``week``'s status report (Markdown), as of ``now``: summary, progress per orchestrator
    and workstream, blockers, decisions needed, gates, escalations opened this week, telemetry
    (``telemetry``: the week's GPU figures; None: telemetry off) with likely hidden stalls, next
    week's plan, a Gantt chart of planned against actual, and a burn-up of the estimate done."""
    if week < 1:
        raise ValueError(f"week {week}: weeks are numbered from 1")
    started = plan_start(state, config)
    start = started if started is not None else now
    ctx = _Week(
        plan=plan,
        state=state,
        now=now,
        config=config,
        fmt=_Fmt(tz),
        week=week,
        start=start,
        begin=start + (week - 1) * WEEK,
        end=start + week * WEEK,
    )
    fmt = ctx.fmt
    out: list[str] = [
        f"# {plan.name} — week {week} status report",
        "",
        f"- Period: {fmt.period(ctx.begin)} (week {week} of {plan.weeks})",
        f"- Generated: {fmt.time(now)}",
        f"- Plan started: {fmt.time(started) if started is not None else 'not yet'}",
        "",
    ]
    out += _summary(ctx)
    out += _progress(ctx)
    out += _blockers_section(ctx)
    out += _decisions_section(ctx)
    out += _gates_section(ctx)
    out += _escalations_section(ctx)
    out += _telemetry_section(ctx, telemetry)
    out += _next_week(ctx)
    out += _gantt(ctx)
    out += _burn_up(ctx)
    return "\n".join(out)


@dataclass(frozen=True)
class _Week:
    """What every section of a weekly report reads. start: the plan's start (``now`` before it
    started); [begin, end): the report's week."""

    plan: Plan
    state: State
    now: float
    config: EngineConfig
    fmt: _Fmt
    week: int
    start: float
    begin: float
    end: float


def _summary(ctx: _Week) -> list[str]:
    plan, state, fmt = ctx.plan, ctx.state, ctx.fmt
    total = len(plan.workstreams)
    complete = sum(1 for ws in state.workstreams.values() if ws.status == "complete")
    deferred = sum(1 for ws in state.workstreams.values() if ws.status == "deferred")
    done = _done_fraction(plan, state, in_progress=False)
    doing = _done_fraction(plan, state, in_progress=True)
    counted = f"{complete} of {total} workstreams complete"
    if deferred:
        counted += f" ({deferred} deferred)"
    pending = sum(1 for d in state.decisions.values() if d.state == "pending")
    lines = [
        "## Summary",
        "",
        f"- Phase: {phase_of(plan, state)}",
        f"- Done: {counted}; {_pct(done)} of the estimate complete "
        f"({_pct(doing)} counting work in progress)",
    ]
    proj = projection(state, plan, ctx.now, ctx.config)
    if proj is None:
        lines.append("- Projection: none until the plan starts")
    else:
        path = " → ".join(proj.critical_path) or "none"
        lines.append(
            f"- Projection: ends {fmt.time(proj.projected_end)}, {_slip(proj.slip_days)} against "
            f"the plan's {plan.weeks} weeks (end {fmt.time(proj.planned_end)}; tolerance "
            f"{_num(ctx.config.slip_tolerance_days)} days); critical path: {path}"
        )
    lines += [
        f"- Open: blockers {len(_open_blockers(plan, state))}, escalations "
        f"{len(state.open_escalations)}, decisions pending {pending}",
        "",
    ]
    return lines


def _progress(ctx: _Week) -> list[str]:
    plan, state, fmt = ctx.plan, ctx.state, ctx.fmt
    out = ["## Progress by orchestrator", ""]
    for o in plan.orchestrators.values():
        out += [f"### {o.name} (`{o.id}`): {_orch_label(plan, state, o.id, fmt)}", ""]
        out += _table(
            ["ID", "Workstream", "State", "Estimate", "Started", "Completed"],
            [
                [
                    w.id,
                    w.name,
                    _ws_label(plan, state, w.id),
                    _estimate(state, plan, w.id),
                    fmt.time_or_dash(state.workstreams[w.id].started_at),
                    _completed_cell(state.workstreams[w.id], fmt),
                ]
                for w in plan.workstreams_of(o.id)
            ],
        )
    return out


def _blockers_section(ctx: _Week) -> list[str]:
    fmt = ctx.fmt
    out = ["## Blockers", "", "### Open", ""]
    rows = [
        [
            f"{ws} ({orch})" if ws else orch,
            text,
            fmt.time_or_dash(since),
            _duration(ctx.now - since) if since is not None else "-",
        ]
        for orch, ws, text, since in _open_blockers(ctx.plan, ctx.state)
    ]
    out += _table(["Where", "Blocker", "Since", "Open for"], rows) if rows else ["None.", ""]
    out += [
        "### Blocker escalations",
        "",
        "Unresolved, or raised or resolved this week. A blocker open for "
        f"{_duration(ctx.config.blocker_escalate_s)} is escalated (blocker_aged: high; critical "
        f"at {_duration(ctx.config.blocker_critical_s)}).",
        "",
    ]
    escs = [
        e
        for e in _sorted_escalations(ctx.state)
        if e.kind in _BLOCKER_KINDS
        and (
            e.state != "resolved"
            or _within(e.raised_at, ctx.begin, ctx.end)
            or _within(e.resolved_at, ctx.begin, ctx.end)
        )
    ]
    rows = [
        [
            e.id,
            e.kind,
            e.severity,
            e.state,
            _about(e),
            fmt.time(e.raised_at),
            fmt.time_or_dash(e.acknowledged_at),
            _resolved_cell(e, fmt),
        ]
        for e in escs
    ]
    header = ["ID", "Kind", "Severity", "State", "About", "Raised", "Acknowledged", "Resolved"]
    out += _table(header, rows) if rows else ["None.", ""]
    return out


def _decisions_section(ctx: _Week) -> list[str]:
    """Pending decisions: each orchestrator's current decisions_needed (with the record the engine
    opened for it), then the other pending records (conflicts); then those decided this week."""
    fmt = ctx.fmt
    out = ["## Decisions needed", ""]
    decisions = _sorted_decisions(ctx.state)
    asked: set[str] = set()
    lines: list[str] = []
    for o in ctx.plan.orchestrators:
        for text in ctx.state.orchestrators[o].decisions_needed:
            rec = _record_for(decisions, o, text)
            if rec is not None:
                asked.add(rec.id)
                ref = f" ({rec.id}, {rec.state}, since {fmt.time(rec.created_at)})"
            else:
                ref = ""
            lines.append(f"- {o} asks: {_inline(text)}{ref}")
    for rec in decisions:
        if rec.state == "pending" and rec.id not in asked:
            options = f" Options: {'; '.join(rec.options)}." if rec.options else ""
            lines.append(
                f"- {rec.id} ({rec.kind}, from {rec.source}, since {fmt.time(rec.created_at)}): "
                f"{_inline(rec.title)}.{_inline(options)}"
            )
    out += [*lines, ""] if lines else ["None.", ""]
    decided = [d for d in decisions if _within(d.decided_at, ctx.begin, ctx.end)]
    if decided:
        out += ["Decided this week:", ""]
        out += [
            f"- {d.id} {d.state} {fmt.time_or_dash(d.decided_at)}: {_inline(d.title)}"
            + (f" — {_inline(d.decision)}" if d.decision else "")
            for d in decided
        ]
        out.append("")
    return out


def _gates_section(ctx: _Week) -> list[str]:
    fmt = ctx.fmt
    rows = []
    for g in ctx.plan.gates.values():
        st = ctx.state.gates[g.id]
        planned = fmt.time(ctx.start + g.week * WEEK) if g.week is not None else "-"
        rows.append(
            [
                g.id,
                g.name,
                planned,
                st.state,
                str(st.run),
                fmt.time_or_dash(st.decided_at),
                fmt.time_or_dash(st.passed_at),
                "; ".join(st.failures) or "-",
            ]
        )
    header = ["Gate", "Name", "Planned", "State", "Runs", "Decided", "Passed", "Failures"]
    return ["## Gates", "", *_table(header, rows)]


def _escalations_section(ctx: _Week) -> list[str]:
    out = ["## Escalations opened this week", ""]
    rows = [
        [
            e.id,
            e.kind or e.type,
            e.severity,
            e.state,
            e.orchestrator,
            _about(e),
            ctx.fmt.time(e.raised_at),
        ]
        for e in _sorted_escalations(ctx.state)
        if _within(e.raised_at, ctx.begin, ctx.end)
    ]
    header = ["ID", "Kind", "Severity", "State", "Source", "About", "Raised"]
    return out + (_table(header, rows) if rows else ["None.", ""])


def _telemetry_section(ctx: _Week, telemetry: TelemetryFacts | None) -> list[str]:
    out = ["## Telemetry", ""]
    week = telemetry.week if telemetry is not None else None
    if week is None or week.samples == 0:
        if telemetry is None or not telemetry.sampling:
            out += [
                "Telemetry off: no samples this week (`pixelsd --telemetry-interval 0`, or "
                "telemetry was not running).",
                "",
            ]
        else:
            out += ["No telemetry samples in this week.", ""]
    else:
        assert telemetry is not None
        out += _telemetry_figures(ctx, telemetry, week)
    return out + _hidden_stalls(ctx, telemetry)


def _telemetry_figures(ctx: _Week, telemetry: TelemetryFacts, week: WeekTelemetry) -> list[str]:
    every = (
        f", one every {_num(telemetry.interval_s)} s (real time)" if telemetry.interval_s else ""
    )
    measured = (
        f"- Samples: {week.samples:,}{every}; {_duration(week.sampled_s)} of the week measured"
    )
    if week.gap_s:
        measured += (
            f", {_duration(week.gap_s)} in gaps (the daemon down or telemetry off: neither busy "
            "nor idle)"
        )
    out = []
    if not telemetry.sampling:
        out += ["Telemetry is off now; these are the samples taken while it was on.", ""]
    out.append(measured)
    busy_line = _pct(telemetry.busy_ratio)
    if not week.gpu_samples:
        reason = week.disabled_reason or "GPU telemetry off"
        out.append(f"- No GPU on this host: unified memory only ({_inline(reason)})")
    else:
        out += [
            f"- GPU busy: {_hours(week.busy_s)} (any GPU at {busy_line} utilization or more); "
            f"idle {_hours(week.idle_s)} (every GPU below {busy_line})",
            f"- Throttling: {_throttling(week.throttled_s, week.gpus)}",
        ]
    out.append(f"- Peak memory: {_peak_memory(week)}")
    if week.gpu_samples:
        out.append(f"- Peak temperature: {_peak_temperature(week.gpus)}")
        spans = [
            f"{ctx.fmt.time(s.start)} to {ctx.fmt.time(s.end)} ({_duration(s.seconds)})"
            for s in week.idle_spans
        ]
        out.append(
            "- Longest GPU idle spans (every GPU idle, no gap): " + "; ".join(spans)
            if spans
            else "- No GPU idle span of an hour or more"
        )
    out.append("")
    if len(week.gpus) > 1:
        rows = [
            [
                f"{g.index}: {g.name}",
                _hours(g.busy_s),
                _hours(g.idle_s),
                _throttling(g.throttled_s, [g]),
                _gpu_memory(g),
                _temperature(g.peak_temperature_celsius),
            ]
            for g in week.gpus
        ]
        header = ["GPU", "Busy", "Idle", "Throttled", "Peak memory", "Peak temperature"]
        out += _table(header, rows)
    return out


def _hidden_stalls(ctx: _Week, telemetry: TelemetryFacts | None) -> list[str]:
    """The engine's hidden_stall escalations open at any time in the week."""
    bound = [w.id for w in ctx.plan.workstreams.values() if w.gpu_bound]
    out = ["### Likely hidden stalls", ""]
    if not bound:
        return [
            *out,
            "No workstream is marked gpu_bound in the plan: hidden stalls are not looked for.",
            "",
        ]
    fmt = ctx.fmt
    lines = []
    for e in _sorted_escalations(ctx.state):
        if e.kind != "hidden_stall" or not e.raised_at < ctx.end:
            continue
        if e.resolved_at is not None and e.resolved_at < ctx.begin:
            continue
        idle = e.details.get("gpu_idle_since")
        since = f"GPU idle since {fmt.time(idle)}, " if isinstance(idle, float) else ""
        ws = ", ".join(
            f"{w} ({ctx.plan.workstreams[w].name})"
            for w in e.affected_workstreams
            if w in ctx.plan.workstreams
        )
        state = f"resolved {fmt.time(e.resolved_at)}" if e.resolved_at is not None else e.state
        lines.append(f"- {ws}: {since}flagged {fmt.time(e.raised_at)} ({e.id}, {state})")
    if telemetry is None or not telemetry.sampling:
        off = f"Not looked for while telemetry is off (GPU-bound: {', '.join(bound)})."
        return [*out, off, "", *([*lines, ""] if lines else [])]
    out += [
        f"A GPU-bound workstream ({', '.join(bound)}) in progress while every GPU stayed idle "
        f"(below {_pct(telemetry.busy_ratio)} utilization, no gap in the samples) for the stall "
        f"window ({_duration(ctx.config.stall_s)}).",
        "",
    ]
    return out + ([*lines, ""] if lines else ["None.", ""])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


def _throttling(seconds: float, gpus: Sequence[GpuWeek]) -> str:
    """``1.5 h (sw_power_cap 1.2 h, hw_thermal_slowdown 0.3 h)``: per reason, summed over GPUs,
    longest first."""
    if not seconds:
        return "none"
    reasons: dict[str, float] = {}
    for g in gpus:
        for reason, t in g.throttle_reasons_s.items():
            reasons[reason] = reasons.get(reason, 0.0) + t
    parts = [f"{r} {_hours(t)}" for r, t in sorted(reasons.items(), key=lambda i: (-i[1], i[0]))]
    return f"{_hours(seconds)} ({', '.join(parts)})" if parts else _hours(seconds)


def _gpu_memory(g: GpuWeek) -> str:
    if g.peak_memory_used_bytes is None:
        return "unified" if g.memory == "unified" else "not reported"
    total = f" of {_gib(g.memory_total_bytes)}" if g.memory_total_bytes else ""
    return f"{_gib(g.peak_memory_used_bytes)}{total}"


def _peak_memory(week: WeekTelemetry) -> str:
    """Which memory: unified (GB10: the host's, shared with the GPU), the GPUs' own, or the
    host's when there is no GPU telemetry."""
    host = (
        f"{_gib(week.peak_host_used_bytes)} of {_gib(week.host_total_bytes or 0)}"
        if week.peak_host_used_bytes is not None
        else "not reported"
    )
    if week.unified:
        return (
            f"{host} unified memory (CPU and GPU share it: the GPU has no memory of its own; "
            "MemTotal - MemAvailable)"
        )
    if not week.gpu_samples:
        return f"{host} unified memory (MemTotal - MemAvailable)"
    dedicated = [
        f"{_gpu_memory(g)} GPU memory (GPU {g.index})"
        for g in week.gpus
        if g.peak_memory_used_bytes is not None
    ]
    return "; ".join(dedicated) or "GPU memory not reported"


def _temperature(celsius: float | None) -> str:
    return "not reported" if celsius is None else f"{_num(celsius)} °C"


def _peak_temperature(gpus: Sequence[GpuWeek]) -> str:
    hottest = max(
        (g for g in gpus if g.peak_temperature_celsius is not None),
        key=lambda g: g.peak_temperature_celsius or 0.0,
        default=None,
    )
    if hottest is None:
        return "not reported"
    return f"{_temperature(hottest.peak_temperature_celsius)} (GPU {hottest.index})"


def _next_week(ctx: _Week) -> list[str]:
    """Workstreams to work on in the week after the report's: the started ones, the ready ones,
    the halted ones (they need a gate to pass or an operator), and those that may start before
    that week ends because everything they wait for (dependencies, and their orchestrator's
    activation) is complete or projected to be by then. P0 first, the critical path first within
    a priority, then plan order."""
    plan, state, fmt = ctx.plan, ctx.state, ctx.fmt
    next_end = ctx.end + WEEK
    sched = _projected(plan, state, ctx.now, ctx.start)
    out = [f"## Next week's plan (week {ctx.week + 1}: {fmt.period(ctx.end)})", ""]
    order = sorted(
        plan.workstreams.values(),
        key=lambda w: (_PRIORITY_RANK.get(w.priority, len(_PRIORITY_RANK)), not w.critical_path),
    )  # sorted() is stable: plan order within a priority
    go_on, begin, halted = [], [], []
    for w in order:
        ws = state.workstreams[w.id]
        crit = ", critical path" if w.critical_path else ""
        tag = f"{w.id} {w.name} ({w.orchestrator}, {w.priority}{crit})"
        if ws.status in STARTED:
            what = _ws_label(plan, state, w.id)
            go_on.append(f"- {tag}: {what}; projected to finish {fmt.time(sched[w.id][1])}")
        elif ws.status == "ready":
            begin.append(f"- {tag}: ready now")
        elif ws.status == "halted":
            halted.append(f"- {tag}: {_ws_label(plan, state, w.id)}")
        elif ws.status == "not_started" and sched[w.id][0] < next_end:
            waits = [
                d for d in _all_deps(state, plan, w.id) if state.workstreams[d].status != "complete"
            ]
            after = f"after {', '.join(waits)}" if waits else "once its orchestrator starts"
            begin.append(f"- {tag}: {after} (projected start {fmt.time(sched[w.id][0])})")
    for title, items in (("Continue", go_on), ("Start", begin), ("Halted", halted)):
        if items:
            out += [f"### {title}", "", *items, ""]
    if not (go_on or begin or halted):
        out += ["Nothing: every workstream is finished or waits beyond next week.", ""]
    return out


def _gantt(ctx: _Week) -> list[str]:
    plan, state, fmt, now = ctx.plan, ctx.state, ctx.fmt, ctx.now
    planned = _baseline(plan, ctx.start)
    out = [
        "## Schedule: planned against actual",
        "",
        "Planned: the plan file's dependencies and max days from the plan's start. Actual: started "
        "to completed (to now while unfinished).",
        "",
        "```mermaid",
        "gantt",
        f"    title {_mermaid_text(plan.name)} - planned against actual",
        "    dateFormat YYYY-MM-DD HH:mm",
        "    axisFormat %m-%d",
        "    todayMarker off",  # the reader's today would be wrong in an old report
    ]
    for o in plan.orchestrators.values():
        out.append(f"    section {_mermaid_text(o.name)}")
        for w in plan.workstreams_of(o.id):
            ws = state.workstreams[w.id]
            key = _mermaid_id(w.id)
            p_begin, p_end = planned[w.id]
            out.append(f"    {w.id} planned :p_{key}, {fmt.mermaid(p_begin)}, {fmt.mermaid(p_end)}")
            if ws.started_at is None:
                continue
            if ws.status == "complete":
                tag, finish = "done", ws.completion_time if ws.completion_time is not None else now
            elif ws.status == "blocked":
                tag, finish = "crit, active", now
            elif ws.status == "halted":
                tag, finish = "crit", ws.halted_at if ws.halted_at is not None else now
            elif ws.status == "deferred":
                tag, finish = "crit", ws.updated_at if ws.updated_at is not None else now
            else:
                tag, finish = "active", now
            finish = max(finish, ws.started_at)
            out.append(
                f"    {w.id} actual :{tag}, a_{key}, {fmt.mermaid(ws.started_at)}, "
                f"{fmt.mermaid(finish)}"
            )
    gates = [g for g in plan.gates.values() if g.week is not None or state.gates[g.id].passed_at]
    if gates:
        out.append("    section Gates")
    for g in gates:
        key = _mermaid_id(g.id)
        if g.week is not None:
            when = fmt.mermaid(ctx.start + g.week * WEEK)
            out.append(f"    {g.id} planned :milestone, gp_{key}, {when}, 0d")
        passed = state.gates[g.id].passed_at
        if passed is not None:
            out.append(f"    {g.id} passed :done, milestone, ga_{key}, {fmt.mermaid(passed)}, 0d")
    out += ["```", ""]
    return out


def _burn_up(ctx: _Week) -> list[str]:
    """Cumulative estimate days complete at the end of each week: planned (line) and actual (bars,
    up to the current week; zero after it)."""
    plan, state, start = ctx.plan, ctx.state, ctx.start
    planned = _baseline(plan, start)
    weight = {w: _weight(state, plan, w) for w in plan.workstreams}
    total = sum(weight.values())
    current = week_of(ctx.now, start)
    last_planned = max((end for _, end in planned.values()), default=start)
    weeks = max(plan.weeks, current, math.ceil((last_planned - start) / WEEK))
    plan_line, actual = [], []
    for n in range(1, weeks + 1):
        cut = start + n * WEEK
        plan_line.append(sum(weight[w] for w, (_, end) in planned.items() if end <= cut))
        done = 0.0
        if n <= current:
            for w, ws in state.workstreams.items():
                finished = ws.completion_time if ws.completion_time is not None else ctx.now
                if ws.status == "complete" and finished <= cut:
                    done += weight[w]
        actual.append(done)
    axis = ", ".join(f"W{n}" for n in range(1, weeks + 1))
    return [
        "## Burn-up: estimate complete (max days)",
        "",
        "Line: planned; bars: actual, to the current week. Each workstream weighs its max days.",
        "",
        "```mermaid",
        "xychart-beta",
        f'    title "{_mermaid_text(plan.name)} - estimate complete, days"',
        f"    x-axis [{axis}]",
        f'    y-axis "days" 0 --> {_num(math.ceil(total) if total else 1)}',
        f"    line [{', '.join(_num(v) for v in plan_line)}]",
        f"    bar [{', '.join(_num(v) for v in actual)}]",
        "```",
        "",
    ]


# --- the completion report ----------------------------------------------------------------------


def completion_report(
    plan: Plan, state: State, now: float, config: EngineConfig, tz: ZoneInfo
) -> str:
    """The end-of-plan report (Markdown): every workstream's estimate against its actual days,
    gates with their dates and runs, escalations by kind with time to resolve, the slip against
    the plan's weeks, and a verdict on the spec's success criteria. Renders unfinished plans too
    (the verdict then says what is missing, against the projected end)."""
    fmt = _Fmt(tz)
    started = plan_start(state, config)
    start = started if started is not None else now
    planned_end = start + plan.weeks * WEEK
    open_ws = [w for w, ws in state.workstreams.items() if ws.status not in FINAL]
    finished = [
        ws.completion_time for ws in state.workstreams.values() if ws.completion_time is not None
    ]
    if open_ws:
        proj = projection(state, plan, now, config)
        end = proj.projected_end if proj is not None else now
        end_line = f"- Not finished: {len(open_ws)} workstreams open; projected end {fmt.time(end)}"
    else:
        end = max(finished, default=start)
        end_line = f"- Finished: {fmt.time(end)} (the last workstream's completion)"
    slip_days = (end - planned_end) / DAY
    out = [
        f"# {plan.name} — completion report",
        "",
        f"- Generated: {fmt.time(now)}",
        f"- Plan started: {fmt.time(started) if started is not None else 'not yet'}",
        f"- Planned end: {fmt.time(planned_end)} ({plan.weeks} weeks)",
        end_line,
        f"- Slip: {_slip(slip_days)} against {plan.weeks} weeks "
        f"({_num(round((end - start) / WEEK, 1))} weeks taken)",
        "",
        "## Verdict",
        "",
        *_verdict(plan, state, open_ws, slip_days, config),
        "",
    ]
    out += _estimates_section(plan, state, fmt)
    out += _gate_dates(plan, state, start, fmt)
    out += _escalations_by_kind(state)
    out += _decision_summary(state)
    out += _plan_changes(plan, state, fmt)
    week = week_of(now, start)
    ctx = _Week(
        plan=plan,
        state=state,
        now=now,
        config=config,
        fmt=fmt,
        week=week,
        start=start,
        begin=start + (week - 1) * WEEK,
        end=start + week * WEEK,
    )
    out += _gantt(ctx)
    out += _burn_up(ctx)
    return "\n".join(out)


def _verdict(
    plan: Plan, state: State, open_ws: list[str], slip_days: float, config: EngineConfig
) -> list[str]:
    """The spec's success criteria: every workstream within the plan's weeks (+- the tolerance),
    every gate passed, no unresolved blockers or cross-domain conflicts."""
    tol = config.slip_tolerance_days
    deferred = [w for w, ws in state.workstreams.items() if ws.status == "deferred"]
    if open_ws:
        timely = (False, f"no: {len(open_ws)} workstreams unfinished ({', '.join(open_ws)})")
    elif slip_days <= tol:
        timely = (True, f"yes ({_slip(slip_days)})")
    else:
        timely = (False, f"no ({_slip(slip_days)}, tolerance {_num(tol)} days)")
    if deferred:
        timely = (timely[0], f"{timely[1]}; deferred: {', '.join(deferred)}")
    not_passed = [g for g in plan.gates if state.gates[g].state != "passed"]
    gates = (
        (True, f"yes ({len(plan.gates)} of {len(plan.gates)})")
        if not not_passed
        else (False, f"no: {', '.join(f'{g} {state.gates[g].state}' for g in not_passed)}")
    )
    unresolved = [f"{ws or orch}: {text}" for orch, ws, text, _ in _open_blockers(plan, state)]
    unresolved += [
        f"{e.id} ({e.kind or e.type})"
        for e in _sorted_escalations(state)
        if e.state != "resolved" and (e.type in ("blocker", "conflict") or e.kind in _BLOCKER_KINDS)
    ]
    unresolved += [
        d.id for d in _sorted_decisions(state) if d.kind == "conflict" and d.state == "pending"
    ]
    clear = (True, "yes") if not unresolved else (False, f"no: {'; '.join(unresolved)}")
    met = timely[0] and gates[0] and clear[0]
    return [
        f"**{'Success' if met else 'Not met'}**: the spec's success criteria.",
        "",
        f"- All workstreams within {plan.weeks} weeks (± {_num(tol)} days): {_inline(timely[1])}",
        f"- All gates passed: {gates[1]}",
        f"- No unresolved blockers or cross-domain conflicts: {_inline(clear[1])}",
    ]


def _estimates_section(plan: Plan, state: State, fmt: _Fmt) -> list[str]:
    """Each workstream against the plan file's estimate, and against its re-estimate if it had
    one (a re-estimate is a plan change: the report keeps the plan's figure in view)."""
    rows = []
    planned = current = total_actual = 0.0
    for w in plan.workstreams.values():
        ws = state.workstreams[w.id]
        lo, hi = estimate_days(state, plan, w.id)
        actual = _actual_days(ws)
        if ws.status != "deferred":
            planned += w.max_days
            current += hi
        if actual is not None and ws.status == "complete":
            total_actual += actual
        estimate = _days_range(w.min_days, w.max_days)
        against = _against(ws, actual, w.min_days, w.max_days)
        if (lo, hi) != (w.min_days, w.max_days):
            estimate += f", re-estimated {_days_range(lo, hi)}"
            if ws.status == "complete":
                against += f"; {_against(ws, actual, lo, hi)} the re-estimate"
        rows.append(
            [
                w.id,
                w.name,
                w.orchestrator,
                estimate,
                f"{actual:.1f} d" if actual is not None else "-",
                _duration(ws.paused_s) if ws.paused_s else "-",
                against,
                fmt.time_or_dash(ws.started_at),
                fmt.time_or_dash(ws.completion_time if ws.status == "complete" else None),
            ]
        )
    header = [
        "ID",
        "Workstream",
        "Orchestrator",
        "Estimate",
        "Actual",
        "Halted",
        "Against estimate",
        "Started",
        "Completed",
    ]
    after = f" ({_num(current)} after re-estimates)" if current != planned else ""
    return [
        "## Workstreams: estimate against actual",
        "",
        "Actual: started to completed, less time halted (halted time is not counted against the "
        "estimate). Judged against the plan file's estimate.",
        "",
        *_table(header, rows),
        f"Total: {_num(round(total_actual, 1))} days actual (complete workstreams) against "
        f"{_num(planned)} max days planned{after}; deferred workstreams are left out of the plan.",
        "",
    ]


def _gate_dates(plan: Plan, state: State, start: float, fmt: _Fmt) -> list[str]:
    rows = []
    for g in plan.gates.values():
        st = state.gates[g.id]
        due = start + g.week * WEEK if g.week is not None else None
        if due is not None and st.passed_at is not None:
            against = _slip((st.passed_at - due) / DAY)
        else:
            against = "-"
        rows.append(
            [
                g.id,
                g.name,
                fmt.time_or_dash(due),
                st.state,
                fmt.time_or_dash(st.passed_at),
                against,
                str(st.run),
                "; ".join(st.failures) or "-",
            ]
        )
    header = ["Gate", "Name", "Planned", "State", "Passed", "Against plan", "Runs", "Last failures"]
    return ["## Gates", "", *_table(header, rows)]


def _escalations_by_kind(state: State) -> list[str]:
    kinds: dict[str, list[EscalationRecord]] = {}
    for e in state.escalations.values():
        kinds.setdefault(e.kind or e.type, []).append(e)
    rows = []
    for kind in sorted(kinds):
        escs = kinds[kind]
        times = [
            e.resolved_at - e.raised_at
            for e in escs
            if e.state == "resolved" and e.resolved_at is not None
        ]
        mean = _duration(sum(times) / len(times)) if times else "-"
        longest = _duration(max(times)) if times else "-"
        still_open = sum(1 for e in escs if e.state != "resolved")
        rows.append([kind, str(len(escs)), str(len(times)), str(still_open), mean, longest])
    header = ["Kind", "Raised", "Resolved", "Open", "Mean time to resolve", "Max time to resolve"]
    out = [
        "## Escalations by kind",
        "",
        "Time to resolve: raised to resolved (by a person, or by the daemon when the condition "
        "cleared).",
        "",
    ]
    return out + (_table(header, rows) if rows else ["None were raised.", ""])


def _decision_summary(state: State) -> list[str]:
    by_state: dict[str, int] = {}
    for d in state.decisions.values():
        by_state[d.state] = by_state.get(d.state, 0) + 1
    counts = ", ".join(f"{s} {n}" for s, n in sorted(by_state.items()))
    adrs = sum(1 for d in state.decisions.values() if d.adr)
    return [
        "## Decisions",
        "",
        f"- Decision records: {len(state.decisions)}" + (f" ({counts})" if counts else ""),
        f"- ADRs written: {adrs}",
        "",
    ]


def _plan_changes(plan: Plan, state: State, fmt: _Fmt) -> list[str]:
    rows = [
        [str(c.n), fmt.time(c.at), c.kind, c.workstream, c.detail, c.source, c.reason or "-"]
        for c in state.plan_changes
    ]
    header = ["#", "At", "Change", "Workstream", "Detail", "Source", "Reason"]
    return ["## Plan changes", "", *(_table(header, rows) if rows else ["None.", ""])]


# --- schedules ----------------------------------------------------------------------------------


def _activation_deps(plan: Plan, orchestrator: str) -> list[str]:
    """What an orchestrator's work waits for (as the engine counts it): its after_workstreams and
    the workstreams of its after_gates."""
    orch = plan.orchestrators[orchestrator]
    out = list(orch.after_workstreams)
    for g in orch.after_gates:
        out.extend(plan.gates[g].workstreams)
    return list(dict.fromkeys(out))


def _all_deps(state: State, plan: Plan, ws_id: str) -> list[str]:
    """Effective dependencies and activation waits: the edges of the projected schedule."""
    own = plan.workstreams[ws_id].orchestrator
    deps = [*effective_deps(state, plan, ws_id), *_activation_deps(plan, own)]
    return [d for d in dict.fromkeys(deps) if d != ws_id]


def _topological(ids: Sequence[str], deps: Mapping[str, Iterable[str]]) -> list[str]:
    """Each id after its deps; among those free, the given order first. Total even if a cycle
    slipped in (the rest follow in the given order)."""
    position = {w: n for n, w in enumerate(ids)}
    waiting = {w: set(deps[w]) for w in ids}
    children: dict[str, list[str]] = {w: [] for w in ids}
    for w in ids:
        for d in waiting[w]:
            children[d].append(w)
    free = [position[w] for w in ids if not waiting[w]]
    heapq.heapify(free)
    order: list[str] = []
    while free:
        w = ids[heapq.heappop(free)]
        order.append(w)
        for c in children[w]:
            waiting[c].discard(w)
            if not waiting[c]:
                heapq.heappush(free, position[c])
    seen = set(order)
    return order + [w for w in ids if w not in seen]


def _baseline(plan: Plan, start: float) -> dict[str, tuple[float, float]]:
    """The plan file's schedule: (start, end) of each workstream, as early as its dependencies
    and activation waits allow, each taking its max days."""
    deps = {
        w.id: [
            d
            for d in dict.fromkeys([*w.depends_on, *_activation_deps(plan, w.orchestrator)])
            if d != w.id
        ]
        for w in plan.workstreams.values()
    }
    sched: dict[str, tuple[float, float]] = {}
    for w in _topological(list(plan.workstreams), deps):
        begin = max([start, *(sched[d][1] for d in deps[w])])
        sched[w] = (begin, begin + plan.workstreams[w].max_days * DAY)
    return sched


def _projected(
    plan: Plan, state: State, now: float, start: float
) -> dict[str, tuple[float, float]]:
    """(earliest start, projected end) of each workstream, by the engine's projection rule: done
    work ends when it completed, started work needs the rest of its max days, other work all of
    it, none of it before now or before what it waits for. The latest end is the engine's
    ``projection(...).projected_end`` (a test holds the two together)."""
    ids = list(plan.workstreams)
    deps = {w: _all_deps(state, plan, w) for w in ids}
    sched: dict[str, tuple[float, float]] = {}
    for w in _topological(ids, deps):
        ws = state.workstreams[w]
        earliest = max([now, *(sched[d][1] for d in deps[w] if d in sched)])
        max_days = estimate_days(state, plan, w)[1]
        if ws.status == "complete":
            end = ws.completion_time if ws.completion_time is not None else now
        elif ws.status == "deferred":
            end = start
        elif ws.started_at is not None:
            end = earliest + max_days * (1.0 - ws.progress) * DAY
        else:
            end = earliest + max_days * DAY
        sched[w] = (earliest, end)
    return sched


# --- state helpers ------------------------------------------------------------------------------


def _blocker_text(ws: WorkstreamState) -> str | None:
    """The workstream's open blocker: the reported text, or the bare fact of being blocked (as
    the engine ages them)."""
    if ws.status in FINAL:
        return None
    if ws.blocker:
        return ws.blocker
    if ws.status == "blocked":
        return "blocked (no reason given)"
    return None


def _open_blockers(plan: Plan, state: State) -> list[tuple[str, str | None, str, float | None]]:
    """(orchestrator, workstream or None, text, since) of every open blocker: per orchestrator in
    plan order, its own (oldest first), then its workstreams' in plan order."""
    out: list[tuple[str, str | None, str, float | None]] = []
    for o in plan.orchestrators:
        own = state.orchestrators[o].blockers
        out.extend((o, None, text, own[text]) for text in sorted(own, key=lambda t: (own[t], t)))
        for w in plan.workstreams_of(o):
            ws = state.workstreams[w.id]
            text = _blocker_text(ws)
            if text is not None:
                out.append((o, w.id, text, ws.blocker_since))
    return out


def _weight(state: State, plan: Plan, ws_id: str) -> float:
    if state.workstreams[ws_id].status == "deferred":
        return 0.0
    return float(estimate_days(state, plan, ws_id)[1])


def _done_fraction(plan: Plan, state: State, *, in_progress: bool) -> float:
    """The fraction of the estimate complete; with ``in_progress``, started work counts for its
    reported progress."""
    total = done = 0.0
    for w, ws in state.workstreams.items():
        weight = _weight(state, plan, w)
        total += weight
        if ws.status == "complete":
            done += weight
        elif in_progress and ws.started_at is not None:
            done += weight * ws.progress
    return done / total if total else 0.0


def _actual_days(ws: WorkstreamState) -> float | None:
    """Days from start to completion (to its last report while unfinished), halted time
    excluded."""
    if ws.started_at is None:
        return None
    finish = ws.completion_time if ws.status == "complete" else ws.updated_at
    if finish is None:
        return None
    return max(0.0, finish - ws.started_at - ws.paused_s) / DAY


def _against(ws: WorkstreamState, actual: float | None, lo: int, hi: int) -> str:
    if ws.status == "deferred":
        return "deferred"
    if ws.status != "complete" or actual is None:
        return f"unfinished ({ws.status.replace('_', ' ')})"
    if actual > hi:
        return f"over by {_pct(actual / hi - 1)}"
    if actual < lo:
        return "under"
    return "within"


def _ws_label(plan: Plan, state: State, ws_id: str) -> str:
    ws = state.workstreams[ws_id]
    status = ws.status
    if status == "in_progress":
        return f"in progress {_pct(ws.progress)}"
    if status == "blocked":
        return f"blocked ({ws.blocker or 'no reason given'})"
    if status == "halted":
        owner = state.orchestrators[plan.workstreams[ws_id].orchestrator]
        holds = list(dict.fromkeys([*ws.holds, *owner.holds]))
        at = f" at {_pct(ws.progress)}" if ws.started_at is not None else ""
        return f"halted{at} ({_describe_holds(holds)})"
    if status == "not_started":
        waits = [
            d
            for d in effective_deps(state, plan, ws_id)
            if state.workstreams[d].status != "complete"
        ]
        why = []
        if waits:
            why.append(f"waits for {', '.join(waits)}")
        if ws.blocker:
            why.append(f"blocker: {ws.blocker}")
        return f"not started ({'; '.join(why)})" if why else "not started"
    return status  # ready, complete, deferred


def _orch_label(plan: Plan, state: State, orchestrator: str, fmt: _Fmt) -> str:
    orch = state.orchestrators[orchestrator]
    spec = plan.orchestrators[orchestrator]
    if orch.activated_at is None:
        waits = [f"gate {g}" for g in spec.after_gates if state.gates[g].state != "passed"]
        waits += [w for w in spec.after_workstreams if state.workstreams[w].status not in FINAL]
        return f"pending (waits for {', '.join(waits)})" if waits else "pending"
    own = plan.workstreams_of(orchestrator)
    if all(state.workstreams[w.id].status in FINAL for w in own):
        return "finished"
    if orch.holds:
        return f"halted ({_describe_holds(orch.holds)})"
    if not is_active(plan, state, orchestrator):
        return "halted (all its open work)"
    return f"active since {fmt.time(orch.activated_at)}"


def _describe_holds(holds: Iterable[str]) -> str:
    parts = [f"gate {h[5:]} failed" if h.startswith("gate:") else "operator halt" for h in holds]
    return "; ".join(parts) or "not held"


def _estimate(state: State, plan: Plan, ws_id: str) -> str:
    return _days_range(*estimate_days(state, plan, ws_id))


def _days_range(lo: int, hi: int) -> str:
    return f"{lo} d" if lo == hi else f"{lo}-{hi} d"


def _completed_cell(ws: WorkstreamState, fmt: _Fmt) -> str:
    if ws.status == "complete":
        return fmt.time_or_dash(ws.completion_time)
    if ws.eta is not None and ws.status not in FINAL:
        return f"eta {fmt.time(ws.eta)}"
    return "-"


def _resolved_cell(e: EscalationRecord, fmt: _Fmt) -> str:
    if e.resolved_at is None:
        return "-"
    return f"{fmt.time(e.resolved_at)} (after {_duration(e.resolved_at - e.raised_at)})"


def _about(e: EscalationRecord) -> str:
    """The issue, prefixed with the affected workstreams unless it names them already."""
    named = [w for w in e.affected_workstreams if w not in e.issue]
    return f"{', '.join(named)}: {e.issue}" if named else e.issue


def _id_number(ident: str) -> int:
    """The number of an id like ``E-12`` (so E-10 sorts after E-9); 0 if it has none."""
    m = re.search(r"(\d+)$", ident)
    return int(m.group(1)) if m else 0


def _sorted_escalations(state: State) -> list[EscalationRecord]:
    return sorted(state.escalations.values(), key=lambda e: (e.raised_at, _id_number(e.id), e.id))


def _sorted_decisions(state: State) -> list[DecisionRecord]:
    return sorted(state.decisions.values(), key=lambda d: (d.created_at, _id_number(d.id), d.id))


def _record_for(
    decisions: Sequence[DecisionRecord], orchestrator: str, text: str
) -> DecisionRecord | None:
    """The latest decision record the engine opened for an orchestrator's decisions_needed
    entry."""
    found = None
    for d in decisions:
        if d.kind == "decision_needed" and d.source == orchestrator and d.title == text:
            found = d
    return found


def _within(t: float | None, begin: float, end: float) -> bool:
    return t is not None and begin <= t < end


# --- formatting ---------------------------------------------------------------------------------


class _Fmt:
    """Times in one zone."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def _dt(self, t: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(t, self.tz)

    def time(self, t: float) -> str:
        """``2026-03-06 17:00 CET``."""
        return self._dt(t).strftime("%Y-%m-%d %H:%M %Z")

    def time_or_dash(self, t: float | None) -> str:
        return "-" if t is None else self.time(t)

    def mermaid(self, t: float) -> str:
        """Local time as the Gantt chart's dateFormat (YYYY-MM-DD HH:mm) reads it."""
        return self._dt(t).strftime("%Y-%m-%d %H:%M")

    def period(self, begin: float) -> str:
        """The working days of the 7 days from ``begin``: ``Mon 2026-01-12 to Fri 2026-01-16`` for a
        week starting on a Monday (first and last weekday among its 7 local dates)."""
        first = self._dt(begin).date()
        days = [first + datetime.timedelta(days=n) for n in range(7)]
        work = [d for d in days if d.weekday() < 5] or days
        return f"{_day(work[0])} to {_day(work[-1])}"


#: Weekday names of our own: strftime's %a follows the process locale, and reports must not.
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _day(d: datetime.date) -> str:
    return f"{_WEEKDAYS[d.weekday()]} {d.isoformat()}"


def _duration(seconds: float) -> str:
    """``2d 4h``, ``5h 30m``, ``45m``: the two largest units, to the minute (rounded down)."""
    sign = "-" if seconds < 0 else ""
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        parts = [f"{days}d"] + ([f"{hours}h"] if hours else [])
    elif hours:
        parts = [f"{hours}h"] + ([f"{mins}m"] if mins else [])
    else:
        parts = [f"{mins}m"]
    return sign + " ".join(parts)


def _pct(fraction: float) -> str:
    return f"{math.floor(fraction * 100 + 0.5)}%"


def _num(value: float) -> str:
    """A number for a chart or a sentence: at most one decimal, none when whole."""
    rounded = round(float(value), 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


def _slip(days: float) -> str:
    if abs(days) < 0.05:
        return "on time"
    return f"{_num(abs(days))} days {'late' if days > 0 else 'early'}"


def _inline(text: str) -> str:
    """One line of Markdown text: newlines folded into spaces."""
    return " ".join(text.split())


def _cell(text: str) -> str:
    """A table cell: one line, with pipes escaped so they do not split the cell."""
    return _inline(text).replace("|", "\\|") or "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()/&+>-]+")


def _mermaid_text(text: str) -> str:
    """Text for a Mermaid title, section or task name: characters its syntax gives meaning to
    (``:`` ends a task name, ``#`` and ``;`` start entities and comments) become a space."""
    return " ".join(_MERMAID_UNSAFE.sub(" ", text).split()) or "-"


def _mermaid_id(ident: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", ident)
