"""TelemetryService: off the loop, never overlapping, ticks injected, NVML closed on the way out."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from pixels_daemon.telemetry.sampler import NvmlSampler, TelemetryInfo, TelemetrySample
from pixels_daemon.telemetry.service import TelemetryService
from pixels_daemon.telemetry.thresholds import Crossing
from tests import fake_nvml
from tests.fake_nvml import FakeGpu, FakeNvml

#: Bound on waiting for a worker thread to reach a point; a healthy run takes microseconds.
WAIT_S = 5.0


class GatedSampler:
    """An NvmlSampler on the fake whose sample() can be held at its start."""

    def __init__(self, nv: FakeNvml, tmp_path: Path) -> None:
        meminfo = tmp_path / "meminfo"
        meminfo.write_text("MemTotal: 1000 kB\nMemAvailable: 500 kB\n")
        self.inner = NvmlSampler(nv, meminfo_path=meminfo, pressure_path=tmp_path / "none")
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.threads: list[int] = []
        self.closed = 0

    def start(self) -> TelemetryInfo:
        return self.inner.start()

    def sample(self) -> TelemetrySample:
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.gate.wait(WAIT_S), "test never opened the gate"
        return self.inner.sample()

    def close(self) -> None:
        self.closed += 1
        self.inner.close()


async def wait_entered(sampler: GatedSampler) -> None:
    """Block (off the loop) until a sample() has begun in the worker thread."""
    assert await anyio.to_thread.run_sync(sampler.entered.wait, WAIT_S)


async def ticks_from(receive: anyio.abc.ObjectReceiveStream[None]) -> AsyncIterator[None]:
    async for tick in receive:
        yield tick


async def test_sample_runs_in_a_worker_thread(tmp_path: Path) -> None:
    """The sampler is never called on the event loop's thread."""
    sampler = GatedSampler(fake_nvml.discrete(), tmp_path)
    service = TelemetryService(sampler)
    sample = await service.sample_once()
    assert sample is not None
    assert sampler.threads and threading.get_ident() not in sampler.threads
    assert service.latest is sample
    assert service.taken == 1


async def test_overlapping_call_is_skipped_and_counted(tmp_path: Path) -> None:
    """A second call while one sample runs returns None at once and counts one skip."""
    sampler = GatedSampler(fake_nvml.discrete(), tmp_path)
    service = TelemetryService(sampler)
    await service.start()
    sampler.gate.clear()
    results: list[TelemetrySample | None] = []

    async def first() -> None:
        results.append(await service.sample_once())

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await wait_entered(sampler)
        assert await service.sample_once() is None
        assert service.skipped == 1
        sampler.gate.set()
    assert results[0] is not None
    assert (service.taken, service.skipped) == (1, 1)


async def test_crossings_reach_on_sample(tmp_path: Path) -> None:
    """A hot GPU's sample comes to on_sample with its temperature crossing."""
    seen: list[tuple[TelemetrySample, tuple[Crossing, ...]]] = []
    nv = FakeNvml([FakeGpu(temperature=90)])
    service = TelemetryService(
        GatedSampler(nv, tmp_path), on_sample=lambda s, c: seen.append((s, c))
    )
    await service.sample_once()
    [(_, crossings)] = seen
    assert [(c.rule, c.direction) for c in crossings] == [("temperature", "raised")]
    assert service.threshold_state.active("temperature", "gpu0") is not None


async def test_on_sample_failure_is_logged_and_sampling_goes_on(tmp_path: Path) -> None:
    """A callback that raises is logged; the service keeps the sample and samples again."""

    def broken(sample: TelemetrySample, crossings: tuple[Crossing, ...]) -> None:
        raise RuntimeError("callback bug")

    service = TelemetryService(GatedSampler(fake_nvml.discrete(), tmp_path), on_sample=broken)
    with capture_logs() as logs:
        await service.sample_once()
        await service.sample_once()
    assert service.taken == 2
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "telemetry on_sample callback failed"
    ] * 2


async def test_disabled_gpu_telemetry_logs_one_line_with_the_reason(tmp_path: Path) -> None:
    """No driver: exactly one warning, carrying the sampler's reason."""
    service = TelemetryService(GatedSampler(fake_nvml.driver_not_loaded(), tmp_path))
    with capture_logs() as logs:
        await service.start()
        await service.sample_once()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["event"] == "GPU telemetry disabled"
    assert "driver not loaded" in warnings[0]["reason"]


async def test_run_samples_on_each_tick_and_closes_nvml(tmp_path: Path) -> None:
    """Three ticks, three samples; when the ticks end NVML is shut down."""
    nv = fake_nvml.discrete()
    sampler = GatedSampler(nv, tmp_path)
    done = anyio.Semaphore(0)
    service = TelemetryService(sampler, on_sample=lambda s, c: done.release())
    send, receive = anyio.create_memory_object_stream[None]()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: service.run(ticks=ticks_from(receive)))
        for _ in range(3):
            await send.send(None)
            await done.acquire()  # one sample at a time: none of these ticks may be skipped
        send.close()
    assert (service.taken, service.skipped) == (3, 0)
    assert sampler.closed == 1
    assert nv.initialized == 0


async def test_tick_during_a_running_sample_is_skipped(tmp_path: Path) -> None:
    """A tick that finds the previous sample still running is counted, not queued."""
    sampler = GatedSampler(fake_nvml.discrete(), tmp_path)
    service = TelemetryService(sampler)
    send, receive = anyio.create_memory_object_stream[None](1)
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: service.run(ticks=ticks_from(receive), task_status=task_status)
        )
        sampler.gate.clear()
        await send.send(None)
        await wait_entered(sampler)
        await send.send(None)
        await anyio.wait_all_tasks_blocked()
        assert service.skipped == 1
        sampler.gate.set()
        send.close()
    assert (service.taken, service.skipped) == (1, 1)


async def test_cancelling_run_waits_for_the_sample_in_flight(tmp_path: Path) -> None:
    """Cancelled mid-sample, run() lets the thread finish before it closes NVML."""
    sampler = GatedSampler(fake_nvml.discrete(), tmp_path)
    service = TelemetryService(sampler)
    send, receive = anyio.create_memory_object_stream[None](1)
    async with anyio.create_task_group() as outer:
        scope = anyio.CancelScope()

        async def running() -> None:
            with scope:
                await service.run(ticks=ticks_from(receive))

        outer.start_soon(running)
        sampler.gate.clear()
        await send.send(None)
        await wait_entered(sampler)
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert sampler.closed == 0  # still waiting for the sample's thread
        sampler.gate.set()
    assert sampler.closed == 1


async def test_interval_below_one_second_is_refused(tmp_path: Path) -> None:
    """NVML goes through the driver's lock: the interval may not be under 1 s."""
    service = TelemetryService(GatedSampler(fake_nvml.discrete(), tmp_path))
    with pytest.raises(ValueError, match="interval must be >= 1 s"):
        await service.run(0.5)
