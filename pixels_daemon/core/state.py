"""The daemon's state: exactly what replaying the event log rebuilds.

Everything here is a msgspec Struct so a snapshot is one ``msgpack.encode(state)``. Presence (which
socket identity an orchestrator uses now, when it last sent a heartbeat) is not here: it is not in
the log and lives in the shell.
"""

from __future__ import annotations

from msgspec import Struct, field

#: Bump when the meaning of the state or of applying an event changes: snapshots taken by an older
#: core are then ignored and the state is rebuilt from the log.
CORE_VERSION = 1


class WorkstreamState(Struct, kw_only=True):
    """The latest reported state of one workstream."""

    status: str = "not_started"
    progress: float = 0.0
    eta: float | None = None
    completion_time: float | None = None
    blocker: str | None = None
    blocker_since: float | None = None
    updated_at: float | None = None
    started_at: float | None = None


class OrchestratorState(Struct, kw_only=True):
    """What the log says about one orchestrator."""

    acked_seq: int = 0
    status: str = "unknown"
    last_report: float | None = None
    blockers: dict[str, float] = field(default_factory=dict)  # text -> first reported at
    decisions_needed: list[str] = field(default_factory=list)
    performance_metrics: dict[str, float] = field(default_factory=dict)


class EscalationRecord(Struct, kw_only=True):
    """An escalation as received; the engine (a later issue) adds its lifecycle."""

    id: str
    orchestrator: str
    type: str
    severity: str
    issue: str
    affected_workstreams: list[str]
    attempted_resolutions: list[str]
    help_needed: str
    raised_at: float
    state: str = "open"


class State(Struct, kw_only=True):
    """The whole replayable state."""

    events: int = 0  # events applied, rejected ones included (each consumed a seq)
    orchestrators: dict[str, OrchestratorState] = field(default_factory=dict)
    workstreams: dict[str, WorkstreamState] = field(default_factory=dict)
    escalations: dict[str, EscalationRecord] = field(default_factory=dict)
    escalation_counter: int = 0


def initial_state(orchestrators: list[str], workstreams: list[str]) -> State:
    """The state before any event: plan orchestrators and workstreams known, nothing reported."""
    return State(
        orchestrators={name: OrchestratorState() for name in orchestrators},
        workstreams={ws: WorkstreamState() for ws in workstreams},
    )
