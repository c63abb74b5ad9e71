"""The daemon's I/O shell over real ipc sockets and a real SQLite file, in-process."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest
import zmq
import zmq.asyncio

from pixels_daemon.paths import PathError
from pixels_daemon.plan import default_plan
from pixels_daemon.server import GC_THRESHOLDS, Config, DaemonError, Server
from protocol import codec
from protocol.messages import (
    SOCKET_MAX_MSGSIZE,
    Ack,
    Error,
    Register,
    Reply,
    Request,
    Status,
    Welcome,
    WorkstreamReport,
)
from tests.support import BIN, ctl, wait_ready

CLOCK = 1_800_000_000.0


@pytest.fixture
async def server(state_dir: Path) -> AsyncIterator[Server]:
    """A real daemon serving in this event loop (a task, since fixtures cannot hold a task group
    across their yield)."""
    srv = Server(Config(state_dir=state_dir), default_plan(), clock=lambda: CLOCK)
    task = asyncio.ensure_future(srv.serve())
    with anyio.fail_after(10):
        await srv.ready.wait()
    yield srv
    srv.stop()
    await task


async def roundtrip(endpoint: str, *frames: bytes, timeout_s: float = 5.0) -> list[bytes]:
    """Send one multipart message from a fresh DEALER and return the reply's frames."""
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        await sock.send_multipart(list(frames))
        with anyio.fail_after(timeout_s):
            return list(await sock.recv_multipart())
    finally:
        sock.close(0)


async def ask(server: Server, command: str) -> object:
    (frame,) = await roundtrip(server.ctl_endpoint, codec.encode(Request(id="q", command=command)))
    reply = codec.ctl_response.decode(frame)
    assert isinstance(reply, Reply), reply
    return reply.result


BAD_FRAMES = [
    (b"\xc1 not msgpack", "bad_frame"),
    (msgspec.msgpack.encode("a string"), "bad_frame"),
    (msgspec.msgpack.encode({"msg": "status", "v": 7, "id": "x"}), "unsupported_version"),
    (msgspec.msgpack.encode({"msg": "teleport", "v": 1, "id": "x"}), "unknown_type"),
    (msgspec.msgpack.encode({"msg": "status", "v": 1, "id": "x", "seq": 1}), "bad_message"),
    (b"\x90" * ((1 << 20) + 1), "too_large"),
    (b"\x91" * 100_000 + b"\xc0", "bad_frame"),  # nesting deep enough to exhaust recursion
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_frame_gets_error_and_daemon_serves_on(
    server: Server, frame: bytes, code: str
) -> None:
    """Each kind of bad frame is answered with its error code; pixelsctl still gets answers."""
    (reply,) = await roundtrip(server.bus_endpoint, frame)
    error = codec.to_orchestrator.decode(reply)
    assert isinstance(error, Error)
    assert error.code == code
    result = await ask(server, "ping")
    assert isinstance(result, dict)
    assert result["counters"]["frame_errors"][code] == 1


async def test_multipart_garbage_gets_bad_frame(server: Server) -> None:
    """A message of several frames (not [payload]) is refused with bad_frame, on both sockets."""
    for endpoint in (server.bus_endpoint, server.ctl_endpoint):
        (reply,) = await roundtrip(endpoint, b"one", b"two", b"three")
        error = msgspec.msgpack.decode(reply)
        assert error["msg"] == "error"
        assert error["code"] == "bad_frame"


async def test_frame_over_socket_cap_is_dropped_and_daemon_serves_on(server: Server) -> None:
    """A frame over ZMQ_MAXMSGSIZE costs its sender the connection, not the daemon its life."""
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.bus_endpoint)
    await sock.send(b"\x00" * (SOCKET_MAX_MSGSIZE + 1))
    assert await sock.poll(300) == 0  # no reply: libzmq disconnected the peer
    sock.close(0)
    assert isinstance(await ask(server, "ping"), dict)


async def test_req_socket_peer_is_answered_in_its_shape(server: Server) -> None:
    """A REQ client (empty delimiter frame) gets its reply through the same delimiter."""
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.ctl_endpoint)
    await sock.send(codec.encode(Request(id="q", command="ping")))
    with anyio.fail_after(5):
        reply = codec.ctl_response.decode(await sock.recv())
    sock.close(0)
    assert isinstance(reply, Reply)


async def test_status_is_acked_and_visible(server: Server) -> None:
    """register -> welcome, status -> ack(1), and the status view shows the progress."""
    (w,) = await roundtrip(
        server.bus_endpoint, codec.encode(Register(id="r", orchestrator="foundation"))
    )
    welcome = codec.to_orchestrator.decode(w)
    assert isinstance(welcome, Welcome)
    assert welcome.acked_seq == 0
    status = Status(
        id="s1",
        seq=1,
        orchestrator="foundation",
        workstreams={"WS-01": WorkstreamReport(status="in_progress", progress=0.3)},
    )
    (a,) = await roundtrip(server.bus_endpoint, codec.encode(status))
    ack = codec.to_orchestrator.decode(a)
    assert isinstance(ack, Ack)
    assert ack.acked_seq == 1
    workstreams = await ask(server, "workstreams")
    assert isinstance(workstreams, list)
    ws01 = next(w for w in workstreams if w["id"] == "WS-01")
    assert ws01["progress"] == 0.3


