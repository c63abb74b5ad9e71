"""A simulated agent: a command that pretends to implement one workstream, over simulated time.

    python -m orchestrators.simagent --workstream WS-05 --days 7 --output DIR/STATUS.json \\
        --clock STATE_DIR/clock.json --seed 1 [--stall-hours H] [--overrun F] \\
        [--blocker-hours H] [--metric NAME=VALUE ...] [--scenario FILE]

It is what ``pixels-orchestrator run --agent TEMPLATE`` runs in ``pixelsd demo``: progress advances
with the daemon's scaled clock (``ScaledClock`` anchored in STATE_DIR/clock.json; no file: the wall
clock), and is written to ``--output`` atomically in the source project's STATUS.json shape::

    {"workstream": "WS-05", "status": "in_progress", "progress": 0.42,
     "started_at": "2026-01-05T09:00:00Z", "completion_date": null,
     "blockers": [], "metrics": {"inference_time_s": 2.6}}

Time model: ``--days`` calendar days of work, times ``--overrun`` (1.7: the work takes 170 % of
it). ``--stall-hours``: once, somewhere between 35 % and 65 % (seeded), progress stops for that long
while the status stays ``in_progress``. ``--blocker-hours``: once, between 15 % and 45 %, the status
is ``blocked`` with a blocker for that long. The seed and the workstream decide where, so a run is
repeatable. A file already at ``--output`` is resumed from (its progress and started_at; an event
whose point lies behind that progress has happened).

Exit status: 0 complete, or stopped by SIGTERM/SIGINT (the last state written), or orphaned (its
parent died: nobody would read the file); 1 the output or clock file cannot be used; 2 bad usage.

The core (``Params``, ``SimState``, ``advance``, ``status_doc``) is pure and takes ``now``; the loop
around it sleeps in small real steps, as a simulation may (tests drive the core, not the sleeps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

DAY = 86_400.0
HOUR = 3_600.0

#: Where in the work (as progress) a stall may happen: far enough from both ends that the
#: workstream is clearly under way and clearly not done.
STALL_WINDOW = (0.35, 0.65)
#: Where a blocker may be reported: earlier than a stall, so the two rarely meet in one workstream.
BLOCKER_WINDOW = (0.15, 0.45)
#: Progress is written in whole percent: enough for a table, and a 10-day workstream still moves
#: every few simulated hours (well inside the daemon's 24 h stall rule).
QUANTUM = 0.01
#: Real seconds between steps. At --time-scale 50000 that is ~40 simulated minutes: fine enough for
#: hour-long events, coarse enough that an agent costs nothing.
DEFAULT_STEP_S = 0.05

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

STATUSES = ("not_started", "in_progress", "blocked", "complete")


class AgentError(Exception):
    """A file the agent cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class Params:
    """What the work is: its length and the events that interrupt it."""

    workstream: str
    days: float
    seed: int = 0
    overrun: float = 1.0
    stall_hours: float = 0.0
    blocker_hours: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    blocker_text: str = ""

    @property
    def work_s(self) -> float:
        """Simulated seconds of work, pauses excluded."""
        return self.days * self.overrun * DAY

    def event_points(self) -> dict[str, float]:
        """Progress at which each configured event begins (seeded by seed and workstream)."""
        rng = random.Random(f"{self.seed}/{self.workstream}")
        stall_at = rng.uniform(*STALL_WINDOW)
        blocker_at = rng.uniform(*BLOCKER_WINDOW)
        points = {}
        if self.stall_hours > 0:
            points["stall"] = round(stall_at, 2)
        if self.blocker_hours > 0:
            points["blocker"] = round(blocker_at, 2)
        return points


@dataclass(frozen=True)
class SimState:
    """Where the work is at simulated time ``at``.

    pause: the event now under way ("stall" or "blocker") and until when; done: events that
    happened (each happens once).
    """

    progress: float = 0.0
    at: float = 0.0
    started_at: float = 0.0
    completed_at: float | None = None
    pause: tuple[str, float] | None = None
    done: frozenset[str] = frozenset()

    @property
    def status(self) -> str:
        if self.completed_at is not None:
            return "complete"
        if self.pause is not None and self.pause[0] == "blocker":
            return "blocked"
        return "in_progress"


