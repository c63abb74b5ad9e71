"""sd_notify over a real AF_UNIX datagram socket standing in for systemd's, in-process and with a
real pixelsd subprocess: READY=1 only once the daemon answers, WATCHDOG=1 from the event loop,
STATUS= summaries, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import zmq

from pixels_daemon.plan import default_plan
from pixels_daemon.sdnotify import Notifier, notify_address, watchdog_interval
from pixels_daemon.server import Config, Server
from protocol import codec
from protocol.messages import Escalation, Register
from tests.support import BIN, ctl, env_with, wait_ready


class DatagramSocket:
    """A bound AF_UNIX SOCK_DGRAM socket that records what arrives (systemd's or journald's)."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        # Room for bursts of large entries (journald tests send ~100 KiB datagrams).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def recv(self, timeout_s: float) -> bytes | None:
        """The next datagram, or None if none arrives within ``timeout_s``."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1 << 20)
        except TimeoutError:
            return None

    def drain(self) -> list[bytes]:
        """Everything already queued, without waiting."""
        out = []
        while (data := self.recv(0.0001)) is not None:
            out.append(data)
        return out

    def close(self) -> None:
        self.sock.close()
        if isinstance(self.address, str):
            Path(self.address).unlink(missing_ok=True)


def assignments(datagram: bytes) -> dict[str, str]:
    """An sd_notify datagram as {KEY: VALUE}."""
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


def wait_for(listener: DatagramSocket, key: str, timeout_s: float = 15.0) -> list[dict[str, str]]:
    """Datagrams up to and including the first that sets ``key``; fails after ``timeout_s``."""
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = listener.recv(max(0.01, deadline - time.monotonic()))
        if data is None:
            break
        seen.append(assignments(data))
        if key in seen[-1]:
            return seen
    raise AssertionError(f"no {key} within {timeout_s}s; got {seen}")


@pytest.fixture
def listener(state_dir: Path) -> Iterator[DatagramSocket]:
    sock = DatagramSocket(str(state_dir / "notify.sock"))
    yield sock
    sock.close()


@pytest.fixture
def pixelsd(state_dir: Path, listener: DatagramSocket) -> Iterator[subprocess.Popen[bytes]]:
    """A real pixelsd with NOTIFY_SOCKET at ``listener`` and a 0.4 s watchdog (pings every 0.2)."""
    proc = subprocess.Popen(
        [
            str(BIN / "pixelsd"),
            "--state-dir",
            str(state_dir),
            "--log-format",
            "json",
            "--launcher",
            "none",
        ],
        env=env_with(NOTIFY_SOCKET=str(listener.address), WATCHDOG_USEC="400000"),
        stderr=subprocess.DEVNULL,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# --- the client --------------------------------------------------------------------------------


def test_without_notify_socket_nothing_is_sent() -> None:
    """Outside systemd (no NOTIFY_SOCKET) the notifier is disabled and sends nothing."""
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog_interval_s is None


def test_ready_and_status_share_one_datagram(listener: DatagramSocket) -> None:
    """ready(status) sends READY=1 and STATUS= together, newline-separated."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(listener.address)})
    assert notifier.ready("serving")
    assert listener.recv(2) == b"READY=1\nSTATUS=serving"


def test_abstract_socket_name() -> None:
    """An '@' NOTIFY_SOCKET names a socket in the abstract namespace."""
    name = f"px-notify-{uuid.uuid4().hex}"
    abstract = DatagramSocket(b"\0" + name.encode())
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.stopping()
        assert abstract.recv(2) == b"STOPPING=1"
    finally:
        abstract.close()


def test_status_is_kept_to_one_line(listener: DatagramSocket) -> None:
    """A newline in a status would start a bogus assignment: it becomes a space."""
    Notifier(str(listener.address)).status("phase 1\nREADY=1")
    assert listener.recv(2) == b"STATUS=phase 1 READY=1"


def test_reloading_carries_monotonic_usec(listener: DatagramSocket) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC= (systemd 253+ expects it)."""
    Notifier(str(listener.address)).reloading()
    sent = assignments(listener.recv(2) or b"")
    assert sent["RELOADING"] == "1"
    assert abs(int(sent["MONOTONIC_USEC"]) - time.monotonic_ns() // 1000) < 5_000_000


@pytest.mark.parametrize("value", ["relative/notify.sock", "vsock:2:1234"])
def test_unsupported_address_disables_notifications(value: str) -> None:
    """An address that is neither /path nor @name turns notifications off, not elsewhere."""
    assert notify_address(value) is None
    assert not Notifier.from_environ({"NOTIFY_SOCKET": value}).enabled


def test_unreachable_socket_is_reported_not_raised(state_dir: Path) -> None:
    """A NOTIFY_SOCKET with nobody behind it makes send() return False; nothing raises."""
    notifier = Notifier(str(state_dir / "nobody.sock"))
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """WATCHDOG_USEC=2000000 (WatchdogSec=2s) gives a ping every second."""
    assert watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 1.0
    assert watchdog_interval({}) is None


def test_watchdog_for_another_pid_is_ignored() -> None:
    """WATCHDOG_PID naming another process (inherited variables) turns the watchdog off."""
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}
    assert watchdog_interval(env, pid=4242) is None
    assert watchdog_interval(env, pid=1) == 1.0


@pytest.mark.parametrize("usec", ["0", "-5", "soon"])
def test_invalid_watchdog_usec_is_ignored(usec: str) -> None:
    """A WATCHDOG_USEC that is not a positive integer turns the watchdog off."""
    assert watchdog_interval({"WATCHDOG_USEC": usec}) is None


# --- the daemon, in-process --------------------------------------------------------------------

INTERVAL_S = 0.05


@pytest.fixture
async def notified_server(state_dir: Path, listener: DatagramSocket) -> AsyncIterator[Server]:
    """A real daemon in this event loop, notifying ``listener`` with a 50 ms watchdog interval."""
    notifier = Notifier(str(listener.address), watchdog_interval_s=INTERVAL_S)
    srv = Server(Config(state_dir=state_dir), default_plan(), notifier=notifier)
    task = asyncio.ensure_future(srv.serve())
    with anyio.fail_after(10):
        await srv.ready.wait()
    yield srv
    srv.stop()
    await task


async def next_watchdog(listener: DatagramSocket, timeout_s: float) -> float | None:
    """Await the next WATCHDOG=1 without blocking the loop; its arrival time, or None."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        data = await anyio.to_thread.run_sync(listener.recv, left)
        if data is not None and assignments(data).get("WATCHDOG") == "1":
            return time.monotonic()
    return None


async def test_watchdog_stops_while_the_event_loop_is_blocked(
    notified_server: Server, listener: DatagramSocket
) -> None:
    """While the loop is blocked no WATCHDOG=1 is sent; the pings resume once it runs again."""
    assert await next_watchdog(listener, 5) is not None  # it pings while the loop is free
    listener.drain()
    time.sleep(10 * INTERVAL_S)  # blocks the event loop, on purpose
    during = [d for d in listener.drain() if b"WATCHDOG=1" in d]
    assert during == []
    assert await next_watchdog(listener, 5) is not None


async def test_status_line_follows_connections_and_escalations(
    notified_server: Server, listener: DatagramSocket
) -> None:
    """STATUS= changes once an orchestrator connects and raises an escalation."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(notified_server.bus_endpoint)
    try:
        sock.send(codec.encode(Register(id="r", orchestrator="model")))
        sock.send(codec.encode(Escalation(id="e", seq=1, orchestrator="model", issue="GPU OOM")))
        want = "1/4 orchestrators connected; 1 open escalation"
        deadline = time.monotonic() + 10
        statuses: list[str] = []
        while time.monotonic() < deadline and not any(want in s for s in statuses):
            data = await anyio.to_thread.run_sync(listener.recv, 0.5)
            if data is not None and "STATUS" in (sent := assignments(data)):
                statuses.append(sent["STATUS"])
        assert any(s.startswith("Phase 1") and want in s for s in statuses), statuses
    finally:
        sock.close(0)


# --- the daemon, as systemd runs it -------------------------------------------------------------


def test_ready_only_after_the_control_socket_answers(
    state_dir: Path, listener: DatagramSocket, pixelsd: subprocess.Popen[bytes]
) -> None:
    """When READY=1 arrives, a single ping on ctl.sock (no retry) is answered."""
    seen = wait_for(listener, "READY")
    assert any(s.get("STATUS", "").startswith("starting") for s in seen[:-1])
    assert ctl(state_dir, "ping", timeout_s=2.0)["pid"] == pixelsd.pid


def test_watchdog_pings_at_half_of_watchdog_usec(
    listener: DatagramSocket, pixelsd: subprocess.Popen[bytes]
) -> None:
    """With WATCHDOG_USEC=400000, WATCHDOG=1 arrives about every 0.2 s."""
    wait_for(listener, "READY")
    times: list[float] = []
    while len(times) < 6:
        seen = wait_for(listener, "WATCHDOG", timeout_s=5)
        assert seen[-1]["WATCHDOG"] == "1"
        times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.15, gaps  # never faster than the interval (less receive jitter)
    assert sum(gaps) / len(gaps) < 0.35, gaps  # and close to it: well within WatchdogSec


def test_sigterm_sends_stopping_and_exits_zero(
    listener: DatagramSocket, pixelsd: subprocess.Popen[bytes]
) -> None:
    """SIGTERM: STOPPING=1 is sent, then the daemon exits 0."""
    wait_for(listener, "READY")
    pixelsd.send_signal(signal.SIGTERM)
    assert wait_for(listener, "STOPPING")[-1]["STOPPING"] == "1"
    assert pixelsd.wait(timeout=10) == 0


def test_notify_socket_is_not_required(state_dir: Path) -> None:
    """Without NOTIFY_SOCKET the daemon runs and stops as before (the client is a no-op)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    proc = subprocess.Popen(
        [str(BIN / "pixelsd"), "--state-dir", str(state_dir), "--launcher", "none"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(state_dir, proc)
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
