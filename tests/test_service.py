"""pixelsd as a service, a real subprocess on real sockets: SIGTERM under load loses nothing acked
and acks everything committed; SIGHUP reloads the plan file, keeping the old plan when the new one
is broken."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import zmq

from protocol import codec
from protocol.messages import Ack, Error, Register, Status, Welcome, WorkstreamReport
from tests.support import BIN, DaemonProcess, ctl, wait_ready

#: How long a SIGTERMed daemon may take to exit: it commits one batch (at most 2,048 frames) and
#: lingers 500 ms on its sockets, so 5 s is generous even on a loaded 2-core machine.
STOP_BOUND_S = 5.0


def status(seq: int, orchestrator: str = "foundation", ws: str = "WS-01") -> bytes:
    report = WorkstreamReport(status="in_progress", progress=min(seq, 1_000_000) / 1_000_000)
    return codec.encode(
        Status(id=f"s{seq}", seq=seq, orchestrator=orchestrator, workstreams={ws: report})
    )


def dealer(state_dir: Path) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)  # a load generator: queue everything, never block
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(f"ipc://{state_dir}/run/bus.sock")
    return sock


def exchange(state_dir: Path, frame: bytes) -> object:
    """Send one frame on a fresh DEALER and return the daemon's decoded answer."""
    sock = dealer(state_dir)
    try:
        sock.send(frame)
        assert sock.poll(5000), "no answer from the daemon"
        return codec.to_orchestrator.decode(sock.recv())
    finally:
        sock.close(0)


def logged_seqs(db: Path, orchestrator: str) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute(
            "SELECT seq FROM events WHERE orchestrator = ? ORDER BY id", (orchestrator,)
        )
        return [seq for (seq,) in rows]
    finally:
        conn.close()


def test_sigterm_under_load_acks_exactly_what_it_committed(state_dir: Path) -> None:
    """SIGTERM mid-stream: exit 0 in bounded time; every acked seq is on disk, every seq on disk
    was acked, and a restarted daemon welcomes the client at its last ack."""
    daemon = DaemonProcess(state_dir).start()
    assert daemon.proc is not None
    sock = dealer(state_dir)
    sent = acked = 0
    stopped_at = None
    try:
        deadline = time.monotonic() + 60
        while daemon.proc.poll() is None:
            assert time.monotonic() < deadline, f"stuck: sent {sent}, acked {acked}"
            for _ in range(1_000):  # faster than it commits: a backlog until it has exited
                sent += 1
                sock.send(status(sent), zmq.NOBLOCK)
            while sock.poll(1):
                reply = codec.to_orchestrator.decode(sock.recv())
                assert isinstance(reply, Ack), reply
                acked = max(acked, reply.acked_seq)
            if stopped_at is None and acked >= 2_000:
                daemon.proc.send_signal(signal.SIGTERM)
                stopped_at = time.monotonic()
        assert stopped_at is not None
        exit_s = time.monotonic() - stopped_at
        # The daemon is gone: whatever it sent before exiting is already queued here.
        while sock.poll(200):
            reply = codec.to_orchestrator.decode(sock.recv())
            assert isinstance(reply, Ack), reply
            acked = max(acked, reply.acked_seq)
    finally:
        sock.close(0)
        daemon.close()
    assert daemon.proc.returncode == 0, daemon.log()
    assert exit_s < STOP_BOUND_S
    assert sent > acked, "the stream ended before the daemon stopped: no load at SIGTERM"
    assert logged_seqs(state_dir / "pixels.db", "foundation") == list(range(1, acked + 1))

    daemon.start()
    try:
        welcome = exchange(state_dir, codec.encode(Register(id="r", orchestrator="foundation")))
        assert isinstance(welcome, Welcome)
        assert welcome.acked_seq == acked
    finally:
        daemon.close()


# --- SIGHUP ------------------------------------------------------------------------------------

#: docs/configuration.md's example plan, small enough to change by hand in a test.
PLAN = """
[plan]
name = "Website relaunch"
weeks = 3

[[milestones]]
id = "beta"
name = "Public beta"

[[orchestrators]]
id = "backend"
agent_types = ["python-pro"]

[[orchestrators]]
id = "frontend"
agent_types = ["frontend-developer"]
after_gates = ["api-ready"]

[[workstreams]]
id = "WS-api"
name = "REST API"
orchestrator = "backend"
milestone = "beta"
days = [3, 5]
priority = "P0"

[[workstreams]]
id = "WS-db"
name = "Schema migration"
orchestrator = "backend"
milestone = "beta"
days = 2
priority = "P1"

[[workstreams]]
id = "WS-ui"
name = "New pages"
orchestrator = "frontend"
milestone = "beta"
days = [4, 6]
depends_on = ["WS-api"]
priority = "P0"

[[gates]]
id = "api-ready"
name = "Backend -> Frontend"
week = 1
workstreams = ["WS-api", "WS-db"]
"""

