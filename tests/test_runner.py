"""``pixels-orchestrator run``: the pure parts (STATUS.json, the agent template), then the runner
as a real subprocess against a real pixelsd, with real agent processes (tests/scripts/
probe_agent.py reports once and records its starts and stops; the test writes STATUS.json itself
when it needs another state)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrators.runner import (
    BadStatusFile,
    TemplateError,
    agent_argv,
    check_template,
    parse_status,
)
from tests.support import BIN, DaemonProcess, ctl

PROBE = Path(__file__).parent / "scripts" / "probe_agent.py"
PROBE_TEMPLATE = f"{{python}} {PROBE} --workstream {{workstream}} --output {{output}}"


def eventually(what: str, predicate: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Poll real processes' state until ``predicate`` holds (not a sleep standing in for time)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- pure ---------------------------------------------------------------------------------------


def doc(**fields: Any) -> str:
    base = {"workstream": "WS-01", "status": "in_progress", "progress": 0.4}
    return json.dumps({**base, **fields})


def test_status_file_becomes_a_workstream_report() -> None:
    """status, progress, blockers (joined), completion_date and numeric metrics are read."""
    got = parse_status(
        doc(
            status="complete",
            progress=1.0,
            blockers=["no GPU", "no disk"],
            completion_date="2026-01-09T17:00:00Z",
            metrics={"memory_gb": 72, "note": "x", "bad name!": 3},
        ),
        "WS-01",
    )
    assert got.report.status == "complete"
    assert got.report.blocker == "no GPU; no disk"
    assert got.report.completion_time == 1767978000.0
    assert got.metrics == {"memory_gb": 72.0}


def test_progress_above_one_is_read_as_a_percentage() -> None:
    """The source project may write 45 for 45 %."""
    assert parse_status(doc(progress=45), "WS-01").report.progress == pytest.approx(0.45)


@pytest.mark.parametrize(
    "text",
    [
        "{half",
        "[1, 2]",
        doc(status="done"),
        doc(progress="lots"),
        doc(progress=-1),
        doc(workstream="WS-02"),
        doc(blockers="one"),
    ],
)
def test_unusable_status_files_are_refused(text: str) -> None:
    """Garbage, half-written JSON, unknown statuses, bad progress, another workstream's file."""
    with pytest.raises(ValueError):  # BadStatusFile, or json's own ValueError
        parse_status(text, "WS-01")
    assert issubclass(BadStatusFile, ValueError)


def test_template_words_are_formatted_after_splitting() -> None:
    """A value with spaces stays one argument; no shell is involved."""
    argv = agent_argv("{python} -m x --output {output}", {"python": "py", "output": "/a b/S.json"})
    assert argv == ["py", "-m", "x", "--output", "/a b/S.json"]


def test_unknown_placeholder_is_named() -> None:
    """A typo in a placeholder names it and lists the known ones."""
    with pytest.raises(TemplateError, match=r"\{workstrem\}.*\{workstream\}"):
        check_template("agent --ws {workstrem}")


# --- against a real daemon ----------------------------------------------------------------------


class Runner:
    """``pixels-orchestrator run foundation`` as a subprocess on ``state_dir``."""

    def __init__(self, state_dir: Path, template: str) -> None:
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
                    "--agent",
                    template,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def folder(self) -> Path:
        return self.state_dir / "work" / "foundation" / "WS-01"

    def events(self) -> list[str]:
        path = self.folder / "events.txt"
        return path.read_text().split() if path.exists() else []

    def write_status(self, text: str) -> None:
        tmp = self.folder / ".test.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.folder / "STATUS.json")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(state_dir).start()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def runner(state_dir: Path, daemon: DaemonProcess) -> Iterator[Runner]:
    r = Runner(state_dir, PROBE_TEMPLATE)
    try:
        yield r
    finally:
        r.close()
        for line in r.events()[1::2]:  # pids after "start": leave no probe behind
            if line.isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(line), signal.SIGKILL)


def ws01(state_dir: Path) -> dict[str, Any]:
    return next(w for w in ctl(state_dir, "workstreams") if w["id"] == "WS-01")


def escalations_from(state_dir: Path, orchestrator: str) -> list[dict[str, Any]]:
    return [e for e in ctl(state_dir, "escalations", all=True) if e["orchestrator"] == orchestrator]


@pytest.mark.slow
def test_progress_from_status_json_reaches_pixelsctl_workstreams(
    state_dir: Path, runner: Runner
) -> None:
    """The daemon starts WS-01; the agent's STATUS.json (in progress at 40 %) shows in
    `pixelsctl workstreams`."""
    got = eventually(
        "WS-01 at 40 %",
        lambda: (w := ws01(state_dir))["progress"] == pytest.approx(0.4) and w,
    )
    assert got["status"] == "in_progress"
    assert runner.events()[0] == "start"


