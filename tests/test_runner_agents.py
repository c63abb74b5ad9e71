"""``pixels-orchestrator run`` with real agent processes against a real pixelsd: progress from
PIXELS- lines and from liveness, blocker escalations, halt mode pause, a start with no command,
the config file (its command, env and errors), and adoption of a live agent by a restarted runner.

The agent is tests/scripts/feed_agent.py: it prints what the test appends to its feed.txt (and
exits on ``EXIT N``), so the test decides its every line. The daemon starts foundation's WS-01 as
soon as the runner connects."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrators.agentproc import proc_stat
from tests.support import BIN, DaemonProcess, ctl
from tests.test_runner import escalations_from, eventually, ws01

FEED = Path(__file__).parent / "scripts" / "feed_agent.py"
FEED_TEMPLATE = f"{{python}} {FEED}"

pytestmark = pytest.mark.slow


class Runner:
    """``pixels-orchestrator run foundation --state-dir DIR ARGS...`` as a subprocess."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.state_dir = state_dir
        self.log = state_dir / "runner.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "pixels-orchestrator"),
                    "run",
                    "foundation",
                    "--state-dir",
                    str(state_dir),
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def close(self) -> None:
        """SIGTERM (the runner stops its agents), SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Agent:
    """WS-01's agent, seen through its folder."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / "work" / "foundation" / "WS-01"

    def events(self) -> list[str]:
        path = self.folder / "events.txt"
        return path.read_text().split() if path.exists() else []

    def starts(self) -> int:
        return self.events()[0::2].count("start")

    def pid(self) -> int:
        return int(eventually("the agent", lambda: self.events()[1:2])[0])

    def feed(self, *lines: str) -> None:
        with (self.folder / "feed.txt").open("a") as f:
            f.write("".join(f"{line}\n" for line in lines))

    def kill_all(self) -> None:
        """Every agent any runner started under the state dir (WS-01's and the workstreams
        started after it): they run in their own sessions and outlive a killed runner."""
        for events in self.folder.parent.glob("*/events.txt"):
            for pid in events.read_text().split()[1::2]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(state_dir).start()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def agent(state_dir: Path, daemon: DaemonProcess) -> Iterator[Agent]:
    a = Agent(state_dir)
    try:
        yield a
    finally:
        a.kill_all()  # leave no agent behind, whatever the runners did


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    started: list[Runner] = []
    try:
        yield started
    finally:
        for r in started:
            r.close()


def run(runners: list[Runner], state_dir: Path, *args: str) -> Runner:
    r = Runner(state_dir, *args)
    runners.append(r)
    return r


def config(state_dir: Path, text: str) -> str:
    path = state_dir / "runner.toml"
    path.write_text(text)
    return str(path)


def _run_args(state_dir: Path) -> list[str]:
    return [str(BIN / "pixels-orchestrator"), "run", "foundation", "--state-dir", str(state_dir)]


def blockers_of(state_dir: Path) -> list[dict[str, Any]]:
    return [e for e in escalations_from(state_dir, "foundation") if e["type"] == "blocker"]


