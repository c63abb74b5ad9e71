"""``pixelsd demo``: the whole product in one command.

The embedded plan, a daemon and four ``pixels-orchestrator run`` processes over real ipc sockets in
a state dir, each orchestrator running simulated agents (orchestrators/simagent.py) on the daemon's
scaled clock, so the 12 weeks pass in about two and a half minutes. The seed picks a scenario that
exercises the rules: one workstream stalls (~30 simulated hours), one overruns (to ~170 % of its
estimate), one reports a blocker that ages past 24 h, and gate 1 fails on a check until the demo,
acting as the operator, fixes it (a simulated day later) and asks for ``gate check``.

    pixelsd demo [--seed N] [--state-dir DIR] [--time-scale N] [--no-live] [--timeout SECONDS]

While it runs it shows a table of orchestrators, workstreams, gates and recent events (plain lines
with --no-live, or when stdout is not a terminal), read from the daemon with the same control
requests as pixelsctl, which can query the same state dir meanwhile. It ends when every workstream
is complete, every gate passed, and the daemon has written week_12_status.md and
completion_report.md; then it stops the orchestrators and the daemon and prints a summary.

Exit status: 0 done; 1 a condition was not met by the deadline, or a process died (the message says
which); 2 bad usage; 130 interrupted (Ctrl-C: everything is stopped, the state dir kept).

Time model of the scenario (``pick_scenario``): the plan's estimates are working days; the
simulated agents work at an even five working days per calendar week (days x 7/5 calendar days,
so a weekend is not a 48-hour stall). Durations are drawn between each workstream's min and max
days, and a draw is kept only when the projected end falls in weeks 10-12 with a margin before the
last Friday report. Pure (``pick_scenario``, ``project_end``, ``demo_plan_text``, the renderers);
the processes and the loop are the shell around them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from pixels_daemon.paths import PathError, StatePaths
from pixels_daemon.plan import Plan, parse_plan
from pixels_daemon.reports import week_of
from protocol.views import EscalationView, GateView, StatusView, WorkstreamView

DAY = 86_400.0
HOUR = 3_600.0
WEEK = 7 * DAY

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: 12 weeks (84 days) in ~145 real seconds: one simulated day is 1.7 s, a simulated hour 72 ms,
#: still far coarser than the processes' own latencies (a report reaches the daemon in ~0.2 s).
DEFAULT_TIME_SCALE = 50_000.0
#: The hard deadline at the default scale: the run needs ~2.5 minutes, CI machines can be slow.
DEFAULT_TIMEOUT_S = 300.0
#: How often the table is refreshed (real seconds): the issue's "~2x per real second".
REFRESH_S = 0.5
#: Failing control requests are tolerated this long (a loaded machine) before the demo gives up.
CTL_GRACE_S = 15.0
#: How long the daemon gets to answer its first ping (a cold start imports everything).
START_TIMEOUT_S = 30.0
#: SIGTERM to exit, per process, before SIGKILL: an orchestrator stops its agents (5 s grace each
#: at worst) and delivers its outbox.
STOP_TIMEOUT_S = 15.0

#: The gate the scenario breaks, the check that breaks it, and the file that fixes it (in the
#: plan's folder, where gate checks run).
BROKEN_GATE = "gate-1"
FIX_FILE = "gate-1.fixed"
CHECK_NAME = "m0-verified"
#: Simulated time between seeing the gate fail and fixing it: an operator's working day.
OPERATOR_DELAY_S = DAY

#: The scenario's events: long enough to cross the engine's 24 h thresholds by a few hours
#: (several rule checks), short enough to leave the schedule intact.
STALL_HOURS = 30.0
BLOCKER_HOURS = 30.0
#: The overrun: the work takes 170 % of its (max) estimate; the engine flags it past 150 %.
OVERRUN = 1.7
#: Working days to calendar days: five working days per calendar week.
CALENDAR_PER_WORKING_DAY = 7 / 5

#: The projected end must fall in this window (days after the start) for a draw to be kept:
#: from week 10's first day to week 12's Wednesday, two days before its Friday report.
END_WINDOW_DAYS = (9 * 7.0, 11 * 7.0 + 2.0)
#: What the projection adds for the processes: a start reaches an agent ~0.2 s after the
#: dependency completed (~3 simulated hours at the default scale), and the operator notices a
#: failed gate within a refresh.
START_LATENCY_DAYS = 0.15
GATE_FIX_DAYS = OPERATOR_DELAY_S / DAY + 0.5
MAX_DRAWS = 10_000

#: Metrics the Model orchestrator's WS-05 reports: the m1-inference gate's targets, met.
M1_METRICS = {
    "inference_time_s": (2.2, 2.8),
    "batch_images_per_min": (16.0, 20.0),
    "memory_gb": (60.0, 90.0),
}
METRICS_WORKSTREAM = "WS-05"

#: Escalation kinds the run must have exercised (any one of a tuple will do).
REQUIRED_KINDS: tuple[tuple[str, ...], ...] = (
    ("ws_stalled", "orchestrator_stalled"),
    ("overrun",),
    ("blocker_aged",),
    ("gate_failed",),
)

ORCHESTRATORS = ("foundation", "model", "interface", "integration")
LAST_WEEK_REPORT = "week_12_status.md"
COMPLETION_REPORT = "completion_report.md"


class DemoError(Exception):
    """Ends the demo with ``pixelsd demo: error: MESSAGE`` and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the demo."""


# --- the scenario (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentPlan:
    """What one workstream's simulated agent does (simagent's scenario entry)."""

    days: float  # calendar days of work before any overrun
    overrun: float = 1.0
    stall_hours: float = 0.0
    blocker_hours: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    blocker_text: str = ""

    @property
    def calendar_days(self) -> float:
        """How long the workstream takes, pauses included."""
        return self.days * self.overrun + (self.stall_hours + self.blocker_hours) / 24.0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"days": self.days}
        if self.overrun != 1.0:
            doc["overrun"] = self.overrun
        if self.stall_hours:
            doc["stall_hours"] = self.stall_hours
        if self.blocker_hours:
            doc["blocker_hours"] = self.blocker_hours
            doc["blocker_text"] = self.blocker_text
        if self.metrics:
            doc["metrics"] = dict(self.metrics)
        return doc


@dataclass(frozen=True)
class Scenario:
    """A seed's scenario: every agent's plan, the three workstreams that misbehave, and where the
    projection puts the end (days after the start)."""

    seed: int
    agents: dict[str, AgentPlan]
    stall: str
    overrun: str
    blocker: str
    projected_end_days: float

    def to_json(self) -> dict[str, Any]:
        return {ws: agent.to_json() for ws, agent in self.agents.items()}


def project_end(
    plan: Plan, durations: Mapping[str, float], gate_delays: Mapping[str, float]
) -> float:
    """When the last workstream ends (days after the start) if each takes ``durations[ws]``
    calendar days, starts as soon as its orchestrator is active and its dependencies are complete
    (plus START_LATENCY_DAYS), and a gate passes ``gate_delays.get(gate, 0)`` days after its
    workstreams are complete. Orchestrators activate as the engine says: after their gates and
    after_workstreams."""
    finish: dict[str, float] = {}
    passed: dict[str, float] = {}
    pending = list(plan.workstreams.values())
    while pending:
        progressed = False
        for ws in list(pending):
            orch = plan.orchestrators[ws.orchestrator]
            waits = [*orch.after_workstreams, *ws.depends_on]
            if any(g not in passed for g in orch.after_gates) or any(
                d not in finish for d in waits
            ):
                continue
            begin = max([0.0, *(passed[g] for g in orch.after_gates), *(finish[d] for d in waits)])
            finish[ws.id] = begin + START_LATENCY_DAYS + durations[ws.id]
            pending.remove(ws)
            progressed = True
        for gate in plan.gates.values():
            if gate.id not in passed and all(w in finish for w in gate.workstreams):
                done = max((finish[w] for w in gate.workstreams), default=0.0)
                passed[gate.id] = done + gate_delays.get(gate.id, 0.0)
                progressed = True
        if not progressed:
            raise ValueError(
                "the plan cannot be scheduled (an orchestrator waits on a gate that never passes)"
            )
    return max(finish.values(), default=0.0)


def pick_scenario(plan: Plan, seed: int) -> Scenario:
    """The scenario for ``seed``: the same seed always gives the same scenario (one
    ``random.Random(seed)``, drawn in plan order). See the module doc for the time model."""
    rng = random.Random(seed)
    ids = list(plan.workstreams)
    for _ in range(MAX_DRAWS):
        working = {
            w: round(rng.uniform(ws.min_days, ws.max_days), 1) for w, ws in plan.workstreams.items()
        }
        # The first workstream starts the run; the others may misbehave, three different ones.
        stall, overrun, blocker = rng.sample(ids[1:], 3)
        agents: dict[str, AgentPlan] = {}
        for w, ws in plan.workstreams.items():
            if w == overrun:
                # Its estimate in calendar days, overrun: 170 % of the max, as the engine counts.
                agents[w] = AgentPlan(days=float(ws.max_days), overrun=OVERRUN)
            elif w in (stall, blocker):
                # Quick otherwise, so the pause alone does not make it an overrun too.
                agents[w] = AgentPlan(
                    days=round(ws.min_days * CALENDAR_PER_WORKING_DAY, 2),
                    stall_hours=STALL_HOURS if w == stall else 0.0,
                    blocker_hours=BLOCKER_HOURS if w == blocker else 0.0,
                    blocker_text=f"{w}: waiting for access to the shared model storage",
                )
            else:
                agents[w] = AgentPlan(days=round(working[w] * CALENDAR_PER_WORKING_DAY, 2))
        if METRICS_WORKSTREAM in agents:
            metrics = {k: round(rng.uniform(lo, hi), 1) for k, (lo, hi) in M1_METRICS.items()}
            old = agents[METRICS_WORKSTREAM]
            agents[METRICS_WORKSTREAM] = AgentPlan(
                days=old.days,
                overrun=old.overrun,
                stall_hours=old.stall_hours,
                blocker_hours=old.blocker_hours,
                blocker_text=old.blocker_text,
                metrics=metrics,
            )
        durations = {w: a.calendar_days for w, a in agents.items()}
        end = project_end(plan, durations, {BROKEN_GATE: GATE_FIX_DAYS})
        if END_WINDOW_DAYS[0] <= end <= END_WINDOW_DAYS[1]:
            return Scenario(
                seed=seed,
                agents=agents,
                stall=stall,
                overrun=overrun,
                blocker=blocker,
                projected_end_days=round(end, 2),
            )
    raise ValueError(f"no scenario of seed {seed} ends in weeks 10-12 (after {MAX_DRAWS} draws)")


# --- the demo plan (pure) -----------------------------------------------------------------------


def embedded_plan_text() -> str:
    return resources.files("pixels_daemon.plans").joinpath("dgx_pixels.toml").read_text()


def demo_plan_text(text: str) -> str:
    """The plan ``text`` with a check on gate 1 that fails until FIX_FILE exists in the plan's
    folder (where the daemon runs gate checks)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == f'id = "{BROKEN_GATE}"' and i > 0 and "[[gates]]" in "".join(lines[:i]):
            check = (
                f'checks = [ {{ name = "{CHECK_NAME}", command = "test -f {FIX_FILE}", '
                "timeout_s = 10 } ]\n"
            )
            comment = (
                f"# pixelsd demo: {BROKEN_GATE} fails until {FIX_FILE} exists beside this file\n"
            )
            return "".join([*lines[: i + 1], comment, check, *lines[i + 1 :]])
    raise ValueError(f"the plan has no [[gates]] entry with id = {BROKEN_GATE!r}")