#: The same plan renamed, with a new orchestrator, ops, that takes WS-db over from backend.
PLAN_WITH_OPS = (
    PLAN.replace('name = "Website relaunch"', 'name = "Website relaunch v2"')
    .replace(
        'id = "WS-db"\nname = "Schema migration"\norchestrator = "backend"',
        'id = "WS-db"\nname = "Schema migration"\norchestrator = "ops"',
    )
    .replace(
        '[[workstreams]]\nid = "WS-api"',
        '[[orchestrators]]\nid = "ops"\nagent_types = ["devops-automator"]\n\n'
        '[[workstreams]]\nid = "WS-api"',
    )
)


def reload_and_wait(daemon: DaemonProcess, event: str, timeout_s: float = 10.0) -> dict[str, str]:
    """SIGHUP the daemon and return its JSON log line for ``event`` (a reload outcome)."""
    assert daemon.proc is not None
    before = len(daemon.log().splitlines())
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in daemon.log().splitlines()[before:]:
            entry = json.loads(line)
            if entry.get("event") == event:
                return dict(entry)
        time.sleep(0.02)  # polling a real process's log, not waiting for time to pass
    raise AssertionError(f"no {event} after SIGHUP; log:\n{daemon.log()}")


def test_sighup_with_a_broken_plan_keeps_the_old_plan(state_dir: Path) -> None:
    """A plan file broken after start: SIGHUP logs why, and the daemon serves on the old plan."""
    plan = state_dir / "plan.toml"
    plan.write_text(PLAN)
    daemon = DaemonProcess(state_dir, "--plan", str(plan)).start()
    try:
        plan.write_text(PLAN.replace('depends_on = ["WS-api"]', 'depends_on = ["WS-nope"]'))
        failed = reload_and_wait(daemon, "reload_failed")
        assert str(plan) in failed["error"]
        assert "WS-nope" in failed["error"]
        assert ctl(state_dir, "ping")["plan"] == "Website relaunch"
        reply = exchange(state_dir, status(1, orchestrator="backend", ws="WS-api"))
        assert isinstance(reply, Ack)  # backend still owns WS-api: the old plan is in force
        assert daemon.proc is not None
        assert daemon.proc.poll() is None
    finally:
        daemon.close()


def test_sighup_with_a_valid_plan_adopts_it_and_keeps_the_state(state_dir: Path) -> None:
    """SIGHUP with a changed, valid plan: its orchestrators and ownership apply at once, and what
    was reported before is kept (the log is replayed under the new plan)."""
    plan = state_dir / "plan.toml"
    plan.write_text(PLAN)
    daemon = DaemonProcess(state_dir, "--plan", str(plan)).start()
    try:
        assert isinstance(exchange(state_dir, status(1, orchestrator="backend", ws="WS-api")), Ack)
        refused = exchange(state_dir, status(1, orchestrator="ops", ws="WS-db"))
        assert isinstance(refused, Error)
        assert refused.code == "unknown_orchestrator"
        plan.write_text(PLAN_WITH_OPS)
        assert reload_and_wait(daemon, "plan_reloaded")["plan"] == "Website relaunch v2"
        assert ctl(state_dir, "ping")["plan"] == "Website relaunch v2"
        reply = exchange(state_dir, status(1, orchestrator="ops", ws="WS-db"))
        assert isinstance(reply, Ack)
        assert reply.acked_seq == 1
        by_id = {w["id"]: w for w in ctl(state_dir, "workstreams")}
        assert by_id["WS-api"]["progress"] == 1 / 1_000_000  # reported before the reload
        assert by_id["WS-db"]["orchestrator"] == "ops"
    finally:
        daemon.close()


def test_sighup_on_the_embedded_plan_changes_nothing(state_dir: Path) -> None:
    """Without --plan there is no file to re-read: SIGHUP is logged and the daemon serves on."""
    daemon = DaemonProcess(state_dir).start()
    try:
        reload_and_wait(daemon, "reload_skipped")
        assert ctl(state_dir, "ping")["plan"] == "DGX-Pixels"
    finally:
        daemon.close()


def test_second_sigterm_during_shutdown_still_exits_zero(state_dir: Path) -> None:
    """Signals keep their handlers until the daemon has stopped: two SIGTERMs, exit 0."""
    proc = subprocess.Popen(
        [str(BIN / "pixelsd"), "--state-dir", str(state_dir), "--launcher", "none"],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(state_dir, proc)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_BOUND_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
