"""Authorization and per-peer limits over the real ipc:// sockets of an in-process daemon."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import zmq
import zmq.asyncio

from pixels_daemon.plan import default_plan
from pixels_daemon.server import Config, Server
from protocol import codec
from protocol.messages import (
    Command,
    Error,
    Poll,
    Register,
    Reply,
    Request,
    Status,
    WorkstreamReport,
)

CLOCK = 1_800_000_000.0
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def server(state_dir: Path) -> AsyncIterator[Server]:
    srv = Server(Config(state_dir=state_dir), default_plan(), clock=lambda: CLOCK)
    task = asyncio.ensure_future(srv.serve())
    with anyio.fail_after(10):
        await srv.ready.wait()
    yield srv
    srv.stop()
    await task


class Peer:
    """One DEALER connection (one ROUTER identity) to an endpoint."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    async def ask(self, frame: bytes) -> object:
        """Send a frame; the first answer to it (standing orders and polls are skipped)."""
        await self.sock.send(frame)
        with anyio.fail_after(5):
            while True:
                reply = codec.to_orchestrator.decode(await self.sock.recv())
                if not isinstance(reply, Command | Poll):
                    return reply

    def close(self) -> None:
        self.sock.close(0)


def status(name: str, seq: int, ws: str) -> bytes:
    report = {ws: WorkstreamReport(status="in_progress", progress=0.5)}
    return codec.encode(
        Status(id=f"s{seq}", seq=seq, ts=CLOCK, orchestrator=name, workstreams=report)
    )


async def ctl(server: Server, command: str) -> object:
    peer = Peer(server.ctl_endpoint)
    try:
        await peer.sock.send(codec.encode(Request(id="q", command=command)))
        with anyio.fail_after(5):
            reply = codec.ctl_response.decode(await peer.sock.recv())
    finally:
        peer.close()
    assert isinstance(reply, Reply), reply
    return reply.result


async def test_a_bus_connection_may_not_speak_as_a_second_orchestrator(server: Server) -> None:
    peer = Peer(server.bus_endpoint)
    try:
        welcome = await peer.ask(codec.encode(Register(id="r", orchestrator="foundation")))
        assert type(welcome).__name__ == "Welcome"
        reply = await peer.ask(status("model", 1, "WS-04"))
    finally:
        peer.close()
    assert isinstance(reply, Error)
    assert reply.code == "forbidden"
    assert "'foundation'" in reply.message
    assert server.daemon.state.orchestrators["model"].acked_seq == 0
    ping = await ctl(server, "ping")
    assert isinstance(ping, dict)
    assert ping["security"]["denied"] == 1
    assert ping["security"]["bad_frames_by_peer"] == {"ipc:foundation": 1}


async def test_an_orchestrator_reporting_another_s_workstream_is_denied(server: Server) -> None:
    peer = Peer(server.bus_endpoint)
    try:
        await peer.ask(codec.encode(Register(id="r", orchestrator="foundation")))
        owned_by_model = next(
            ws.id for ws in server.plan.workstreams.values() if ws.orchestrator == "model"
        )
        reply = await peer.ask(status("foundation", 1, owned_by_model))
    finally:
        peer.close()
    assert isinstance(reply, Error)
    assert reply.code == "not_owner"
    assert server.daemon.state.workstreams[owned_by_model].progress == 0.0


async def test_ping_counts_bad_frames_per_peer(server: Server) -> None:
    peer = Peer(server.bus_endpoint)
    try:
        for _ in range(3):
            reply = await peer.ask(b"\xc1 garbage")
            assert isinstance(reply, Error) and reply.code == "bad_frame"
    finally:
        peer.close()
    ping = await ctl(server, "ping")
    assert isinstance(ping, dict)
    ((label, count),) = ping["security"]["bad_frames_by_peer"].items()
    assert label.startswith("ipc:")  # a connection that never named itself: its identity
    assert count == 3


async def test_a_flooding_peer_is_throttled_and_others_are_served(state_dir: Path) -> None:
    srv = Server(Config(state_dir=state_dir), default_plan(), clock=lambda: CLOCK)
    # A budget small enough to exhaust in a test; refills slowly enough not to refill meanwhile.
    srv.daemon.guard.limiter.rate = 1.0
    srv.daemon.guard.limiter.burst = 1000.0
    task = asyncio.ensure_future(srv.serve())
    with anyio.fail_after(10):
        await srv.ready.wait()
    flood = Peer(srv.bus_endpoint)
    try:
        for _ in range(20):  # 20 bad frames at 101 tokens each: the budget is gone
            await flood.sock.send(b"\xc1")
        codes = []
        with anyio.fail_after(5):
            while "throttled" not in codes:
                reply = codec.to_orchestrator.decode(await flood.sock.recv())
                assert isinstance(reply, Error)
                codes.append(reply.code)
        ping = await ctl(srv, "ping")
        assert isinstance(ping, dict)
        assert ping["security"]["throttled"] >= 1
    finally:
        flood.close()
        srv.stop()
        await task


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another uid")
async def test_an_ipc_control_peer_of_another_uid_is_a_viewer(server: Server) -> None:
    state_dir = server.paths.state_dir
    os.chmod(state_dir, 0o750)  # let gid 0 through, as the daemon's group is in production
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = REPO / "tests" / "scripts" / "ctl_as_uid.py"
    out = await anyio.run_process(
        [sys.executable, str(script), "65534", server.ctl_endpoint, "ping", "ack", "status"],
        env=env,
    )
    replies = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [r["msg"] for r in replies] == ["reply", "error", "reply"]
    assert replies[1]["code"] == "forbidden"
    assert "viewer" in replies[1]["message"]


async def test_the_daemon_s_own_uid_is_an_operator_on_ipc(server: Server) -> None:
    peer = Peer(server.ctl_endpoint)
    try:
        await peer.sock.send(codec.encode(Request(id="q", command="ack", args={"id": "E-404"})))
        with anyio.fail_after(5):
            reply = codec.ctl_response.decode(await peer.sock.recv())
    finally:
        peer.close()
    assert isinstance(reply, Error)
    assert reply.code == "not_found"  # authorized; the escalation just does not exist
