"""The supervision policy for orchestrator processes: pure (no I/O, no clock), every call takes
``now`` (real seconds: processes live in real time, whatever the plan's time scale).

The shell (pixels_daemon/supervise.py) tells the policy what happened (the engine activated an
orchestrator, an operator asked for spawn or stop, a process started or exited, who is connected)
and carries out the actions it returns: ``Launch``, ``Terminate`` (the graceful stop sequence) and
``Escalate`` (an ``orchestrator_flapping`` escalation through the engine).

Per orchestrator:

- wanted: the engine activated it (its after_gates passed, its after_workstreams complete), or an
  operator ran ``pixelsctl spawn``. Not launched while operator-stopped or flapping.
- never launched while it is connected (someone else runs it) or while one we know is alive.
- crash (exited non-zero, killed, launch failed): restarted after a backoff, ``backoff_initial_s``
  doubling per consecutive crash up to ``backoff_max_s``. A run that lasted ``stable_s`` (the flap
  window) resets the count: it was healthy for a whole window.
- flapping: ``flap_limit`` crashes within ``flap_window_s`` -> not restarted, escalated once;
  ``pixelsctl spawn`` clears it and tries again.
- a clean exit (0) is not a crash and is not restarted (systemd's Restart=on-failure: the runner
  exits 0 only when told to stop or terminated).
- operator stop: terminated if running, never restarted until ``pixelsctl spawn``.

Phases (``Supervised.phase``): idle (not wanted yet), waiting (to be launched at
``next_start_at``: first start or a backoff), starting, running, connected (running, not launched by
us: it connected by itself), stopping, stopped (by an operator), exited (0, on its own), flapping.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Phase = Literal[
    "idle",
    "waiting",
    "starting",
    "running",
    "connected",
    "stopping",
    "stopped",
    "exited",
    "flapping",
]

#: How orchestrators are started (supervise.py): the daemon runs them, systemd does, or nobody
#: here (someone else starts them).
LauncherKind = Literal["subprocess", "systemd", "none"]
LAUNCHERS: tuple[LauncherKind, ...] = ("subprocess", "systemd", "none")

#: `pixelsctl stop`: how long the orchestrator gets to obey the bus ``stop`` before SIGTERM, and
#: after SIGTERM before SIGKILL. The runner stops its agents (5 s grace), then delivers its
#: outbox (up to 5 s): 15 s covers both, with slack.
STOP_GRACE_S = 15.0

#: First restart delay: a one-off crash costs a second, not a minute of missing reports.
DEFAULT_BACKOFF_INITIAL_S = 1.0
#: Longest restart delay: a broken orchestrator is retried at least every 5 minutes (only reached
#: when --flap-limit is raised: with the defaults it is flapping long before).
DEFAULT_BACKOFF_MAX_S = 300.0
#: Crashes within the window that mark an orchestrator flapping: five in a row means a cause that
#: restarting will not fix (bad config, missing program); fewer can be bad luck.
DEFAULT_FLAP_LIMIT = 5
#: The flapping window, and how long a run must last to count as healthy again (10 min: longer than
#: the whole default backoff series, 1+2+4+8 s, by far).
DEFAULT_FLAP_WINDOW_S = 600.0


class SupervisionConfigError(ValueError):
    """Supervision settings that cannot work; the message says which."""


@dataclass(frozen=True)
class SupervisionConfig:
    backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    flap_limit: int = DEFAULT_FLAP_LIMIT
    flap_window_s: float = DEFAULT_FLAP_WINDOW_S

    def __post_init__(self) -> None:
        if not self.backoff_initial_s > 0:
            raise SupervisionConfigError(
                "the restart backoff (--restart-backoff) must be a positive number of seconds"
            )
        if self.backoff_max_s < self.backoff_initial_s:
            raise SupervisionConfigError(
                "the longest restart backoff (--restart-backoff-max) must not be shorter than "
                "the first (--restart-backoff)"
            )
        if self.flap_limit < 1:
            raise SupervisionConfigError("the flap limit (--flap-limit) must be at least 1 crash")
        if not self.flap_window_s > 0:
            raise SupervisionConfigError(
                "the flap window (--flap-window) must be a positive number of seconds"
            )

    @property
    def stable_s(self) -> float:
        """A run this long resets the crash count: the orchestrator was healthy for a whole flap
        window, so its earlier crashes say nothing about the next one."""
        return self.flap_window_s

    def backoff(self, consecutive: int) -> float:
        """The delay before restart number ``consecutive`` (1: after the first crash)."""
        exponent = min(max(consecutive - 1, 0), 62)  # 2**62 s is past any cap; avoids overflow
        return float(min(self.backoff_initial_s * 2**exponent, self.backoff_max_s))


# --- actions (out) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """Start the orchestrator's process now; answer with ``started`` or ``launch_failed``."""

    orchestrator: str
    restart: bool  # after a crash (counted in ``restarts``), not a first start or an operator's