def test_progress_lines_on_stdout_reach_pixelsctl_workstreams(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """An agent that writes no STATUS.json but prints PIXELS-PROGRESS 0.3: WS-01 at 30 %."""
    run(runners, state_dir, "--agent", FEED_TEMPLATE)
    agent.pid()
    agent.feed("training epoch 1", "PIXELS-PROGRESS 0.3")
    got = eventually("WS-01 at 30 %", lambda: (w := ws01(state_dir))["progress"] == 0.3 and w)
    assert got["status"] == "in_progress"


def test_a_silent_agent_is_in_progress_while_it_runs_and_complete_on_exit_0(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """Liveness alone: running is in progress; exit 0 is complete; no escalation."""
    run(runners, state_dir, "--agent", FEED_TEMPLATE)
    agent.pid()
    eventually("WS-01 in progress", lambda: ws01(state_dir)["status"] == "in_progress")
    agent.feed("EXIT 0")
    eventually("WS-01 complete", lambda: ws01(state_dir)["status"] == "complete")
    assert [e["issue"] for e in escalations_from(state_dir, "foundation")] == []
    assert not (agent.folder / "agent.pid").exists()


def test_each_distinct_reported_blocker_is_one_blocker_escalation(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """The same blocker reported again raises nothing new; another text does (the daemon counts
    both on one record: a repeat while unresolved updates it)."""
    run(runners, state_dir, "--agent", FEED_TEMPLATE)
    agent.pid()
    agent.feed("PIXELS-BLOCKED no GPU quota")
    (first,) = eventually("a blocker escalation", lambda: blockers_of(state_dir))
    assert first["issue"] == "WS-01 is blocked: no GPU quota"
    assert first["affected_workstreams"] == ["WS-01"]
    agent.feed("PIXELS-PROGRESS 0.5")
    eventually("WS-01 moving", lambda: ws01(state_dir)["progress"] == 0.5)
    agent.feed("PIXELS-BLOCKED no GPU quota")
    eventually("WS-01 blocked again", lambda: ws01(state_dir)["status"] == "blocked")
    agent.feed("PIXELS-BLOCKED disk full")
    (last,) = eventually(
        "the second blocker",
        lambda: [e for e in blockers_of(state_dir) if e["issue"].endswith("disk full")],
    )
    assert last["count"] == 2  # no GPU quota once, disk full once


def test_pause_halt_stops_the_process_and_resume_continues_it(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """halt = "pause": `pixelsctl halt WS-01` SIGSTOPs the agent (state T), `resume` SIGCONTs the
    same process, which goes on reporting; it is never started twice."""
    cfg = config(state_dir, f'[agent]\ncommand = "{FEED_TEMPLATE}"\nhalt = "pause"\n')
    run(runners, state_dir, "--config", cfg)
    pid = agent.pid()
    ctl(state_dir, "halt", target="WS-01", reason="test")
    eventually("the agent stopped", lambda: (proc_stat(pid) or ("?",))[0] == "T")
    ctl(state_dir, "resume", target="WS-01", reason="test")
    eventually("the agent running", lambda: (proc_stat(pid) or ("T",))[0] != "T")
    agent.feed("PIXELS-PROGRESS 0.7")
    eventually("WS-01 at 70 %", lambda: ws01(state_dir)["progress"] == 0.7)
    assert agent.events() == ["start", str(pid)]


def test_a_start_with_no_command_is_one_escalation_and_the_runner_serves_on(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """No --agent, no config, no plan command: the start of WS-01 is one escalation that says how
    to configure a command."""
    r = run(runners, state_dir)
    (esc,) = eventually("an escalation", lambda: escalations_from(state_dir, "foundation"))
    assert esc["issue"].startswith("WS-01: no agent command to run it")
    assert "[workstreams.WS-01]" in esc["help_needed"] and "--agent" in esc["help_needed"]
    assert ctl(state_dir, "poll")  # the daemon polls; the runner answers it
    assert r.proc.poll() is None


def test_config_command_and_env_reach_the_agent(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """[workstreams.WS-01]'s command wins over --agent; [agent].env and the workstream's env
    merge into the agent's environment."""
    cfg = config(
        state_dir,
        f'[agent]\nenv = {{ AGENT_MARK = "default" }}\n'
        f'[workstreams.WS-01]\ncommand = "{FEED_TEMPLATE}"\nenv = {{ AGENT_MARK = "ws01" }}\n',
    )
    run(
        runners, state_dir, "--config", cfg, "--agent", f"{sys.executable} -c 'raise SystemExit(9)'"
    )
    agent.pid()
    eventually("its mark", lambda: "mark=ws01\n" in (agent.folder / "agent.log").read_text())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agent]\nhalt_mode = 'pause'\n", "unknown key 'halt_mode' in [agent]; known keys: "),
        ("[agent]\nhalt = 'freeze'\n", "[agent] halt = 'freeze' is not one of: terminate, pause"),
    ],
)
def test_config_file_errors_are_usage_errors(state_dir: Path, text: str, message: str) -> None:
    """Exit 2 and one line naming the file and the fault (no daemon needed)."""
    cfg = config(state_dir, text)
    done = subprocess.run(
        [*_run_args(state_dir), "--config", cfg],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"pixels-orchestrator: {cfg}: {message}")
    assert len(done.stderr.splitlines()) == 1


def test_a_restarted_runner_adopts_the_live_agent_instead_of_starting_another(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """The runner is SIGKILLed mid-workstream; its agent lives on. The next runner adopts it
    (one start in all) and reads its progress lines again."""
    first = run(runners, state_dir, "--agent", FEED_TEMPLATE)
    pid = agent.pid()
    agent.feed("PIXELS-PROGRESS 0.3")
    eventually("WS-01 at 30 %", lambda: ws01(state_dir)["progress"] == 0.3)
    first.proc.kill()
    first.proc.wait()
    run(runners, state_dir, "--agent", FEED_TEMPLATE)
    agent.feed("PIXELS-PROGRESS 0.6")
    eventually("WS-01 at 60 %", lambda: ws01(state_dir)["progress"] == 0.6)
    assert agent.events() == ["start", str(pid)]
    assert "agent_adopted" in (state_dir / "runner.log").read_text()


def test_an_adopted_agent_that_exits_unfinished_is_a_failure_of_unknown_status(
    state_dir: Path, agent: Agent, runners: list[Runner]
) -> None:
    """Not the runner's child: its exit status cannot be known, and the escalation says so."""
    first = run(runners, state_dir, "--agent", FEED_TEMPLATE)
    pid = agent.pid()
    first.proc.kill()
    first.proc.wait()
    run(runners, state_dir, "--agent", FEED_TEMPLATE)
    eventually("adopted", lambda: "agent_adopted" in (state_dir / "runner.log").read_text())
    agent.feed("EXIT 3")
    (esc,) = eventually("an escalation", lambda: escalations_from(state_dir, "foundation"))
    assert esc["type"] == "failure"
    assert f"(pid {pid}, adopted after the runner restarted)" in esc["issue"]
    assert "its exit status is unknown" in esc["issue"]
    assert agent.starts() == 1
