"""Per-peer limits, pure (``now`` is passed in): a flood is throttled at its peer, and bad frames
are counted per peer, in tables of bounded size.

A peer is what the shell can tell apart: a ROUTER identity (one per connection). Each peer has a
token bucket: every frame costs one token, a bad one (undecodable, or denied) costs
``bad_cost`` more, so a peer sending garbage runs dry long before one sending valid traffic.
A dry peer's frames are dropped unread, and only the first drop of each dry spell is answered
(``throttled``) so the flood is not turned into a flood of replies.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

#: Frames per second a peer may sustain. An orchestrator sends a few a second; 100,000/s is above
#: what the daemon ingests from one peer (~50,000/s, docs/performance.md), so only a flood (or a
#: garbage stream, see BAD_COST) is ever throttled, never a fast honest client.
DEFAULT_RATE = 100_000.0
#: A second's worth at the full rate: a reconnecting client resending its whole window fits.
DEFAULT_BURST = 100_000.0
#: A bad frame costs this many tokens more: ~1,000 bad frames/s sustained, a 1,000 frame burst.
BAD_COST = 100.0
#: Peers tracked at once; the least recently active are forgotten first. Bounds the tables an
#: identity-churning peer could grow (~200 bytes a peer: 8,192 peers cost under 2 MB).
DEFAULT_MAX_PEERS = 8192
#: Peers whose bad-frame counts are kept for `pixelsctl ping` (the worst offenders stay).
MAX_REPORTED = 32


@dataclass
class _Bucket:
    tokens: float
    at: float
    dry: bool = False


@dataclass
class PeerStats:
    """What `pixelsctl ping` shows under "security"."""

    throttled: int = 0  # frames dropped unread
    denied: int = 0  # frames refused by authorization
    peers: int = 0  # peers tracked now
    #: bad frames (malformed or denied) per peer label, the worst MAX_REPORTED
    bad_by_peer: dict[str, int] = field(default_factory=dict)


class PeerLimiter:
    """Token buckets and bad-frame counts per peer."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        bad_cost: float = BAD_COST,
        max_peers: int = DEFAULT_MAX_PEERS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.bad_cost = bad_cost
        self.max_peers = max_peers
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()
        self.stats = PeerStats()

    def admit(self, peer: bytes, now: float) -> bool | None:
        """Take one frame from ``peer``: True to serve it, False to drop it silently, None to
        drop it and answer ``throttled`` (the first drop of a dry spell)."""
        bucket = self._buckets.get(peer)
        if bucket is None or bucket.at != now:  # else: refilled and reordered at this now
            bucket = self._bucket(peer, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.dry = False
            return True
        self.stats.throttled += 1
        if bucket.dry:
            return False
        bucket.dry = True
        return None

    def bad(self, peer: bytes, label: str, now: float, denied: bool = False) -> None:
        """``peer`` sent a bad frame: charge it, and count it under ``label``."""
        bucket = self._bucket(peer, now)
        bucket.tokens -= self.bad_cost
        if denied:
            self.stats.denied += 1
        counts = self.stats.bad_by_peer
        counts[label] = counts.get(label, 0) + 1
        if len(counts) > MAX_REPORTED:  # forget the least bad: the worst stay visible
            del counts[min(counts, key=counts.__getitem__)]

    def _bucket(self, peer: bytes, now: float) -> _Bucket:
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_peers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(peer)
            # Refill; a clock that went backwards refills nothing (never negative time).
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.at = now
        self.stats.peers = len(self._buckets)
        return bucket
