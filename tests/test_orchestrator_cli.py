"""pixels-orchestrator: in-process against the BusPeer test peer, as a real subprocess (SIGKILL),
and once against a real pixelsd."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from orchestrators.cli import EXIT_ERROR, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE, main
from protocol.messages import Escalation, Status
from tests.support import DaemonProcess, ctl
from tests.test_client import NAME, BusPeer

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """main() configures structlog for a terminal; leave other tests the configuration they had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def endpoint(state_dir: Path) -> str:
    return f"ipc://{state_dir}/bus.sock"


@pytest.fixture
def outbox(state_dir: Path) -> Path:
    return state_dir / "outbox.db"


@pytest.fixture
def peer(endpoint: str) -> Iterator[BusPeer]:
    bus = BusPeer(endpoint).start()
    try:
        yield bus
    finally:
        bus.close()


def report(endpoint: str, outbox: Path, *extra: str, ws: str = "WS-01") -> list[str]:
    return [
        "report",
        NAME,
        "--workstream",
        ws,
        "--status",
        "in_progress",
        "--endpoint",
        endpoint,
        "--outbox",
        str(outbox),
        *extra,
    ]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate`` holds (a real event in another process or thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_report_delivers_and_exits_0(
    peer: BusPeer, endpoint: str, outbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """report puts one status through the outbox and exits 0 once the daemon acked it."""
    code = main(report(endpoint, outbox, "--progress", "0.25", "--blocker", "waiting on GPU"))
    assert code == EXIT_OK
    assert capsys.readouterr().out == "foundation: acked up to seq 1, nothing pending\n"
    [applied] = peer.applied
    assert isinstance(applied, Status)
    ws = applied.workstreams["WS-01"]
    assert (ws.status, ws.progress, ws.blocker) == ("in_progress", 0.25, "waiting on GPU")


def test_escalate_delivers_an_escalation(peer: BusPeer, endpoint: str, outbox: Path) -> None:
    """escalate sends type, severity, issue and every --workstream given."""
    argv = ["escalate", NAME, "--issue", "no GPU", "--type", "resource", "--severity", "high"]
    argv += ["--workstream", "WS-01", "--workstream", "WS-02", "--help-needed", "a GB10"]
    assert main([*argv, "--endpoint", endpoint, "--outbox", str(outbox)]) == EXIT_OK
    [applied] = peer.applied
    assert isinstance(applied, Escalation)
    assert (applied.type, applied.severity, applied.issue) == ("resource", "high", "no GPU")
    assert applied.affected_workstreams == ["WS-01", "WS-02"]
    assert applied.help_needed == "a GB10"


def test_state_dir_locates_the_bus_and_the_outbox(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--state-dir DIR means DIR/run/bus.sock and DIR/outbox-NAME.db."""
    (state_dir / "run").mkdir()
    bus = BusPeer(f"ipc://{state_dir}/run/bus.sock").start()
    try:
        argv = ["report", NAME, "--workstream", "WS-01", "--status", "complete"]
        assert main([*argv, "--state-dir", str(state_dir)]) == EXIT_OK
    finally:
        bus.close()
    assert bus.applied_seqs() == [1]
    assert (state_dir / f"outbox-{NAME}.db").exists()


def test_default_state_dir_holds_the_outbox(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --state-dir or --outbox, the outbox is under the default state dir."""
    monkeypatch.setenv("PIXELS_STATE_DIR", str(state_dir / "state"))
    monkeypatch.delenv("PIXELS_BUS_ENDPOINT", raising=False)
    argv = ["report", NAME, "--workstream", "WS-01", "--status", "blocked", "--wait", "0"]
    assert main(argv) == EXIT_TEMPFAIL
    assert "run/bus.sock" in capsys.readouterr().err
    assert (state_dir / "state" / f"outbox-{NAME}.db").exists()


def test_no_daemon_keeps_the_message_and_exits_75(
    endpoint: str, outbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an ack in time, report says so in one line, exits 75, and the outbox keeps it."""
    assert main(report(endpoint, outbox, "--wait", "0")) == EXIT_TEMPFAIL
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "1 message not acked" in err
    assert str(outbox) in err
    assert main(["outbox", NAME, "--outbox", str(outbox), "--json"]) == EXIT_OK
    listing = json.loads(capsys.readouterr().out)
    assert [(m["seq"], m["kind"]) for m in listing["pending"]] == [(None, "status")]


def test_next_run_delivers_what_the_last_one_left(
    endpoint: str, outbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message left by a run without daemon goes, in order, with the next run's."""
    assert main(report(endpoint, outbox, "--wait", "0", "--progress", "0.1")) == EXIT_TEMPFAIL
    bus = BusPeer(endpoint).start()
    try:
        assert main(report(endpoint, outbox, "--progress", "0.2")) == EXIT_OK
    finally:
        bus.close()
    progress = [m.workstreams["WS-01"].progress for m in bus.applied]  # type: ignore[union-attr]
    assert (bus.applied_seqs(), progress) == ([1, 2], [0.1, 0.2])


def test_rejected_message_is_printed_and_exits_1(
    peer: BusPeer, endpoint: str, outbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A status the daemon refuses is named on stderr; the exit status says it did not apply."""
    peer.rules.unknown_workstreams = {"WS-99"}
    assert main(report(endpoint, outbox, ws="WS-99")) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err == (
        "pixels-orchestrator: the daemon rejected seq 1: unknown_workstream: "
        "the plan has no workstream 'WS-99'\n"
    )


def test_unknown_orchestrator_exits_1_naming_it(
    peer: BusPeer, endpoint: str, outbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name the daemon does not know ends the wait at once with one line saying so."""
    peer.rules.orchestrators = {"model"}
    assert main(report(endpoint, outbox)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"pixels-orchestrator: the daemon at {endpoint} refused orchestrator")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["report", NAME, "--workstream", "WS-01", "--status", "done"], "--status: invalid choice"),
        (["report", NAME, "--workstream", "WS-01", "--status", "blocked", "--progress", "1.5"],
         "--progress: '1.5' is not a fraction"),
        (["report", "no/slash", "--workstream", "WS-01", "--status", "blocked"],
         "NAME: 'no/slash' is not a valid name"),
        (["escalate", NAME], "the following arguments are required: --issue"),
        (["report", NAME, "--workstream", "WS-01", "--status", "blocked", "--wait", "-1"],
         "--wait: '-1' is not a number of seconds"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_clear_line(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad command lines exit 2 with argparse's usage and one error line, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert complaint in err
    assert "Traceback" not in err


def test_outbox_lists_pending_messages_and_the_acked_seq(
    peer: BusPeer, endpoint: str, outbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """outbox shows the acked seq and each waiting message's seq and kind."""
    assert main(report(endpoint, outbox)) == EXIT_OK
    peer.rules.commit = False
    assert main(report(endpoint, outbox, "--wait", "0")) == EXIT_TEMPFAIL
    capsys.readouterr()
    assert main(["outbox", NAME, "--outbox", str(outbox)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{outbox}: acked up to seq 1, 1 message pending"
    assert lines[2].split()[:2] == ["2", "status"]


def test_outbox_without_a_file_has_nothing_pending(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing a name that never sent from here creates nothing and says nothing is pending."""
    assert main(["outbox", NAME, "--state-dir", str(state_dir)]) == EXIT_OK
    assert "nothing pending" in capsys.readouterr().out
    assert not (state_dir / f"outbox-{NAME}.db").exists()


def test_killed_report_is_delivered_after_restart(
    peer: BusPeer, endpoint: str, outbox: Path
) -> None:
    """SIGKILL while waiting for an ack loses nothing: the next run delivers it, once, in order."""
    peer.rules.commit = False  # receives and forgets: never acks
    argv = [str(BIN / "pixels-orchestrator"), *report(endpoint, outbox, "--wait", "60")]
    proc = subprocess.Popen([*argv, "--progress", "0.25"], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: peer.durable_received() == [1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    peer.restart(commit=True)
    second = subprocess.run(
        [*argv, "--progress", "0.5"], capture_output=True, text=True, timeout=30, check=False
    )
    assert second.returncode == EXIT_OK, second.stderr
    progress = [m.workstreams["WS-01"].progress for m in peer.applied]  # type: ignore[union-attr]
    assert (peer.applied_seqs(), progress) == ([1, 2], [0.25, 0.5])


def test_report_to_a_real_pixelsd(state_dir: Path) -> None:
    """Against pixelsd itself: the report is acked and pixelsctl sees the workstream's progress."""
    daemon = DaemonProcess(state_dir).start()
    try:
        argv = ["report", NAME, "--workstream", "WS-01", "--status", "in_progress"]
        argv += ["--progress", "0.4", "--state-dir", str(state_dir)]
        run = subprocess.run(
            [str(BIN / "pixels-orchestrator"), *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert run.returncode == EXIT_OK, run.stderr
        assert run.stdout == "foundation: acked up to seq 1, nothing pending\n"
        [ws] = [w for w in ctl(state_dir, "workstreams") if w["id"] == "WS-01"]
        assert (ws["status"], ws["progress"]) == ("in_progress", 0.4)
    finally:
        daemon.close()


def test_depend_to_a_real_pixelsd(state_dir: Path) -> None:
    """`depend` adds a discovered dependency (exit 0); one closing a cycle is refused (exit 1)."""
    daemon = DaemonProcess(state_dir).start()
    try:

        def depend(ws: str, dep: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    str(BIN / "pixels-orchestrator"),
                    "depend",
                    NAME,
                    "--workstream",
                    ws,
                    "--on",
                    dep,
                    "--reason",
                    "found while implementing",
                    "--state-dir",
                    str(state_dir),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        added = depend("WS-03", "WS-02")
        assert added.returncode == EXIT_OK, added.stderr
        [change] = ctl(state_dir, "plan_changes")
        assert (change["workstream"], change["source"]) == ("WS-03", NAME)
        cycle = depend("WS-01", "WS-03")
        assert cycle.returncode == 1
        assert "cycle: WS-01 -> WS-03 -> WS-01" in cycle.stderr
    finally:
        daemon.close()