def start(params: Params, now: float, resumed: dict[str, Any] | None = None) -> SimState:
    """The state at ``now``: fresh, or resumed from a STATUS.json document (see ``read_status``)."""
    if resumed is None:
        return SimState(at=now, started_at=now)
    progress = float(resumed["progress"])
    started = resumed.get("started_at")
    started_at = parse_time(started) if isinstance(started, str) else now
    points = params.event_points()
    # An event whose point lies behind the progress happened; one at exactly this progress was
    # under way when the agent stopped: it runs again in full.
    done = frozenset(name for name, point in points.items() if point < progress)
    if resumed.get("status") == "complete" or progress >= 1.0:
        return SimState(
            progress=1.0, at=now, started_at=started_at, completed_at=now, done=frozenset(points)
        )
    return SimState(progress=progress, at=now, started_at=started_at, done=done)


def advance(state: SimState, params: Params, now: float) -> SimState:
    """The state at ``now`` (pure): work accrues outside pauses; an event starts when progress
    reaches its point; the work completes when progress reaches 1."""
    if state.completed_at is not None or now <= state.at:
        return state
    points = params.event_points()
    lengths = {"stall": params.stall_hours * HOUR, "blocker": params.blocker_hours * HOUR}
    work_s = params.work_s
    t, progress, pause, done = state.at, state.progress, state.pause, set(state.done)
    while t < now:
        if pause is not None:
            if now < pause[1]:
                t = now
                break
            t, pause = pause[1], None
            continue
        pending = {name: p for name, p in points.items() if name not in done}
        name, point = min(pending.items(), key=lambda kv: kv[1], default=("", 1.0))
        point = max(point, progress)
        reach = t + (point - progress) * work_s if work_s > 0 else t
        if reach > now:
            progress += (now - t) / work_s
            t = now
            break
        t, progress = reach, point
        if not name:
            return replace(state, progress=1.0, at=t, completed_at=t, pause=None)
        done.add(name)
        pause = (name, t + lengths[name])
    return replace(state, progress=min(progress, 1.0), at=t, pause=pause, done=frozenset(done))


def quantized(progress: float) -> float:
    """Progress as written: whole percent, rounded down (1.0 only when complete)."""
    return math.floor(progress / QUANTUM + 1e-9) * QUANTUM


def status_doc(state: SimState, params: Params) -> dict[str, Any]:
    """The STATUS.json document for ``state``."""
    blockers = []
    if state.status == "blocked":
        text = params.blocker_text or f"{params.workstream}: waiting on an external dependency"
        blockers = [text]
    return {
        "workstream": params.workstream,
        "status": state.status,
        "progress": 1.0 if state.completed_at is not None else round(quantized(state.progress), 2),
        "started_at": iso(state.started_at),
        "completion_date": iso(state.completed_at) if state.completed_at is not None else None,
        "blockers": blockers,
        "metrics": dict(params.metrics),
    }


