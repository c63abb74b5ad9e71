"""Every message on the pixels bus, as msgspec Structs.

A frame is one msgpack map: the envelope fields (``msg``, ``v``, ``id``, ``seq``, ``ts``, ``re``)
and the message's own fields side by side. ``msg`` is the tag that names the message type.
docs/protocol.md is the authoritative spec; this module is its implementation.

Three unions, one per direction:
- ``ToDaemon``: orchestrator -> daemon (register, heartbeat, status, poll_reply, escalation)
- ``ToOrchestrator``: daemon -> orchestrator (welcome, ack, error, poll, command)
- ``CtlRequest`` / ``CtlResponse``: pixelsctl <-> daemon (request; reply or error)

Pure: no sockets, no event loop, no clock. Callers supply ``ts``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

#: Bumped only for incompatible changes; adding optional fields or message types is compatible.
PROTOCOL_VERSION = 1

#: Largest frame the codec accepts. A status for all 18 DGX-Pixels workstreams is ~2 KiB; 1 MiB
#: leaves room for metrics and log tails while bounding what one hostile frame can allocate.
MAX_FRAME_BYTES = 1 << 20

#: Hard cap set as ZMQ_MAXMSGSIZE on the daemon's sockets. libzmq drops the connection of a peer
#: that exceeds it (no reply is possible), so it sits above MAX_FRAME_BYTES: frames between the two
#: get a ``too_large`` error reply instead of a silent disconnect.
SOCKET_MAX_MSGSIZE = 8 << 20

# Bounded strings and lists: a peer cannot make the daemon store unbounded text.
# \Z, not $: "$" also matches before a trailing newline, which would let "name\n" through.
Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")]
MAX_ID_LENGTH = 128
MsgId = Annotated[str, Meta(max_length=MAX_ID_LENGTH)]
Text = Annotated[str, Meta(max_length=4096)]
Seq = Annotated[int, Meta(ge=0)]
Ratio = Annotated[float, Meta(ge=0.0, le=1.0)]
Timestamp = Annotated[float, Meta(ge=0.0)]  # unix seconds, UTC

WorkstreamStatus = Literal["not_started", "in_progress", "blocked", "complete"]
OrchestratorStatus = Literal["starting", "active", "idle", "blocked", "halted", "complete"]
Severity = Literal["low", "medium", "high", "critical"]
EscalationType = Literal[
    "blocker", "conflict", "failure", "stall", "overrun", "performance", "resource", "other"
]
CommandAction = Literal["start_workstream", "halt", "resume", "stop"]

ErrorCode = Literal[
    "bad_frame",  # not a msgpack map with the envelope fields
    "unsupported_version",  # envelope ``v`` is not PROTOCOL_VERSION
    "unknown_type",  # ``msg`` names no message of this direction
    "bad_message",  # a field is missing, of the wrong type, or out of range
    "too_large",  # frame over MAX_FRAME_BYTES
    "unknown_orchestrator",  # the plan has no orchestrator of that name
    "unknown_workstream",  # the plan has no workstream of that id
    "not_owner",  # the workstream belongs to another orchestrator
    "illegal_transition",  # the workstream's state machine forbids the change
    "seq_gap",  # a durable message arrived before an earlier one: resend from acked_seq + 1
    "unknown_command",  # pixelsctl asked for a command the daemon does not have
    "bad_args",  # pixelsctl command arguments are wrong
    "not_found",  # pixelsctl named an id that does not exist
    "unavailable",  # the daemon cannot commit right now (storage failing); retry later
    "internal",  # a bug in the daemon; the message was not applied
    "forbidden",  # the sender's role may not send this (docs/security.md)
    "throttled",  # the sender is over its frame budget: its frames are dropped for a while
]

ERROR_CODES: tuple[str, ...] = ErrorCode.__args__  # type: ignore[attr-defined]


# Every field is always encoded (no omit_defaults): frames are explicit for other-language peers.
# Decoders accept a missing optional field and use its default.
class Message(Struct, tag_field="msg", kw_only=True):
    """The envelope every frame carries, flattened into the message's own map.

    v: protocol version. id: the sender's id for this message (unique per sender).
    seq: the sender's sequence number, > 0 for durable messages (acked once committed), 0 otherwise.
    ts: sent-at, unix seconds. re: the id of the message this one answers, if any.
    """

    v: int = PROTOCOL_VERSION
    id: MsgId = ""
    seq: Seq = 0
    ts: Timestamp = 0.0
    re: MsgId | None = None


class Header(Struct, kw_only=True):
    """The envelope alone, used to describe a frame the full decoder refused."""

    msg: str = ""
    v: int = PROTOCOL_VERSION
    id: str = ""
    seq: int = 0


# --- orchestrator -> daemon -------------------------------------------------------------------


class WorkstreamReport(Struct, kw_only=True):
    """One workstream's state as its orchestrator sees it (the spec's per-workstream status)."""

    status: WorkstreamStatus
    progress: Ratio = 0.0
    eta: Timestamp | None = None
    completion_time: Timestamp | None = None
    blocker: Text | None = None


class Register(Message, tag="register", kw_only=True):
    """First message on every (re)connection; answered by ``welcome``."""

    orchestrator: Name
    pid: int | None = None
    host: Annotated[str, Meta(max_length=255)] | None = None
    client: Annotated[str, Meta(max_length=64)] = ""


class Heartbeat(Message, tag="heartbeat", kw_only=True):
    """Liveness, not durable (seq 0); answered by an ``ack`` carrying the acked seq."""

    orchestrator: Name


class Status(Message, tag="status", kw_only=True):
    """The spec's status update; durable (seq > 0)."""

    orchestrator: Name
    status: OrchestratorStatus = "active"
    workstreams: Annotated[dict[Name, WorkstreamReport], Meta(max_length=1024)] = {}
    blockers: Annotated[list[Text], Meta(max_length=256)] = []
    decisions_needed: Annotated[list[Text], Meta(max_length=256)] = []
    performance_metrics: Annotated[dict[Name, float], Meta(max_length=256)] = {}


