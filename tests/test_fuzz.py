"""A short fuzz run in CI: a few thousand hostile frames (tests/fuzzframes.py) against both
sockets of a running pixelsd, which must survive, keep counting, and still answer correctly.
The long run (100,000+ frames, memory watched) is bench/fuzz.py; its figures are in
docs/security.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.messages import Ack, Register, Status, Welcome, WorkstreamReport
from tests.fuzzframes import blast, messages
from tests.support import DaemonProcess, ctl

BATCH = 50
EXAMPLES = 40  # x 50 frames x 2 sockets = 4,000 frames, a few seconds


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(state_dir).start()
    try:
        yield proc
    finally:
        proc.close()


def _deliver_one(endpoint: str, ctx: zmq.Context[bytes]) -> tuple[Welcome, Ack]:
    """Register as integration and report once with the next seq: the welcome, then the ack."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(codec.encode(Register(id="r", orchestrator="integration")))
        welcome = _next(sock, Welcome)
        report = {"WS-13": WorkstreamReport(status="not_started")}
        seq = welcome.acked_seq + 1
        sock.send(
            codec.encode(Status(id="s", seq=seq, orchestrator="integration", workstreams=report))
        )
        return welcome, _next(sock, Ack)
    finally:
        sock.close(0)


def _next(sock: zmq.Socket[bytes], kind: type) -> object:
    while sock.poll(5000):
        message = codec.to_orchestrator.decode(sock.recv())
        if isinstance(message, kind):
            return message
    raise TimeoutError(f"no {kind.__name__}")


def test_fuzzed_frames_on_both_sockets_leave_the_daemon_answering(daemon: DaemonProcess) -> None:
    run = daemon.state_dir / "run"
    ctx: zmq.Context[bytes] = zmq.Context()
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(messages, min_size=BATCH, max_size=BATCH))
    def fuzz(batch: list[list[bytes]]) -> None:
        nonlocal sent
        for sock in ("bus.sock", "ctl.sock"):
            blast(f"ipc://{run / sock}", batch, ctx)
            sent += len(batch)

    try:
        fuzz()
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()[-2000:]
        ping = ctl(daemon.state_dir, "ping")
        assert ping["counters"]["frames"] > 0
        assert sum(ping["counters"]["frame_errors"].values()) > 0
        welcome, ack = _deliver_one(f"ipc://{run / 'bus.sock'}", ctx)
        assert ack.acked_seq == welcome.acked_seq + 1
        assert ctl(daemon.state_dir, "status")["plan"]
    finally:
        ctx.destroy(0)
    assert sent == 2 * BATCH * EXAMPLES
