"""Admitting an orchestrator's durable message: the seq rule, and who may name which workstream.

- Each orchestrator numbers its durable messages 1, 2, 3, ... ``admit`` compares a message's seq
  with the orchestrator's acked seq: acked + 1 is next (the engine applies it), at or below is a
  duplicate (ack again, apply nothing), above is a gap (an earlier message is missing: the sender
  must resend).
- An orchestrator may report status only for workstreams the plan gives it; an escalation may
  name any plan workstream (cross-domain problems are what escalations are for). Applying a
  message is the engine's job (core/engine.py, ``Received``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Set
from dataclasses import dataclass

from pixels_daemon.core.state import State
from protocol.messages import DependencyFound, ErrorCode, Escalation, PollReply, Status

Durable = Status | PollReply | Escalation | DependencyFound


class Admission(enum.Enum):
    NEXT = "next"
    DUPLICATE = "duplicate"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a durable message was consumed without effect; goes back to the sender as an error."""

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Ownership:
    """The plan facts ingest needs: who owns which workstream."""

    owner_of: Mapping[str, str]  # workstream id -> orchestrator id
    orchestrators: Set[str]


def admit(state: State, orchestrator: str, seq: int) -> Admission:
    """Classify a durable message by its seq against what was already applied."""
    acked = state.orchestrators[orchestrator].acked_seq
    if seq == acked + 1:
        return Admission.NEXT
    if seq <= acked:
        return Admission.DUPLICATE
    return Admission.GAP


def check_workstreams(
    plan: Ownership, orchestrator: str | None, ids: list[str]
) -> Rejection | None:
    """Every id must be a plan workstream; with ``orchestrator``, one of its own."""
    for ws in ids:
        owner = plan.owner_of.get(ws)
        if owner is None:
            return Rejection("unknown_workstream", f"the plan has no workstream {ws!r}")
        if orchestrator is not None and owner != orchestrator:
            return Rejection(
                "not_owner", f"workstream {ws} belongs to {owner}, not to {orchestrator}"
            )
    return None
