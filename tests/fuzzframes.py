"""Hostile frames for fuzzing the daemon's sockets (tests/test_fuzz.py, bench/fuzz.py).

Hypothesis strategies for what a hostile or broken peer sends: random bytes, random msgpack
values, maps with the envelope's field names and wrong values, and valid bus and control
messages mutated (bytes flipped, cut, spliced, repeated), in multipart shapes right and wrong.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import zmq
from hypothesis import strategies as st

from protocol import codec
from protocol.messages import (
    DependencyFound,
    Escalation,
    Heartbeat,
    PollReply,
    Register,
    Request,
    Status,
    WorkstreamReport,
)

NAMES = ["foundation", "model", "interface", "integration", "nobody", "", "x" * 70]
COMMANDS = ["ping", "status", "ack", "halt", "resume", "spawn", "stop", "gate_check", "nope"]
TAGS = [
    "register",
    "heartbeat",
    "status",
    "poll_reply",
    "escalation",
    "dependency_found",
    "request",
    "welcome",
    "ack",
    "teleport",
    "",
]


def _valid() -> list[bytes]:
    report = {"WS-01": WorkstreamReport(status="in_progress", progress=0.5)}
    msgs: list[Any] = [
        Register(id="r", orchestrator="foundation"),
        Heartbeat(id="h", orchestrator="foundation"),
        Status(id="s", seq=1, orchestrator="foundation", workstreams=report),
        PollReply(id="p", seq=2, orchestrator="model", workstreams=report),
        Escalation(
            id="e",
            seq=3,
            orchestrator="foundation",
            severity="high",
            issue="stuck",
            affected_workstreams=["WS-01"],
        ),
        DependencyFound(
            id="d", seq=4, orchestrator="model", workstream="WS-05", depends_on="WS-01"
        ),
        Request(id="q", command="status"),
        Request(id="q", command="ack", args={"id": "E-1"}),
        Request(id="q", command="halt", args={"target": "WS-01"}),
    ]
    return [codec.encode(m) for m in msgs]


VALID = _valid()

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
_envelope = st.fixed_dictionaries(
    {"msg": st.sampled_from(TAGS) | _values, "v": st.sampled_from([1, 0, 2]) | _values},
    optional={
        "id": st.text(max_size=200) | _values,
        "seq": st.integers(min_value=-5, max_value=2**64 - 1) | _values,
        "ts": st.floats() | _values,
        "orchestrator": st.sampled_from(NAMES) | _values,
        "workstreams": st.dictionaries(
            st.sampled_from(["WS-01", "WS-04", "WS-99", ""]), _values, max_size=3
        )
        | _values,
        "command": st.sampled_from(COMMANDS) | _values,
        "args": st.dictionaries(st.sampled_from(["id", "target", "name"]), _values) | _values,
    },
)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        pos = draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del frame[pos : pos + draw(st.integers(1, 16))]
        elif op == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            frame += frame[: draw(st.integers(1, 64))]
    return bytes(frame)


payloads = (
    st.binary(max_size=256)
    | _values.map(msgspec.msgpack.encode)
    | _envelope.map(msgspec.msgpack.encode)
    | _mutated()
    | st.sampled_from(VALID)
)

#: One ZeroMQ message from a DEALER: mostly [payload], sometimes REQ-style or a wrong shape.
messages = st.one_of(
    payloads.map(lambda p: [p]),
    payloads.map(lambda p: [b"", p]),
    st.lists(st.binary(max_size=16), min_size=2, max_size=4),
)


def blast(
    endpoint: str,
    batch: list[list[bytes]],
    ctx: zmq.Context[Any],
    curve: Any = None,
    wait_s: float = 0.0,
) -> int:
    """Send ``batch`` from a fresh DEALER (a fresh peer: its own budget), read what comes back
    for ``wait_s``, close. Returns the replies read (not waited for: the daemon may drop them)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)  # let the batch leave before close drops it
    sock.setsockopt(zmq.SNDHWM, 0)
    if curve is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
    sock.connect(endpoint)
    replies = 0
    try:
        for parts in batch:
            sock.send_multipart(parts)
        deadline = time.monotonic() + wait_s
        while sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            sock.recv_multipart()
            replies += 1
    finally:
        sock.close()
    return replies