def iso(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC to the second ("2026-01-05T09:00:00Z")."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """An ISO 8601 time (a trailing Z or an offset; none: UTC) as unix seconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_status(path: Path, workstream: str) -> dict[str, Any] | None:
    """A usable STATUS.json for ``workstream`` at ``path`` to resume from, else None."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("workstream") != workstream:
        return None
    progress = doc.get("progress")
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        return None
    if not 0.0 <= progress <= 1.0 or doc.get("status") not in STATUSES:
        return None
    return doc


def write_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as JSON so that a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


# --- the clock --------------------------------------------------------------------------------


class SharedClock:
    """The daemon's clock from its anchor file, re-read when the file changes (a daemon restarted
    with another scale re-anchors it). No file: the wall clock."""

    def __init__(self, path: Path | None, real: Callable[[], float] = time.time) -> None:
        self.path = path
        self._real = real
        self._stamp: tuple[int, int] | None = None
        self._now: Callable[[], float] = real
        self.refresh()

    def refresh(self) -> None:
        from pixels_daemon.clock import ClockError, ScaledClock

        if self.path is None:
            return
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._now = None, self._real
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            clock = ScaledClock.load(self.path, self._real)
        except ClockError as exc:
            raise AgentError(str(exc)) from None
        self._stamp = stamp
        self._now = clock.now if clock is not None else self._real

    def now(self) -> float:
        return self._now()


# --- command line -----------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours (0 or more)")
    return value


def _metric(text: str) -> tuple[str, float]:
    name, eq, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not eq or not name or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=NUMBER (e.g. memory_gb=72)")
    return name, number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrators.simagent",
        description="A simulated agent: advances one workstream's progress over the daemon's "
        "(scaled) time and writes STATUS.json; exits 0 when complete.",
    )
    parser.add_argument("--workstream", required=True, metavar="WS", help="e.g. WS-05")
    parser.add_argument(
        "--days", required=True, type=_positive, metavar="D", help="calendar days of work"
    )
    parser.add_argument(
        "--output", required=True, metavar="PATH", help="the STATUS.json to write (and resume)"
    )
    parser.add_argument(
        "--clock",
        metavar="PATH",
        help="the daemon's clock anchor (STATE_DIR/clock.json); absent file: the wall clock",
    )
    parser.add_argument("--seed", type=int, default=0, help="places the events (default 0)")
    parser.add_argument(
        "--overrun",
        type=_positive,
        default=1.0,
        metavar="F",
        help="the work takes F times --days (1.7: 170 %%; default 1)",
    )
    parser.add_argument(
        "--stall-hours", type=_non_negative, default=0.0, metavar="H", help="stall once for H"
    )
    parser.add_argument(
        "--blocker-hours",
        type=_non_negative,
        default=0.0,
        metavar="H",
        help="report a blocker once, for H",
    )
    parser.add_argument(
        "--metric",
        type=_metric,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a metric to report (repeat)",
    )
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        help="JSON {WS: {days, overrun, stall_hours, blocker_hours, metrics}}: this "
        "workstream's entry overrides the options above",
    )
    parser.add_argument(
        "--step",
        type=_positive,
        default=DEFAULT_STEP_S,
        metavar="SECONDS",
        help=f"real seconds between steps (default {DEFAULT_STEP_S})",
    )
    return parser


_SCENARIO_KEYS = {"days", "overrun", "stall_hours", "blocker_hours", "metrics", "blocker_text"}


def params_from(opts: argparse.Namespace) -> Params:
    """The Params the command line (and the scenario file's entry, if any) describe."""
    params = Params(
        workstream=opts.workstream,
        days=opts.days,
        seed=opts.seed,
        overrun=opts.overrun,
        stall_hours=opts.stall_hours,
        blocker_hours=opts.blocker_hours,
        metrics=dict(opts.metric),
    )
    if not opts.scenario:
        return params
    try:
        doc = json.loads(Path(opts.scenario).read_text())
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read the scenario {opts.scenario}: {exc}") from None
    entry = doc.get(opts.workstream, {}) if isinstance(doc, dict) else None
    if not isinstance(entry, dict) or not set(entry) <= _SCENARIO_KEYS:
        raise AgentError(
            f"{opts.scenario}: the entry for {opts.workstream} must be an object with keys from "
            f"{', '.join(sorted(_SCENARIO_KEYS))}"
        )
    try:
        metrics = {k: float(v) for k, v in entry.get("metrics", {}).items()}
        return replace(
            params,
            days=float(entry.get("days", params.days)),
            overrun=float(entry.get("overrun", params.overrun)),
            stall_hours=float(entry.get("stall_hours", params.stall_hours)),
            blocker_hours=float(entry.get("blocker_hours", params.blocker_hours)),
            metrics={**params.metrics, **metrics},
            blocker_text=str(entry.get("blocker_text", "")),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise AgentError(f"{opts.scenario}: bad entry for {opts.workstream}: {exc}") from None


class _Stop:
    """Set by SIGTERM/SIGINT; the loop finishes its step and exits."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def run(opts: argparse.Namespace) -> int:
    params = params_from(opts)
    if params.work_s <= 0:
        raise AgentError("--days times --overrun must be positive")
    output = Path(opts.output)
    clock = SharedClock(Path(opts.clock) if opts.clock else None)
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parent = os.getppid()
    state = start(params, clock.now(), read_status(output, params.workstream))
    written: dict[str, Any] | None = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        while True:
            clock.refresh()
            state = advance(state, params, clock.now())
            doc = status_doc(state, params)
            if doc != written:
                write_atomic(output, doc)
                written = doc
            if state.completed_at is not None or stop.requested or os.getppid() != parent:
                return EXIT_OK
            time.sleep(opts.step)
    except OSError as exc:
        raise AgentError(f"cannot write {output}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(opts)
    except AgentError as exc:
        print(f"simagent: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
