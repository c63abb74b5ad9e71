"""NvmlSampler against the fake NVML (real nvidia-ml-py exception classes), one box per scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from pixels_daemon.telemetry.sampler import (
    NvmlSampler,
    ProcessMemory,
    clock_event_names,
)
from tests import fake_nvml
from tests.fake_nvml import GIB, FakeGpu, FakeNvml

KIB = 1024
MEM_TOTAL_KIB = 128_452_152  # a DGX Spark
MEM_AVAILABLE_KIB = 96_543_210
ROOT = Path(__file__).resolve().parent.parent

Proc = tuple[Path, Path]  # (meminfo, pressure)


class Clock:
    """A hand-driven wall clock."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def proc(tmp_path: Path) -> Proc:
    """A fake /proc/meminfo and /proc/pressure/memory."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        f"MemTotal: {MEM_TOTAL_KIB} kB\nMemFree: 1000 kB\nMemAvailable: {MEM_AVAILABLE_KIB} kB\n"
        "SwapTotal: 0 kB\nSwapFree: 0 kB\n"
    )
    pressure = tmp_path / "pressure"
    pressure.write_text("some avg10=2.00 avg60=1.00 avg300=0.50 total=1000000\n")
    return meminfo, pressure


@pytest.fixture
def clock() -> Clock:
    return Clock()


def sampler(nv: FakeNvml | None, proc: Proc, clock: Clock) -> NvmlSampler:
    s = NvmlSampler(nv, clock=clock, meminfo_path=proc[0], pressure_path=proc[1])
    s.start()
    return s


# -- discrete GPU -------------------------------------------------------------------------------


def test_discrete_gpu_reports_every_metric_in_base_units(proc: Proc, clock: Clock) -> None:
    """An H100: ratios, Celsius, watts, joules, hertz and bytes, memory dedicated."""
    sample = sampler(fake_nvml.discrete(), proc, clock).sample()
    gpu = sample.gpus[0]
    assert gpu.health == "ok"
    assert gpu.utilization_ratio == pytest.approx(0.37)
    assert gpu.memory_copy_utilization_ratio == pytest.approx(0.12)
    assert gpu.temperature_celsius == 41.0
    assert gpu.power_watts == pytest.approx(123.456)
    assert gpu.power_limit_watts == pytest.approx(700.0)
    assert gpu.energy_joules == pytest.approx(987_654.321)
    assert gpu.sm_clock_hertz == pytest.approx(1.98e9)
    assert gpu.memory_clock_hertz == pytest.approx(2.619e9)
    assert gpu.performance_state == 0
    assert gpu.clock_event_reasons == 0x004
    assert (gpu.memory_used_bytes, gpu.memory_total_bytes) == (20 * GIB, 80 * GIB)
    assert gpu.errors == ()
    assert sample.info.gpus[0].memory == "dedicated"
    assert sample.unified is False


def test_discrete_gpu_without_fan_probes_it_once_and_never_again(proc: Proc, clock: Clock) -> None:
    """NOT_SUPPORTED at the probe: listed as unsupported, never called by later samples."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    for _ in range(3):
        sample = s.sample()
    assert nv.calls["nvmlDeviceGetFanSpeed"] == 1
    assert sample.info.gpus[0].unsupported == {"fan": "Not Supported"}
    assert sample.gpus[0].fan_speed_ratio is None


def test_sample_carries_host_memory_and_pressure(proc: Proc, clock: Clock) -> None:
    """Host memory and PSI are in every sample, from the injected paths."""
    sample = sampler(fake_nvml.discrete(), proc, clock).sample()
    assert sample.host is not None
    assert sample.host.total_bytes == MEM_TOTAL_KIB * KIB
    assert sample.pressure is not None
    assert sample.pressure.some.avg10 == pytest.approx(0.02)
    assert sample.ts == clock.now


