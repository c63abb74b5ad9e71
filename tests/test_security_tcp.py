"""CURVE over tcp:// with real sockets: key files, the allow list, and each role's rights."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from pixels_daemon import ctl as pixelsctl
from pixels_daemon.plan import default_plan
from pixels_daemon.security import keys
from pixels_daemon.security.policy import parse_role
from pixels_daemon.security.transport import SecurityConfig
from pixels_daemon.server import Config, DaemonError, Server
from protocol import codec
from protocol.messages import (
    Command,
    Error,
    Poll,
    Register,
    Reply,
    Request,
    Status,
    Welcome,
    WorkstreamReport,
)
from tests.support import BIN

CLOCK = 1_800_000_000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_keys_generate_writes_public_and_0600_secret(state_dir: Path) -> None:
    out = state_dir / "k"
    assert pixelsctl.main(["keys", "generate", "--name", "alice", "--out", str(out)]) == 0
    assert stat.S_IMODE(os.stat(out / "alice.key_secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "alice.key").st_mode) & 0o077 == 0o044
    public, secret = keys.load_secret(out / "alice.key_secret")
    assert keys.load_public(out / "alice.key") == public
    assert len(secret) == 40
    assert "secret-key" not in (out / "alice.key").read_text()


def test_keys_generate_never_overwrites(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "generate", "--name", "alice", "--out", str(state_dir)]
    assert pixelsctl.main(argv) == 0
    assert pixelsctl.main(argv) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_a_secret_key_readable_by_others_is_refused(state_dir: Path) -> None:
    _, secret = keys.generate("loose", state_dir)
    os.chmod(secret, 0o640)
    with pytest.raises(keys.KeyError_, match="chmod 600"):
        keys.load_secret(secret)


def test_keys_trust_and_revoke_edit_the_allow_list(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public, _ = keys.generate("bob", state_dir / "k")
    common = ["--state-dir", str(state_dir)]
    assert pixelsctl.main(["keys", "trust", str(public), "--role", "viewer", *common]) == 0
    allow = state_dir / "keys" / "trusted.json"
    assert stat.S_IMODE(os.stat(allow).st_mode) == 0o600
    (entry,) = keys.read_allow_list(allow)
    assert (entry.name, str(entry.role)) == ("bob", "viewer")
    assert pixelsctl.main(["keys", "revoke", "bob", *common]) == 0
    assert keys.read_allow_list(allow) == []
    assert pixelsctl.main(["keys", "revoke", "bob", *common]) == 2
    assert "no trusted key named 'bob'" in capsys.readouterr().err


def test_keys_trust_refuses_an_unknown_role(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public, _ = keys.generate("bob", state_dir / "k")
    argv = ["keys", "trust", str(public), "--role", "admin", "--state-dir", str(state_dir)]
    assert pixelsctl.main(argv) == 2
    assert "use operator, viewer or orchestrator:NAME" in capsys.readouterr().err


def test_an_allow_list_others_may_write_is_refused(state_dir: Path) -> None:
    allow = state_dir / "trusted.json"
    keys.write_allow_list(allow, [])
    os.chmod(allow, 0o666)
    with pytest.raises(keys.KeyError_, match="may be written by others"):
        keys.read_allow_list(allow)


async def test_tcp_without_a_server_key_refuses_to_start(state_dir: Path) -> None:
    srv = Server(
        Config(state_dir=state_dir, security=SecurityConfig(tcp_bus="tcp://127.0.0.1:1")),
        default_plan(),
        clock=lambda: CLOCK,
    )
    with pytest.raises(DaemonError, match="keys generate --name server"):
        await srv.serve()


async def test_plain_tcp_is_refused_off_loopback(state_dir: Path) -> None:
    security = SecurityConfig(tcp_bus="tcp://0.0.0.0:1", allow_plain_tcp=True)
    srv = Server(
        Config(state_dir=state_dir, security=security), default_plan(), clock=lambda: CLOCK
    )
    with pytest.raises(DaemonError, match="loopback only"):
        await srv.serve()


@dataclass
class Net:
    server: Server
    bus: str
    ctl: str
    dir: Path

    def curve(self, name: str) -> tuple[bytes, bytes, bytes]:
        public, secret = keys.load_secret(self.dir / f"{name}.key_secret")
        return keys.load_public(self.dir / "server.key"), public, secret

    def socket(self, endpoint: str, name: str) -> zmq.asyncio.Socket:
        sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve(name)
        return sock


@pytest.fixture
async def net(state_dir: Path) -> AsyncIterator[Net]:
    """A daemon serving tcp:// bus and ctl with CURVE; keys for each role and one stranger."""
    kdir = state_dir / "keys"
    allow = kdir / "trusted.json"
    for name in ("server", "op", "view", "foundation", "stranger"):
        keys.generate(name, kdir)
    for name, role in (
        ("op", "operator"),
        ("view", "viewer"),
        ("foundation", "orchestrator:foundation"),
    ):
        keys.trust(allow, kdir / f"{name}.key", parse_role(role))
    bus, ctl = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = Config(state_dir=state_dir, security=SecurityConfig(tcp_bus=bus, tcp_ctl=ctl))
    srv = Server(config, default_plan(), clock=lambda: CLOCK)
    task = asyncio.ensure_future(srv.serve())
    with anyio.fail_after(10):
        await srv.ready.wait()
    yield Net(srv, bus, ctl, kdir)
    srv.stop()
    await task