@dataclass(frozen=True)
class Terminate:
    """Stop the running process: the bus ``stop`` went out with the engine's effect; wait for the
    exit up to a grace, then SIGTERM (or ``systemctl stop``). Answer with ``exited``."""

    orchestrator: str


@dataclass(frozen=True)
class Escalate:
    """The orchestrator is flapping: raise ``orchestrator_flapping`` once (severity high)."""

    orchestrator: str
    crashes: int
    window_s: float
    last_exit: str


Action = Launch | Terminate | Escalate


@dataclass
class Supervised:
    """What the policy knows about one orchestrator's process."""

    name: str
    phase: Phase = "idle"
    wanted: bool = False
    operator_stopped: bool = False
    flapping: bool = False
    pid: int | None = None
    #: Running but not our child: a process a previous daemon launched (from its pid file).
    adopted: bool = False
    started_at: float | None = None
    next_start_at: float | None = None
    #: Crashes since the last healthy run (the backoff's exponent) and their times in the window.
    consecutive: int = 0
    crash_times: list[float] = field(default_factory=list)
    restarts: int = 0
    last_exit: str | None = None
    #: When its process was last seen gone: a connection last heard from before then is that
    #: process's, not a live one (the daemon counts a peer connected for 3 heartbeats).
    exited_at: float | None = None
    after_crash: bool = False