def agent_template(seed: int) -> str:
    """The orchestrators' --agent: the simulated agent on the daemon's clock, with the scenario."""
    return (
        "{python} -m orchestrators.simagent --workstream {workstream} --days {days} "
        "--output {output} --clock {state_dir}/clock.json "
        f"--seed {seed} --scenario {{state_dir}}/demo/scenario.json"
    )


def next_monday(now: float) -> datetime.datetime:
    """09:00 UTC on the first Monday after ``now``: week 1 of the plan starts then, so the
    Friday 17:00 report closes each simulated week."""
    day = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
    ahead = 7 - day.weekday()  # Monday is 0: a Monday today gives next week's
    monday = day + datetime.timedelta(days=ahead)
    return datetime.datetime(monday.year, monday.month, monday.day, 9, tzinfo=datetime.UTC)


# --- what the demo sees (pure) ------------------------------------------------------------------


@dataclass
class Snapshot:
    """One look at the daemon: the status view, the gates, every escalation, the reports."""

    status: StatusView
    gates: list[GateView]
    escalations: list[EscalationView]
    reports: list[str]

    @property
    def now(self) -> float:
        return self.status.now

    def gate(self, gate_id: str) -> GateView | None:
        return next((g for g in self.gates if g.id == gate_id), None)


def sim_time(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%a %Y-%m-%d %H:%M")


def kinds_seen(escalations: Sequence[EscalationView]) -> dict[str, int]:
    """Escalations by kind (the daemon's rule, else the orchestrator's type), in first-seen
    order."""
    counts: dict[str, int] = {}
    for e in sorted(escalations, key=lambda e: (e.raised_at, e.id)):
        kind = e.kind or e.type
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def missing_kinds(escalations: Sequence[EscalationView]) -> list[str]:
    seen = kinds_seen(escalations)
    return [" or ".join(alts) for alts in REQUIRED_KINDS if not any(k in seen for k in alts)]


def unmet(snapshot: Snapshot | None) -> list[str]:
    """The end conditions not met yet, one phrase each (empty: done)."""
    if snapshot is None:
        return ["the daemon never answered"]
    out = []
    open_ws = [w.id for w in snapshot.status.workstreams if w.status != "complete"]
    if open_ws:
        out.append(f"workstreams not complete: {', '.join(open_ws)}")
    open_gates = [g.id for g in snapshot.gates if g.state != "passed"]
    if open_gates:
        out.append(f"gates not passed: {', '.join(open_gates)}")
    for name in (LAST_WEEK_REPORT, COMPLETION_REPORT):
        if name not in snapshot.reports:
            out.append(f"no reports/{name} yet")
    missing = missing_kinds(snapshot.escalations)
    if missing:
        out.append(f"escalations never raised: {', '.join(missing)}")
    return out


def changes(old: Snapshot | None, new: Snapshot) -> list[str]:
    """What happened between two looks, one line each (workstreams, gates, escalations,
    reports), in that order. Workstreams that changed the same way at once (a failed gate halts
    a dozen) share one line."""
    lines: list[str] = []
    before = {w.id: w for w in old.status.workstreams} if old else {}
    moved: dict[str, list[WorkstreamView]] = {}
    for w in new.status.workstreams:
        prev = before.get(w.id)
        if prev is not None and (prev.status, prev.holds) == (w.status, w.holds):
            continue
        if prev is None and w.status == "not_started" and not w.holds:
            continue
        what = w.status.replace("_", " ")
        if w.status == "halted" and w.holds:
            what += f" ({', '.join(w.holds)})"
        if w.status == "blocked" and w.blocker:
            what += f": {w.blocker}"
        moved.setdefault(what, []).append(w)
    for what, group in moved.items():
        who = f"{group[0].id} {group[0].name}" if len(group) == 1 else _ids(group)
        lines.append(f"{who}: {what}")
    gates_before = {g.id: g for g in old.gates} if old else {}
    for g in new.gates:
        prev_gate = gates_before.get(g.id)
        if g.state in (prev_gate.state if prev_gate else "pending", "checking"):
            continue
        detail = f": {'; '.join(g.failures)}" if g.state == "failed" and g.failures else ""
        lines.append(f"gate {g.id} {g.state}{detail}")
    esc_before = {e.id: e for e in old.escalations} if old else {}
    for e in sorted(new.escalations, key=lambda e: (e.raised_at, e.id)):
        prev_esc = esc_before.get(e.id)
        if prev_esc is None:
            lines.append(f"escalation {e.id} {e.kind or e.type} ({e.severity}): {e.issue}")
            if e.state == "resolved":
                lines.append(f"escalation {e.id} resolved")
        elif prev_esc.state != e.state and e.state == "resolved":
            lines.append(f"escalation {e.id} resolved")
        elif prev_esc.severity != e.severity:
            lines.append(f"escalation {e.id} {e.kind or e.type} now {e.severity}")
    seen = set(old.reports) if old else set()
    lines.extend(f"report written: reports/{r}" for r in new.reports if r not in seen)
    return lines


def _ids(group: Sequence[WorkstreamView]) -> str:
    """A few workstreams by id; many as a count with the first and last (in plan order)."""
    if len(group) < 4:
        return ", ".join(w.id for w in group)
    return f"{len(group)} workstreams ({group[0].id}..{group[-1].id})"


def _bar(progress: float, width: int = 10) -> str:
    filled = min(width, max(0, math.floor(progress * width + 1e-9)))
    return "#" * filled + "." * (width - filled)


def render_table(
    snapshot: Snapshot, start: float, weeks: int, header: str, recent: Sequence[str]
) -> str:
    """The live view: a header, orchestrators, workstreams, gates, escalations, recent events."""
    from pixels_daemon import ctl_format as fmt

    now = snapshot.now
    lines = [
        header,
        f"sim {sim_time(now)} UTC · week {week_of(now, start)} of {weeks} · "
        f"{snapshot.status.phase}",
        "",
    ]
    lines.append(
        fmt.table(
            ["ORCHESTRATOR", "CONNECTION", "STATUS", "WORKSTREAMS"],
            [
                [o.name, o.connection, o.status, " ".join(o.workstreams)]
                for o in snapshot.status.orchestrators
            ],
        )
    )
    lines.append("")
    lines.append(
        fmt.table(
            ["WS", "NAME", "OWNER", "STATUS", "PROGRESS", "NOTE"],
            [_ws_row(w) for w in snapshot.status.workstreams],
        )
    )
    lines.append("")
    lines.append("GATES  " + "  ".join(f"{g.id} {g.state}" for g in snapshot.gates))
    counts = kinds_seen(snapshot.escalations)
    open_count = sum(1 for e in snapshot.escalations if e.state != "resolved")
    summary = ", ".join(f"{k} {n}" for k, n in counts.items()) or "none yet"
    lines.append(f"ESCALATIONS  {open_count} open; raised so far: {summary}")
    lines.append("")
    lines.extend(recent[-6:])
    return "\n".join(lines)


def _ws_row(w: WorkstreamView) -> list[str]:
    note = ""
    if w.holds:
        note = "held: " + ", ".join(w.holds)
    elif w.blocker and w.status != "complete":
        note = w.blocker
    name = w.name if len(w.name) <= 28 else w.name[:27] + "…"
    return [
        w.id,
        name,
        w.orchestrator,
        w.status,
        f"{_bar(w.progress)} {w.progress * 100:3.0f}%",
        note[:50],
    ]


# --- the shell: processes, the loop, the operator ----------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Options:
    seed: int
    state_dir: Path | None
    time_scale: float
    live: bool
    timeout_s: float


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelsd demo",
        description="Run the whole product on the embedded plan: a daemon and four orchestrators "
        "with simulated agents, 12 simulated weeks in about two and a half minutes.",
        epilog="Exit status: 0 done; 1 a condition was not met in time or a process died; "
        "2 bad usage; 130 interrupted.",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=1,
        metavar="N",
        help="picks the scenario; same seed, same run (default 1)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the run's state, reports, logs and sockets in DIR (default: a new "
        "/tmp/pixels-demo-* directory, kept and printed)",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive,
        default=DEFAULT_TIME_SCALE,
        metavar="N",
        help=f"one real second counts as N simulated seconds (default {DEFAULT_TIME_SCALE:g}: "
        "12 weeks in ~145 s)",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="print plain lines instead of redrawing a table (automatic when stdout is not a "
        "terminal)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        help=f"give up (exit 1, naming what was not done) after this many real seconds (default "
        f"{DEFAULT_TIMEOUT_S:g}, or twice the expected run time at a slower --time-scale)",
    )
    return parser


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (a whole number, 0 or more)")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def expected_seconds(plan: Plan, time_scale: float) -> float:
    """Real seconds until the last week's Friday 17:00 report at ``time_scale``."""
    return ((plan.weeks - 1) * WEEK + 4 * DAY + 8 * HOUR) / time_scale


def run_demo(argv: Sequence[str]) -> int:
    """``pixelsd demo``'s entry point; returns the exit status."""
    args = _parser().parse_args(list(argv))
    plan_text = demo_plan_text(embedded_plan_text())
    plan = parse_plan(plan_text, "demo plan")
    expected = expected_seconds(plan, args.time_scale)
    timeout = args.timeout or max(DEFAULT_TIMEOUT_S, 2 * expected + 30)
    opts = Options(
        seed=args.seed,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        time_scale=args.time_scale,
        live=not args.no_live and sys.stdout.isatty(),
        timeout_s=timeout,
    )
    try:
        return Demo(opts, plan, plan_text, expected).run()
    except DemoError as exc:
        print(f"pixelsd demo: error: {exc.message}", file=sys.stderr)
        return exc.exit_code


class Demo:
    """One run: prepare the state dir, start the processes, watch and act, stop, summarise."""

    def __init__(self, opts: Options, plan: Plan, plan_text: str, expected_s: float) -> None:
        self.opts = opts
        self.plan = plan
        self.plan_text = plan_text
        self.expected_s = expected_s
        self.scenario = pick_scenario(plan, opts.seed)
        self.children: list[Child] = []
        self.daemon: Child | None = None
        self.recent: list[str] = []
        self.last: Snapshot | None = None
        self.failed_seen_at: float | None = None
        self.fixed = False
        self.started = time.monotonic()
        self.sim_start = next_monday(time.time())
        self.dir = Path()  # set by prepare()
        self.paths = StatePaths.under(".")

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> int:
        self.prepare()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            try:
                self.start_processes()
                self.watch()
            except Interrupted:
                if self.opts.live:
                    print(flush=True)  # below the table, not on its last line
                self.stop_processes()
                self.say(f"interrupted; everything stopped. The state is kept in {self.dir}")
                return EXIT_INTERRUPTED
            except DemoError as exc:
                if self.opts.live:
                    print(flush=True)
                self.stop_processes()
                raise DemoError(f"{exc.message}; the state is kept in {self.dir}") from None
            self.stop_processes()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.summary()
        return EXIT_OK

    def prepare(self) -> None:
        """Make the state dir and write the demo's plan and scenario into DIR/demo/."""
        if self.opts.state_dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="pixels-demo-", dir="/tmp"))
        else:
            self.dir = self.opts.state_dir.absolute()
            if (self.dir / "pixels.db").exists():
                raise DemoError(
                    f"{self.dir} holds an earlier run (pixels.db); give a new or empty directory",
                    EXIT_USAGE,
                )
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DemoError(f"cannot create {self.dir}: {exc.strerror}", EXIT_USAGE) from None
        self.paths = StatePaths.under(self.dir)
        try:
            self.paths.ctl_endpoint  # noqa: B018 - checks the ipc path length
            self.paths.bus_endpoint  # noqa: B018
        except PathError as exc:
            raise DemoError(str(exc), EXIT_USAGE) from None
        demo = self.dir / "demo"
        for folder in (demo, self.paths.logs):
            folder.mkdir(parents=True, exist_ok=True)
        (demo / "plan.toml").write_text(self.plan_text)
        (demo / "scenario.json").write_text(json.dumps(self.scenario.to_json(), indent=2) + "\n")

    def start_processes(self) -> None:
        py = sys.executable
        plan = str(self.dir / "demo" / "plan.toml")
        self.say(
            f"seed {self.opts.seed}: {self.scenario.stall} stalls, {self.scenario.overrun} "
            f"overruns, {self.scenario.blocker} reports a blocker, {BROKEN_GATE} fails its "
            f"{CHECK_NAME} check; 12 weeks at time scale {self.opts.time_scale:g} "
            f"(~{self.expected_s:.0f} s)"
        )
        self.say(f"state dir {self.dir}; meanwhile try: pixelsctl --state-dir {self.dir} status")
        daemon_argv = [
            py, "-m", "pixels_daemon.cli", "run",
            "--state-dir", str(self.dir),
            "--plan", plan,
            "--time-scale", f"{self.opts.time_scale:g}",
            "--sim-start", self.sim_start.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "--log-format", "json",
            "--launcher", "none",  # the demo starts its four runners itself, below
        ]  # fmt: skip
        self.daemon = self._spawn("pixelsd", daemon_argv)
        self._wait_ready()
        template = agent_template(self.opts.seed)
        for name in ORCHESTRATORS:
            argv = [
                py, "-m", "orchestrators.cli", "run", name,
                "--state-dir", str(self.dir),
                "--plan", plan,
                "--agent", template,
            ]  # fmt: skip
            self._spawn(name, argv)

    def _spawn(self, name: str, argv: list[str]) -> Child:
        log = self.paths.logs / f"{name}.log"
        with log.open("ab") as out:
            # Its own session: the Ctrl-C typed at the demo reaches the demo alone, which then
            # stops everything in order (orchestrators first, so their last reports are acked).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def _wait_ready(self) -> None:
        from pixels_daemon.ctl import CtlError

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_children()
            if self.paths.ctl_socket.exists():
                with contextlib.suppress(CtlError):
                    self.ctl("ping", timeout_s=0.5)
                    return
            time.sleep(0.05)
        raise DemoError(
            f"pixelsd did not answer within {START_TIMEOUT_S:g} s; see {self._log('pixelsd')}"
        )

    def ctl(self, command: str, timeout_s: float = 2.0, **args: Any) -> Any:
        from pixels_daemon.ctl import call

        return call(self.paths.ctl_endpoint, command, args, timeout_s)

    def look(self) -> Snapshot:
        status = msgspec.convert(self.ctl("status"), StatusView)
        gates = msgspec.convert(self.ctl("gates"), list[GateView])
        escalations = msgspec.convert(self.ctl("escalations", all=True), list[EscalationView])
        try:
            reports = sorted(p.name for p in self.paths.reports.iterdir() if p.suffix == ".md")
        except FileNotFoundError:
            reports = []
        return Snapshot(status=status, gates=gates, escalations=escalations, reports=reports)

    def watch(self) -> None:
        """Look ~2x per second until done, acting as the operator; fail at the deadline."""
        from pixels_daemon.ctl import CtlError

        deadline = self.started + self.opts.timeout_s
        failing_since: float | None = None
        while True:
            self._check_children()
            try:
                snapshot = self.look()
                failing_since = None
            except CtlError as exc:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > CTL_GRACE_S:
                    raise DemoError(f"the daemon stopped answering ({exc.message})") from None
                snapshot = None
            if snapshot is not None:
                self.show(snapshot)
                self.operate(snapshot)
                if not unmet(snapshot):
                    return
            if time.monotonic() > deadline:
                what = "; ".join(unmet(self.last))
                raise DemoError(f"not done after {self.opts.timeout_s:g} s: {what}")
            time.sleep(REFRESH_S)

    def operate(self, snapshot: Snapshot) -> None:
        """The operator: a day after the broken gate failed, fix it and ask for a check."""
        gate = snapshot.gate(BROKEN_GATE)
        if gate is None or self.fixed or gate.state != "failed":
            return
        if self.failed_seen_at is None:
            self.failed_seen_at = snapshot.now
        if snapshot.now - self.failed_seen_at < OPERATOR_DELAY_S:
            return
        (self.dir / "demo" / FIX_FILE).write_text("fixed by the pixelsd demo's operator\n")
        self.fixed = True
        self.event(
            f"operator: created demo/{FIX_FILE}, then `pixelsctl gate check {BROKEN_GATE}`",
            snapshot.now,
        )
        from pixels_daemon.ctl import CtlError

        try:
            self.ctl("gate_check", id=BROKEN_GATE)
        except CtlError as exc:
            self.event(f"operator: gate check refused: {exc.message}", snapshot.now)
            self.fixed = False

    # --- output --------------------------------------------------------------------------------

    def show(self, snapshot: Snapshot) -> None:
        for line in changes(self.last, snapshot):
            self.event(line, snapshot.now)
        self.last = snapshot
        if self.opts.live:
            elapsed = time.monotonic() - self.started
            header = (
                f"pixelsd demo · seed {self.opts.seed} · real {elapsed:.0f} s of "
                f"~{self.expected_s:.0f} · Ctrl-C stops it\n"
                f"state {self.dir} · meanwhile: pixelsctl --state-dir {self.dir} status"
            )
            table = render_table(
                snapshot, self.sim_start.timestamp(), self.plan.weeks, header, self.recent
            )
            # Home, each line cleared to its end, then the rest of the screen: no flicker.
            out = "\x1b[H" + "\n".join(f"{line}\x1b[K" for line in table.split("\n")) + "\x1b[J"
            sys.stdout.write(out)
            sys.stdout.flush()

    def event(self, text: str, now: float) -> None:
        start = self.sim_start.timestamp()
        line = f"[week {week_of(now, start):2d} {sim_time(now)}] {text}"
        self.recent.append(line)
        del self.recent[:-50]
        if not self.opts.live:
            print(line, flush=True)

    def say(self, text: str) -> None:
        print(f"pixelsd demo: {text}", flush=True)

    def summary(self) -> None:
        snap = self.last
        assert snap is not None
        start = self.sim_start.timestamp()
        done_at = max(
            (w.completion_time for w in snap.status.workstreams if w.completion_time is not None),
            default=snap.now,
        )
        elapsed = time.monotonic() - self.started
        weekly = [r for r in snap.reports if r.startswith("week_")]
        kinds = ", ".join(f"{k} {n}" for k, n in kinds_seen(snap.escalations).items())
        reports = self.paths.reports
        d = self.dir
        plan = d / "demo" / "plan.toml"
        lines = [
            "",
            f"pixelsd demo: done in {elapsed:.0f} s (seed {self.opts.seed}): the plan completed "
            f"in week {week_of(done_at, start)} of {self.plan.weeks} ({sim_time(done_at)} UTC); "
            f"{len(weekly)} weekly reports",
            f"  escalations by kind: {kinds}",
            f"  weekly reports:    {reports}/ ({', '.join(weekly[:1] + weekly[-1:])})",
            f"  completion report: {reports / COMPLETION_REPORT}",
            f"  logs:              {self.paths.logs}/ (pixelsd.log, one per orchestrator; "
            f"agents' in {d / 'work'}/)",
            "  look again (the daemon is stopped; this restarts it on the same state):",
            f"    pixelsd run --state-dir {d} --plan {plan} &",
            f"    pixelsctl --state-dir {d} escalations --all",
            f"    pixelsctl --state-dir {d} gates",
        ]
        print("\n".join(lines), flush=True)

    # --- processes -----------------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.paths.logs / f"{name}.log"

    def _check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                tail = _tail(child.log)
                raise DemoError(
                    f"{child.name} exited with status {code}; see {child.log}"
                    + (f" (last line: {tail})" if tail else "")
                )

    def stop_processes(self) -> None:
        """SIGTERM the orchestrators (they stop their agents and deliver their outboxes), then
        the daemon; SIGKILL what does not exit within STOP_TIMEOUT_S."""
        with _ignoring_interrupts():
            orchestrators = [c for c in self.children if c is not self.daemon]
            _terminate_all(orchestrators)
            if self.daemon is not None:
                _terminate_all([self.daemon])
            self.children.clear()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


@contextlib.contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """Stopping is bounded; a second Ctrl-C must not leave processes behind half-way."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _terminate_all(children: Sequence[Child]) -> None:
    for child in children:
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
