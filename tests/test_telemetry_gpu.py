"""The real sampler against real NVML. Marker ``gpu``: skipped where no GPU or driver answers.

Run on a GPU box with ``pytest -m gpu tests/test_telemetry_gpu.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pixels_daemon.telemetry.prometheus import render
from pixels_daemon.telemetry.sampler import METRIC_NAMES, NvmlSampler, TelemetrySample

pytestmark = pytest.mark.gpu

pynvml: Any = pytest.importorskip("pynvml")


@pytest.fixture(scope="module")
def sampler() -> Iterator[NvmlSampler]:
    s = NvmlSampler(pynvml)
    info = s.start()
    if not info.gpu_enabled:
        pytest.skip(f"no usable NVIDIA GPU here: {info.disabled_reason}")
    yield s
    s.close()


@pytest.fixture(scope="module")
def sample(sampler: NvmlSampler) -> TelemetrySample:
    return sampler.sample(slow=True)


def test_start_finds_gpus_with_identity(sampler: NvmlSampler) -> None:
    """Each GPU has its NVML UUID, a name, and a memory model decided at start."""
    info = sampler.info
    assert info.driver_version
    for gpu in info.gpus:
        assert gpu.uuid.startswith("GPU-")
        assert gpu.name
        assert gpu.memory in ("dedicated", "unified")


def test_every_metric_is_either_supported_or_says_why_not(sampler: NvmlSampler) -> None:
    """The probe sorts each metric into supported or unsupported (with a reason), never both."""
    for gpu in sampler.info.gpus:
        names = set(METRIC_NAMES)
        assert set(gpu.supported) | set(gpu.unsupported) == names
        assert not set(gpu.supported) & set(gpu.unsupported)
        assert all(gpu.unsupported.values())


def test_sample_reads_healthy_gpus_without_errors(sample: TelemetrySample) -> None:
    """Every GPU answers: health ok, no call failed."""
    for gpu in sample.gpus:
        assert gpu.health == "ok"
        assert gpu.errors == ()


def test_supported_metrics_have_plausible_values(
    sampler: NvmlSampler, sample: TelemetrySample
) -> None:
    """Temperature, utilization, power and clocks are in range where the GPU supports them."""
    for info, gpu in zip(sampler.info.gpus, sample.gpus, strict=True):
        if "temperature" in info.supported:
            assert gpu.temperature_celsius is not None
            assert 0 < gpu.temperature_celsius < 120
        if "utilization" in info.supported:
            assert gpu.utilization_ratio is not None
            assert 0 <= gpu.utilization_ratio <= 1
        if "power" in info.supported:
            assert gpu.power_watts is not None
            assert 0 < gpu.power_watts < 2000
        if "sm_clock" in info.supported:
            assert gpu.sm_clock_hertz is not None
            assert gpu.sm_clock_hertz > 0


def test_memory_is_dedicated_or_unified_never_both(
    sampler: NvmlSampler, sample: TelemetrySample
) -> None:
    """A dedicated GPU reports used <= total; a unified one reports no GPU memory at all."""
    for info, gpu in zip(sampler.info.gpus, sample.gpus, strict=True):
        if info.memory == "dedicated":
            assert gpu.memory_total_bytes is not None
            assert gpu.memory_used_bytes is not None
            assert 0 <= gpu.memory_used_bytes <= gpu.memory_total_bytes
        else:
            assert gpu.memory_total_bytes is None
            assert sample.unified
    assert sample.host is not None


def test_per_process_memory_is_a_list(sampler: NvmlSampler, sample: TelemetrySample) -> None:
    """Where supported, the per-process read gives a (possibly empty) tuple and its time."""
    for info, gpu in zip(sampler.info.gpus, sample.gpus, strict=True):
        if "processes" in info.supported:
            assert gpu.processes is not None
            assert gpu.slow_ts is not None


def test_energy_counter_does_not_go_backwards(sampler: NvmlSampler) -> None:
    """Two samples in a row: the total-energy counter is monotonic."""
    first = sampler.sample(slow=True)
    second = sampler.sample(slow=True)
    for a, b in zip(first.gpus, second.gpus, strict=True):
        if a.energy_joules is not None and b.energy_joules is not None:
            assert b.energy_joules >= a.energy_joules


def test_second_sampler_shares_nvml(sampler: NvmlSampler) -> None:
    """nvmlInit is reference-counted: another sampler can start and close beside the first."""
    other = NvmlSampler(pynvml)
    assert other.start().gpu_enabled
    other.close()
    assert sampler.sample(slow=False).gpus[0].health == "ok"


def test_prometheus_text_of_a_real_sample(sample: TelemetrySample) -> None:
    """The exposition of a real sample names GPU 0 with its UUID."""
    text = render(sample).decode()
    uuid = sample.gpus[0].uuid
    assert f'pixels_gpu_up{{gpu="0",uuid="{uuid}"}} 1.0' in text
