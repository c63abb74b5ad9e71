"""Starting and supervising orchestrator processes: the I/O edge around spawner.py's policy.

The launcher is chosen with ``pixelsd run --launcher``:

- ``subprocess`` (the command line's default): the daemon runs ``pixels-orchestrator run NAME
  --state-dir STATE_DIR [--endpoint BUS] [--plan PLAN] [--config DIR/NAME.toml]`` itself (the
  ``pixels-orchestrator`` beside this Python), in its own session (a daemon stop or a Ctrl-C at the
  daemon's terminal does not reach it), stdout and stderr appended to
  STATE_DIR/logs/orchestrator-NAME.log. Its pid and start time (/proc/PID/stat field 22, and the
  boot id) go to STATE_DIR/run/orchestrator-NAME.pid, so a restarted daemon adopts the ones still
  alive (watching them by polling: they are not its children) and never mistakes a reused pid for
  one of them. Exits are polled (non-blocking waitpid), off nothing: ``POLL_INTERVAL_S``.
- ``systemd``: ``systemctl start|stop pixels-orchestrator@NAME``; ``systemctl is-active`` tells
  what runs. systemd owns restarts (Restart=on-failure), so the daemon's backoff applies to
  ``systemctl`` calls that fail (and to a unit systemd reports ``failed``).
- ``none``: someone else starts the orchestrators (``pixelsd demo``, tests, hand-run). Operator
  stop still sends ``stop`` on the bus and is remembered; nothing is launched.

Daemon shutdown leaves orchestrators running: they are durable clients (their outbox keeps what
the daemon has not acked) and reconnect to the next daemon, which adopts them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
import anyio.abc
import structlog

from pixels_daemon.core import engine
from pixels_daemon.core.state import State
from pixels_daemon.paths import StatePaths
from pixels_daemon.plan import EMBEDDED_SOURCE
from pixels_daemon.spawner import (
    STOP_GRACE_S,
    Action,
    Escalate,
    Launch,
    LauncherKind,
    SupervisionConfig,
    Supervisor,
    Terminate,
    flapping_help,
    flapping_message,
)
from protocol.views import ProcessView

log = structlog.get_logger("pixelsd")

#: How often exits are looked for and due (re)starts launched, in real seconds. A child is polled
#: with a non-blocking waitpid and an adopted one with a read of /proc/PID/stat: four times a second
#: costs nothing and keeps a restart within a quarter second of its backoff.
POLL_INTERVAL_S = 0.25
#: How often a running unit's state is asked of systemd (each ask is a `systemctl` process).
SYSTEMD_REFRESH_S = 5.0
#: A `systemctl` call still running after this long has failed (a wedged systemd or D-Bus).
SYSTEMCTL_TIMEOUT_S = 30.0
#: How often a stopping unit is asked whether it has stopped (within the stop grace).
SYSTEMD_STOP_POLL_S = 0.5
#: Lines of an orchestrator's log quoted in its flapping escalation: the usage error or the end of
#: a traceback, not the whole story (the escalation names the file).
LOG_TAIL_LINES = 3

#: At daemon start (when the plan had begun), nothing is launched for this long: orchestrators that
#: outlived the previous daemon retry their connection at least every 5 s
#: (orchestrators/client.py RECONNECT_IVL_MAX_MS), so by then each has reconnected and is never
#: launched twice. Ours are known at once from their pid files; this covers the others.
START_HOLD_S = 6.0

#: The systemd unit of orchestrator NAME (systemd/pixels-orchestrator@.service).
UNIT = "pixels-orchestrator@{name}"

_PROC = Path("/proc")


@dataclass(frozen=True)
class SpawnConfig:
    """How the daemon starts orchestrators. ``launcher`` none: it does not (embedded servers and
    tests opt in; ``pixelsd run`` defaults to subprocess)."""

    launcher: LauncherKind = "none"
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    #: Runner configs: DIR/NAME.toml, passed as ``--config`` when it exists (None: never).
    orchestrator_config: Path | None = None
    stop_grace_s: float = STOP_GRACE_S
    start_hold_s: float = START_HOLD_S
    #: The systemctl program (tests put a stub first on PATH instead).
    systemctl: str = "systemctl"


# --- pid files: telling our orchestrators from reused pids ------------------------------------


def boot_id() -> str:
    """This boot's id: a pid file from before a reboot never matches a process of this one."""
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22); None if
    there is no such process (or it is a zombie nobody reaped yet: gone all the same)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) is in parentheses and may hold spaces: split after its closing one.
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])  # fields[0] is field 3