def test_discrete_gpu_sized_like_host_memory_stays_dedicated(proc: Proc, clock: Clock) -> None:
    """A discrete GPU (plain addressing) whose HBM happens to match MemTotal is not unified."""
    nv = FakeNvml([FakeGpu(memory_total=MEM_TOTAL_KIB * KIB, addressing_mode=0)])
    sample = sampler(nv, proc, clock).sample()
    assert sample.info.gpus[0].memory == "dedicated"
    assert sample.gpus[0].memory_total_bytes == MEM_TOTAL_KIB * KIB


# -- GB10 ---------------------------------------------------------------------------------------


def test_gb10_lists_memory_fan_power_limit_and_memory_clock_unsupported(
    proc: Proc, clock: Clock
) -> None:
    """On a GB10 the refusals are found at start and reported as what is unsupported."""
    info = sampler(fake_nvml.gb10(), proc, clock).info
    assert info.gpu_enabled
    assert set(info.gpus[0].unsupported) == {"memory", "fan", "power_limit", "memory_clock"}
    assert info.gpus[0].addressing_mode == "ats"
    assert "temperature" in info.gpus[0].supported


def test_gb10_never_calls_refused_functions_after_the_probe(proc: Proc, clock: Clock) -> None:
    """Ten samples later each refused call has still been made exactly once (v1 and v2 memory)."""
    nv = fake_nvml.gb10()
    s = sampler(nv, proc, clock)
    for _ in range(10):
        s.sample()
    for fn in (
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetMemoryInfo:v2",
        "nvmlDeviceGetFanSpeed",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetClockInfo:mem",
    ):
        assert nv.calls[fn] == 1, fn
    assert nv.calls["nvmlDeviceGetTemperature"] == 11


def test_gb10_memory_is_unified_and_never_reported_as_gpu_memory(proc: Proc, clock: Clock) -> None:
    """GPU memory fields stay empty; the sample is marked unified and carries host memory."""
    sample = sampler(fake_nvml.gb10(), proc, clock).sample()
    assert sample.unified is True
    assert sample.info.gpus[0].memory == "unified"
    assert sample.gpus[0].memory_used_bytes is None
    assert sample.gpus[0].memory_total_bytes is None
    assert sample.host is not None
    assert sample.host.available_bytes == MEM_AVAILABLE_KIB * KIB


def test_gb10_reporting_host_memory_as_gpu_memory_is_treated_as_unified(
    proc: Proc, clock: Clock
) -> None:
    """Memory info that answers with total ~ MemTotal is the shared pool: unified, not polled."""
    nv = fake_nvml.gb10_memory_reports_host(MEM_TOTAL_KIB * KIB - 300 * 1024**2)
    s = sampler(nv, proc, clock)
    sample = s.sample()
    s.sample()
    gpu_info = sample.info.gpus[0]
    assert gpu_info.memory == "unified"
    assert "host memory" in gpu_info.unsupported["memory"]
    assert sample.gpus[0].memory_used_bytes is None
    assert sample.unified is True
    assert nv.calls["nvmlDeviceGetMemoryInfo:v2"] == 1


def test_gb10_temperature_and_power_still_sampled(proc: Proc, clock: Clock) -> None:
    """What does work on a GB10 is reported: utilization, temperature, power, energy, SM clock."""
    gpu = sampler(fake_nvml.gb10(), proc, clock).sample().gpus[0]
    assert gpu.temperature_celsius == 41.0
    assert gpu.power_watts == pytest.approx(123.456)
    assert gpu.energy_joules is not None
    assert gpu.sm_clock_hertz is not None
    assert gpu.power_limit_watts is None
    assert gpu.memory_clock_hertz is None


# -- NVML absent --------------------------------------------------------------------------------


def test_library_not_found_disables_gpu_telemetry_with_one_reason(proc: Proc, clock: Clock) -> None:
    """No libnvidia-ml: disabled, one reason naming the library; host memory still sampled."""
    s = sampler(fake_nvml.library_not_found(), proc, clock)
    sample = s.sample()
    assert sample.info.gpu_enabled is False
    assert s.disabled_reason is not None
    assert "NVML library not found" in s.disabled_reason
    assert "\n" not in s.disabled_reason
    assert sample.gpus == ()
    assert sample.host is not None


def test_driver_not_loaded_disables_gpu_telemetry_with_one_reason(proc: Proc, clock: Clock) -> None:
    """Driver not loaded: disabled with a reason saying so and what to check."""
    s = sampler(fake_nvml.driver_not_loaded(), proc, clock)
    assert s.info.gpu_enabled is False
    assert s.disabled_reason is not None
    assert "driver not loaded" in s.disabled_reason
    assert s.sample().gpus == ()


def test_nvidia_ml_py_not_installed_disables_gpu_telemetry(proc: Proc, clock: Clock) -> None:
    """No pynvml module at all (nvml=None): disabled, the reason says how to install it."""
    s = sampler(None, proc, clock)
    assert s.disabled_reason is not None
    assert "pip install" in s.disabled_reason
    assert s.sample().host is not None


def test_no_gpu_found_disables_gpu_telemetry(proc: Proc, clock: Clock) -> None:
    """NVML initialises but counts no GPU: disabled, with that reason."""
    s = sampler(FakeNvml([]), proc, clock)
    assert s.disabled_reason == "NVML found no GPU: GPU telemetry is off"


def test_disabled_sampler_never_calls_nvml_again(proc: Proc, clock: Clock) -> None:
    """After a failed nvmlInit nothing is retried: one call in all."""
    nv = fake_nvml.driver_not_loaded()
    s = sampler(nv, proc, clock)
    s.sample()
    s.start()
    assert sum(nv.calls.values()) == 1


# -- GPU lost -----------------------------------------------------------------------------------


def test_gpu_lost_mid_run_is_a_health_flag_not_an_exception(proc: Proc, clock: Clock) -> None:
    """GPU_IS_LOST during a sample: health "lost", no readings, sample() returns normally."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    assert s.sample().gpus[0].health == "ok"
    nv.lose(0)
    gpu = s.sample().gpus[0]
    assert gpu.health == "lost"
    assert gpu.temperature_celsius is None
    assert gpu.power_watts is None


def test_lost_gpu_costs_one_call_per_sample(proc: Proc, clock: Clock) -> None:
    """The first GPU_IS_LOST ends that GPU's sample; later samples make one call to check."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    nv.lose(0)
    before = sum(nv.calls.values())
    s.sample()
    assert sum(nv.calls.values()) - before == 1
    s.sample()
    assert sum(nv.calls.values()) - before == 2


def test_lost_gpu_that_answers_again_is_healthy(proc: Proc, clock: Clock) -> None:
    """Once the GPU answers, health returns to "ok" and readings resume."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    nv.lose(0)
    s.sample()
    nv.recover(0)
    gpu = s.sample().gpus[0]
    assert gpu.health == "ok"
    assert gpu.temperature_celsius == 41.0


def test_gpu_lost_at_start_is_probed_once_it_answers(proc: Proc, clock: Clock) -> None:
    """A GPU lost before the probe is reported lost, then probed and sampled when it returns."""
    nv = fake_nvml.discrete()
    nv.lose(0)
    s = sampler(nv, proc, clock)
    assert s.sample().gpus[0].health == "lost"
    nv.recover(0)
    sample = s.sample()
    assert sample.gpus[0].health == "ok"
    assert sample.gpus[0].temperature_celsius == 41.0
    assert sample.info.gpus[0].unsupported == {"fan": "Not Supported"}


def test_one_lost_gpu_leaves_the_others_sampled(proc: Proc, clock: Clock) -> None:
    """With two GPUs, losing one does not cost the other its readings."""
    nv = FakeNvml([FakeGpu(), FakeGpu(uuid="GPU-second", temperature=55)])
    s = sampler(nv, proc, clock)
    nv.lose(0)
    first, second = s.sample().gpus
    assert first.health == "lost"
    assert second.health == "ok"
    assert second.temperature_celsius == 55.0


# -- missing functions, transient errors --------------------------------------------------------


def test_function_not_found_falls_back_to_the_older_call(proc: Proc, clock: Clock) -> None:
    """No ...ClocksEventReasons in an older driver: ...ClocksThrottleReasons is used instead."""
    nv = fake_nvml.old_driver()
    s = sampler(nv, proc, clock)
    gpu = s.sample().gpus[0]
    assert gpu.clock_event_reasons == 0x004
    assert nv.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1
    assert "clock_events" in s.info.gpus[0].supported


def test_function_not_found_without_alternative_is_unsupported(proc: Proc, clock: Clock) -> None:
    """No energy counter in the driver: unsupported, reason "Function Not Found"."""
    s = sampler(fake_nvml.old_driver(), proc, clock)
    assert s.info.gpus[0].unsupported["energy"] == "Function Not Found"
    assert s.info.gpus[0].addressing_mode is None
    assert s.sample().gpus[0].energy_joules is None


def test_name_missing_from_the_binding_falls_back(proc: Proc, clock: Clock) -> None:
    """An nvidia-ml-py without nvmlDeviceGetTemperature uses nvmlDeviceGetTemperatureV."""
    nv = FakeNvml([FakeGpu(temperature=66)], omit=("nvmlDeviceGetTemperature",))
    assert sampler(nv, proc, clock).sample().gpus[0].temperature_celsius == 66.0
    assert nv.calls["nvmlDeviceGetTemperatureV"] == 2


def test_call_that_starts_refusing_is_dropped(proc: Proc, clock: Clock) -> None:
    """A supported call that later answers NOT_SUPPORTED is listed unsupported and not retried."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    nv.gpus[0].fail["nvmlDeviceGetPowerUsage"] = pynvml.NVMLError_NotSupported
    s.sample()
    sample = s.sample()
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 2
    assert sample.info.gpus[0].unsupported["power"] == "Not Supported"


def test_transient_error_is_reported_and_retried(proc: Proc, clock: Clock) -> None:
    """NVML_ERROR_UNKNOWN leaves the value empty with an error, and the call stays polled."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    nv.gpus[0].fail["nvmlDeviceGetPowerUsage"] = pynvml.NVMLError_Unknown
    gpu = s.sample().gpus[0]
    assert gpu.power_watts is None
    assert gpu.errors == ("power: Unknown Error",)
    del nv.gpus[0].fail["nvmlDeviceGetPowerUsage"]
    assert s.sample().gpus[0].power_watts == pytest.approx(123.456)


def test_unexpected_exception_is_reported_not_raised(
    proc: Proc, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-NVML exception (a bug) becomes an error in the sample; sample() still returns."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)

    def broken(handle: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(nv, "nvmlDeviceGetPowerUsage", broken, raising=False)
    gpu = s.sample().gpus[0]
    assert gpu.errors and "boom" in gpu.errors[0]


# -- per-process memory -------------------------------------------------------------------------


def test_process_memory_none_is_kept_as_unknown(proc: Proc, clock: Clock) -> None:
    """usedGpuMemory None (the driver cannot tell) is reported as None, not 0."""
    nv = FakeNvml([FakeGpu(processes=[(300, None), (200, 5 * GIB)])])
    gpu = sampler(nv, proc, clock).sample(slow=True).gpus[0]
    assert gpu.processes == (ProcessMemory(200, 5 * GIB), ProcessMemory(300, None))


def test_slow_calls_are_made_at_the_slower_rate(proc: Proc, clock: Clock) -> None:
    """Energy and per-process memory: read at the probe, then not until slow_interval_s passed."""
    nv = fake_nvml.discrete()
    s = NvmlSampler(
        nv, clock=clock, slow_interval_s=60, meminfo_path=proc[0], pressure_path=proc[1]
    )
    s.start()
    probed_at = clock.now
    clock.now += 15
    gpu = s.sample().gpus[0]
    assert nv.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 1
    assert nv.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert gpu.slow_ts == probed_at
    assert gpu.energy_joules == pytest.approx(987_654.321)
    clock.now += 45
    gpu = s.sample().gpus[0]
    assert nv.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 2
    assert nv.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2
    assert gpu.slow_ts == clock.now


def test_slow_call_failing_shows_none_not_a_stale_value(proc: Proc, clock: Clock) -> None:
    """A transient error on the slow read empties that value until the next slow read."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    nv.gpus[0].fail["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVMLError_Unknown
    gpu = s.sample(slow=True).gpus[0]
    assert gpu.energy_joules is None
    assert gpu.processes is not None