class PollReply(Status, tag="poll_reply", kw_only=True):
    """A status sent in answer to ``poll`` (``re`` = the poll's id); durable like status."""


class Escalation(Message, tag="escalation", kw_only=True):
    """The spec's escalation; durable (seq > 0). ``type`` is the escalation's kind."""

    orchestrator: Name
    type: EscalationType = "blocker"
    severity: Severity = "medium"
    issue: Text
    affected_workstreams: Annotated[list[Name], Meta(max_length=256)] = []
    attempted_resolutions: Annotated[list[Text], Meta(max_length=64)] = []
    help_needed: Text = ""


class DependencyFound(Message, tag="dependency_found", kw_only=True):
    """An orchestrator found, while implementing, that its ``workstream`` must wait for
    ``depends_on``; durable (seq > 0). The daemon adds the dependency to the plan (listed in the
    next report); one that would make a cycle is refused (error with rejected_seq, naming it)."""

    orchestrator: Name
    workstream: Name
    depends_on: Name
    reason: Text = ""


ToDaemon = Register | Heartbeat | Status | PollReply | Escalation | DependencyFound
DURABLE_TO_DAEMON = (Status, PollReply, Escalation, DependencyFound)

# --- daemon -> orchestrator -------------------------------------------------------------------


class Welcome(Message, tag="welcome", kw_only=True):
    """Answer to ``register``: every durable message with seq <= acked_seq is applied."""

    orchestrator: Name
    acked_seq: Seq
    heartbeat_s: float
    daemon: str = ""
    plan: str = ""


class Ack(Message, tag="ack", kw_only=True):
    """Cumulative: every durable message of this orchestrator with seq <= acked_seq is committed
    and applied (or rejected with an ``error`` carrying its seq). Resend nothing at or below it."""

    acked_seq: Seq


class Error(Message, tag="error", kw_only=True):
    """A message was refused. ``re`` names it when its id could be read. ``rejected_seq`` > 0 means
    that durable message was consumed (do not resend it); 0 means nothing was applied."""

    code: ErrorCode
    message: Text
    rejected_seq: Seq = 0


class Poll(Message, tag="poll", kw_only=True):
    """Asks for a ``poll_reply`` within ``deadline_s`` seconds."""

    deadline_s: float = 60.0


class Command(Message, tag="command", kw_only=True):
    """Tells an orchestrator to act; ``workstream`` is empty for orchestrator-wide actions."""

    action: CommandAction
    workstream: Name | None = None
    reason: Text = ""


ToOrchestrator = Welcome | Ack | Error | Poll | Command

# --- pixelsctl <-> daemon ---------------------------------------------------------------------


class Request(Message, tag="request", kw_only=True):
    """A pixelsctl command. ``args`` are the command's named arguments (docs/protocol.md)."""

    command: Annotated[str, Meta(max_length=64)]
    args: Annotated[dict[str, Any], Meta(max_length=64)] = {}


class Reply(Message, tag="reply", kw_only=True):
    """Success; ``result``'s shape is fixed per command (protocol.views)."""

    result: Any = None


CtlRequest = Request
CtlResponse = Reply | Error

ALL_MESSAGES: tuple[type[Message], ...] = (
    Register,
    Heartbeat,
    Status,
    PollReply,
    Escalation,
    DependencyFound,
    Welcome,
    Ack,
    Error,
    Poll,
    Command,
    Request,
    Reply,
)


def tag_of(cls: type[Message]) -> str:
    """The ``msg`` value of a message class."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag
