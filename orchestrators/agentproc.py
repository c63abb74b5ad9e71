"""An agent's process as the runner holds it: a child it started, or one it adopted after a restart.

Each agent runs in its own session (its pid is its process group's id), so a signal to the group
reaches the agent and its children. The runner writes WORKDIR/NAME/WS/agent.pid when it starts an
agent: ``{"pid": ..., "start_time": ..., "log_offset": ...}``, start_time being field 22 of
/proc/PID/stat (clock ticks after boot), so a pid the kernel has since given to another process is
never mistaken for the agent. A runner that restarts adopts the agent a pid file names if that
process still lives with that start time; the file goes when the agent is reaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

PID_FILE = "agent.pid"


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start_time) of ``pid`` from /proc/PID/stat, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # Field 2 (comm) is in parentheses and may hold spaces and ')': split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime)
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (when it started, in clock ticks after boot), or None."""
    stat = proc_stat(pid)
    return stat[1] if stat is not None else None


@dataclass(frozen=True)
class PidRecord:
    """What agent.pid holds: the agent's pid, its start time, where its output began in
    agent.log."""

    pid: int
    start_time: int | None
    log_offset: int


def write_pid_file(folder: Path, record: PidRecord) -> None:
    """Write ``folder``/agent.pid atomically (a reader never sees half of it)."""
    doc = {"pid": record.pid, "start_time": record.start_time, "log_offset": record.log_offset}
    tmp = folder / f".{PID_FILE}.tmp"
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, folder / PID_FILE)


def read_pid_file(folder: Path) -> PidRecord | None:
    """The record in ``folder``/agent.pid, or None if there is none or it cannot be read."""
    try:
        doc = json.loads((folder / PID_FILE).read_text())
        pid, started, offset = doc["pid"], doc.get("start_time"), doc.get("log_offset", 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(pid, int) or pid <= 1 or not isinstance(offset, int) or offset < 0:
        return None
    return PidRecord(pid, started if isinstance(started, int) else None, offset)


def remove_pid_file(folder: Path) -> None:
    with contextlib.suppress(OSError):
        (folder / PID_FILE).unlink()


class AgentProcess:
    """The agent's process. ``popen``: our child (exit status known once reaped). Without it:
    adopted from a previous runner (not our child: liveness from /proc, exit status unknown)."""

    def __init__(
        self, pid: int, popen: subprocess.Popen[bytes] | None = None, started: int | None = None
    ) -> None:
        self.pid = pid
        self.popen = popen
        self.start_time = started if popen is None else start_time(pid)

    @classmethod
    def child(cls, popen: subprocess.Popen[bytes]) -> AgentProcess:
        return cls(popen.pid, popen)

    @classmethod
    def adopt(cls, record: PidRecord) -> AgentProcess | None:
        """The process ``record`` names, if it still lives with the recorded start time."""
        stat = proc_stat(record.pid)
        if record.start_time is None or stat is None:
            return None
        state, started = stat
        if started != record.start_time or state in ("Z", "X"):
            return None
        return cls(record.pid, None, started)

    @property
    def adopted(self) -> bool:
        return self.popen is None

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal); None while running or unknown."""
        return self.popen.returncode if self.popen is not None else None

    def exited(self) -> bool:
        """Whether the process has ended (a child is reaped here; a zombie counts as ended)."""
        if self.popen is not None:
            return self.popen.poll() is not None
        stat = proc_stat(self.pid)
        return stat is None or stat[1] != self.start_time or stat[0] in ("Z", "X")

    def signal_group(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the agent's process group, unless the agent is gone (an adopted
        one's pid may since belong to another process)."""
        if self.popen is not None:
            if self.popen.returncode is not None:
                return
        elif self.exited():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
