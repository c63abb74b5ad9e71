"""A long-running orchestrator: runs one agent command per workstream the daemon starts, reads what
each agent says about its work, and reports what changes.

    pixels-orchestrator run NAME [--state-dir DIR | --endpoint URL] [--config FILE]
        [--agent TEMPLATE] [--workdir DIR] [--plan FILE]

Which command a workstream's agent runs, its environment, halt mode and progress source come from
orchestrators/runconfig.py (the config file, the plan, ``--agent``); how its progress is read, from
orchestrators/progress.py (STATUS.json, ``PIXELS-`` lines on its output, liveness); its process,
pid file and adoption, from orchestrators/agentproc.py.

The daemon drives it through commands (docs/protocol.md):

- ``start_workstream WS``: run the workstream's agent command (shlex-split, each word formatted
  with the placeholders: no shell) in WORKDIR/NAME/WS/, its stdout and stderr appended to
  WORKDIR/NAME/WS/agent.log, its pid in agent.pid. No command from any source: one escalation
  saying how to configure one; the runner serves on;
- ``halt`` (one workstream, or the whole orchestrator): ``terminate`` (default) SIGTERMs the
  agent's process group (SIGKILL after the grace), ``pause`` SIGSTOPs it; its files stay.
  ``resume``: SIGCONT a paused agent, start a terminated one again (it continues from its files);
- ``stop`` with a workstream: stop that agent for good; without one: stop everything and exit 0;
- ``poll``: answer with a ``poll_reply`` (re = the poll's id) holding every workstream's last state.

Every ~0.15 s each agent is looked at: its STATUS.json (mtime and size; read when changed), the new
lines of its agent.log, and its process. When the state the chosen source gives (status, progress,
blocker, metrics) changed, it is sent as a ``status``. A STATUS.json that does not parse (half
written, or garbage) keeps the last good state; if it is still bad at the next look, one
``escalation`` says so (again only after it was good in between); a bad ``PIXELS-`` line is one
escalation per agent run. A reported blocker is a ``blocker`` escalation, once per distinct text
(the daemon ages it later: 24 h high, 48 h critical). An agent that exits non-zero, or exits 0
without reporting complete (liveness alone: exit 0 is complete), is an ``escalation`` with the tail
of its log. SIGTERM or SIGINT: stop the agents, deliver what the outbox holds (up to a few seconds),
exit 0. A daemon that refuses the orchestrator's name: exit 1.

A runner restarted on the same WORKDIR adopts every agent whose agent.pid names a process that is
still alive with the recorded start time (they run in their own session and outlive a runner that
crashed): it watches them again (liveness from /proc, since they are not its children: an exit
without complete is a failure of unknown status) instead of starting a second one. It starts again
the agents that were running when it died (a stale agent.pid) and those whose STATUS.json is not
complete; the daemon re-sends only the starts it still owes, and a halt in force comes with the
welcome and halts them again.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from orchestrators.agentproc import (
    AgentProcess,
    PidRecord,
    read_pid_file,
    remove_pid_file,
    write_pid_file,
)
from orchestrators.client import OrchestratorClient
from orchestrators.progress import (
    COMPLETE,
    IN_PROGRESS,
    NAME_RE,
    TEXT_MAX,
    BadProgressLine,
    BadStatusFile,
    LineReader,
    Reported,
    choose,
    parse_line,
    parse_status,
    uses_file,
    uses_lines,
    uses_liveness,
)
from orchestrators.runconfig import (
    PLACEHOLDERS,
    AgentSettings,
    TemplateError,
    agent_argv,
    check_template,
)
from protocol.messages import (
    Command,
    Escalation,
    OrchestratorStatus,
    Poll,
    PollReply,
    Status,
)

__all__ = [
    "PLACEHOLDERS",
    "BadStatusFile",
    "Reported",
    "Runner",
    "RunnerConfig",
    "TemplateError",
    "agent_argv",
    "check_template",
    "log_tail",
    "parse_status",
]

log = structlog.get_logger("pixels.runner")

#: How often agents are looked at (real seconds). The files are small; 0.15 s keeps the daemon's
#: view within a fraction of a second of the agents'.
WATCH_INTERVAL_S = 0.15
#: On shutdown, how long the outbox gets to be delivered before the runner exits anyway (what is
#: left stays in the outbox for the next run: nothing is lost).
FLUSH_S = 5.0
#: Lines of an agent's log quoted in the escalation for its failure: the traceback's end fits.
LOG_TAIL_LINES = 15
#: After SIGKILL, how long an adopted agent (not our child: nothing to wait on) gets to vanish.
KILL_WAIT_S = 5.0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, limit: int = 2000) -> str:
    """The last ``lines`` lines of a log (at most ``limit`` characters), or "" if unreadable."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])[-limit:]


