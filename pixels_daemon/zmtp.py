"""A ZeroMQ DEALER over a unix socket in the standard library alone: pixelsctl's transport to
an ipc:// control endpoint, speaking ZMTP 3.0 with the NULL mechanism (rfc.zeromq.org/spec/23).

Why not pyzmq: pixelsctl is a one-request process whose wall time is start-up, and ``import zmq``
(libzmq, its enums and sugar) is about a third of it. One request and one reply over a local
stream socket needs only the greeting, the READY handshake and framing, all below. The daemon's
side is libzmq as ever; tcp:// (CURVE) and ``pixelsctl watch`` (SUB) still use pyzmq.

What a ROUTER sees is an ordinary DEALER: same handshake, no routing id of its own (libzmq gives
it one), and the kernel's SO_PEERCRED for the daemon's uid check, as with libzmq's own ipc://.
"""

from __future__ import annotations

import socket
import struct
import time

#: Signature (0xFF, 8 bytes of padding, 0x7F), version 3.0, mechanism NULL, as-server 0, filler.
SIGNATURE = b"\xff" + bytes(8) + b"\x7f"
GREETING = SIGNATURE + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
GREETING_SIZE = 64

# Frame flags (the first byte of every frame).
MORE = 0x01
LONG = 0x02  # the size is 8 bytes, not 1
COMMAND = 0x04

#: A reply larger than this is refused (the daemon's replies are kilobytes; a bad peer could
#: announce 2**64 bytes).
MAX_FRAME = 64 << 20


class ZmtpError(Exception):
    """The peer does not speak ZMTP 3 with the NULL mechanism, or refused us (its reason)."""


def frame(body: bytes, flags: int = 0) -> bytes:
    """One frame: flags, size (1 byte, or 8 with LONG), body."""
    if len(body) > 255:
        return struct.pack(">BQ", flags | LONG, len(body)) + body
    return struct.pack(">BB", flags, len(body)) + body


def command(name: bytes, properties: dict[bytes, bytes]) -> bytes:
    """A command frame: name, then each property as name (1-byte size) and value (4-byte)."""
    body = bytes([len(name)]) + name
    for key, value in properties.items():
        body += bytes([len(key)]) + key + struct.pack(">I", len(value)) + value
    return frame(body, COMMAND)


READY = command(b"READY", {b"Socket-Type": b"DEALER"})


def check_greeting(greeting: bytes) -> None:
    """The peer's 64-byte greeting must be ZMTP 3.x offering the NULL mechanism."""
    if greeting[0] != 0xFF or greeting[9] != 0x7F:
        raise ZmtpError("the peer is not a ZeroMQ socket (no ZMTP signature)")
    if greeting[10] < 3:
        raise ZmtpError(f"the peer speaks ZMTP {greeting[10]}.{greeting[11]}, not 3")
    mechanism = greeting[12:32].rstrip(b"\x00").decode("ascii", "replace")
    if mechanism != "NULL":
        raise ZmtpError(f"the peer requires the {mechanism} security mechanism")


def parse_command(body: bytes) -> tuple[str, bytes]:
    """A command frame's body as (name, data)."""
    if not body or len(body) < 1 + body[0]:
        raise ZmtpError("malformed command frame")
    size = body[0]
    return body[1 : 1 + size].decode("ascii", "replace"), body[1 + size :]


def parse_properties(data: bytes) -> dict[str, bytes]:
    """A READY command's metadata: name (1-byte size) and value (4-byte size), repeated."""
    props: dict[str, bytes] = {}
    at = 0
    while at < len(data):
        size = data[at]
        name = data[at + 1 : at + 1 + size].decode("ascii", "replace")
        at += 1 + size
        if at + 4 > len(data):
            raise ZmtpError("malformed READY metadata")
        (length,) = struct.unpack_from(">I", data, at)
        at += 4
        if at + length > len(data):
            raise ZmtpError("malformed READY metadata")
        props[name] = data[at : at + length]
        at += length
    return props


def unix_address(path: str) -> str:
    """libzmq's spelling of an ipc path to the socket module's: "@name" is Linux's abstract
    namespace, a leading NUL byte to the kernel."""
    return "\0" + path[1:] if path.startswith("@") else path


class Dealer:
    """A connected, handshaken DEALER; every operation ends by ``deadline`` (time.monotonic()),
    else raises TimeoutError. OSError from the socket (refused, reset) passes through."""

    def __init__(self, path: str, deadline: float) -> None:
        self._deadline = deadline
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(self._remaining())
            self._sock.connect(unix_address(path))
            # Signature and major version first, the rest once the peer's whole greeting is in:
            # libzmq answers those 11 bytes with its greeting, but given all 64 at once it may
            # see our mechanism and hang up on a mismatch before its own is sent (then all we
            # could say is "reset", not which mechanism it wants).
            self._sock.sendall(GREETING[:11])
            check_greeting(self._read(GREETING_SIZE))
            self._sock.sendall(GREETING[11:] + READY)
            self._handshake()
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> Dealer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(self, payload: bytes) -> None:
        """One single-frame message (a DEALER's message to a ROUTER carries no envelope)."""
        self._sock.settimeout(self._remaining())
        self._sock.sendall(frame(payload))

    def recv(self) -> list[bytes]:
        """The next message's frames (commands in between are skipped)."""
        parts: list[bytes] = []
        while True:
            flags, body = self._frame()
            if flags & COMMAND:
                # ZMTP 3.0 peers are sent none after READY but ERROR; anything else is skipped.
                name, data = parse_command(body)
                if name == "ERROR":
                    raise ZmtpError(_error_reason(data))
                continue
            parts.append(body)
            if not flags & MORE:
                return parts

    def _handshake(self) -> None:
        flags, body = self._frame()
        if not flags & COMMAND:
            raise ZmtpError("the peer sent a message before its READY")
        name, data = parse_command(body)
        if name == "ERROR":
            raise ZmtpError(_error_reason(data))
        if name != "READY":
            raise ZmtpError(f"the peer sent {name!r} where READY belongs")
        kind = parse_properties(data).get("Socket-Type", b"").decode("ascii", "replace")
        if kind not in ("ROUTER", "DEALER"):
            raise ZmtpError(f"the peer is a {kind or 'typeless'} socket, not a ROUTER")

    def _frame(self) -> tuple[int, bytes]:
        flags, size = self._read(2)
        if flags & LONG:
            (size,) = struct.unpack(">Q", bytes([size]) + self._read(7))
            if size > MAX_FRAME:
                raise ZmtpError(f"the peer announced a frame of {size} bytes")
        return flags, self._read(size)

    def _read(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            self._sock.settimeout(self._remaining())
            chunk = self._sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionResetError("the peer closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left


def _error_reason(data: bytes) -> str:
    reason = data[1 : 1 + data[0]].decode("utf-8", "replace") if data else ""
    return f"the peer refused the connection: {reason or 'no reason given'}"
