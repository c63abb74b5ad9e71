"""pixels_daemon/zmtp.py: the standard-library DEALER, against real libzmq sockets (pyzmq) and
against peers that are not what it expects."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from pixels_daemon import zmtp

DEADLINE_S = 5.0  # generous: only the timeout test waits for a deadline on purpose


def deadline(seconds: float = DEADLINE_S) -> float:
    return time.monotonic() + seconds


@pytest.fixture
def router(state_dir: Path) -> Iterator[tuple[zmq.Socket[bytes], str]]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
    path = str(state_dir / "r.sock")
    sock.bind(f"ipc://{path}")
    try:
        yield sock, path
    finally:
        ctx.destroy(linger=0)


# --- framing (pure) -----------------------------------------------------------------------------


def test_short_and_long_frames() -> None:
    """Up to 255 bytes: flags and a 1-byte size; longer: the LONG flag and an 8-byte size."""
    assert zmtp.frame(b"abc") == b"\x00\x03abc"
    assert zmtp.frame(b"x", zmtp.MORE) == b"\x01\x01x"
    long = zmtp.frame(b"y" * 256)
    assert long[0] == zmtp.LONG and long[1:9] == (256).to_bytes(8, "big") and len(long) == 265


def test_the_greeting_is_zmtp_3_null_as_client() -> None:
    g = zmtp.GREETING
    assert len(g) == 64 and g[:10] == zmtp.SIGNATURE and g[10:12] == b"\x03\x00"
    assert g[12:32].rstrip(b"\x00") == b"NULL" and g[32] == 0


def test_ready_command_properties_round_trip() -> None:
    flags, size = zmtp.READY[0], zmtp.READY[1]
    assert flags == zmtp.COMMAND and size == len(zmtp.READY) - 2
    name, data = zmtp.parse_command(zmtp.READY[2:])
    assert name == "READY"
    assert zmtp.parse_properties(data) == {"Socket-Type": b"DEALER"}


@pytest.mark.parametrize(
    "greeting, why",
    [
        (b"HTTP/1.1 400 Bad Request\r\n".ljust(64, b" "), "not a ZeroMQ socket"),
        (zmtp.SIGNATURE + b"\x02\x00".ljust(54, b"\x00"), "speaks ZMTP 2.0"),
        (zmtp.SIGNATURE + b"\x03\x01" + b"CURVE".ljust(52, b"\x00"), "requires the CURVE"),
    ],
)
def test_a_greeting_that_is_not_zmtp_3_null_is_refused(greeting: bytes, why: str) -> None:
    with pytest.raises(zmtp.ZmtpError, match=why):
        zmtp.check_greeting(greeting)


def test_truncated_ready_metadata_is_refused() -> None:
    with pytest.raises(zmtp.ZmtpError, match="malformed READY"):
        zmtp.parse_properties(b"\x0bSocket-Type\x00\x00\x00\x09ROU")


# --- against libzmq ----------------------------------------------------------------------------


def test_a_request_and_its_reply_through_a_libzmq_router(
    router: tuple[zmq.Socket[bytes], str],
) -> None:
    """The ROUTER sees a DEALER's [identity, payload]; its reply comes back as one frame. Both
    ways long enough to need 8-byte sizes."""
    sock, path = router
    request, answer = b"q" * 300, b"a" * 70_000
    with zmtp.Dealer(path, deadline()) as dealer:
        dealer.send(request)
        identity, payload = sock.recv_multipart()
        assert payload == request and identity
        sock.send_multipart([identity, answer])
        assert dealer.recv() == [answer]


def test_multipart_replies_keep_their_frames(router: tuple[zmq.Socket[bytes], str]) -> None:
    sock, path = router
    with zmtp.Dealer(path, deadline()) as dealer:
        dealer.send(b"hello")
        identity, _ = sock.recv_multipart()
        sock.send_multipart([identity, b"", b"payload"])
        assert dealer.recv() == [b"", b"payload"]


def test_the_abstract_namespace_is_reached_by_its_at_name() -> None:
    """ipc://@name (Linux's abstract namespace) as libzmq spells it."""
    name = f"@pixels-test-{os.getpid()}-{time.monotonic_ns()}"
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
        sock.bind(f"ipc://{name}")
        with zmtp.Dealer(name, deadline()) as dealer:
            dealer.send(b"ping")
            identity, payload = sock.recv_multipart()
            sock.send_multipart([identity, b"pong"])
            assert (payload, dealer.recv()) == (b"ping", [b"pong"])
    finally:
        ctx.destroy(linger=0)


def test_a_curve_server_is_refused_with_the_mechanism_named(state_dir: Path) -> None:
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.ROUTER)
        _, secret = zmq.curve_keypair()
        sock.curve_secretkey = secret
        sock.curve_server = True
        path = str(state_dir / "curve.sock")
        sock.bind(f"ipc://{path}")
        with pytest.raises(zmtp.ZmtpError, match="requires the CURVE security mechanism"):
            zmtp.Dealer(path, deadline())
    finally:
        ctx.destroy(linger=0)


def test_a_zap_refusal_is_raised_with_its_reason(state_dir: Path) -> None:
    """A ROUTER whose ZAP handler says no: libzmq's ERROR command, reason and all."""
    ctx = zmq.Context()
    zap = ctx.socket(zmq.REP)
    zap.bind("inproc://zeromq.zap.01")
    zap.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))

    def deny() -> None:  # libzmq asks once per connection
        version, request_id, *_ = zap.recv_multipart()
        zap.send_multipart([version, request_id, b"400", b"not you", b"", b""])

    handler = threading.Thread(target=deny)
    try:
        sock = ctx.socket(zmq.ROUTER)
        sock.zap_domain = b"pixels"
        path = str(state_dir / "zap.sock")
        sock.bind(f"ipc://{path}")
        handler.start()
        with pytest.raises(zmtp.ZmtpError, match="refused the connection"):
            zmtp.Dealer(path, deadline())
    finally:
        handler.join(DEADLINE_S + 1)
        ctx.destroy(linger=0)


# --- peers that are not ZeroMQ ------------------------------------------------------------------


@pytest.fixture
def listener(state_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(state_dir / "plain.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    try:
        yield server, path
    finally:
        server.close()


def test_a_silent_peer_times_out_at_the_deadline(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        zmtp.Dealer(path, deadline(0.2))
    assert time.monotonic() - start < DEADLINE_S


def test_a_peer_that_hangs_up_mid_greeting_is_a_reset(listener: tuple[socket.socket, str]) -> None:
    server, path = listener

    def hang_up() -> None:
        conn, _ = server.accept()
        conn.recv(11)  # all the client sends before our greeting: nothing unread at close
        conn.sendall(zmtp.SIGNATURE)
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    with pytest.raises(ConnectionResetError):
        zmtp.Dealer(path, deadline())
    thread.join()


def test_a_stale_socket_file_is_refused_at_once(state_dir: Path) -> None:
    path = str(state_dir / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with pytest.raises(ConnectionRefusedError):
        zmtp.Dealer(path, deadline())
