"""A fake ``pynvml`` for the sampler: the same function names, the REAL exception classes.

nvidia-ml-py imports without a driver, so its NVMLError tree (NVMLError_NotSupported, ...) is what
the fake raises: code that catches the wrong class fails here as it would on a real box. Each
scenario below is a box from docs/telemetry.md; ``calls`` counts every call per function name so
tests can check that an unsupported call is never made again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

GIB = 1024**3

#: Every function the fake answers; all other attribute lookups fall through to AttributeError,
#: as a name missing from an older nvidia-ml-py would.
DEVICE_FUNCTIONS = (
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetTemperatureV",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetPerformanceState",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetAddressingMode",
    "nvmlDeviceRegisterEvents",
)


@dataclass
class FakeGpu:
    """One GPU's answers. ``fail`` maps a function name to the exception class it raises."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    utilization: int = 37  # percent
    memory_utilization: int = 12
    temperature: int = 41  # Celsius
    power_mw: int = 123_456
    power_limit_mw: int = 700_000
    energy_mj: int = 987_654_321
    sm_clock_mhz: int = 1980
    memory_clock_mhz: int = 2619
    fan_percent: int = 30
    pstate: int = 0
    clock_events: int = 0x004  # sw_power_cap
    memory_total: int = 80 * GIB
    memory_used: int = 20 * GIB
    processes: list[tuple[int, int | None]] = field(default_factory=lambda: [(4242, 8 * GIB)])
    addressing_mode: int = 0  # none
    fail: dict[str, type[pynvml.NVMLError]] = field(default_factory=dict)
    lost: bool = False
    xids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeEventSet:
    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []


class FakeNvml:
    """Module-shaped fake: pass an instance where the sampler wants ``pynvml``."""

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        init_error: type[pynvml.NVMLError] | None = None,
        driver: str = "580.95.05",
        omit: tuple[str, ...] = (),
    ) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.init_error = init_error
        self.driver = driver
        self.omit = set(omit)  # function names this "nvidia-ml-py" does not have at all
        self.calls: Counter[str] = Counter()
        self.initialized = 0
        self.event_sets: list[FakeEventSet] = []
        self.freed = 0

    # The real module's exception classes and constants, so `except nv.NVMLError_...` is real.
    def __getattr__(self, name: str) -> Any:
        if name.startswith(("NVMLError", "NVML_", "nvmlMemory_", "nvmlEventType")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def __getattribute__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "__dict__").get("omit", ()):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    # -- helpers for tests ---------------------------------------------------------------------

    def lose(self, index: int) -> None:
        """From now on every call on GPU ``index`` answers GPU_IS_LOST."""
        self.gpus[index].lost = True

    def recover(self, index: int) -> None:
        self.gpus[index].lost = False

    def inject_xid(self, index: int, xid: int) -> None:
        self.gpus[index].xids.append(xid)

    def _gpu(self, fn: str, handle: FakeHandle) -> FakeGpu:
        self.calls[fn] += 1
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        error = gpu.fail.get(fn)
        if error is not None:
            raise error()
        return gpu

    # -- system --------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise self.init_error()
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "13." + self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self.calls["nvmlDeviceGetHandleByIndex"] += 1
        if self.gpus[index].lost:
            raise pynvml.NVMLError_GpuIsLost()
        return FakeHandle(index)

    # -- per device ----------------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, h: FakeHandle) -> str:
        return self._gpu("nvmlDeviceGetUUID", h).uuid

    def nvmlDeviceGetName(self, h: FakeHandle) -> str:
        return self._gpu("nvmlDeviceGetName", h).name

    def nvmlDeviceGetUtilizationRates(self, h: FakeHandle) -> SimpleNamespace:
        g = self._gpu("nvmlDeviceGetUtilizationRates", h)
        return SimpleNamespace(gpu=g.utilization, memory=g.memory_utilization)

    def nvmlDeviceGetTemperature(self, h: FakeHandle, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu("nvmlDeviceGetTemperature", h).temperature

    def nvmlDeviceGetTemperatureV(self, h: FakeHandle, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu("nvmlDeviceGetTemperatureV", h).temperature

    def nvmlDeviceGetPowerUsage(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", h).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", h).power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetTotalEnergyConsumption", h).energy_mj

    def nvmlDeviceGetClockInfo(self, h: FakeHandle, kind: int) -> int:
        # The memory clock is its own "function" so a scenario can refuse it alone.
        fn = "nvmlDeviceGetClockInfo" + ("" if kind == pynvml.NVML_CLOCK_SM else ":mem")
        g = self._gpu(fn, h)
        return g.sm_clock_mhz if kind == pynvml.NVML_CLOCK_SM else g.memory_clock_mhz

    def nvmlDeviceGetFanSpeed(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetFanSpeed", h).fan_percent

    def nvmlDeviceGetPerformanceState(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetPerformanceState", h).pstate

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", h).clock_events

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksThrottleReasons", h).clock_events

    def nvmlDeviceGetMemoryInfo(self, h: FakeHandle, version: int | None = None) -> SimpleNamespace:
        fn = "nvmlDeviceGetMemoryInfo" + (":v2" if version else "")
        g = self._gpu(fn, h)
        free = g.memory_total - g.memory_used
        return SimpleNamespace(total=g.memory_total, used=g.memory_used, free=free)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, h: FakeHandle) -> list[SimpleNamespace]:
        g = self._gpu("nvmlDeviceGetComputeRunningProcesses_v3", h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in g.processes]

    def nvmlDeviceGetComputeRunningProcesses_v2(self, h: FakeHandle) -> list[SimpleNamespace]:
        g = self._gpu("nvmlDeviceGetComputeRunningProcesses_v2", h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in g.processes]

    def nvmlDeviceGetAddressingMode(self, h: FakeHandle) -> int:
        return self._gpu("nvmlDeviceGetAddressingMode", h).addressing_mode

    # -- events (Xid) --------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> FakeEventSet:
        event_set = FakeEventSet()
        self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(self, h: FakeHandle, types: int, event_set: FakeEventSet) -> None:
        self._gpu("nvmlDeviceRegisterEvents", h)
        assert types & pynvml.nvmlEventTypeXidCriticalError
        event_set.handles.append(h)

    def nvmlEventSetWait_v2(self, event_set: FakeEventSet, timeout_ms: int) -> SimpleNamespace:
        self.calls["nvmlEventSetWait_v2"] += 1
        assert timeout_ms == 0, "the sampler must never wait for events"
        for h in event_set.handles:
            gpu = self.gpus[h.index]
            if gpu.lost:
                raise pynvml.NVMLError_GpuIsLost()
            if gpu.xids:
                return SimpleNamespace(
                    device=h,
                    eventType=pynvml.nvmlEventTypeXidCriticalError,
                    eventData=gpu.xids.pop(0),
                )
        raise pynvml.NVMLError_Timeout()

    def nvmlEventSetFree(self, event_set: FakeEventSet) -> None:
        self.freed += 1


# -- scenarios (docs/telemetry.md) -------------------------------------------------------------

NOT_SUPPORTED = pynvml.NVMLError_NotSupported


def discrete() -> FakeNvml:
    """An H100 SXM: dedicated HBM, no fan (NOT_SUPPORTED), everything else answers."""
    return FakeNvml([FakeGpu(fail={"nvmlDeviceGetFanSpeed": NOT_SUPPORTED})])


def gb10(**overrides: Any) -> FakeNvml:
    """A DGX Spark: memory info (v1 and v2), fan, power limit and memory clock NOT_SUPPORTED."""
    gpu = FakeGpu(
        name="NVIDIA GB10",
        uuid="GPU-gb10-0000-1111-2222-333333333333",
        addressing_mode=2,  # ats
        memory_clock_mhz=0,
        fail={
            "nvmlDeviceGetMemoryInfo": NOT_SUPPORTED,
            "nvmlDeviceGetMemoryInfo:v2": NOT_SUPPORTED,
            "nvmlDeviceGetFanSpeed": NOT_SUPPORTED,
            "nvmlDeviceGetEnforcedPowerLimit": NOT_SUPPORTED,
            "nvmlDeviceGetClockInfo:mem": NOT_SUPPORTED,
        },
    )
    for key, value in overrides.items():
        setattr(gpu, key, value)
    return FakeNvml([gpu], driver="580.95.05")


def gb10_memory_reports_host(mem_total_bytes: int) -> FakeNvml:
    """A GB10 whose driver answers memory info with the host's pool (total ~ MemTotal)."""
    nv = gb10()
    gpu = nv.gpus[0]
    del gpu.fail["nvmlDeviceGetMemoryInfo"], gpu.fail["nvmlDeviceGetMemoryInfo:v2"]
    gpu.memory_total = mem_total_bytes
    gpu.memory_used = mem_total_bytes // 3
    return nv


def library_not_found() -> FakeNvml:
    return FakeNvml([], init_error=pynvml.NVMLError_LibraryNotFound)


def driver_not_loaded() -> FakeNvml:
    return FakeNvml([], init_error=pynvml.NVMLError_DriverNotLoaded)


def old_driver() -> FakeNvml:
    """A driver without the Blackwell-era names and without energy counters: FUNCTION_NOT_FOUND."""
    fnf = pynvml.NVMLError_FunctionNotFound
    return FakeNvml(
        [
            FakeGpu(
                fail={
                    "nvmlDeviceGetCurrentClocksEventReasons": fnf,
                    "nvmlDeviceGetTotalEnergyConsumption": fnf,
                    "nvmlDeviceGetComputeRunningProcesses_v3": fnf,
                    "nvmlDeviceGetAddressingMode": fnf,
                }
            )
        ]
    )