@pytest.mark.slow
def test_garbage_status_json_raises_one_escalation_and_the_runner_goes_on(
    state_dir: Path, runner: Runner
) -> None:
    """A STATUS.json that stays unreadable: one escalation, the last good state kept; a good file
    afterwards is reported as usual."""
    eventually("WS-01 at 40 %", lambda: ws01(state_dir)["progress"] == pytest.approx(0.4))
    runner.write_status('{"workstream": "WS-01", "status": "in_prog')
    (esc,) = eventually("an escalation", lambda: escalations_from(state_dir, "foundation"))
    assert "STATUS.json cannot be read" in esc["issue"]
    assert esc["affected_workstreams"] == ["WS-01"]
    assert ws01(state_dir)["progress"] == pytest.approx(0.4)
    runner.write_status(doc(progress=0.6))
    eventually("WS-01 at 60 %", lambda: ws01(state_dir)["progress"] == pytest.approx(0.6))
    assert len(escalations_from(state_dir, "foundation")) == 1
    assert runner.proc.poll() is None


@pytest.mark.slow
def test_halt_stops_the_agent_and_resume_starts_it_again(state_dir: Path, runner: Runner) -> None:
    """`pixelsctl halt WS-01` SIGTERMs the agent (its files stay); `resume` runs it again."""
    eventually("the agent", lambda: runner.events()[:1] == ["start"])
    ctl(state_dir, "halt", target="WS-01", reason="test")
    eventually("the agent stopped", lambda: runner.events()[2:3] == ["stop"])
    assert (runner.folder / "STATUS.json").exists()
    ctl(state_dir, "resume", target="WS-01", reason="test")
    eventually("the agent again", lambda: runner.events()[4:5] == ["start"])
    assert runner.events()[5] != runner.events()[1]  # a new process


@pytest.mark.slow
def test_agent_failure_is_an_escalation_with_its_log_tail(
    state_dir: Path, daemon: DaemonProcess
) -> None:
    """An agent exiting 3: a failure escalation for its workstream quoting its last log lines."""
    template = f"{sys.executable} -c \"print('boom-1234'); raise SystemExit(3)\""
    r = Runner(state_dir, template)
    try:
        (esc,) = eventually("an escalation", lambda: escalations_from(state_dir, "foundation"))
    finally:
        r.close()
    assert esc["type"] == "failure"
    assert "WS-01: its agent exited with status 3" in esc["issue"]
    assert "boom-1234" in esc["help_needed"]


@pytest.mark.slow
def test_sigterm_stops_the_agents_and_exits_0(state_dir: Path, runner: Runner) -> None:
    """SIGTERM to the runner: its agents get SIGTERM, it delivers its outbox and exits 0."""
    eventually("WS-01 reported", lambda: ws01(state_dir)["progress"] == pytest.approx(0.4))
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(timeout=20) == 0
    assert runner.events()[2:3] == ["stop"]


def _run(name: str, state_dir: Path) -> list[str]:
    return [str(BIN / "pixels-orchestrator"), "run", name, "--state-dir", str(state_dir)]


def test_bad_template_is_a_usage_error(state_dir: Path) -> None:
    """An unknown placeholder: exit 2, one line naming it (no daemon needed)."""
    done = subprocess.run(
        [*_run("foundation", state_dir), "--agent", "agent {wrkstream}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "{wrkstream}" in done.stderr


def test_orchestrator_not_in_the_plan_is_a_usage_error(state_dir: Path) -> None:
    """A name the plan does not have: exit 2, the plan's names listed."""
    done = subprocess.run(
        [*_run("fundation", state_dir), "--agent", "agent"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "pixels-orchestrator: the plan <embedded dgx-pixels> has no orchestrator 'fundation'; "
        "it has: foundation, model, interface, integration"
    )


@pytest.mark.slow
def test_a_daemon_that_refuses_the_name_ends_the_runner_with_exit_1(state_dir: Path) -> None:
    """The daemon runs another plan (no orchestrator "foundation"): the runner exits 1."""
    from tests.test_service import PLAN

    plan = state_dir / "plan.toml"
    plan.write_text(PLAN)
    daemon = DaemonProcess(state_dir, "--plan", str(plan)).start()
    r = Runner(state_dir, PROBE_TEMPLATE)
    try:
        assert r.proc.wait(timeout=30) == 1
    finally:
        r.close()
        daemon.close()
    assert "the plan has no orchestrator 'foundation'" in r.log.read_text()