@dataclass(frozen=True)
class PidRecord:
    """What STATE_DIR/run/orchestrator-NAME.pid holds (JSON)."""

    pid: int
    start_ticks: int
    boot_id: str
    argv: list[str]
    launched_at: float

    def alive(self) -> bool:
        """The very process recorded: same pid, same start time, same boot."""
        return self.boot_id == boot_id() and start_ticks(self.pid) == self.start_ticks

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.__dict__) + "\n")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> PidRecord | None:
        """The record in ``path``; None if there is none or it is not one (removed then)."""
        try:
            data = json.loads(path.read_text())
            return cls(
                pid=int(data["pid"]),
                start_ticks=int(data["start_ticks"]),
                boot_id=str(data["boot_id"]),
                argv=[str(a) for a in data["argv"]],
                launched_at=float(data["launched_at"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("pid_file_unreadable", file=str(path), error=str(exc))
            with contextlib.suppress(OSError):
                path.unlink()
            return None


@dataclass
class Child:
    """An orchestrator process: launched by this daemon (``popen``) or adopted (pid only)."""

    name: str
    record: PidRecord
    popen: subprocess.Popen[bytes] | None = None
    gone: anyio.Event = field(default_factory=anyio.Event)

    @property
    def pid(self) -> int:
        return self.record.pid

    def poll(self) -> tuple[str, bool] | None:
        """None while it runs; else (how it ended, whether cleanly: exit status 0)."""
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return None
            return _describe_exit(code), code == 0
        if self.record.alive():
            return None
        return "exited (adopted: its exit status is not ours to see)", False

    def signal(self, signum: signal.Signals) -> bool:
        """Send ``signum`` if it is still the process we know (never to a reused pid)."""
        if self.popen is not None:
            if self.popen.poll() is not None:
                return False
            self.popen.send_signal(signum)
            return True
        if not self.record.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)
            return True
        return False


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def runner_program() -> list[str]:
    """``pixels-orchestrator`` of this Python's environment (the daemon's venv)."""
    script = Path(sys.executable).parent / "pixels-orchestrator"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "orchestrators.cli"]  # not installed as a script: same code


class SubprocessLauncher:
    """Runs ``pixels-orchestrator run NAME`` as a child in its own session (blocking methods:
    call them from a worker thread)."""

    def __init__(
        self,
        paths: StatePaths,
        *,
        bus_endpoint: str,
        plan_source: Callable[[], str],
        config_dir: Path | None,
    ) -> None:
        self.paths = paths
        self.bus_endpoint = bus_endpoint
        self.plan_source = plan_source
        self.config_dir = config_dir
        # Not the runtime dir: under systemd that is /run/pixels, removed when the daemon stops,
        # and the next daemon must find these files to adopt its orchestrators.
        self.pid_dir = paths.state_dir / "run"
        self.log_dir = paths.state_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"orchestrator-{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"orchestrator-{name}.log"

    def config_file(self, name: str) -> Path | None:
        if self.config_dir is None:
            return None
        path = self.config_dir / f"{name}.toml"
        return path if path.is_file() else None

    def argv(self, name: str) -> list[str]:
        argv = [*runner_program(), "run", name, "--state-dir", str(self.paths.state_dir)]
        # The runner finds the bus at STATE_DIR/run/bus.sock: name it when --runtime-dir moved it.
        if self.bus_endpoint != f"ipc://{self.paths.state_dir / 'run' / 'bus.sock'}":
            argv += ["--endpoint", self.bus_endpoint]
        source = self.plan_source()
        if source != EMBEDDED_SOURCE:
            argv += ["--plan", str(Path(source).absolute())]
        config = self.config_file(name)
        if config is not None:
            argv += ["--config", str(config.absolute())]
        return argv

    def launch(self, name: str) -> Child:
        """Start it; raises OSError when it cannot be (no program, no log dir)."""
        argv = self.argv(name)
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        now = time.time()
        with self.log_file(name).open("ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            out.write(f"--- pixelsd {stamp}: starting {' '.join(argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ticks = start_ticks(popen.pid)
        record = PidRecord(
            pid=popen.pid,
            start_ticks=ticks if ticks is not None else -1,
            boot_id=boot_id(),
            argv=argv,
            launched_at=now,
        )
        record.write(self.pid_file(name))
        return Child(name, record, popen)

    def adopt(self, name: str) -> Child | None:
        """The orchestrator a previous daemon launched, if it still runs (a stale file goes)."""
        path = self.pid_file(name)
        record = PidRecord.read(path)
        if record is None:
            return None
        if not record.alive():
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return Child(name, record)

    def forget(self, child: Child) -> None:
        """It is gone: its pid file goes (unless a newer launch already replaced it)."""
        path = self.pid_file(child.name)
        if PidRecord.read(path) == child.record:
            with contextlib.suppress(OSError):
                path.unlink()

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_file(name).open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 8192))
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(line.strip() for line in kept)


class SystemdLauncher:
    """``systemctl start|stop|is-active pixels-orchestrator@NAME`` (async: subprocesses)."""

    def __init__(self, systemctl: str = "systemctl") -> None:
        self.systemctl = systemctl

    async def _run(self, *args: str) -> tuple[int, str]:
        argv = [self.systemctl, *args]
        try:
            with anyio.fail_after(SYSTEMCTL_TIMEOUT_S):
                done = await anyio.run_process(argv, check=False, stdin=subprocess.DEVNULL)
        except TimeoutError:
            return -1, f"`{' '.join(argv)}` did not finish within {SYSTEMCTL_TIMEOUT_S:g} s"
        except OSError as exc:
            return -1, f"cannot run {self.systemctl}: {exc.strerror or exc}"
        text = (done.stdout + done.stderr).decode(errors="replace").strip()
        return done.returncode, text

    async def start(self, name: str) -> tuple[bool, str]:
        code, text = await self._run("start", UNIT.format(name=name))
        return code == 0, f"systemctl start exited {code}: {text}" if code else ""

    async def stop(self, name: str) -> tuple[bool, str]:
        code, text = await self._run("stop", UNIT.format(name=name))
        return code == 0, f"systemctl stop exited {code}: {text}" if code else ""

    async def state(self, name: str) -> str:
        """active, activating, inactive, failed, ... (what `is-active` prints); "unknown" when
        systemctl cannot tell."""
        code, text = await self._run("is-active", UNIT.format(name=name))
        words = text.split()
        return words[-1] if words and code != -1 else "unknown"


#: is-active answers meaning the unit's process runs (or is about to).
_UNIT_UP = frozenset({"active", "activating", "reloading", "deactivating"})


class SpawnService:
    """The supervision loop: feeds the policy what happens and carries out what it asks."""

    def __init__(
        self,
        config: SpawnConfig,
        *,
        names: Collection[str],
        paths: StatePaths,
        bus_endpoint: str,
        plan_source: Callable[[], str],
        connected: Callable[[], Mapping[str, float]],
        alert: Callable[[engine.Event], Awaitable[object]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.policy = Supervisor(names, config.supervision)
        self.clock = clock
        self._connected = connected
        self._alert = alert
        self.subprocess = SubprocessLauncher(
            paths,
            bus_endpoint=bus_endpoint,
            plan_source=plan_source,
            config_dir=config.orchestrator_config,
        )
        self.systemd = SystemdLauncher(config.systemctl)
        self.children: dict[str, Child] = {}
        self._pending: list[Action] = []
        self._wake = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._next_refresh = 0.0
        #: Operations under way per orchestrator (systemctl start/stop), so none overlaps.
        self._busy: set[str] = set()

    @property
    def launcher(self) -> LauncherKind:
        return self.config.launcher

    # --- start-up -----------------------------------------------------------------------------

    def seed(self, state: State) -> None:
        """From the replayed state: activated orchestrators are wanted, operator stops and
        flapping stand; a live pid file is adopted. When anything had been activated before
        this start, the others are launched only after ``start_hold_s`` (START_HOLD_S: why)."""
        now = self.clock()
        begun = any(o.activated_at is not None for o in state.orchestrators.values())
        for name, orch in state.orchestrators.items():
            self.policy.seed(
                name,
                now,
                wanted=orch.activated_at is not None,
                operator_stopped=orch.operator_stopped,
                flapping=orch.flapping,
                hold_s=self.config.start_hold_s if begun else 0.0,
            )
            if self.launcher != "subprocess":
                continue
            child = self.subprocess.adopt(name)
            if child is not None:
                self.children[name] = child
                log.info("orchestrator_adopted", orchestrator=name, pid=child.pid)
                self._pending += self.policy.started(name, child.pid, now, adopted=True)

    async def _adopt_units(self) -> None:
        """systemd: a unit already active is running (``systemctl start`` would be a no-op, but
        the view should say so)."""
        for name, proc in self.policy.procs.items():
            if proc.phase not in ("waiting", "stopped"):
                continue
            if await self.systemd.state(name) in _UNIT_UP:
                self._pending += self.policy.started(name, None, self.clock(), adopted=True)
                log.info("orchestrator_adopted", orchestrator=name, unit=UNIT.format(name=name))

    # --- inputs from the engine ---------------------------------------------------------------

    def on_effect(self, effect: engine.StartOrchestrator | engine.StopOrchestrator) -> None:
        """A committed engine effect about an orchestrator's process."""
        now = self.clock()
        name = effect.orchestrator
        if isinstance(effect, engine.StopOrchestrator):
            self._pending += self.policy.stop(name, now)
        elif effect.by_operator:
            self._pending += self.policy.spawn(name, now)
        else:
            self._pending += self.policy.want(name, now)
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.launcher == "systemd":
                await self._adopt_units()
            task_status.started()
            while True:
                await self._step()
                with anyio.move_on_after(POLL_INTERVAL_S):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _step(self) -> None:
        now = self.clock()
        actions, self._pending = self._pending, []
        for name, child in list(self.children.items()):
            ended = child.poll()
            if ended is None:
                continue
            how, clean = ended
            del self.children[name]
            self.subprocess.forget(child)
            child.gone.set()
            actions += self._exited(name, now, how, clean)
        if self.launcher == "systemd" and now >= self._next_refresh:
            self._next_refresh = now + SYSTEMD_REFRESH_S
            assert self._tg is not None
            self._tg.start_soon(self._refresh_units)
        actions += self.policy.tick(now, self._connected())
        for action in actions:
            await self._do(action)

    def _exited(self, name: str, now: float, how: str, clean: bool) -> list[Action]:
        started = self.policy.get(name).started_at
        ran = round(now - started, 3) if started is not None else None
        actions = self.policy.exited(name, now, how, clean=clean)
        proc = self.policy.get(name)
        log.info(
            "orchestrator_exited",
            orchestrator=name,
            how=how,
            ran_s=ran,
            next=proc.phase,
            restart_in_s=round(proc.next_start_at - now, 3)
            if proc.phase == "waiting" and proc.next_start_at is not None
            else None,
        )
        return actions

    async def _do(self, action: Action) -> None:
        tg = self._tg
        assert tg is not None
        match action:
            case Launch(orchestrator=name, restart=restart):
                if self.launcher == "subprocess":
                    await self._launch_child(name, restart)
                elif self.launcher == "systemd":
                    tg.start_soon(self._start_unit, name, restart)
            case Terminate(orchestrator=name):
                tg.start_soon(self._terminate, name)
            case Escalate():
                tg.start_soon(self._escalate, action)

    async def _launch_child(self, name: str, restart: bool) -> None:
        now = self.clock()
        try:
            child = await anyio.to_thread.run_sync(self.subprocess.launch, name)
        except OSError as exc:
            why = f"cannot start {' '.join(self.subprocess.argv(name))}: {exc.strerror or exc}"
            log.error("orchestrator_launch_failed", orchestrator=name, error=why)  # noqa: TRY400 - expected: one line
            self._pending += self.policy.launch_failed(name, now, why)
            self._wake.set()
            return
        self.children[name] = child
        log.info(
            "orchestrator_spawned",
            orchestrator=name,
            pid=child.pid,
            launcher="subprocess",
            restart=restart,
            argv=child.record.argv,
            log=str(self.subprocess.log_file(name)),
        )
        self._pending += self.policy.started(name, child.pid, now)
        self._wake.set()

    async def _start_unit(self, name: str, restart: bool) -> None:
        while name in self._busy:  # one systemctl call per unit at a time
            await anyio.sleep(SYSTEMD_STOP_POLL_S)
        self._busy.add(name)
        try:
            ok, why = await self.systemd.start(name)
        finally:
            self._busy.discard(name)
        now = self.clock()
        if ok:
            log.info(
                "orchestrator_spawned",
                orchestrator=name,
                launcher="systemd",
                unit=UNIT.format(name=name),
                restart=restart,
            )
            self._pending += self.policy.started(name, None, now)
        else:
            log.error("orchestrator_launch_failed", orchestrator=name, error=why)
            self._pending += self.policy.launch_failed(name, now, why)
        self._wake.set()

    async def _refresh_units(self) -> None:
        """systemd: a running unit that went inactive exited cleanly (not restarted, as
        Restart=on-failure), one that is ``failed`` crashed (systemd gave up: our backoff)."""
        for name, proc in list(self.policy.procs.items()):
            if proc.phase != "running" or name in self._busy:
                continue
            state = await self.systemd.state(name)
            if state in _UNIT_UP or state == "unknown":
                continue
            self._pending += self._exited(
                name, self.clock(), f"unit {state}", clean=state == "inactive"
            )
            self._wake.set()

    async def _terminate(self, name: str) -> None:
        """The bus ``stop`` has gone out: give it the grace, then make sure."""
        grace = self.config.stop_grace_s
        if self.launcher == "systemd":
            await self._stop_unit(name, grace)
            return
        child = self.children.get(name)
        if child is None:
            return  # already gone: the loop has seen (or will see) its exit
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with anyio.move_on_after(grace):
                await child.gone.wait()
                return
            if child.signal(signum):
                log.warning(
                    "orchestrator_signalled",
                    orchestrator=name,
                    pid=child.pid,
                    signal=signum.name,
                    after_s=grace,
                )

    async def _stop_unit(self, name: str, grace: float) -> None:
        self._busy.add(name)
        try:
            with anyio.move_on_after(grace):
                while await self.systemd.state(name) in _UNIT_UP:
                    await anyio.sleep(SYSTEMD_STOP_POLL_S)
            ok, why = await self.systemd.stop(name)  # always: systemd's view is then settled
            if not ok:
                log.error("orchestrator_stop_failed", orchestrator=name, error=why)
        finally:
            self._busy.discard(name)
        self._pending += self._exited(name, self.clock(), "stopped", clean=True)
        self._wake.set()

    async def _escalate(self, action: Escalate) -> None:
        name = action.orchestrator
        where = (
            str(self.subprocess.log_file(name))
            if self.launcher == "subprocess"
            else f"journalctl -u {UNIT.format(name=name)}"
        )
        details: dict[str, float | str] = {
            "crashes": float(action.crashes),
            "last_exit": action.last_exit,
            "log": where,
        }
        if self.launcher == "subprocess":
            tail = await anyio.to_thread.run_sync(self.subprocess.log_tail, name)
            if tail:
                details["log_tail"] = tail
        log.error(
            "orchestrator_flapping",
            orchestrator=name,
            crashes=action.crashes,
            window_s=action.window_s,
            last_exit=action.last_exit,
        )
        await self._alert(
            engine.SupervisionAlert(
                rule="flapping",
                orchestrator=name,
                direction="raised",
                message=flapping_message(name, action.crashes, action.window_s, action.last_exit),
                help_needed=flapping_help(name, where),
                details=details,
            )
        )

    # --- what pixelsctl shows -----------------------------------------------------------------

    def view(self, name: str, after: Literal["spawn", "stop"] | None = None) -> ProcessView:
        """``name``'s process; ``after``: as it will be once that request (being committed) is
        carried out."""
        if after is None:
            proc = self.policy.get(name)
        else:
            change = Supervisor.spawn if after == "spawn" else Supervisor.stop
            proc = self.policy.preview(name, change, self.clock())
        return ProcessView(
            launcher=self.launcher,
            state=proc.phase,
            pid=proc.pid,
            adopted=proc.adopted,
            started_at=proc.started_at,
            restarts=proc.restarts,
            flapping=proc.flapping,
            operator_stopped=proc.operator_stopped,
            last_exit=proc.last_exit,
            next_start_at=proc.next_start_at if proc.phase == "waiting" else None,
            log=str(self.subprocess.log_file(name)) if self.launcher == "subprocess" else None,
        )
