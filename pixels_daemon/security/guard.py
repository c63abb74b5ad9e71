"""The daemon's gatekeeper: authorization (policy.py) and per-peer limits (limits.py) applied to
each peer, with denials and floods logged as rate-limited security events.

Not pure only in that it reads a monotonic clock (limits are real time, whatever the plan's time
scale) and logs; the decisions are the pure modules'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pixels_daemon.ratelimit import RateLimitedLog
from pixels_daemon.security.limits import DEFAULT_MAX_PEERS, PeerLimiter
from pixels_daemon.security.policy import (
    OPERATOR,
    Bindings,
    Denial,
    Role,
    authorize_bus,
    authorize_ctl,
)

log = structlog.get_logger("pixelsd.security")

#: A security event per peer and kind at most this often: a hostile peer cannot flood the journal.
LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Peer:
    """One connection as the shell knows it: its ROUTER identity, a label for logs and counts
    (``ipc``, ``uid:1000``, ``key:NAME``), and its role (None: an ipc:// bus peer, admitted by the
    socket's file permissions and bound to the orchestrator it first speaks as)."""

    id: bytes
    label: str
    role: Role | None = None


LOCAL_OPERATOR = Peer(b"", "local", OPERATOR)


class Guard:
    def __init__(
        self,
        limiter: PeerLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter if limiter is not None else PeerLimiter()
        self.bindings = Bindings(DEFAULT_MAX_PEERS)
        self._clock = clock
        self._log = RateLimitedLog(log, LOG_INTERVAL_S, clock)

    def label(self, peer: Peer) -> str:
        """The peer's name in logs and counts. An ipc:// bus peer ("ipc") is named by the
        orchestrator its connection speaks as, else by its identity (made only when needed)."""
        if peer.label != "ipc":
            return peer.label
        bound = self.bindings.get(peer.id)
        return f"ipc:{bound}" if bound else f"ipc:{peer.id.hex()[:10]}"

    def now(self) -> float:
        """The limiter's clock: read once per drained batch and passed to ``admit``."""
        return self._clock()

    def admit(self, peer: bytes, label: str, now: float | None = None) -> bool | None:
        """The limiter's verdict on one more frame (see PeerLimiter.admit); logs a dry spell.
        ``now``: the limiter's clock (``now()``) when the frame's batch was taken."""
        verdict = self.limiter.admit(peer, self._clock() if now is None else now)
        if verdict is None:
            name = self.label(Peer(peer, label))
            self._log.warning(f"throttled:{name}", "security_throttled", peer=name)
        return verdict

    def bad(self, peer: Peer) -> None:
        """A frame that did not decode: charged to its peer (the codec logs what was wrong)."""
        self.limiter.bad(peer.id, self.label(peer), self._clock())

    def check_bus(self, peer: Peer, orchestrator: str) -> Denial | None:
        bound = self.bindings.get(peer.id) if peer.role is None else None
        denial = authorize_bus(peer.role, bound, orchestrator)
        if denial is not None:
            self._deny(peer, denial, orchestrator=orchestrator)
        return denial

    def bind(self, peer: Peer, orchestrator: str) -> None:
        if peer.role is None:
            self.bindings.bind(peer.id, orchestrator)

    def speak_as(self, peer: Peer | None, ident: bytes, orchestrator: str) -> Denial | None:
        """``check_bus``, then ``bind`` if allowed, for a frame from ``ident`` (``peer`` None:
        an ipc:// bus peer). The usual case, an ipc:// connection that already speaks as
        ``orchestrator``, is one lookup: this runs for every frame on the bus."""
        if peer is None:
            if self.bindings.get(ident) == orchestrator:
                return None
            peer = Peer(ident, "ipc")
        denial = self.check_bus(peer, orchestrator)
        if denial is None:
            self.bind(peer, orchestrator)
        return denial

    def check_ctl(self, peer: Peer, command: str) -> Denial | None:
        assert peer.role is not None
        denial = authorize_ctl(peer.role, command)
        if denial is not None:
            self._deny(peer, denial, command=command)
        return denial

    def _deny(self, peer: Peer, denial: Denial, **what: str) -> None:
        name = self.label(peer)
        self.limiter.bad(peer.id, name, self._clock(), denied=True)
        self._log.warning(
            f"denied:{name}",
            "security_denied",
            peer=name,
            role=str(peer.role) if peer.role is not None else "ipc",
            code=denial.code,
            detail=denial.message,
            **what,
        )

    def view(self) -> dict[str, object]:
        """What `pixelsctl ping` shows under "security"."""
        s = self.limiter.stats
        return {
            "throttled": s.throttled,
            "denied": s.denied,
            "peers": s.peers,
            "bad_frames_by_peer": dict(s.bad_by_peer),
        }