class Supervisor:
    """The policy for a set of orchestrators. Methods take ``now`` and return actions."""

    def __init__(self, names: Iterable[str], config: SupervisionConfig | None = None) -> None:
        self.config = config if config is not None else SupervisionConfig()
        self.procs: dict[str, Supervised] = {name: Supervised(name) for name in names}

    def get(self, name: str) -> Supervised:
        """The record of ``name`` (made on first use: a reloaded plan may add orchestrators)."""
        proc = self.procs.get(name)
        if proc is None:
            proc = self.procs[name] = Supervised(name)
        return proc

    # --- what the durable state says (daemon start-up) -----------------------------------------

    def seed(
        self,
        name: str,
        now: float,
        *,
        wanted: bool,
        operator_stopped: bool,
        flapping: bool,
        hold_s: float = 0.0,
    ) -> None:
        """Start from what the event log says: activated (wanted), operator-stopped, flapping.
        A wanted one is launched ``hold_s`` from now (daemon start-up: one that outlived the
        previous daemon gets time to reconnect, and is then never launched twice)."""
        proc = self.get(name)
        proc.wanted = wanted
        proc.operator_stopped = operator_stopped
        proc.flapping = flapping
        if proc.phase in ("running", "starting", "stopping"):
            return  # adopted before the seed: its process is what counts
        proc.phase = self._resting(proc)
        if proc.phase == "waiting":
            proc.next_start_at = now + hold_s

    # --- inputs --------------------------------------------------------------------------------

    def want(self, name: str, now: float) -> list[Action]:
        """The engine activated ``name``: it should run (unless stopped or flapping)."""
        proc = self.get(name)
        proc.wanted = True
        if proc.phase == "idle" and self._resting(proc) == "waiting":
            proc.phase = "waiting"
            proc.next_start_at = now
        return []

    def spawn(self, name: str, now: float) -> list[Action]:
        """``pixelsctl spawn``: clear operator-stop and flapping, forget past crashes, start now."""
        proc = self.get(name)
        proc.wanted = True
        proc.operator_stopped = False
        proc.flapping = False
        proc.consecutive = 0
        proc.crash_times.clear()
        proc.after_crash = False
        if proc.phase in ("idle", "waiting", "stopped", "exited", "flapping"):
            proc.phase = "waiting"
            proc.next_start_at = now
        return []

    def stop(self, name: str, now: float) -> list[Action]:
        """``pixelsctl stop``: terminate it if it runs; never restart it until spawned."""
        proc = self.get(name)
        proc.operator_stopped = True
        if proc.phase == "running":
            proc.phase = "stopping"
            return [Terminate(name)]
        if proc.phase in ("starting", "stopping"):
            return []  # started() terminates it; a stop under way goes on
        proc.phase = "stopped"
        proc.next_start_at = None
        return []

    def started(
        self, name: str, pid: int | None, now: float, *, adopted: bool = False
    ) -> list[Action]:
        """Its process runs (``pid`` None: the launcher does not tell, e.g. systemd)."""
        proc = self.get(name)
        proc.pid = pid
        proc.adopted = adopted
        proc.started_at = now
        proc.next_start_at = None
        if proc.operator_stopped:
            proc.phase = "stopping"
            return [Terminate(name)]
        proc.phase = "running"
        return []

    def launch_failed(self, name: str, now: float, why: str) -> list[Action]:
        """The launch did not produce a process (exec failed, ``systemctl start`` failed): a
        crash, for the backoff and the flapping count."""
        return self.exited(name, now, why, clean=False)

    def exited(self, name: str, now: float, how: str, *, clean: bool) -> list[Action]:
        """Its process is gone: ``how`` says how ("exit 2", "killed by SIGKILL"); ``clean``: exit
        status 0."""
        proc = self.get(name)
        ran = now - proc.started_at if proc.started_at is not None else 0.0
        was = proc.phase
        proc.pid = None
        proc.adopted = False
        proc.started_at = None
        proc.last_exit = how
        proc.exited_at = now
        if proc.operator_stopped:
            proc.phase = "stopped"
            return []
        if was == "stopping" or clean:
            # Asked to stop and spawned meanwhile: start again at once; else it chose to stop.
            proc.phase = "waiting" if was == "stopping" and proc.wanted else "exited"
            proc.next_start_at = now if proc.phase == "waiting" else None
            return []
        config = self.config
        if ran >= config.stable_s:
            proc.consecutive = 0
            proc.crash_times.clear()
        proc.consecutive += 1
        proc.crash_times = [t for t in proc.crash_times if now - t < config.flap_window_s]
        proc.crash_times.append(now)
        proc.after_crash = True
        if len(proc.crash_times) >= config.flap_limit:
            proc.phase = "flapping"
            proc.next_start_at = None
            if proc.flapping:
                return []  # escalated already (before a daemon restart): once is enough
            proc.flapping = True
            return [Escalate(name, len(proc.crash_times), config.flap_window_s, how)]
        proc.phase = "waiting"
        proc.next_start_at = now + config.backoff(proc.consecutive)
        return []

    def tick(self, now: float, connected: Mapping[str, float]) -> list[Action]:
        """Launch what is due and not connected; notice connections that came or went.
        ``connected``: the orchestrators connected now, each with when it was last heard from."""
        out: list[Action] = []
        for proc in self.procs.values():
            heard = connected.get(proc.name)
            live = heard is not None and (proc.exited_at is None or heard > proc.exited_at)
            if proc.phase == "connected" and not live:
                proc.phase = self._resting(proc)
                proc.next_start_at = now
            if proc.phase != "waiting":
                continue
            if live:
                proc.phase = "connected"  # someone else runs it: never a second one
                proc.next_start_at = None
                continue
            due = proc.next_start_at if proc.next_start_at is not None else now
            if now < due:
                continue
            proc.phase = "starting"
            proc.next_start_at = None
            if proc.after_crash:
                proc.restarts += 1
            out.append(Launch(proc.name, restart=proc.after_crash))
        return out

    def next_due(self) -> float | None:
        """The earliest time a waiting launch falls due (None: nothing waits)."""
        times = [p.next_start_at for p in self.procs.values() if p.phase == "waiting"]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def preview(
        self, name: str, change: Callable[[Supervisor, str, float], object], now: float
    ) -> Supervised:
        """What ``name``'s record would be after ``change`` (e.g. ``Supervisor.spawn``), leaving
        this one as it is: a reply may say what a request will do before it is committed."""
        clone = Supervisor([], self.config)
        clone.procs[name] = copy.deepcopy(self.get(name))
        change(clone, name, now)
        return clone.procs[name]

    def _resting(self, proc: Supervised) -> Phase:
        """The phase of one with no process: what its flags say."""
        if proc.flapping:
            return "flapping"
        if proc.operator_stopped:
            return "stopped"
        return "waiting" if proc.wanted else "idle"


def flapping_message(name: str, crashes: int, window_s: float, last_exit: str) -> str:
    """The escalation's issue text for a flapping orchestrator."""
    return (
        f"orchestrator {name} crashed {crashes} times within {_duration(window_s)} "
        f"(last: {last_exit}); it is not restarted any more"
    )


def flapping_help(name: str, log: str) -> str:
    """What to do about it: where to look, and how to try again."""
    return (
        f"read {log}, fix the cause (its runner config, the agent command, the plan), then "
        f"`pixelsctl spawn {name}` to try again"
    )


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} min"
    return f"{seconds:g} s"
