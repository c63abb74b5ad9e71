"""The daemon spawns and supervises orchestrators (pixels_daemon/supervise.py): a real pixelsd
launching real ``pixels-orchestrator run`` processes, or a stub ``systemctl`` first on PATH (the
only honest stand-in without systemd as PID 1). What happened is read from the daemon's records:
its JSON log (``orchestrator_spawned``, ``orchestrator_exited``) and ``pixelsctl`` views.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pixels_daemon.ctl_format import process_cell, render_spawn, render_stop
from pixels_daemon.supervise import PidRecord
from protocol.views import OrchestratorView, ProcessView
from tests.support import BIN, DaemonProcess, ctl

SCRIPTS = Path(__file__).resolve().parent / "scripts"
#: Generous bound on waiting for a real process to start, connect or exit on a loaded machine.
WAIT_S = 30.0
#: Restart backoff for these tests: short, so a crash loop takes a few runner start-ups.
BACKOFF = "0.05"

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """Poll ``probe`` until it returns something truthy (or fail naming ``what``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def log_events(daemon: DaemonProcess, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines of ``event``, in order."""
    out = []
    for line in daemon.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


def orchestrator(state_dir: Path, name: str) -> dict[str, Any]:
    (view,) = [o for o in ctl(state_dir, "orchestrators") if o["name"] == name]
    return view  # type: ignore[no-any-return]


def process(state_dir: Path, name: str = "foundation") -> dict[str, Any]:
    return orchestrator(state_dir, name)["process"]  # type: ignore[no-any-return]


def flapping_escalation(state_dir: Path) -> dict[str, Any] | None:
    found = [e for e in ctl(state_dir, "escalations") if e["kind"] == "orchestrator_flapping"]
    return found[0] if found else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def reap(state_dir: Path) -> None:
    """Spawned orchestrators run in their own sessions and outlive the daemon on purpose: stop
    the ones the pid files name (while the daemon runs: a runner delivers its outbox before it
    exits, at once to a daemon that answers)."""
    for path in (state_dir / "run").glob("orchestrator-*.pid"):
        record = PidRecord.read(path)
        if record is None or not record.alive():
            continue
        os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if record.alive():
            os.kill(record.pid, signal.SIGKILL)


@pytest.fixture
def daemons(state_dir: Path) -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts; at its end their orchestrators are stopped, then they are."""
    started: list[DaemonProcess] = []
    yield started
    reap(state_dir)
    for daemon in started:
        daemon.close()


def start(daemons: list[DaemonProcess], state_dir: Path, *extra: str) -> DaemonProcess:
    daemon = DaemonProcess(state_dir, "--telemetry-interval", "0", *extra).start()
    daemons.append(daemon)
    return daemon


def broken_config(state_dir: Path) -> Path:
    """A runner config for foundation that is not TOML: the runner exits 2 at start, each time."""
    folder = state_dir / "orchestrators"
    folder.mkdir(exist_ok=True)
    path = folder / "foundation.toml"
    path.write_text("[agent\n")
    return path


def running(state_dir: Path) -> dict[str, Any] | None:
    """foundation's view once its process runs and it is connected."""
    view = orchestrator(state_dir, "foundation")
    ok = view["process"]["state"] == "running" and view["connection"] == "connected"
    return view if ok else None


# --- subprocess launcher ------------------------------------------------------------------------


def test_activated_orchestrator_is_spawned_with_the_runner_command_line(
    state_dir: Path, daemons: list[DaemonProcess]
) -> None:
    """The plan's first orchestrator is started as `pixels-orchestrator run NAME --state-dir DIR`
    with its config file, logging to STATE_DIR/logs, its pid and start time in its pid file."""
    folder = state_dir / "orchestrators"
    folder.mkdir()
    (folder / "foundation.toml").write_text("[agent]\nhalt = 'terminate'\n")
    daemon = start(daemons, state_dir, "--launcher", "subprocess")
    view = wait_for("foundation running and connected", lambda: running(state_dir))
    (spawned,) = log_events(daemon, "orchestrator_spawned")
    assert spawned["argv"] == [
        str(BIN / "pixels-orchestrator"),
        "run",
        "foundation",
        "--state-dir",
        str(state_dir),
        "--config",
        str(folder / "foundation.toml"),
    ]
    record = PidRecord.read(state_dir / "run" / "orchestrator-foundation.pid")
    assert record is not None and record.alive()
    assert view["process"]["pid"] == record.pid
    assert view["process"]["log"] == str(state_dir / "logs" / "orchestrator-foundation.log")
    assert "starting" in (state_dir / "logs" / "orchestrator-foundation.log").read_text()
    assert [o["process"]["state"] for o in ctl(state_dir, "orchestrators")][1:] == ["idle"] * 3


def test_crashing_orchestrator_is_restarted_with_backoff_then_flapping_is_escalated(
    state_dir: Path, daemons: list[DaemonProcess]
) -> None:
    """A runner that exits 2 at every start is restarted after 0.05 s, then 0.1 s; its third
    crash within the window marks it flapping: one high escalation, no more restarts."""
    broken_config(state_dir)
    daemon = start(
        daemons, state_dir, "--launcher", "subprocess", "--restart-backoff", BACKOFF,
        "--flap-limit", "3",
    )  # fmt: skip
    esc = wait_for("the flapping escalation", lambda: flapping_escalation(state_dir))
    assert (esc["severity"], esc["subject"], esc["state"]) == ("high", "foundation", "open")
    assert "crashed 3 times within 10 min (last: exit 2)" in esc["issue"]
    assert "`pixelsctl spawn foundation`" in esc["help_needed"]
    assert "orchestrator-foundation.log" in esc["details"]["log"]
    assert [e["restart"] for e in log_events(daemon, "orchestrator_spawned")] == [
        False,
        True,
        True,
    ]
    exits = log_events(daemon, "orchestrator_exited")
    assert [(e["how"], e["restart_in_s"]) for e in exits] == [
        ("exit 2", 0.05),
        ("exit 2", 0.1),
        ("exit 2", None),
    ]
    proc = process(state_dir)
    assert (proc["state"], proc["flapping"], proc["restarts"], proc["next_start_at"]) == (
        "flapping",
        True,
        2,
        None,
    )


def test_spawn_clears_flapping_and_starts_it_again(
    state_dir: Path, daemons: list[DaemonProcess]
) -> None:
    """`pixelsctl spawn NAME` after the cause is fixed: the escalation is resolved, it runs."""
    config = broken_config(state_dir)
    start(
        daemons, state_dir, "--launcher", "subprocess", "--restart-backoff", BACKOFF,
        "--flap-limit", "2",
    )  # fmt: skip
    esc = wait_for("the flapping escalation", lambda: flapping_escalation(state_dir))
    config.unlink()
    done = subprocess.run(
        [str(BIN / "pixelsctl"), "--state-dir", str(state_dir), "spawn", "foundation"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "spawning foundation (subprocess); "
        "`pixelsctl orchestrators` shows it once it is up\n")  # fmt: skip
    view = wait_for("foundation running again", lambda: running(state_dir))
    # The crash loop's one restart stays counted; an operator's spawn is not a restart.
    assert (view["process"]["flapping"], view["process"]["restarts"]) == (False, 1)
    assert ctl(state_dir, "escalations", all=True)[-1]["id"] == esc["id"]
    assert [
        e["state"] for e in ctl(state_dir, "escalations", all=True) if e["id"] == esc["id"]
    ] == ["resolved"]


def test_stop_ends_the_orchestrator_gracefully_and_it_stays_stopped(
    state_dir: Path, daemons: list[DaemonProcess]
) -> None:
    """`pixelsctl stop NAME`: the runner obeys the bus stop (exit 0), its pid file goes, and it
    is not restarted; the stop is in the event log, so a restarted daemon keeps it stopped."""
    daemon = start(daemons, state_dir, "--launcher", "subprocess")
    pid = wait_for("foundation running", lambda: running(state_dir))["process"]["pid"]
    done = subprocess.run(
        [str(BIN / "pixelsctl"), "--state-dir", str(state_dir), "stop", "foundation"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stopping foundation; it stays stopped until")
    proc = wait_for(
        "foundation stopped", lambda: (p := process(state_dir))["state"] == "stopped" and p
    )
    assert (proc["last_exit"], proc["operator_stopped"]) == ("exit 0", True)
    assert not alive(pid)
    assert not (state_dir / "run" / "orchestrator-foundation.pid").exists()
    assert log_events(daemon, "orchestrator_signalled") == []  # it obeyed: no SIGTERM needed
    daemon.terminate()
    again = start(daemons, state_dir, "--launcher", "subprocess")
    assert process(state_dir)["state"] == "stopped"
    assert len(log_events(again, "orchestrator_spawned")) == 1  # the first daemon's only


def test_restarted_daemon_adopts_running_orchestrators_and_spawns_nothing(
    state_dir: Path, daemons: list[DaemonProcess]
) -> None:
    """Daemon shutdown leaves the orchestrator running; the next daemon adopts it from its pid
    file (same pid, reconnected) and launches no second one."""
    first = start(daemons, state_dir, "--launcher", "subprocess")
    pid = wait_for("foundation running", lambda: running(state_dir))["process"]["pid"]
    assert first.terminate() == 0
    assert alive(pid)
    second = start(daemons, state_dir, "--launcher", "subprocess")
    view = wait_for("foundation reconnected", lambda: running(state_dir))
    assert (view["process"]["pid"], view["process"]["adopted"]) == (pid, True)
    assert len(log_events(second, "orchestrator_spawned")) == 1  # both daemons' log: one spawn
    assert [e["pid"] for e in log_events(second, "orchestrator_adopted")] == [pid]


def test_an_adopted_orchestrator_that_dies_is_restarted(
    state_dir: Path, daemons: list[DaemonProcess]
) -> None:
    """An adopted process is watched by polling (it is not the daemon's child): killed, it is
    seen gone and a new one is launched."""
    first = start(daemons, state_dir, "--launcher", "subprocess", "--restart-backoff", BACKOFF)
    pid = wait_for("foundation running", lambda: running(state_dir))["process"]["pid"]
    first.terminate()
    start(daemons, state_dir, "--launcher", "subprocess", "--restart-backoff", BACKOFF)
    wait_for("foundation adopted", lambda: (v := running(state_dir)) and v["process"]["adopted"])
    os.kill(pid, signal.SIGKILL)
    view = wait_for(
        "a new foundation",
        lambda: (v := running(state_dir)) and v["process"]["pid"] != pid and v,
    )
    assert view["process"]["restarts"] == 1
    assert view["process"]["last_exit"].startswith("exited (adopted")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--launcher", "docker"], "invalid choice: 'docker'"),
        (["--flap-limit", "0"], "'0' is not a whole number of at least 1"),
        (["--restart-backoff", "5", "--restart-backoff-max", "1"], "--restart-backoff-max"),
    ],
)
def test_unusable_supervision_options_are_refused_before_starting(
    state_dir: Path, args: list[str], words: str
) -> None:
    """Bad supervision options: exit 2, the reason on stderr, nothing started."""
    done = subprocess.run(
        [str(BIN / "pixelsd"), "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert words in done.stderr
    assert not (state_dir / "pixels.db").exists()


# --- systemd launcher ---------------------------------------------------------------------------


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stub systemctl first on PATH (inherited by the daemon); returns the file of its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(SCRIPTS / "systemctl_stub.sh", bin_dir / "systemctl")
    (bin_dir / "systemctl").chmod(0o755)
    calls = tmp_path / "systemctl.log"
    units = tmp_path / "units"
    units.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SYSTEMCTL_LOG", str(calls))
    monkeypatch.setenv("SYSTEMCTL_DIR", str(units))
    return calls


def calls_of(log: Path) -> list[str]:
    """The stub's calls other than is-active (those are polls, their count is timing)."""
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if not line.startswith("is-active")]


def test_systemd_launcher_starts_and_stops_the_template_unit(
    state_dir: Path, daemons: list[DaemonProcess], systemctl: Path
) -> None:
    """--launcher systemd: `systemctl start pixels-orchestrator@foundation` on activation;
    `pixelsctl stop` waits the grace for the unit to stop, then `systemctl stop`."""
    start(daemons, state_dir, "--launcher", "systemd", "--stop-grace", "0.2")
    wait_for("the unit started", lambda: process(state_dir)["state"] == "running")
    assert calls_of(systemctl) == ["start pixels-orchestrator@foundation"]
    assert "is-active pixels-orchestrator@foundation" in systemctl.read_text()
    ctl(state_dir, "stop", name="foundation")
    wait_for("the unit stopped", lambda: process(state_dir)["state"] == "stopped")
    assert calls_of(systemctl) == [
        "start pixels-orchestrator@foundation",
        "stop pixels-orchestrator@foundation",
    ]


def test_failed_systemctl_start_backs_off_and_then_is_flapping(
    state_dir: Path,
    daemons: list[DaemonProcess],
    systemctl: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """systemd owns restarts, so the daemon's backoff applies to `systemctl start` failing."""
    monkeypatch.setenv("SYSTEMCTL_FAIL", "start")
    start(
        daemons, state_dir, "--launcher", "systemd", "--restart-backoff", BACKOFF,
        "--flap-limit", "2",
    )  # fmt: skip
    esc = wait_for("the flapping escalation", lambda: flapping_escalation(state_dir))
    assert "systemctl start exited 1" in esc["issue"]
    assert "journalctl -u pixels-orchestrator@foundation" in esc["help_needed"]
    assert calls_of(systemctl) == ["start pixels-orchestrator@foundation"] * 2


# --- how pixelsctl shows a process (pure) -------------------------------------------------------


def sub(state: str, **fields: Any) -> ProcessView:
    return ProcessView(launcher=fields.pop("launcher", "subprocess"), state=state, **fields)


@pytest.mark.parametrize(
    ("view", "text"),
    [
        (sub("unmanaged", launcher="none"), "-"),
        (sub("running", pid=7, restarts=1), "running pid 7, 1 restart"),
        (sub("running", pid=7, adopted=True), "running pid 7 (adopted)"),
        (sub("waiting", next_start_at=104.0, last_exit="exit 1"), "restart in 4s (exit 1)"),
        (sub("flapping", flapping=True, last_exit="exit 2"), "flapping (exit 2)"),
        (sub("stopped", launcher="systemd", operator_stopped=True), "stopped by operator"),
    ],
)
def test_process_cell_says_what_runs_in_a_few_words(view: ProcessView, text: str) -> None:
    assert process_cell(view, 100.0) == text


def _orchestrator_view(process: ProcessView) -> OrchestratorView:
    return OrchestratorView(
        name="model",
        display_name="Model",
        connection="connected",
        last_seen=None,
        last_report=None,
        acked_seq=0,
        status="active",
        workstreams=[],
        process=process,
    )


def test_stop_under_launcher_none_says_the_process_is_not_pixelsds() -> None:
    view = _orchestrator_view(sub("unmanaged", launcher="none", operator_stopped=True))
    assert render_stop(view, 0.0).startswith("told model to stop (this pixelsd does not run it")


def test_spawn_under_launcher_none_says_to_start_it_yourself() -> None:
    view = _orchestrator_view(sub("unmanaged", launcher="none"))
    assert render_spawn(view, 0.0).endswith("(--launcher none): start it yourself")