async def test_second_daemon_on_same_state_dir_fails_loudly(
    server: Server, state_dir: Path
) -> None:
    """A second daemon on a state dir in use raises DaemonError naming the holder's pid."""
    second = Server(Config(state_dir=state_dir), default_plan())
    with pytest.raises(DaemonError, match=f"pid {os.getpid()}"):
        await second.serve()
    assert isinstance(await ask(server, "ping"), dict)  # the first keeps its sockets


async def test_runtime_dir_and_socket_modes(server: Server, state_dir: Path) -> None:
    """The runtime dir is 0750 and the sockets 0660."""
    run = state_dir / "run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o750
    for name in ("bus.sock", "ctl.sock"):
        mode = (run / name).stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660


async def test_stale_socket_from_a_crash_is_replaced(state_dir: Path) -> None:
    """A socket file left by a dead daemon is removed and the new daemon binds."""
    run = state_dir / "run"
    run.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run / "bus.sock"))
    stale.close()  # the file stays, nobody listens: what a SIGKILLed daemon leaves
    srv = Server(Config(state_dir=state_dir), default_plan())
    async with anyio.create_task_group() as tg:
        await tg.start(srv.serve)
        assert isinstance(await ask(srv, "ping"), dict)
        srv.stop()


async def test_non_socket_in_the_way_is_refused(state_dir: Path) -> None:
    """A regular file where a socket should go is not deleted: start-up fails saying so."""
    run = state_dir / "run"
    run.mkdir()
    (run / "bus.sock").write_text("precious")
    srv = Server(Config(state_dir=state_dir), default_plan())
    with pytest.raises(BaseException) as info:
        await srv.serve()
    assert "is not a socket" in str(_leaf(info.value))
    assert (run / "bus.sock").read_text() == "precious"


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def test_too_long_ipc_path_is_a_clear_error(tmp_path: Path) -> None:
    """A state dir whose socket path exceeds 107 bytes is refused with advice."""
    deep = tmp_path / ("d" * 120)
    with pytest.raises(PathError, match="--runtime-dir"):
        Server(Config(state_dir=deep), default_plan())


def test_restart_rebuilds_state_and_sigterm_exits_zero(state_dir: Path) -> None:
    """After SIGTERM (exit 0, sockets removed) a new daemon shows the same state."""
    proc = subprocess.Popen(
        [str(BIN / "pixelsd"), "--state-dir", str(state_dir), "--launcher", "none"],
        stderr=subprocess.PIPE,
    )
    wait_ready(state_dir, proc)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{state_dir}/run/bus.sock")
    for seq in (1, 2, 3):
        sock.send(
            codec.encode(
                Status(
                    id=f"s{seq}",
                    seq=seq,
                    orchestrator="foundation",
                    workstreams={
                        "WS-01": WorkstreamReport(status="in_progress", progress=seq / 10)
                    },
                )
            )
        )
    acked = 0
    while acked < 3:
        assert sock.poll(5000)
        msg = codec.to_orchestrator.decode(sock.recv())
        assert isinstance(msg, Ack)
        acked = msg.acked_seq
    sock.close(0)
    before = ctl(state_dir, "workstreams")
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert not (state_dir / "run" / "bus.sock").exists()
    again = subprocess.Popen(
        [str(BIN / "pixelsd"), "--state-dir", str(state_dir), "--launcher", "none"],
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(state_dir, again)
        assert ctl(state_dir, "workstreams") == before
    finally:
        again.terminate()
        again.wait(timeout=10)


def test_second_daemon_process_exits_1_with_one_line(state_dir: Path) -> None:
    """pixelsd on a state dir in use prints one line and exits 1, no traceback."""
    first = subprocess.Popen(
        [str(BIN / "pixelsd"), "--state-dir", str(state_dir), "--launcher", "none"],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(state_dir, first)
        second = subprocess.run(
            [str(BIN / "pixelsd"), "--state-dir", str(state_dir), "--launcher", "none"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert second.returncode == 1
        assert second.stderr.startswith("pixelsd: error: another pixelsd")
        assert "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.terminate()
        first.wait(timeout=10)


async def test_a_tuned_daemon_freezes_what_replay_built_and_raises_the_gc_thresholds(
    state_dir: Path,
) -> None:
    """tune_gc (what `pixelsd run` sets): the collector's thresholds are GC_THRESHOLDS and the
    replayed state is out of its scans."""
    before = gc.get_threshold()
    srv = Server(Config(state_dir=state_dir, tune_gc=True), default_plan(), clock=lambda: CLOCK)
    task = asyncio.ensure_future(srv.serve())
    try:
        with anyio.fail_after(10):
            await srv.ready.wait()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        srv.stop()
        await task
        gc.unfreeze()
        gc.set_threshold(*before)
