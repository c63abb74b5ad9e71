"""Authorization, as pure functions: which role may send which message or control command.

Roles (docs/security.md):
- ``orchestrator`` NAME: may register, heartbeat and report on the bus as NAME only (the engine
  then checks that its status names only NAME's workstreams: core/ingest.py). Nothing on ctl.
- ``operator``: every control command.
- ``viewer``: control queries only (nothing that changes the plan's state or starts a process).

How a peer gets its role is the shell's business (server.py): over tcp:// the CURVE key the ZAP
handler accepted (its allow-list entry), over ipc:// the socket file's permissions (bus) and the
peer's uid from SO_PEERCRED (ctl).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from protocol.messages import ErrorCode

#: "untrusted": a key whose allow-list entry was revoked after it connected; refused everything.
RoleKind = Literal["orchestrator", "operator", "viewer", "untrusted"]
ROLE_KINDS: tuple[str, ...] = ("orchestrator", "operator", "viewer")


@dataclass(frozen=True, slots=True)
class Role:
    """A peer's role; ``name`` is the orchestrator's name for kind ``orchestrator``."""

    kind: RoleKind
    name: str = ""

    def __str__(self) -> str:
        return f"orchestrator:{self.name}" if self.kind == "orchestrator" else self.kind


OPERATOR = Role("operator")
VIEWER = Role("viewer")
UNTRUSTED = Role("untrusted")

_REVOKED = "this key is no longer trusted (revoked); ask an operator to trust it again"


class RoleError(ValueError):
    """A role spelled wrongly (the message says how to spell it)."""


def parse_role(text: str) -> Role:
    """``operator``, ``viewer`` or ``orchestrator:NAME``."""
    kind, _, name = text.partition(":")
    if kind == "orchestrator":
        if not name:
            raise RoleError("an orchestrator's role names it: --role orchestrator:NAME")
        return Role("orchestrator", name)
    if kind in ("operator", "viewer") and not name:
        return Role(kind)  # type: ignore[arg-type]
    raise RoleError(f"unknown role {text!r}; use operator, viewer or orchestrator:NAME")


#: Control commands that only read. Everything else (ack, halt, spawn, plan changes, a gate check,
#: a poll, a report) changes state or starts work and needs an operator. A command added later is
#: an operator's until it is listed here: the safe default.
QUERIES = frozenset(
    {
        "ping",
        "status",
        "workstreams",
        "orchestrators",
        "escalations",
        "gates",
        "decisions",
        "plan_changes",
        "telemetry",
        "notifications",
    }
)


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a peer's message was refused: the error reply's code and text."""

    code: ErrorCode
    message: str


def authorize_ctl(role: Role, command: str) -> Denial | None:
    """May ``role`` run the control ``command``? None if so."""
    if role.kind == "operator":
        return None
    if role.kind == "untrusted":
        return Denial("forbidden", _REVOKED)
    if role.kind == "viewer":
        if command in QUERIES:
            return None
        return Denial(
            "forbidden",
            f"{command!r} needs the operator role; this client is a viewer "
            "(viewers may only query: " + ", ".join(sorted(QUERIES)) + ")",
        )
    return Denial(
        "forbidden",
        f"{role} may not use the control socket; use an operator's or a viewer's key",
    )


def authorize_bus(role: Role | None, bound: str | None, orchestrator: str) -> Denial | None:
    """May this bus peer speak as ``orchestrator``?

    ``role``: the key's role on tcp://, None on ipc:// (the socket's permissions admitted it).
    ``bound``: the name this connection spoke as first (ipc://), None if it has not spoken yet.
    """
    if role is not None:
        if role.kind == "untrusted":
            return Denial("forbidden", _REVOKED)
        if role.kind != "orchestrator":
            return Denial("forbidden", f"a {role.kind}'s key may not speak on the bus")
        if role.name != orchestrator:
            return Denial(
                "forbidden",
                f"this key belongs to orchestrator {role.name!r}; it may not speak as "
                f"{orchestrator!r}",
            )
        return None
    if bound is not None and bound != orchestrator:
        return Denial(
            "forbidden",
            f"this connection speaks as {bound!r}; it may not also speak as {orchestrator!r} "
            "(one connection per orchestrator)",
        )
    return None


class Bindings:
    """Which orchestrator each ipc:// bus connection spoke as first (bounded, least recently
    active forgotten first: a peer that churns identities cannot grow the daemon's memory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._names: OrderedDict[bytes, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._names)

    def get(self, peer: bytes) -> str | None:
        name = self._names.get(peer)
        if name is not None:
            self._names.move_to_end(peer)
        return name

    def bind(self, peer: bytes, name: str) -> None:
        self._names[peer] = name
        self._names.move_to_end(peer)
        while len(self._names) > self.limit:
            self._names.popitem(last=False)


def ipc_ctl_role(uid: int | None, operators: frozenset[int]) -> Role:
    """An ipc:// control peer's role from its uid (SO_PEERCRED): the uids in ``operators`` (the
    daemon's own, root's, and those given with --operator) are operators, any other uid that the
    socket's permissions let in is a viewer. No uid (not a unix socket): a viewer."""
    return OPERATOR if uid is not None and uid in operators else VIEWER


def peer_uid(peer_address: str | None) -> int | None:
    """The uid in libzmq's "Peer-Address" of an ipc:// connection: "ADDRESS:UID:GID:PID"."""
    if not peer_address:
        return None
    parts = peer_address.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1])
