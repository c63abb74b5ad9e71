"""More than one host, on one machine: orchestrators in their own network namespaces (ip netns,
veth pairs, addresses of this test's own) reach pixelsd over tcp:// with CURVE. A trusted key
gets through and survives the link being cut and restored without losing an acked message; an
untrusted key from another namespace is refused. Needs root and `ip netns`; skipped (saying why)
where namespaces cannot be made."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pixels_daemon.security import keys
from pixels_daemon.security.policy import parse_role
from tests.support import DaemonProcess, ctl

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tests" / "scripts"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"pxprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.decode().strip()}"
    _ip("netns", "del", probe)
    return None


pytestmark = pytest.mark.skipif((why := _netns_unavailable()) is not None, reason=why or "")


@dataclass
class Host:
    ns: str
    veth: str  # our end, in the daemon's namespace
    addr: str  # the host's address
    gateway: str  # the daemon's address on this link

    def run(self, *argv: str) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    """Two namespaces, each on its own veth link to this one (10.X.1.0/24 and 10.X.2.0/24)."""
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    net = random.randrange(200, 250)
    made: list[Host] = []
    try:
        for i in (1, 2):
            host = Host(f"pxh{i}-{tag}", f"pxv{i}{tag}", f"10.{net}.{i}.2", f"10.{net}.{i}.1")
            _ip("netns", "add", host.ns)
            made.append(host)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
            _ip("addr", "add", f"{host.gateway}/24", "dev", host.veth)
            _ip("link", "set", host.veth, "up")
            inside = ["netns", "exec", host.ns, "ip"]
            _ip(*inside, "addr", "add", f"{host.addr}/24", "dev", "eth0")
            _ip(*inside, "link", "set", "eth0", "up")
            _ip(*inside, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise TimeoutError(what)


def test_orchestrators_on_other_hosts_over_curve(state_dir: Path, hosts: list[Host]) -> None:
    kdir = state_dir / "keys"
    for name in ("server", "foundation", "stranger"):
        keys.generate(name, kdir)
    keys.trust(
        kdir / "trusted.json", kdir / "foundation.key", parse_role("orchestrator:foundation")
    )
    port, ctl_port = _free_port(), _free_port()
    daemon = DaemonProcess(
        state_dir, "--tcp-bus", f"tcp://0.0.0.0:{port}", "--tcp-ctl", f"tcp://0.0.0.0:{ctl_port}"
    ).start()
    near, far = hosts
    server_key = str(kdir / "server.key")
    try:
        # An untrusted key, from the other host: the handshake fails, nothing gets through.
        probe = far.run(
            sys.executable,
            str(SCRIPTS / "curve_probe.py"),
            f"tcp://{far.gateway}:{ctl_port}",
            server_key,
            str(kdir / "stranger.key_secret"),
        )
        out, err = probe.communicate(timeout=30)
        assert out.strip() == "refused", err

        total = 300
        agent = near.run(
            sys.executable,
            str(SCRIPTS / "curve_agent.py"),
            "foundation",
            f"tcp://{near.gateway}:{port}",
            str(state_dir / "outbox.db"),
            str(total),
            "0.005",
            server_key,
            str(kdir / "foundation.key_secret"),
        )
        assert agent.stdout is not None
        sent = 0

        def sent_at_least(n: int) -> bool:
            nonlocal sent
            while sent < n:
                line = agent.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise RuntimeError(f"agent ended: {agent.stderr.read()}")  # type: ignore[union-attr]
                if line.startswith("sent "):
                    sent = int(line.split()[1])
            return True

        def acked() -> int:
            views = ctl(state_dir, "orchestrators")
            return next(o["acked_seq"] for o in views if o["name"] == "foundation")

        _wait_for(lambda: sent_at_least(50) and acked() >= 10, "first messages acked")
        _ip("link", "set", near.veth, "down")  # cut the link
        cut_at = acked()
        sent_at_least(cut_at + 100)  # the agent went on: its outbox holds what could not go
        _ip("link", "set", near.veth, "up")  # restore it
        assert agent.wait(timeout=90) == 0, agent.stderr.read() if agent.stderr else ""
        assert acked() == total
        ws = next(w for w in ctl(state_dir, "workstreams") if w["id"] == "WS-01")
        assert ws["status"] == "complete"
        counters = ctl(state_dir, "ping")["counters"]
        assert counters["applied"] + counters["rejected"] == total  # each applied exactly once
    finally:
        daemon.close()