# --- the runner --------------------------------------------------------------------------------


@dataclass
class Agent:
    """One workstream's agent, as the runner keeps it.

    state: idle (not started) | running | paused (SIGSTOPped by a halt) | halted (terminated by
    a halt; resume starts it again) | done (reported complete) | failed (exited otherwise, or
    no command) | stopped (stop command: for good).
    """

    workstream: str
    folder: Path
    state: str = "idle"
    proc: AgentProcess | None = None
    terminating: bool = False
    # STATUS.json
    stamp: tuple[int, int] | None = None
    file_state: Reported | None = None
    bad: tuple[tuple[int, int], str] | None = None  # the stamp of a bad file and why
    bad_escalated: bool = False
    # PIXELS- lines in agent.log
    lines: LineReader | None = None
    line_state: Reported | None = None
    bad_line_escalated: bool = False
    # liveness
    live_state: Reported | None = None
    # what the daemon was told
    current: Reported | None = None
    sent: tuple[Any, ...] | None = None
    blockers_escalated: set[str] = field(default_factory=set)
    no_command_escalated: bool = False

    @property
    def output(self) -> Path:
        return self.folder / "STATUS.json"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"

    def alive(self) -> bool:
        return self.proc is not None and not self.proc.exited()


@dataclass
class RunnerConfig:
    name: str
    endpoint: str
    outbox: Path
    workdir: Path
    state_dir: Path | None
    agents: AgentSettings = field(default_factory=AgentSettings)
    watch_interval_s: float = WATCH_INTERVAL_S
    #: tcp:// with CURVE (OrchestratorClient's ``curve``); None: ipc:// or plain tcp.
    curve: tuple[bytes, bytes, bytes] | None = None


