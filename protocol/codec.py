"""Encoding and decoding frames, with errors that say what was wrong.

One Encoder and one Decoder per union, built once (msgspec decoders are reusable and thread-safe).
A frame that fails to decode raises ``FrameError`` carrying the protocol error code, a message fit
for the peer, and whatever of the envelope could still be read (so the reply can name the frame).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from protocol.messages import (
    MAX_FRAME_BYTES,
    MAX_ID_LENGTH,
    PROTOCOL_VERSION,
    CtlRequest,
    CtlResponse,
    ErrorCode,
    Header,
    Message,
    ToDaemon,
    ToOrchestrator,
    tag_of,
)

T = TypeVar("T")
U = TypeVar("U")


class FrameError(Exception):
    """Raised when a received frame cannot become a message of the expected direction.

    ``code`` is the protocol error code; ``msg_id`` and ``seq`` are read from the envelope where it
    was readable (else "" and 0), so the error reply can name the frame it refuses.
    """

    def __init__(self, code: ErrorCode, message: str, msg_id: str = "", seq: int = 0) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.msg_id = msg_id
        self.seq = seq


_TOO_DEEP = "frame nests too deeply to decode"

_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(Header)


def encode(message: Message) -> bytes:
    """Encode one message as a frame."""
    return _encoder.encode(message)


def encode_into(message: Message, buffer: bytearray) -> None:
    """Encode into a reused buffer (the hot path avoids a bytes allocation per message)."""
    _encoder.encode_into(message, buffer)


class Codec(Generic[T]):
    """Decoder for one direction's union, with the frame-size limit and error classification."""

    def __init__(self, union: Any, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(union)
        self._tags = frozenset(tag_of(cls) for cls in _members(union))
        self.max_frame_bytes = max_frame_bytes

    def decode(self, frame: bytes | memoryview) -> T:
        """Decode a frame or raise FrameError saying what was wrong with it."""
        if len(frame) > self.max_frame_bytes:
            raise FrameError(
                "too_large",
                f"frame of {len(frame)} bytes exceeds the limit of {self.max_frame_bytes} bytes",
            )
        try:
            message = self._decoder.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise self._classify(frame, exc) from None
        except RecursionError:
            # A few KiB of nested arrays (even in an ignored field) exhaust the C stack guard.
            raise FrameError("bad_frame", _TOO_DEEP) from None
        if message.v != PROTOCOL_VERSION:  # type: ignore[attr-defined]
            raise FrameError(
                "unsupported_version",
                f"protocol version {message.v} is not supported; "  # type: ignore[attr-defined]
                f"this daemon speaks version {PROTOCOL_VERSION}",
                message.id,  # type: ignore[attr-defined]
                message.seq,  # type: ignore[attr-defined]
            )
        return message

    def _classify(self, frame: bytes | memoryview, exc: Exception) -> FrameError:
        try:
            header = _header_decoder.decode(frame)
        except RecursionError:
            return FrameError("bad_frame", _TOO_DEEP)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return FrameError(
                "bad_frame",
                f"frame is not a msgpack map with the envelope fields (msg, v, id, seq, ts): {exc}",
            )
        # Echo only what fits the reply's own bounds (Error.message <= 4096, re <= 128 chars).
        msg_id = header.id if len(header.id) <= MAX_ID_LENGTH else ""
        if header.v != PROTOCOL_VERSION:
            return FrameError(
                "unsupported_version",
                f"protocol version {header.v} is not supported; "
                f"this daemon speaks version {PROTOCOL_VERSION}",
                msg_id,
                header.seq,
            )
        if header.msg not in self._tags:
            known = ", ".join(sorted(self._tags))
            return FrameError(
                "unknown_type",
                f"unknown message type {header.msg[:64]!r}; expected one of: {known}",
                msg_id,
                header.seq,
            )
        detail = str(exc)[:1024]
        return FrameError(
            "bad_message", f"invalid {header.msg!r} message: {detail}", msg_id, header.seq
        )


def _members(union: Any) -> tuple[type[Message], ...]:
    args = getattr(union, "__args__", None)
    return tuple(args) if args else (union,)


to_daemon: Codec[ToDaemon] = Codec(ToDaemon)
to_orchestrator: Codec[ToOrchestrator] = Codec(ToOrchestrator)
ctl_request: Codec[CtlRequest] = Codec(CtlRequest)
ctl_response: Codec[CtlResponse] = Codec(CtlResponse)


def convert(obj: Any, type_: type[U]) -> U:
    """Convert a decoded ``result`` (plain msgpack data) into a typed view."""
    return msgspec.convert(obj, type_)