def test_sample_without_slow_calls_makes_none(proc: Proc, clock: Clock) -> None:
    """sample(slow=False) (what the bench times) never calls energy or the process list."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    clock.now += 3600
    s.sample(slow=False)
    assert nv.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert nv.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 1


def test_process_memory_falls_back_to_v2(proc: Proc, clock: Clock) -> None:
    """A driver without ..._v3 answers through ..._v2."""
    nv = fake_nvml.old_driver()
    gpu = sampler(nv, proc, clock).sample(slow=True).gpus[0]
    assert gpu.processes == (ProcessMemory(4242, 8 * GIB),)


# -- Xid ----------------------------------------------------------------------------------------


def test_xid_errors_are_drained_without_waiting(proc: Proc, clock: Clock) -> None:
    """Xids queued since the last sample appear once; the counter keeps their total."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    nv.inject_xid(0, 79)
    nv.inject_xid(0, 48)
    gpu = s.sample().gpus[0]
    assert gpu.xids == (79, 48)
    assert gpu.xid_total == 2
    gpu = s.sample().gpus[0]
    assert gpu.xids == ()
    assert gpu.xid_total == 2


def test_xid_registration_refused_is_unsupported(proc: Proc, clock: Clock) -> None:
    """Where events cannot be registered, xid is listed unsupported and never waited on."""
    nv = FakeNvml([FakeGpu(fail={"nvmlDeviceRegisterEvents": pynvml.NVMLError_NotSupported})])
    s = sampler(nv, proc, clock)
    s.sample()
    assert s.info.gpus[0].unsupported["xid"] == "Not Supported"
    assert nv.calls["nvmlEventSetWait_v2"] == 0
    assert nv.freed == 1


def test_close_frees_event_sets_and_shuts_nvml_down(proc: Proc, clock: Clock) -> None:
    """close() frees each event set and balances nvmlInit with one nvmlShutdown."""
    nv = fake_nvml.discrete()
    s = sampler(nv, proc, clock)
    s.close()
    s.close()
    assert nv.freed == 1
    assert nv.initialized == 0


# -- helpers ------------------------------------------------------------------------------------


def test_clock_event_names_decode_known_and_unknown_bits() -> None:
    """Known bits get NVML's names; unknown bits are kept as bit_N."""
    assert clock_event_names(0x001 | 0x040 | 0x800) == ("gpu_idle", "hw_thermal_slowdown", "bit_11")


def test_idle_gpu_is_not_throttled_but_a_power_capped_one_is(proc: Proc, clock: Clock) -> None:
    """gpu_idle alone is not throttling; sw_power_cap is."""
    nv = FakeNvml([FakeGpu(clock_events=0x001), FakeGpu(clock_events=0x005)])
    idle, capped = sampler(nv, proc, clock).sample().gpus
    assert not idle.throttled
    assert capped.throttled


def test_bench_runs_with_the_fake_and_ends_with_its_json_line() -> None:
    """bench/telemetry_sample.py --fake --smoke exits 0 and prints its JSON figures last."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "telemetry_sample.py"), "--fake", "--smoke"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["gpus"] == 1
    assert figures["sample_per_gpu_ms"] > 0
