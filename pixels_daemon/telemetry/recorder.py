"""The weekly telemetry figures in the daemon: the pure WeeklyAggregator (weekly.py), fed, kept
and read. The I/O around it.

- Opened from STATE_DIR/telemetry/weeks.json at start. A file that cannot be read is set aside as
  weeks.json.bad (one log line) and the figures start afresh: they are a report's convenience,
  never a reason for the daemon not to start.
- A restart ends any open idle span where it was last seen: what the GPU did while the daemon
  was down is unknown (and the engine is told the GPU is no longer known to be idle).
- Saved atomically (fsynced, in a worker thread) at most every ``SAVE_INTERVAL_S`` while it
  changed, and once at shutdown. A crash loses at most that last minute of figures. Not in the
  event log: a sample every 15 s would be most of its rows, and the figures are measurements
  summed, not decisions to replay; the one decision drawn from them, the GPU idle for the stall
  window, does go to the log (``GpuIdle``).
- ``record()`` folds a sample in and returns the ``GpuIdle`` event the engine must be told, or
  None when it already knows: one event when an idle span reaches the stall window, one when it
  ends.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anyio
import structlog

from pixels_daemon.core.engine import GpuIdle
from pixels_daemon.telemetry.sampler import TelemetrySample
from pixels_daemon.telemetry.weekly import (
    AggregatesError,
    TelemetryFacts,
    WeeklyAggregator,
    encode_aggregates,
    load_aggregates,
    save_aggregates,
)

#: At most one write a minute: the file is a few KiB, so this costs nothing, and a crash loses at
#: most a minute of figures (four samples at the default 15 s).
SAVE_INTERVAL_S = 60.0

WEEKS_FILE = Path("telemetry") / "weeks.json"


def _log() -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("pixelsd")
    return logger


class WeekRecorder:
    """One daemon's weekly figures: the aggregator, its file, and what the engine was told."""

    def __init__(self, path: Path, aggregator: WeeklyAggregator, window_s: float) -> None:
        self.path = path
        self.aggregator = aggregator
        #: The hidden-stall window (the engine's stall_s): an idle span this long is reported.
        self.window_s = window_s
        #: The idle start the engine was last told (None: not idle), so each change goes once.
        self.told: float | None = None
        self.saves = 0

    @classmethod
    def open(cls, state_dir: Path, *, period_s: float, window_s: float) -> WeekRecorder:
        """Load the figures (blocking: run it in a thread), ending the idle span a restart cut."""
        path = state_dir / WEEKS_FILE
        try:
            aggregates = load_aggregates(path)
        except AggregatesError as exc:
            aside = path.with_name(path.name + ".bad")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            _log().warning(
                "telemetry weekly figures start afresh", problem=str(exc), set_aside=str(aside)
            )
            aggregates = None
        aggregator = WeeklyAggregator(aggregates, period_s=period_s)
        aggregator.interrupt()
        return cls(path, aggregator, window_s)

    def record(self, sample: TelemetrySample, at: float, start: float) -> GpuIdle | None:
        """Fold in a sample taken at plan time ``at`` (weeks from ``start``); the GpuIdle to
        apply if what the engine should know changed."""
        self.aggregator.add(sample, at, start)
        since = self.aggregator.idle_since(self.window_s)
        if since == self.told:
            return None
        self.told = since
        return GpuIdle(since=since)

    def facts(self, week: int, *, sampling: bool, interval_s: float | None) -> TelemetryFacts:
        """What week ``week``'s report shows."""
        return TelemetryFacts(
            sampling=sampling,
            week=self.aggregator.week(week),
            interval_s=interval_s,
            busy_ratio=self.aggregator.busy_ratio,
        )

    async def save(self) -> None:
        """Write the file if the figures changed since the last write (the write off the loop)."""
        if not self.aggregator.dirty:
            return
        data = encode_aggregates(self.aggregator.aggregates)  # on the loop: it owns the figures
        self.aggregator.dirty = False
        try:
            await anyio.to_thread.run_sync(save_aggregates, self.path, data)
        except OSError as exc:
            self.aggregator.dirty = True  # try again next time
            _log().warning(
                "telemetry weekly figures not saved", file=str(self.path), error=str(exc)
            )
            return
        self.saves += 1

    async def run_saver(self, interval_s: float = SAVE_INTERVAL_S) -> None:
        """Save every ``interval_s`` while changed, and once more when cancelled (shutdown)."""
        try:
            while True:
                await anyio.sleep(interval_s)
                await self.save()
        finally:
            with anyio.CancelScope(shield=True):
                await self.save()