async def _ask(sock: zmq.asyncio.Socket, frame: bytes, ctl: bool = False) -> object:
    await sock.send(frame)
    with anyio.fail_after(5):
        while True:
            raw = await sock.recv()
            reply = codec.ctl_response.decode(raw) if ctl else codec.to_orchestrator.decode(raw)
            if not isinstance(reply, Command | Poll):
                return reply


async def _request(net: Net, who: str, command: str, **args: object) -> object:
    sock = net.socket(net.ctl, who)
    sock.connect(net.ctl)
    try:
        return await _ask(sock, codec.encode(Request(id="q", command=command, args=args)), True)
    finally:
        sock.close(0)


async def test_an_unknown_key_gets_nothing_through(net: Net) -> None:
    sock = net.socket(net.ctl, "stranger")
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    sock.connect(net.ctl)
    try:
        await sock.send(codec.encode(Request(id="q", command="ping")))
        with anyio.fail_after(5):
            event = await recv_monitor_message(monitor)  # type: ignore[arg-type]
        assert event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert await sock.poll(0) == 0  # and no reply came
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
    assert net.server.daemon.counters.frames == 0


async def test_the_operator_key_may_command(net: Net) -> None:
    reply = await _request(net, "op", "ack", id="E-404")
    assert isinstance(reply, Error)
    assert reply.code == "not_found"  # authorized: the escalation just does not exist


async def test_the_viewer_key_may_query_but_not_command(net: Net) -> None:
    assert isinstance(await _request(net, "view", "status"), Reply)
    reply = await _request(net, "view", "halt", target="WS-01")
    assert isinstance(reply, Error)
    assert reply.code == "forbidden"
    assert "viewer" in reply.message


async def test_an_orchestrator_key_may_not_use_control(net: Net) -> None:
    reply = await _request(net, "foundation", "ping")
    assert isinstance(reply, Error) and reply.code == "forbidden"


async def test_an_orchestrator_key_speaks_only_as_its_orchestrator(net: Net) -> None:
    sock = net.socket(net.bus, "foundation")
    sock.connect(net.bus)
    try:
        welcome = await _ask(sock, codec.encode(Register(id="r1", orchestrator="foundation")))
        assert isinstance(welcome, Welcome)
        other = await _ask(sock, codec.encode(Register(id="r2", orchestrator="model")))
        assert isinstance(other, Error) and other.code == "forbidden"
        model_ws = next(
            w.id for w in net.server.plan.workstreams.values() if w.orchestrator == "model"
        )
        report = {model_ws: WorkstreamReport(status="in_progress", progress=0.5)}
        status = Status(id="s1", seq=1, orchestrator="foundation", workstreams=report)
        denied = await _ask(sock, codec.encode(status))
        assert isinstance(denied, Error) and denied.code == "not_owner"
    finally:
        sock.close(0)


