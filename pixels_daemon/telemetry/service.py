"""TelemetryService: the sampler on a worker thread, on a fixed interval, owned by the daemon.

- Every NVML call runs in ONE worker thread (its own capacity limiter of 1), never on the event
  loop: NVML calls go through the driver's lock and can take milliseconds, or much longer on a
  GPU that is falling off the bus.
- ``sample_once()`` never overlaps itself: a call while a sample is still running returns None at
  once and is counted in ``skipped``. The running one is never abandoned (its thread would go on
  using NVML unseen): cancelling waits for it to finish.
- After each sample, on the event loop: the latest sample is kept, thresholds are evaluated, and
  ``on_sample(sample, crossings)`` is called; the daemon turns crossings into escalations there.
- ``run()`` owns the whole lifecycle: start (nvmlInit and probe, one log line saying what is
  sampled or why GPU telemetry is off), sample on every tick, close NVML on the way out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

import anyio
import anyio.abc
import structlog

from pixels_daemon.telemetry.sampler import TelemetryInfo, TelemetrySample
from pixels_daemon.telemetry.thresholds import (
    DEFAULT_THRESHOLDS,
    Crossing,
    ThresholdConfig,
    ThresholdState,
    evaluate,
)


def _log() -> structlog.typing.FilteringBoundLogger:
    # Looked up per use (all rare): a module-level proxy caches the logger configured first,
    # which would hide this module from a later configure() or capture_logs().
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("pixelsd")
    return logger


#: 15 s, Prometheus' usual scrape interval: each scrape sees a fresh sample and a 5-minute spike
#: is ~20 points. A sample costs ~0.2 ms per GPU plus ~3 ms for the once-a-minute slow tier (H100,
#: docs/telemetry.md): < 0.01 % of a core. NVML's own averaging windows (utilization, power) are
#: 1/6 s to 1 s, so sampling faster mostly adds noise and driver-lock traffic; keep it >= 1 s.
DEFAULT_INTERVAL_S = 15.0

OnSample = Callable[[TelemetrySample, tuple[Crossing, ...]], None]


class Sampler(Protocol):
    """What the service needs of a sampler (NvmlSampler, or a test double). Called from one
    worker thread at a time."""

    def start(self) -> TelemetryInfo: ...

    def sample(self) -> TelemetrySample: ...

    def close(self) -> None: ...


async def interval_ticks(interval_s: float) -> AsyncIterator[None]:
    """Tick now, then every ``interval_s`` on the loop's clock. Ticks missed while the loop was
    busy are dropped, not fired in a burst."""
    next_at = anyio.current_time()
    while True:
        yield
        next_at += interval_s
        now = anyio.current_time()
        next_at = max(next_at, now)
        await anyio.sleep_until(next_at)


class TelemetryService:
    """Owns a sampler: runs it off the loop, keeps the latest sample and the threshold state."""

    def __init__(
        self,
        sampler: Sampler,
        *,
        thresholds: ThresholdConfig = DEFAULT_THRESHOLDS,
        on_sample: OnSample | None = None,
    ) -> None:
        self._sampler = sampler
        self._thresholds = thresholds
        self._on_sample = on_sample
        # One thread at a time touches the sampler; its state is not thread-safe.
        self._limiter = anyio.CapacityLimiter(1)
        self._busy = False
        self._info: TelemetryInfo | None = None
        self.latest: TelemetrySample | None = None
        self.threshold_state = ThresholdState()
        self.taken = 0
        self.skipped = 0

    @property
    def info(self) -> TelemetryInfo | None:
        """What start() found; None before it."""
        return self._info

    async def start(self) -> TelemetryInfo:
        """nvmlInit and probe, in the worker thread; logs once what is sampled or why not."""
        if self._info is None:
            info = await anyio.to_thread.run_sync(self._sampler.start, limiter=self._limiter)
            self._info = info
            if info.gpu_enabled:
                _log().info(
                    "telemetry started",
                    gpus=[f"{g.index}: {g.name} ({g.memory} memory)" for g in info.gpus],
                    unsupported={f"gpu{g.index}": sorted(g.unsupported) for g in info.gpus},
                    driver=info.driver_version,
                )
            else:
                _log().warning("GPU telemetry disabled", reason=info.disabled_reason)
        return self._info

    async def sample_once(self) -> TelemetrySample | None:
        """Take one sample; None (and ``skipped`` += 1) if the previous one is still running."""
        if self._busy:
            self.skipped += 1
            _log().debug("telemetry sample skipped: the previous one is still running")
            return None
        self._busy = True
        try:
            if self._info is None:
                await self.start()
            sample = await anyio.to_thread.run_sync(self._sampler.sample, limiter=self._limiter)
        finally:
            self._busy = False
        self.taken += 1
        self.latest = sample
        self.threshold_state, crossings = evaluate(sample, self.threshold_state, self._thresholds)
        for crossing in crossings:
            _log().warning(
                "telemetry threshold " + crossing.direction,
                key=crossing.key,
                message=crossing.message,
            )
        if self._on_sample is not None:
            try:
                self._on_sample(sample, crossings)
            except Exception:
                # The callback is the daemon's; its bug must not stop sampling.
                _log().exception("telemetry on_sample callback failed")
        return sample

    async def run(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        ticks: AsyncIterator[None] | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start, sample on every tick until cancelled, then close NVML.

        Use from a task group: ``await tg.start(service.run)``; it reports started once NVML has
        been probed. ``ticks`` replaces the interval clock (tests drive it by hand).
        """
        if interval_s < 1.0:
            raise ValueError(f"telemetry interval must be >= 1 s, got {interval_s}")
        try:
            await self.start()
            task_status.started()
            async with anyio.create_task_group() as tg:
                # Each tick starts a sample in the background so the ticks keep their pace: a tick
                # that finds the previous sample still running is skipped and counted.
                async for _ in ticks if ticks is not None else interval_ticks(interval_s):
                    tg.start_soon(self.sample_once)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._sampler.close, limiter=self._limiter)