class Runner:
    """``pixels-orchestrator run``: agents in, status and escalations out (see the module doc)."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.name = config.name
        self.settings = config.agents
        self.mode = config.agents.progress
        self.agents: dict[str, Agent] = {}
        self.halted = False  # the whole orchestrator is halted
        self.deferred_starts: list[str] = []  # starts that came while halted
        self.stop_requested = anyio.Event()
        self._client: OrchestratorClient | None = None
        #: Escalations raised where nothing may await (starting an agent); the watch loop sends
        #: them at its next look.
        self._queued: list[Escalation] = []
        self._last_orch_status: OrchestratorStatus | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT or a ``stop`` command; returns the exit status."""
        cfg = self.config
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        async with OrchestratorClient(
            self.name, cfg.endpoint, cfg.outbox, curve=cfg.curve
        ) as client:
            self._client = client
            self._reattach()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._signals)
                tg.start_soon(self._commands, client)
                tg.start_soon(self._watch)
                await self.stop_requested.wait()
                tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._stop_all("halted")
                await self._look()  # the agents' last words
                delivered = await client.wait_acked(FLUSH_S)
            if client.refused is not None:
                log.error("refused", orchestrator=self.name, message=client.refused.message)
                return 1
            log.info("stopped", orchestrator=self.name, pending=client.pending, flushed=delivered)
        return 0

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal", signal=signal.Signals(signum).name)
                self.stop_requested.set()

    def _reattach(self) -> None:
        """What a previous run of this runner left: adopt live agents, start again the ones that
        were running when it died and those whose STATUS.json is not complete."""
        base = self.config.workdir / self.name
        if not base.is_dir():
            return
        for folder in sorted(base.iterdir()):
            if not folder.is_dir() or not NAME_RE.match(folder.name):
                continue
            ws = folder.name
            record = read_pid_file(folder)
            proc = AgentProcess.adopt(record) if record is not None else None
            if record is not None and proc is not None:
                self._adopt(ws, record, proc)
                continue
            remove_pid_file(folder)  # its agent is gone
            agent = self._agent(ws)
            self._read_file_now(agent)
            if record is not None and uses_lines(self.mode):
                agent.lines = LineReader(agent.log, record.log_offset)
                self._read_lines(agent, final=True)
            reported = choose(self.mode, agent.file_state, agent.line_state, None)
            if reported is not None and reported.report.status == "complete":
                agent.state, agent.current = "done", reported
                continue
            if record is not None or (uses_file(self.mode) and agent.output.is_file()):
                log.info("restarting_unfinished", workstream=ws)
                self._start(ws)

    def _adopt(self, ws: str, record: PidRecord, proc: AgentProcess) -> None:
        agent = self._agent(ws)
        agent.proc, agent.state, agent.terminating = proc, "running", False
        if uses_lines(self.mode):
            agent.lines = LineReader(agent.log, record.log_offset)
        if uses_liveness(self.mode):
            agent.live_state = IN_PROGRESS
        # It may have been paused by a halt: run it; a halt still in force comes with the
        # welcome and pauses it again (a resume sent while no runner listened is not lost).
        proc.signal_group(signal.SIGCONT)
        log.info("agent_adopted", workstream=ws, pid=proc.pid)

    # --- commands ----------------------------------------------------------------------------

    async def _commands(self, client: OrchestratorClient) -> None:
        async for message in client.commands():
            if isinstance(message, Poll):
                await self._answer_poll(message)
            else:
                await self.on_command(message)

    async def on_command(self, command: Command) -> None:
        ws, action = command.workstream, command.action
        log.info("command", action=action, workstream=ws, reason=command.reason)
        if action == "start_workstream" and ws:
            if self.halted:
                self.deferred_starts.append(ws)
            else:
                self._start(ws)
        elif action == "halt":
            if ws is None:
                self.halted = True
                for name in list(self.agents):
                    await self._halt(name)
            else:
                await self._halt(ws)
        elif action == "resume":
            if ws is None:
                self.halted = False
                for agent in list(self.agents.values()):
                    if agent.state in ("paused", "halted", "failed"):
                        self._resume(agent.workstream)
                starts, self.deferred_starts = self.deferred_starts, []
                for name in starts:
                    self._start(name)
            else:
                self._resume(ws)
        elif action == "stop":
            if ws is None:
                self.stop_requested.set()
            else:
                await self._stop(ws, "stopped")
        await self._send_orchestrator_status()

    async def _answer_poll(self, poll: Poll) -> None:
        reports = {ws: a.current.report for ws, a in self.agents.items() if a.current is not None}
        await self._send(
            PollReply(
                orchestrator=self.name,
                re=poll.id,
                status=self._orchestrator_status(),
                workstreams=reports,
                performance_metrics=self._metrics(),
            )
        )

    # --- agents ------------------------------------------------------------------------------

    def _folder(self, ws: str) -> Path:
        return self.config.workdir / self.name / ws

    def _agent(self, ws: str) -> Agent:
        agent = self.agents.get(ws)
        if agent is None:
            agent = Agent(workstream=ws, folder=self._folder(ws))
            self.agents[ws] = agent
        return agent

    def _start(self, ws: str) -> None:
        """Start the workstream's agent unless it runs already or its work is done."""
        if not NAME_RE.match(ws):
            log.warning("bad_workstream_name", workstream=ws)
            return
        agent = self._agent(ws)
        if agent.state in ("done", "stopped") or agent.alive():
            return
        command = self.settings.command_for(ws)
        if command is None:
            agent.state = "failed"
            if not agent.no_command_escalated:
                agent.no_command_escalated = True
                log.error("no_agent_command", workstream=ws)
                self._queued.append(self._no_command(ws))
            return
        cfg = self.config
        agent.folder.mkdir(parents=True, exist_ok=True)
        values = self.settings.values(ws, self.name, agent.output, cfg.state_dir, sys.executable)
        argv = agent_argv(command.template, values)  # checked at start-up: cannot fail here
        env = {
            **os.environ,
            **self.settings.env_for(ws),
            # What an agent needs to know to report, whatever its command line says.
            "PIXELS_ORCHESTRATOR": self.name,
            "PIXELS_WORKSTREAM": ws,
            "PIXELS_STATUS_FILE": str(agent.output),
        }
        with agent.log.open("ab") as out:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.write(f"--- {stamp} pixels-orchestrator: {shlex.join(argv)}\n".encode())
            out.flush()
            offset = out.tell()
            try:
                # Its own session: a Ctrl-C meant for the runner does not reach the agent, a halt
                # can signal the agent's children with it (killpg), and it outlives a runner
                # crash (a restarted runner adopts it).
                popen = subprocess.Popen(
                    argv,
                    cwd=agent.folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                agent.proc, agent.state = None, "failed"
                out.write(f"cannot start: {exc}\n".encode())
                log.error("agent_not_started", workstream=ws, error=str(exc))  # noqa: TRY400 - reported, no traceback wanted
                self._queued.append(self._failure(agent, f"its agent could not be started: {exc}"))
                return
        agent.proc = AgentProcess.child(popen)
        write_pid_file(agent.folder, PidRecord(popen.pid, agent.proc.start_time, offset))
        agent.state, agent.terminating = "running", False
        if uses_lines(self.mode):
            agent.lines = LineReader(agent.log, offset)
            agent.bad_line_escalated = False
        if uses_liveness(self.mode):
            agent.live_state = IN_PROGRESS
        log.info("agent_started", workstream=ws, pid=popen.pid, argv=argv, source=command.source)

    async def _halt(self, ws: str) -> None:
        """Halt one agent as configured: pause (SIGSTOP) or terminate."""
        agent = self.agents.get(ws)
        if agent is None or agent.state not in ("running", "paused"):
            return
        if self.settings.halt == "pause" and agent.alive():
            assert agent.proc is not None
            agent.proc.signal_group(signal.SIGSTOP)
            agent.state = "paused"
            log.info("agent_paused", workstream=ws, pid=agent.proc.pid)
            return
        await self._stop(ws, "halted")

    def _resume(self, ws: str) -> None:
        agent = self.agents.get(ws)
        if agent is not None and agent.state == "paused" and agent.alive():
            assert agent.proc is not None
            agent.proc.signal_group(signal.SIGCONT)
            agent.state = "running"
            log.info("agent_continued", workstream=ws, pid=agent.proc.pid)
        elif agent is not None and agent.state in ("paused", "halted", "failed"):
            self._start(ws)
        elif (agent is None or agent.state == "idle") and (self._folder(ws) / "agent.log").exists():
            # Halted before this runner restarted (its files say it ran): run it again. A
            # workstream that never ran waits for its start_workstream.
            self._start(ws)

    async def _stop(self, ws: str, state: str) -> None:
        agent = self.agents.get(ws)
        if agent is None:
            if state == "stopped":
                self._agent(ws).state = "stopped"
            return
        proc = agent.proc
        if proc is not None and not proc.exited():
            agent.terminating = True
            await _terminate(proc, self.settings.grace_s)
            log.info("agent_stopped", workstream=ws, returncode=proc.returncode, why=state)
        if agent.state not in ("done", "stopped"):
            agent.state = state

    async def _stop_all(self, state: str) -> None:
        for ws, agent in list(self.agents.items()):
            if agent.alive():
                await self._stop(ws, state)

    # --- watching ----------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await self._look()
            if self._client is not None and self._client.refused is not None:
                # The daemon does not know this name: nothing will ever be delivered.
                self.stop_requested.set()
            await anyio.sleep(self.config.watch_interval_s)

    async def _look(self) -> None:
        """One look at every agent: its file, its lines, then its process."""
        for agent in list(self.agents.values()):
            if uses_file(self.mode):
                await self._read_file(agent)
            self._read_lines(agent)
            if not await self._check_exit(agent):
                await self._publish(agent)
        queued, self._queued = self._queued, []
        for escalation in queued:
            await self._send(escalation)

    def _read_file_now(self, agent: Agent) -> None:
        """Read STATUS.json once, without escalating (at start-up)."""
        if not uses_file(self.mode):
            return
        with contextlib.suppress(OSError, ValueError):
            agent.file_state = parse_status(agent.output.read_text(), agent.workstream)

    async def _read_file(self, agent: Agent) -> None:
        try:
            st = agent.output.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("status_unreadable", workstream=agent.workstream, error=str(exc))
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == agent.stamp:
            if agent.bad is not None and agent.bad[0] == stamp and not agent.bad_escalated:
                # Still the same bad file one look later: not a write caught half-way.
                agent.bad_escalated = True
                await self._send(self._bad_file_escalation(agent, agent.bad[1]))
            return
        agent.stamp = stamp
        try:
            reported = parse_status(agent.output.read_text(errors="replace"), agent.workstream)
        except (OSError, ValueError) as exc:
            why = str(exc) or type(exc).__name__
            log.warning("status_bad", workstream=agent.workstream, why=why)
            agent.bad = (stamp, why)
            return
        agent.bad, agent.bad_escalated = None, False
        agent.file_state = reported

    def _read_lines(self, agent: Agent, final: bool = False) -> None:
        if agent.lines is None:
            return
        for line in agent.lines.read(final=final):
            try:
                reported = parse_line(line, agent.workstream, agent.line_state)
            except BadProgressLine as exc:
                log.warning("progress_line_bad", workstream=agent.workstream, why=str(exc))
                if not agent.bad_line_escalated:
                    agent.bad_line_escalated = True
                    self._queued.append(self._bad_line_escalation(agent, str(exc)))
                continue
            if reported is not None:
                agent.line_state = reported

    async def _publish(self, agent: Agent) -> None:
        """Send the agent's state if it changed; a new blocker is an escalation."""
        reported = choose(self.mode, agent.file_state, agent.line_state, agent.live_state)
        if reported is None or reported.key() == agent.sent:
            return
        agent.current, agent.sent = reported, reported.key()
        if reported.report.status == "complete" and agent.state != "stopped":
            agent.state = "done"
        await self._send(
            Status(
                orchestrator=self.name,
                status=self._orchestrator_status(),
                workstreams={agent.workstream: reported.report},
                performance_metrics=self._metrics(),
            )
        )
        blocker = reported.report.blocker
        if blocker is None and reported.report.status == "blocked":
            blocker = "blocked (the agent gave no reason)"
        if blocker is not None and blocker not in agent.blockers_escalated:
            agent.blockers_escalated.add(blocker)
            await self._send(self._blocker_escalation(agent, blocker))

    async def _check_exit(self, agent: Agent) -> bool:
        """If the agent's process ended: its last words, then its exit judged. Returns whether
        it had ended (its state is published then)."""
        proc = agent.proc
        if proc is None or not proc.exited():
            return False
        agent.proc = None
        remove_pid_file(agent.folder)
        code = proc.returncode
        # What it wrote last counts before judging its exit.
        if uses_file(self.mode):
            await self._read_file(agent)
        self._read_lines(agent, final=True)
        # Liveness: exit 0 is the work done, unless it was our SIGTERM it obeyed.
        if code == 0 and uses_liveness(self.mode) and agent.state == "running":
            agent.live_state = COMPLETE if not agent.terminating else agent.live_state
        await self._publish(agent)
        if agent.state == "paused":  # killed while paused: resume starts it again
            agent.state = "halted"
        if agent.terminating or agent.state in ("done", "stopped", "halted"):
            log.info("agent_exited", workstream=agent.workstream, returncode=code)
            return True
        agent.state = "failed"
        if proc.adopted:
            what = (
                f"its agent (pid {proc.pid}, adopted after the runner restarted) exited without "
                "reporting the work complete; its exit status is unknown"
            )
        elif code == 0:
            what = "its agent exited 0 without reporting the work complete"
        elif code is not None and code < 0:
            what = f"its agent was killed by signal {-code}"
        else:
            what = f"its agent exited with status {code}"
        log.error("agent_failed", workstream=agent.workstream, returncode=code)
        await self._send(self._failure(agent, what))
        return True

    # --- messages ----------------------------------------------------------------------------

    def _failure(self, agent: Agent, what: str) -> Escalation:
        tail = log_tail(agent.log)
        help_text = f"see {agent.log}; fix the agent, then `pixelsctl resume {agent.workstream}` "
        help_text += "after halting it, or restart the runner"
        if tail:
            help_text += f"\nlast lines of its log:\n{tail}"
        return Escalation(
            orchestrator=self.name,
            type="failure",
            severity="high",
            issue=f"{agent.workstream}: {what}"[:TEXT_MAX],
            affected_workstreams=[agent.workstream],
            help_needed=help_text[:TEXT_MAX],
        )

    def _no_command(self, ws: str) -> Escalation:
        return Escalation(
            orchestrator=self.name,
            type="other",
            severity="high",
            issue=f"{ws}: no agent command to run it: the runner config, the plan and --agent "
            "give none",
            affected_workstreams=[ws],
            help_needed=f"give {ws} a command: `command` under [workstreams.{ws}] or [agent] in "
            f"the runner config (pixels-orchestrator run {self.name} --config FILE), `command` "
            f"in the plan's [[workstreams]] entry for {ws}, or --agent TEMPLATE; then restart "
            "the runner (see docs/operations.md, Running an orchestrator)",
        )

    def _bad_file_escalation(self, agent: Agent, why: str) -> Escalation:
        return Escalation(
            orchestrator=self.name,
            type="other",
            severity="medium",
            issue=f"{agent.workstream}: {agent.output} cannot be read ({why}); its last good "
            "status is kept"[:TEXT_MAX],
            affected_workstreams=[agent.workstream],
            help_needed="make the agent write STATUS.json whole (write a temporary file, then "
            "rename it over the old one) in the documented shape",
        )

    def _bad_line_escalation(self, agent: Agent, why: str) -> Escalation:
        return Escalation(
            orchestrator=self.name,
            type="other",
            severity="medium",
            issue=f"{agent.workstream}: its agent printed a progress line that cannot be used "
            f"({why}); the line is ignored"[:TEXT_MAX],
            affected_workstreams=[agent.workstream],
            help_needed="fix the agent's PIXELS- lines (docs/operations.md, Running an "
            f"orchestrator); see {agent.log}",
        )

    def _blocker_escalation(self, agent: Agent, blocker: str) -> Escalation:
        return Escalation(
            orchestrator=self.name,
            type="blocker",
            severity="medium",
            issue=f"{agent.workstream} is blocked: {blocker}"[:TEXT_MAX],
            affected_workstreams=[agent.workstream],
            help_needed=f"resolve what blocks {agent.workstream}; its agent reported it (the "
            "daemon raises it to high after 24 h open, critical after 48 h)",
        )

    def _metrics(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for agent in self.agents.values():
            if agent.current is not None:
                merged.update(agent.current.metrics)
        return merged

    def _orchestrator_status(self) -> OrchestratorStatus:
        if self.halted:
            return "halted"
        states = [a.state for a in self.agents.values()]
        if "running" in states:
            return "active"
        if states and all(s in ("done", "stopped") for s in states):
            return "complete"
        return "idle"

    async def _send_orchestrator_status(self) -> None:
        """After a command, tell the daemon the orchestrator's own status if it changed."""
        status = self._orchestrator_status()
        if status != self._last_orch_status:
            self._last_orch_status = status
            await self._send(Status(orchestrator=self.name, status=status))

    async def _send(self, message: Status | PollReply | Escalation) -> None:
        assert self._client is not None
        await self._client.send(message)


async def _terminate(proc: AgentProcess, grace_s: float) -> None:
    """SIGTERM the agent's process group (and SIGCONT it: a paused agent must run to handle the
    TERM); SIGKILL it if it has not exited after the grace."""
    proc.signal_group(signal.SIGTERM)
    proc.signal_group(signal.SIGCONT)
    deadline = time.monotonic() + grace_s
    while not proc.exited() and time.monotonic() < deadline:
        await anyio.sleep(0.02)
    if proc.exited():
        return
    proc.signal_group(signal.SIGKILL)
    if proc.popen is not None:
        await anyio.to_thread.run_sync(proc.popen.wait)
        return
    deadline = time.monotonic() + KILL_WAIT_S
    while not proc.exited() and time.monotonic() < deadline:
        await anyio.sleep(0.02)
