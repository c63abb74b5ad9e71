"""A long-running orchestrator: runs one agent command per workstream the daemon starts, watches
each agent's STATUS.json, and reports what changes.

    pixels-orchestrator run NAME [--state-dir DIR | --endpoint URL] --agent TEMPLATE [--workdir DIR]

The daemon drives it through commands (docs/protocol.md):

- ``start_workstream WS``: run the agent TEMPLATE, formatted with {workstream} {name} {days}
  {output} {state_dir} {python} (shlex-split first, each word formatted: no shell), in
  WORKDIR/NAME/WS/ with its output appended to WORKDIR/NAME/WS/agent.log;
- ``halt`` (one workstream, or the whole orchestrator): SIGTERM the agent's process group, keep its
  files; ``resume``: start it again (an agent continues from its STATUS.json);
- ``stop`` with a workstream: stop that agent for good; without one: stop everything and exit 0;
- ``poll``: answer with a ``poll_reply`` (re = the poll's id) holding every workstream's last state.

Every ~0.15 s each STATUS.json's mtime and size are looked at; a changed file is read and, when the
reported state (status, progress, blocker, metrics) changed, sent as a ``status``. A file that does
not parse (half written by an agent that does not write atomically, or garbage) keeps the last good
state; if it is still bad at the next look, one ``escalation`` says so (again only after it was good
in between). An agent that exits non-zero, or exits 0 without reporting complete, is an
``escalation`` with the tail of its log. SIGTERM or SIGINT: stop the agents, deliver what the outbox
holds (up to a few seconds), exit 0. A daemon that refuses the orchestrator's name: exit 1.

A runner restarted on the same WORKDIR starts again the agents of workstreams whose STATUS.json is
not complete (the daemon re-sends only the starts it still owes; a halt in force comes with the
welcome, and stops them again).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
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

from orchestrators.client import OrchestratorClient
from protocol.messages import (
    Command,
    Escalation,
    OrchestratorStatus,
    Poll,
    PollReply,
    Status,
    WorkstreamReport,
)

log = structlog.get_logger("pixels.runner")

#: How often STATUS.json files and agent processes are looked at (real seconds). The files are
#: small; 0.15 s keeps the daemon's view within a fraction of a second of the agents'.
WATCH_INTERVAL_S = 0.15
#: After SIGTERM, how long an agent gets to write its last state and exit before SIGKILL.
TERM_GRACE_S = 5.0
#: On shutdown, how long the outbox gets to be delivered before the runner exits anyway (what is
#: left stays in the outbox for the next run: nothing is lost).
FLUSH_S = 5.0
#: Lines of an agent's log quoted in the escalation for its failure: the traceback's end fits.
LOG_TAIL_LINES = 15
#: protocol.messages.Text: the longest string a message field may carry.
TEXT_MAX = 4096
#: The placeholders an agent template may use.
PLACEHOLDERS = ("workstream", "name", "days", "output", "state_dir", "python")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # protocol.messages.Name
_STATUSES = {"not_started", "in_progress", "blocked", "complete"}


class TemplateError(Exception):
    """An agent template that cannot be used; the message says why."""


class BadStatusFile(ValueError):
    """A STATUS.json that cannot be used; the message says what is wrong with it."""


# --- pure: the agent's command line and its STATUS.json ---------------------------------------


def agent_argv(template: str, values: dict[str, str]) -> list[str]:
    """The agent's argv: ``template`` split like a shell would (no shell runs it), then each
    word formatted with ``values``. Raises TemplateError naming the fault."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise TemplateError(f"cannot split the agent template: {exc}") from None
    if not words:
        raise TemplateError("the agent template is empty")
    try:
        return [word.format(**values) for word in words]
    except KeyError as exc:
        raise TemplateError(
            f"unknown placeholder {{{exc.args[0]}}} in the agent template; known: "
            + " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        ) from None
    except (ValueError, IndexError) as exc:
        raise TemplateError(
            f"bad agent template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None


def check_template(template: str) -> None:
    """Raise TemplateError if ``template`` cannot be formatted."""
    agent_argv(template, dict.fromkeys(PLACEHOLDERS, "x"))


@dataclass(frozen=True)
class Reported:
    """One STATUS.json as the runner understood it."""

    report: WorkstreamReport
    metrics: dict[str, float]

    def key(self) -> tuple[Any, ...]:
        """What a change is judged on."""
        r = self.report
        return (r.status, r.progress, r.blocker, r.completion_time, sorted(self.metrics.items()))


def parse_status(text: str, workstream: str) -> Reported:
    """Read a STATUS.json document (the source project's shape). Raises ValueError saying what
    is wrong. progress is 0..1 (a value above 1, up to 100, is read as a percentage); blockers are
    joined into the report's one blocker text; metrics that are not numbers, or whose names are
    not wire names, are left out."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise BadStatusFile("not a JSON object")
    named = doc.get("workstream", workstream)
    if named != workstream:
        raise BadStatusFile(f"it is about {named!r}, not {workstream}")
    status = doc.get("status")
    if status == "completed":
        status = "complete"
    if status not in _STATUSES:
        raise BadStatusFile(f"status {status!r} is not one of {', '.join(sorted(_STATUSES))}")
    progress = doc.get("progress", 0.0)
    if isinstance(progress, bool) or not isinstance(progress, int | float):
        raise BadStatusFile(f"progress {progress!r} is not a number")
    if 1.0 < progress <= 100.0:
        progress = progress / 100.0
    if not 0.0 <= progress <= 1.0:
        raise BadStatusFile(f"progress {progress!r} is not between 0 and 1")
    if status == "complete":
        progress = 1.0
    blockers = doc.get("blockers") or []
    if not isinstance(blockers, list):
        raise BadStatusFile("blockers is not a list")
    blocker = "; ".join(str(b) for b in blockers if str(b).strip())[:TEXT_MAX] or None
    completion = doc.get("completion_date")
    completion_time = _timestamp(completion) if status == "complete" and completion else None
    metrics_doc = doc.get("metrics") or {}
    if not isinstance(metrics_doc, dict):
        raise BadStatusFile("metrics is not an object")
    metrics = {
        str(k): float(v)
        for k, v in metrics_doc.items()
        if _NAME_RE.match(str(k))
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
    }
    report = WorkstreamReport(
        status=status,
        progress=float(progress),
        blocker=blocker,
        completion_time=completion_time,
    )
    return Reported(report=report, metrics=metrics)


def _timestamp(value: object) -> float | None:
    """An ISO 8601 time (or unix seconds) as unix seconds; None if it cannot be read."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = dt.timestamp()
    return ts if ts >= 0 else None


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

    state: running | halted (stopped by a halt; resume starts it again) | done (reported
    complete) | failed (exited otherwise) | stopped (stop command: for good).
    """

    workstream: str
    folder: Path
    state: str = "running"
    proc: subprocess.Popen[bytes] | None = None
    terminating: bool = False
    stamp: tuple[int, int] | None = None
    good: Reported | None = None
    sent: tuple[Any, ...] | None = None
    bad: tuple[tuple[int, int], str] | None = None  # the stamp of a bad file and why
    bad_escalated: bool = False

    @property
    def output(self) -> Path:
        return self.folder / "STATUS.json"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"


@dataclass
class RunnerConfig:
    name: str
    endpoint: str
    outbox: Path
    template: str
    workdir: Path
    state_dir: Path | None
    days: dict[str, int] = field(default_factory=dict)  # workstream -> estimate (max days)
    watch_interval_s: float = WATCH_INTERVAL_S


class Runner:
    """``pixels-orchestrator run``: agents in, status and escalations out (see the module doc)."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.name = config.name
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
        async with OrchestratorClient(self.name, cfg.endpoint, cfg.outbox) as client:
            self._client = client
            self._restart_unfinished()
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

    def _restart_unfinished(self) -> None:
        """Agents of a previous run of this runner whose work is not complete start again."""
        base = self.config.workdir / self.name
        if not base.is_dir():
            return
        for folder in sorted(base.iterdir()):
            status = folder / "STATUS.json"
            if not status.is_file() or not _NAME_RE.match(folder.name):
                continue
            try:
                reported = parse_status(status.read_text(), folder.name)
            except (OSError, ValueError):
                reported = None
            if reported is not None and reported.report.status == "complete":
                agent = self._agent(folder.name)
                agent.state, agent.good = "done", reported
                continue
            log.info("restarting_unfinished", workstream=folder.name)
            self._start(folder.name)

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
                await self._stop_all("halted")
            else:
                await self._stop(ws, "halted")
        elif action == "resume":
            if ws is None:
                self.halted = False
                for agent in list(self.agents.values()):
                    if agent.state in ("halted", "failed"):
                        self._start(agent.workstream)
                starts, self.deferred_starts = self.deferred_starts, []
                for name in starts:
                    self._start(name)
            elif ws in self.agents and self.agents[ws].state in ("halted", "failed"):
                self._start(ws)
        elif action == "stop":
            if ws is None:
                self.stop_requested.set()
            else:
                await self._stop(ws, "stopped")
        await self._send_orchestrator_status()

    async def _answer_poll(self, poll: Poll) -> None:
        reports = {ws: a.good.report for ws, a in self.agents.items() if a.good is not None}
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

    def _agent(self, ws: str) -> Agent:
        agent = self.agents.get(ws)
        if agent is None:
            agent = Agent(workstream=ws, folder=self.config.workdir / self.name / ws)
            self.agents[ws] = agent
        return agent

    def _start(self, ws: str) -> None:
        """Start the workstream's agent unless it runs already or its work is done."""
        if not _NAME_RE.match(ws):
            log.warning("bad_workstream_name", workstream=ws)
            return
        agent = self._agent(ws)
        if agent.state in ("done", "stopped") or (agent.proc and agent.proc.poll() is None):
            return
        cfg = self.config
        agent.folder.mkdir(parents=True, exist_ok=True)
        values = {
            "workstream": ws,
            "name": self.name,
            "days": str(cfg.days.get(ws, 1)),
            "output": str(agent.output),
            "state_dir": str(cfg.state_dir) if cfg.state_dir else "",
            "python": sys.executable,
        }
        argv = agent_argv(cfg.template, values)  # checked at start-up: cannot fail here
        with agent.log.open("ab") as out:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.write(f"--- {stamp} pixels-orchestrator: {shlex.join(argv)}\n".encode())
            out.flush()
            try:
                # Its own session: a Ctrl-C meant for the runner does not reach the agent, and a
                # halt can stop the agent's children with it (killpg).
                agent.proc = subprocess.Popen(
                    argv,
                    cwd=agent.folder,
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
        agent.state, agent.terminating = "running", False
        log.info("agent_started", workstream=ws, pid=agent.proc.pid, argv=argv)

    async def _stop(self, ws: str, state: str) -> None:
        agent = self.agents.get(ws)
        if agent is None:
            if state == "stopped":
                self._agent(ws).state = "stopped"
            return
        proc = agent.proc
        if proc is not None and proc.poll() is None:
            agent.terminating = True
            await _terminate(proc)
            log.info("agent_stopped", workstream=ws, returncode=proc.returncode, why=state)
        if agent.state not in ("done", "stopped"):
            agent.state = state

    async def _stop_all(self, state: str) -> None:
        for ws, agent in list(self.agents.items()):
            if agent.proc is not None and agent.proc.poll() is None:
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
        """One look at every agent: its file, then its process."""
        for agent in list(self.agents.values()):
            await self._read(agent)
            await self._check_exit(agent)
        queued, self._queued = self._queued, []
        for escalation in queued:
            await self._send(escalation)

    async def _read(self, agent: Agent) -> None:
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
        agent.good = reported
        if reported.key() != agent.sent:
            agent.sent = reported.key()
            if reported.report.status == "complete":
                agent.state = "done"
            await self._send(
                Status(
                    orchestrator=self.name,
                    status=self._orchestrator_status(),
                    workstreams={agent.workstream: reported.report},
                    performance_metrics=self._metrics(),
                )
            )

    async def _check_exit(self, agent: Agent) -> None:
        proc = agent.proc
        if proc is None or proc.poll() is None:
            return
        agent.proc = None
        code = proc.returncode
        await self._read(agent)  # what it wrote last counts before judging its exit
        if agent.terminating or agent.state in ("done", "stopped", "halted"):
            log.info("agent_exited", workstream=agent.workstream, returncode=code)
            return
        agent.state = "failed"
        if code == 0:
            what = "its agent exited 0 without reporting the work complete"
        elif code < 0:
            what = f"its agent was killed by signal {-code}"
        else:
            what = f"its agent exited with status {code}"
        log.error("agent_failed", workstream=agent.workstream, returncode=code)
        await self._send(self._failure(agent, what))

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

    def _metrics(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for agent in self.agents.values():
            if agent.good is not None:
                merged.update(agent.good.metrics)
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


async def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the agent's process group; SIGKILL it if it has not exited after the grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    while proc.poll() is None and time.monotonic() < deadline:
        await anyio.sleep(0.02)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await anyio.to_thread.run_sync(proc.wait)
