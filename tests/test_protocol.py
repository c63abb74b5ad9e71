"""The wire protocol's codec: round trips, error classification, bounds, defaults, purity.

Frames are built by hand with ``msgspec.msgpack.encode`` on plain dicts where the test is about
what a peer in another language might send.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgspec
import pytest

from protocol import codec
from protocol.codec import Codec, FrameError
from protocol.messages import (
    ALL_MESSAGES,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Command,
    CtlRequest,
    CtlResponse,
    DependencyFound,
    Error,
    Escalation,
    Heartbeat,
    Message,
    Poll,
    PollReply,
    Register,
    Reply,
    Request,
    Status,
    ToDaemon,
    ToOrchestrator,
    Welcome,
    WorkstreamReport,
    tag_of,
)

pack = msgspec.msgpack.encode
T = 1767225600.0

# One message of every type with every field away from its default, so a field the codec dropped
# or renamed would show.
SAMPLES: list[Message] = [
    Register(id="f-1", ts=T, orchestrator="foundation", pid=7, host="spark-01", client="test 1.0"),
    Heartbeat(id="f-2", ts=T, orchestrator="foundation"),
    Status(
        id="f-3",
        seq=1,
        ts=T,
        re="p-1",
        orchestrator="foundation",
        status="blocked",
        workstreams={
            "WS-01": WorkstreamReport(
                status="blocked", progress=0.5, eta=T + 1, completion_time=T + 2, blocker="disk"
            )
        },
        blockers=["disk"],
        decisions_needed=["FP8?"],
        performance_metrics={"tflops": 812.5},
    ),
    PollReply(
        id="f-4",
        seq=2,
        ts=T,
        re="p-9",
        orchestrator="model",
        status="idle",
        workstreams={"WS-05": WorkstreamReport(status="complete", progress=1.0)},
    ),
    Escalation(
        id="f-5",
        seq=3,
        ts=T,
        orchestrator="foundation",
        type="stall",
        severity="critical",
        issue="no progress for 24 h",
        affected_workstreams=["WS-02", "WS-04"],
        attempted_resolutions=["restart"],
        help_needed="a person",
    ),
    DependencyFound(
        id="f-6",
        seq=4,
        ts=T,
        orchestrator="foundation",
        workstream="WS-03",
        depends_on="WS-02",
        reason="the benchmarks need the pinned environment",
    ),
    Welcome(
        id="d-1",
        ts=T,
        re="f-1",
        orchestrator="foundation",
        acked_seq=41,
        heartbeat_s=0.5,
        daemon="0.1.0",
        plan="dgx-pixels",
    ),
    Ack(id="d-2", ts=T, re="f-3", acked_seq=3),
    Error(id="d-3", ts=T, re="f-9", code="not_owner", message="not yours", rejected_seq=9),
    Poll(id="d-4", ts=T, deadline_s=5.0),
    Command(id="d-5", ts=T, action="start_workstream", workstream="WS-03", reason="gate passed"),
    Request(id="c-1", ts=T, command="escalations", args={"all": True, "n": [1, 2.5, None]}),
    Reply(id="d-6", ts=T, re="c-1", result=[{"id": "E-1", "since": 1.5}]),
]

DIRECTIONS: list[tuple[Any, Codec[Any]]] = [
    (ToDaemon, codec.to_daemon),
    (ToOrchestrator, codec.to_orchestrator),
    (CtlRequest, codec.ctl_request),
    (CtlResponse, codec.ctl_response),
]


def codec_for(cls: type[Message]) -> Codec[Any]:
    """The first direction whose union holds ``cls`` (``error`` travels in two)."""
    for union, direction in DIRECTIONS:
        if cls in getattr(union, "__args__", (union,)):
            return direction
    raise AssertionError(f"{cls.__name__} is in no direction")


def refused(direction: Codec[Any], frame: bytes) -> FrameError:
    """Decode a frame that must fail and return the FrameError."""
    with pytest.raises(FrameError) as info:
        direction.decode(frame)
    return info.value


def heartbeat(**fields: Any) -> bytes:
    """A heartbeat frame as a plain map, with ``fields`` added or overriding."""
    return pack({"msg": "heartbeat", "v": 1, "orchestrator": "foundation", **fields})


def status(**fields: Any) -> bytes:
    """A durable status frame as a plain map, with ``fields`` added or overriding."""
    return pack({"msg": "status", "v": 1, "seq": 1, "orchestrator": "foundation", **fields})


# --- round trips ---------------------------------------------------------------------------------


def test_samples_cover_every_message() -> None:
    """The round-trip samples hold exactly one message of each type in ALL_MESSAGES."""
    assert [type(m) for m in SAMPLES] == list(ALL_MESSAGES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: tag_of(type(m)))
def test_message_round_trips(message: Message) -> None:
    """encode then decode (by the message's direction) gives back an equal message."""
    assert codec_for(type(message)).decode(codec.encode(message)) == message


def test_encode_into_writes_the_same_bytes() -> None:
    """encode_into (the hot path's reused buffer) produces exactly encode's frame."""
    buffer = bytearray()
    codec.encode_into(SAMPLES[2], buffer)
    assert bytes(buffer) == codec.encode(SAMPLES[2])


def test_every_field_is_encoded_even_at_its_default() -> None:
    """A message built with defaults still writes every envelope and body field."""
    decoded = msgspec.msgpack.decode(codec.encode(Poll()))
    assert decoded == {
        "msg": "poll",
        "v": PROTOCOL_VERSION,
        "id": "",
        "seq": 0,
        "ts": 0.0,
        "re": None,
        "deadline_s": 60.0,
    }


# --- FrameError classification -------------------------------------------------------------------


def test_non_msgpack_frame_is_bad_frame() -> None:
    """Bytes that are not msgpack at all are refused as bad_frame."""
    assert refused(codec.to_daemon, b"\xc1 not msgpack").code == "bad_frame"


def test_msgpack_non_map_is_bad_frame() -> None:
    """Valid msgpack that is not a map (an array here) is refused as bad_frame."""
    assert refused(codec.to_daemon, pack(["heartbeat", 1, "foundation"])).code == "bad_frame"


def test_trailing_bytes_are_bad_frame() -> None:
    """A valid map followed by extra bytes is refused as bad_frame (one frame, one map)."""
    assert refused(codec.to_daemon, heartbeat() + b"\x00").code == "bad_frame"


def test_wrongly_typed_envelope_field_is_bad_frame() -> None:
    """An envelope field of the wrong msgpack type (seq as a float) is refused as bad_frame."""
    assert refused(codec.to_daemon, heartbeat(seq=1.0)).code == "bad_frame"


def test_other_version_is_unsupported_version() -> None:
    """v = 2 is refused as unsupported_version, naming the frame by its id and seq."""
    error = refused(codec.to_daemon, status(v=2, id="s-9", seq=9))
    assert (error.code, error.msg_id, error.seq) == ("unsupported_version", "s-9", 9)


def test_version_is_checked_before_the_body() -> None:
    """A v = 2 frame that would not decode as v1 is still unsupported_version, not bad_message."""
    error = refused(codec.to_daemon, pack({"msg": "status", "v": 2, "shape": "new"}))
    assert error.code == "unsupported_version"


def test_unknown_type_is_unknown_type() -> None:
    """A msg naming no message is refused as unknown_type, with the known types listed."""
    error = refused(codec.to_daemon, pack({"msg": "gossip", "v": 1, "id": "g-1"}))
    assert (error.code, error.msg_id) == ("unknown_type", "g-1")
    assert "'gossip'" in error.message
    assert "heartbeat" in error.message


def test_message_of_another_direction_is_unknown_type() -> None:
    """A daemon-to-orchestrator message sent to the daemon is refused as unknown_type."""
    frame = codec.encode(Welcome(orchestrator="foundation", acked_seq=0, heartbeat_s=2.0))
    assert refused(codec.to_daemon, frame).code == "unknown_type"


def test_missing_tag_is_unknown_type() -> None:
    """A map without msg is refused as unknown_type (of type '')."""
    error = refused(codec.to_daemon, pack({"v": 1, "orchestrator": "foundation"}))
    assert error.code == "unknown_type"
    assert "unknown message type ''" in error.message


def test_bad_message_names_the_field_path() -> None:
    """An out-of-range nested field is bad_message, and the message gives the field's path."""
    frame = status(id="s-1", workstreams={"WS-01": {"status": "in_progress", "progress": 1.5}})
    error = refused(codec.to_daemon, frame)
    assert (error.code, error.msg_id, error.seq) == ("bad_message", "s-1", 1)
    assert "$.workstreams[...].progress" in error.message


def test_missing_required_field_is_bad_message() -> None:
    """An escalation without its required issue is bad_message naming the field."""
    frame = pack({"msg": "escalation", "v": 1, "seq": 1, "orchestrator": "foundation"})
    error = refused(codec.to_daemon, frame)
    assert error.code == "bad_message"
    assert "`issue`" in error.message


def test_frame_over_the_limit_is_too_large() -> None:
    """A frame one byte over MAX_FRAME_BYTES is refused as too_large before any decoding."""
    error = refused(codec.to_daemon, b"\x00" * (MAX_FRAME_BYTES + 1))
    assert (error.code, error.msg_id) == ("too_large", "")


def test_frame_at_the_limit_is_decoded() -> None:
    """A frame of exactly MAX_FRAME_BYTES is decoded (the limit is inclusive)."""
    padding = MAX_FRAME_BYTES - len(heartbeat(pad=""))
    frame = heartbeat(pad="x" * (padding - 4))  # 4: the str 32 header replaces a fixstr's 1 byte
    assert len(frame) == MAX_FRAME_BYTES
    assert isinstance(codec.to_daemon.decode(frame), Heartbeat)


def test_smaller_limit_is_honoured() -> None:
    """A Codec built with a lower max_frame_bytes refuses frames above it."""
    small = Codec[ToDaemon](ToDaemon, max_frame_bytes=16)
    assert refused(small, heartbeat()).code == "too_large"


# --- unknown and missing fields ------------------------------------------------------------------


def test_unknown_fields_are_ignored() -> None:
    """Fields the decoder does not know (added by a newer peer) are skipped."""
    message = codec.to_daemon.decode(heartbeat(id="h-1", priority=3, labels={"a": [1, 2]}))
    assert message == Heartbeat(id="h-1", orchestrator="foundation")


def test_unknown_fields_in_a_nested_map_are_ignored() -> None:
    """An unknown field inside a WorkstreamReport is skipped too."""
    frame = status(workstreams={"WS-01": {"status": "in_progress", "confidence": "high"}})
    message = codec.to_daemon.decode(frame)
    assert isinstance(message, Status)
    assert message.workstreams == {"WS-01": WorkstreamReport(status="in_progress")}


def test_missing_optional_fields_take_their_defaults() -> None:
    """A frame with only msg and the required fields decodes with every default filled in."""
    message = codec.to_orchestrator.decode(pack({"msg": "command", "action": "halt"}))
    assert message == Command(
        v=PROTOCOL_VERSION, id="", seq=0, ts=0.0, re=None, action="halt", workstream=None, reason=""
    )


def test_float_field_accepts_an_integer() -> None:
    """A float field accepts a msgpack integer (peers in other languages may send 5 for 5.0)."""
    message = codec.to_daemon.decode(heartbeat(ts=5))
    assert message.ts == 5.0


# --- bounds --------------------------------------------------------------------------------------

OUT_OF_BOUNDS = {
    "name of 65 chars": heartbeat(orchestrator="a" * 65),
    "empty name": heartbeat(orchestrator=""),
    "name with a space": heartbeat(orchestrator="found ation"),
    "name starting with '-'": heartbeat(orchestrator="-foundation"),
    "id of 129 chars": heartbeat(id="i" * 129),
    "negative seq": heartbeat(seq=-1),
    "negative ts": heartbeat(ts=-1.0),
    "NaN ts": heartbeat(ts=float("nan")),
    "progress 1.5": status(workstreams={"WS-01": {"status": "blocked", "progress": 1.5}}),
    "progress -0.1": status(workstreams={"WS-01": {"status": "blocked", "progress": -0.1}}),
    "bad workstream id": status(workstreams={"WS 01": {"status": "blocked"}}),
    "unknown status": status(status="sleeping"),
    "blocker of 4097 chars": status(blockers=["b" * 4097]),
    "257 blockers": status(blockers=["b"] * 257),
    "1025 workstreams": status(
        workstreams={f"WS-{i}": {"status": "not_started"} for i in range(1025)}
    ),
    "str given as bin": heartbeat(orchestrator=b"foundation"),
    "unknown severity": pack(
        {"msg": "escalation", "seq": 1, "orchestrator": "f", "issue": "x", "severity": "dire"}
    ),
}


@pytest.mark.parametrize("frame", OUT_OF_BOUNDS.values(), ids=OUT_OF_BOUNDS.keys())
def test_out_of_bounds_value_is_bad_message(frame: bytes) -> None:
    """Every bounded string, list, map, number and value set is enforced as bad_message."""
    assert refused(codec.to_daemon, frame).code == "bad_message"


def test_request_with_65_args_is_bad_message() -> None:
    """A control request's args map is bounded at 64 entries."""
    frame = pack({"msg": "request", "command": "ping", "args": {str(i): i for i in range(65)}})
    assert refused(codec.ctl_request, frame).code == "bad_message"


def test_name_of_64_chars_is_accepted() -> None:
    """The Name bound is inclusive: 64 characters of the allowed set decode."""
    message = codec.to_daemon.decode(heartbeat(orchestrator="a" * 62 + ".-"))
    assert message.orchestrator == "a" * 62 + ".-"


# --- hostile frames that once broke the codec (found in review, fixed in protocol/) -------------


def test_deeply_nested_frame_is_bad_frame() -> None:
    """A frame nesting arrays 10,000 deep (in an unknown field) is refused as bad_frame."""
    pairs = pack("msg") + pack("heartbeat") + pack("orchestrator") + pack("foundation")
    frame = b"\x83" + pairs + pack("deep") + b"\x91" * 10_000 + b"\x00"  # fixmap of 3 pairs
    assert refused(codec.to_daemon, frame).code == "bad_frame"


def test_name_with_a_trailing_newline_is_bad_message() -> None:
    """A Name may not end in a newline (it would pass into logs and tables)."""
    assert refused(codec.to_daemon, heartbeat(orchestrator="foundation\n")).code == "bad_message"


def test_error_for_an_overlong_type_name_fits_in_an_error_reply() -> None:
    """The FrameError for a 5,000-char msg still fits an error message (Text, <= 4096)."""
    error = refused(codec.to_daemon, pack({"msg": "x" * 5000, "v": 1}))
    reply = codec.encode(Error(code=error.code, message=error.message, re=error.msg_id or None))
    assert isinstance(codec.to_orchestrator.decode(reply), Error)


def test_error_for_an_overlong_id_fits_in_an_error_reply() -> None:
    """The FrameError for a frame whose id is too long does not echo that id as re."""
    error = refused(codec.to_daemon, heartbeat(id="i" * 500))
    reply = codec.encode(Error(code=error.code, message=error.message, re=error.msg_id or None))
    assert isinstance(codec.to_orchestrator.decode(reply), Error)


# --- purity --------------------------------------------------------------------------------------


def test_protocol_imports_no_io_modules() -> None:
    """Importing the protocol package loads no zmq, asyncio, anyio, sqlite3 or structlog."""
    code = (
        "import sys\n"
        "import protocol, protocol.messages, protocol.codec, protocol.views\n"
        "banned = {'zmq', 'asyncio', 'anyio', 'sqlite3', 'structlog'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
