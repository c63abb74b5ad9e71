"""The daemon's one clock, optionally scaled: ``--time-scale N`` makes a real second count as N.

Every rule and every schedule (polls, the Friday report's cron, stall and blocker thresholds) reads
this clock, so a 12-week plan can run in minutes with nothing else changed. Liveness on the wire
(heartbeats, socket timeouts) stays in real seconds: it is about processes, not about the plan.

The anchor (a real instant and the simulated instant it maps to) is kept in STATE_DIR/clock.json,
so a daemon restarted on the same state dir goes on from where simulated time was instead of
jumping back to the wall clock; orchestrators simulating work (``pixelsd demo``) read the same
file to share the daemon's time. At scale 1 there is no file and the clock is the wall clock.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path


class ClockError(Exception):
    """A clock file that cannot be used; the message says which and what to do."""


class ScaledClock:
    """sim = sim_origin + (real - real_origin) * scale. Callable: ``clock()`` is ``now()``."""

    def __init__(
        self,
        scale: float = 1.0,
        *,
        real_origin: float | None = None,
        sim_origin: float | None = None,
        real: Callable[[], float] = time.time,
    ) -> None:
        if not scale > 0:
            raise ClockError(f"time scale must be a positive number, not {scale!r}")
        self.scale = float(scale)
        self._real = real
        self.real_origin = real() if real_origin is None else real_origin
        self.sim_origin = self.real_origin if sim_origin is None else sim_origin

    def __call__(self) -> float:
        return self.now()

    def now(self) -> float:
        return self.to_sim(self._real())

    def to_sim(self, real: float) -> float:
        return self.sim_origin + (real - self.real_origin) * self.scale

    def to_real(self, sim: float) -> float:
        return self.real_origin + (sim - self.sim_origin) / self.scale

    def real_seconds(self, sim_seconds: float) -> float:
        """How long a span of simulated time lasts in real time."""
        return sim_seconds / self.scale

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.sim_origin != self.real_origin

    # --- the anchor file ----------------------------------------------------------------------

    def to_json(self) -> dict[str, float]:
        return {"scale": self.scale, "real_origin": self.real_origin, "sim_origin": self.sim_origin}

    def save(self, path: Path) -> None:
        """Write the anchor atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json()) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, real: Callable[[], float] = time.time) -> ScaledClock | None:
        """The clock anchored in ``path``, or None if there is no file."""
        try:
            data = json.loads(path.read_text())
            return cls(
                float(data["scale"]),
                real_origin=float(data["real_origin"]),
                sim_origin=float(data["sim_origin"]),
                real=real,
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClockError(
                f"{path} is not a clock anchor ({exc}); delete it to restart simulated time "
                "from now"
            ) from None

    @classmethod
    def resume(
        cls,
        path: Path,
        scale: float,
        start: float | None = None,
        real: Callable[[], float] = time.time,
    ) -> ScaledClock:
        """The daemon's clock for a state dir: continue the anchored simulated time if there is
        one (re-anchored at its current instant when the scale changed), else start at ``start``
        (default: now). Scale 1 with no anchor and no start is the plain wall clock (no file)."""
        old = cls.load(path, real)
        if old is not None:
            if old.scale == scale:
                return old
            clock = cls(scale, sim_origin=old.now(), real=real)
        else:
            clock = cls(scale, sim_origin=start, real=real)
        if clock.scaled:
            clock.save(path)
        return clock