async def test_a_person_s_key_may_not_speak_on_the_bus(net: Net) -> None:
    sock = net.socket(net.bus, "op")
    sock.connect(net.bus)
    try:
        reply = await _ask(sock, codec.encode(Register(id="r", orchestrator="foundation")))
    finally:
        sock.close(0)
    assert isinstance(reply, Error) and reply.code == "forbidden"


async def test_a_revoked_key_is_refused_on_its_open_connection(net: Net) -> None:
    sock = net.socket(net.ctl, "view")
    sock.connect(net.ctl)
    try:
        ping = codec.encode(Request(id="q", command="ping"))
        assert isinstance(await _ask(sock, ping, True), Reply)
        keys.revoke(net.dir / "trusted.json", "view")
        reply = await _ask(sock, ping, True)
    finally:
        sock.close(0)
    assert isinstance(reply, Error) and reply.code == "forbidden"
    assert "revoked" in reply.message


async def test_pixelsctl_speaks_curve_with_its_key_files(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "ping",
        "--endpoint",
        net.ctl,
        "--server-key",
        str(net.dir / "server.key"),
        "--key",
        str(net.dir / "view.key_secret"),
    ]
    assert await anyio.to_thread.run_sync(pixelsctl.main, argv) == 0
    assert "is answering" in capsys.readouterr().out


def _pixelsd(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pixelsd"), "run", "--state-dir", str(state_dir), "--launcher", "none", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_pixelsd_without_a_server_key_says_how_to_make_one(state_dir: Path) -> None:
    result = _pixelsd(state_dir, "--tcp-bus", f"tcp://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "pixelsctl keys generate --name server" in result.stderr
    assert "Traceback" not in result.stderr


def test_pixelsd_refuses_an_unknown_operator(state_dir: Path) -> None:
    result = _pixelsd(state_dir, "--operator", "no-such-user-px")
    assert result.returncode == 2
    assert "--operator no-such-user-px: no such user" in result.stderr


async def test_a_client_speaking_with_another_orchestrator_s_key_is_refused(
    net: Net, state_dir: Path
) -> None:
    """The client reports ``forbidden`` as refused, and its wait ends instead of resending."""
    from orchestrators.client import OrchestratorClient

    outbox = state_dir / "outbox-model.db"
    async with OrchestratorClient("model", net.bus, outbox, curve=net.curve("foundation")) as c:
        await c.send(Status(orchestrator="model"))
        with anyio.fail_after(5):
            assert not await c.wait_acked()
        assert c.refused is not None
        assert c.refused.code == "forbidden"
        assert "belongs to orchestrator 'foundation'" in c.refused.message
        assert c.pending == 1


async def test_plain_tcp_on_loopback_serves_control_to_viewers_only(state_dir: Path) -> None:
    ctl = f"tcp://127.0.0.1:{free_port()}"
    security = SecurityConfig(tcp_ctl=ctl, allow_plain_tcp=True)
    srv = Server(
        Config(state_dir=state_dir, security=security), default_plan(), clock=lambda: CLOCK
    )
    task = asyncio.ensure_future(srv.serve())
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        with anyio.fail_after(10):
            await srv.ready.wait()
        sock.connect(ctl)
        assert isinstance(
            await _ask(sock, codec.encode(Request(id="a", command="ping")), True), Reply
        )
        halt = Request(id="b", command="halt", args={"target": "WS-01"})
        reply = await _ask(sock, codec.encode(halt), True)
        assert isinstance(reply, Error) and reply.code == "forbidden"
    finally:
        sock.close(0)
        srv.stop()
        await task
