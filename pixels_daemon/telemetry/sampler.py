"""GPU telemetry through NVML, with NVML passed in.

Rules (everything that decides which NVML call is made, and when, lives here):

- NVML is a parameter: the ``pynvml`` module of nvidia-ml-py in the daemon, a fake with the same
  names and the same exception classes in tests. ``None`` (the package is not installed) disables
  GPU telemetry; host memory is still sampled.
- ``start()`` runs ``nvmlInit`` and probes every metric of the table below once per GPU. A metric
  is a list of alternative calls: the first that answers is kept; one that answers
  FUNCTION_NOT_FOUND or ARGUMENT_VERSION_MISMATCH (older or newer driver) passes to the next; one
  that answers NOT_SUPPORTED, NO_PERMISSION or INVALID_ARGUMENT, for every alternative, makes the
  metric unsupported on that GPU, and it is never called again. A call that later starts to answer
  so is dropped the same way.
- ``nvmlInit`` failing (library not found: no driver installed; driver not loaded; anything else)
  disables GPU telemetry with ONE reason string, ``disabled_reason``. Nothing is retried.
- ``sample()`` never raises. GPU_IS_LOST (or RESET_REQUIRED) from any call sets that GPU's health
  flag and stops calling it for that sample; each later sample makes one call to see whether it
  came back. Any other error leaves that value empty for this sample, is listed in the sample's
  ``errors``, and the call stays in the rotation.
- The slow calls, total energy (about 3 ms on an H100, measured: hundreds of times any other
  call) and per-process GPU memory, are read at most once per ``slow_interval_s``; every sample
  carries their latest reading and when it was taken (``slow_ts``).
- Memory is *unified* when the GPU's memory info answers NOT_SUPPORTED (GB10), or answers with a
  total within ``UNIFIED_TOLERANCE`` of host MemTotal on a GPU that does not say it has plain
  (non-ATS) addressing (some GB10 drivers). Unified memory is never reported as GPU memory: it
  is the host's, read from /proc/meminfo, and the memory call is not polled.
- Xid errors, where the driver lets us register for them, are drained (without waiting) from one
  NVML event set per GPU on each sample.
- Not thread-safe: one thread at a time. ``TelemetryService`` runs it in a single worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from msgspec import Struct

from pixels_daemon.telemetry.meminfo import (
    MEMINFO_PATH,
    PRESSURE_PATH,
    HostMemory,
    MemoryPressure,
    read_meminfo,
    read_pressure,
)

Health = Literal["ok", "lost", "reset_required"]
MemoryModel = Literal["dedicated", "unified", "unknown"]

#: How often the slow calls are made. Total energy took ~2.8 ms (p90 5.6 ms) per call on an H100
#: (docs/telemetry.md), more than the rest of a sample together; it is a counter, so reading it
#: less often loses resolution, not energy. Per-process memory walks every context on the GPU;
#: who holds GPU memory changes on a scale of minutes.
DEFAULT_SLOW_INTERVAL_S = 60.0

#: A GPU memory total this close to host MemTotal is the unified pool reported back, not HBM.
UNIFIED_TOLERANCE = 0.05

#: Most Xid events taken from one GPU's event set per sample, so a storm cannot stall a sample;
#: the rest wait for the next one.
MAX_XIDS_PER_SAMPLE = 32

#: nvmlDeviceGetAddressingMode values (NVML 580+). ATS = the GPU shares the CPU's page tables
#: over a coherent link (GB10, GH200); HMM = software-managed sharing on a discrete GPU.
ADDRESSING_MODES = {0: "none", 1: "hmm", 2: "ats"}

#: Clock-event (throttle) reason bits, NVML's names in snake case. "Throttling" in reports means
#: one of THROTTLE_REASONS: idle, application clocks and sync boost are not the GPU being held back.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
THROTTLE_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)


def clock_event_names(mask: int) -> tuple[str, ...]:
    """The names of the reason bits set in ``mask``, unknown bits as ``bit_N``."""
    names = []
    for bit in range(mask.bit_length()):
        if mask & (1 << bit):
            names.append(CLOCK_EVENT_REASONS.get(1 << bit, f"bit_{bit}"))
    return tuple(names)


class ProcessMemory(Struct, frozen=True):
    """GPU memory held by one process; ``used_bytes`` None where the driver cannot tell."""

    pid: int
    used_bytes: int | None


class GpuSample(Struct, frozen=True, kw_only=True):
    """One GPU at one instant, in base units. None: unsupported, or failed this time."""

    index: int
    uuid: str
    health: Health = "ok"
    utilization_ratio: float | None = None
    memory_copy_utilization_ratio: float | None = None  # memory controller busy share
    temperature_celsius: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    energy_joules: float | None = None  # since the driver loaded (a counter); slow tier
    sm_clock_hertz: float | None = None
    memory_clock_hertz: float | None = None
    fan_speed_ratio: float | None = None
    performance_state: int | None = None  # P0 (fastest) .. P15
    clock_event_reasons: int | None = None  # bit mask; see CLOCK_EVENT_REASONS
    memory_used_bytes: int | None = None  # dedicated memory only; never unified memory
    memory_total_bytes: int | None = None
    processes: tuple[ProcessMemory, ...] | None = None  # per-process memory; slow tier
    slow_ts: float | None = None  # when energy and processes were read (unix seconds)
    xids: tuple[int, ...] = ()  # Xid codes reported since the previous sample
    xid_total: int = 0  # Xid events seen since the sampler started (a counter)
    errors: tuple[str, ...] = ()  # "metric: error" for calls that failed this time

    @property
    def throttled(self) -> bool:
        """Whether a power or thermal reason is holding the clocks down now."""
        mask = self.clock_event_reasons or 0
        return any(name in THROTTLE_REASONS for name in clock_event_names(mask))


class GpuInfo(Struct, frozen=True, kw_only=True):
    """What a GPU is and what this box's driver answers for it."""

    index: int
    uuid: str
    name: str
    memory: MemoryModel
    addressing_mode: str | None
    supported: tuple[str, ...]
    unsupported: dict[str, str]  # metric -> why it is not polled


class TelemetryInfo(Struct, frozen=True, kw_only=True):
    """What the sampler found at start: whether GPU telemetry is on, and each GPU's metrics."""

    gpu_enabled: bool
    disabled_reason: str | None = None
    driver_version: str | None = None
    nvml_version: str | None = None
    gpus: tuple[GpuInfo, ...] = ()


class TelemetrySample(Struct, frozen=True, kw_only=True):
    """One full sample: every GPU, host memory and memory pressure."""

    ts: float  # unix seconds when the sample began
    duration_s: float  # wall time the sample took
    info: TelemetryInfo
    gpus: tuple[GpuSample, ...] = ()
    host: HostMemory | None = None
    pressure: MemoryPressure | None = None
    unified: bool = False  # host memory is (also) the GPU's memory

    def gpu(self, index: int) -> GpuSample | None:
        return next((g for g in self.gpus if g.index == index), None)


Reader = Callable[[Any, Any], dict[str, Any]]


def _utilization(nv: Any, h: Any) -> dict[str, Any]:
    u = nv.nvmlDeviceGetUtilizationRates(h)
    return {"utilization_ratio": u.gpu / 100, "memory_copy_utilization_ratio": u.memory / 100}


def _temperature(nv: Any, h: Any) -> dict[str, Any]:
    # Deprecated in CUDA 13 in favour of ...TemperatureV, but one ctypes call cheaper; the V form
    # is the fallback for the driver that drops it (FUNCTION_NOT_FOUND).
    return {"temperature_celsius": float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))}


def _temperature_v(nv: Any, h: Any) -> dict[str, Any]:
    return {"temperature_celsius": float(nv.nvmlDeviceGetTemperatureV(h, nv.NVML_TEMPERATURE_GPU))}


def _power(nv: Any, h: Any) -> dict[str, Any]:
    return {"power_watts": nv.nvmlDeviceGetPowerUsage(h) / 1000}  # milliwatts


def _power_limit(nv: Any, h: Any) -> dict[str, Any]:
    return {"power_limit_watts": nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000}


def _energy(nv: Any, h: Any) -> dict[str, Any]:
    return {"energy_joules": nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000}  # millijoules


def _sm_clock(nv: Any, h: Any) -> dict[str, Any]:
    return {"sm_clock_hertz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) * 1e6}  # MHz


def _memory_clock(nv: Any, h: Any) -> dict[str, Any]:
    return {"memory_clock_hertz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM) * 1e6}


def _fan(nv: Any, h: Any) -> dict[str, Any]:
    return {"fan_speed_ratio": nv.nvmlDeviceGetFanSpeed(h) / 100}


def _performance_state(nv: Any, h: Any) -> dict[str, Any]:
    state = int(nv.nvmlDeviceGetPerformanceState(h))
    return {"performance_state": None if state == nv.NVML_PSTATE_UNKNOWN else state}


def _clock_events(nv: Any, h: Any) -> dict[str, Any]:
    return {"clock_event_reasons": int(nv.nvmlDeviceGetCurrentClocksEventReasons(h))}


def _throttle_reasons(nv: Any, h: Any) -> dict[str, Any]:
    # The pre-Blackwell name of the same call.
    return {"clock_event_reasons": int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(h))}


def _memory_v2(nv: Any, h: Any) -> dict[str, Any]:
    # v2's "used" leaves out memory the driver reserves for itself, as nvidia-smi shows it.
    m = nv.nvmlDeviceGetMemoryInfo(h, version=nv.nvmlMemory_v2)
    return {"memory_used_bytes": int(m.used), "memory_total_bytes": int(m.total)}


def _memory_v1(nv: Any, h: Any) -> dict[str, Any]:
    m = nv.nvmlDeviceGetMemoryInfo(h)
    return {"memory_used_bytes": int(m.used), "memory_total_bytes": int(m.total)}


def _processes(call: str) -> Reader:
    def read(nv: Any, h: Any) -> dict[str, Any]:
        procs = getattr(nv, call)(h)
        return {
            "processes": tuple(
                sorted(
                    (ProcessMemory(int(p.pid), _int_or_none(p.usedGpuMemory)) for p in procs),
                    key=lambda p: p.pid,
                )
            )
        }

    return read


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int) else None


@dataclass(frozen=True)
class Metric:
    """A metric and its alternative calls, preferred first."""

    name: str
    calls: tuple[Reader, ...]


#: Polled on every sample, in this order.
METRICS: tuple[Metric, ...] = (
    Metric("utilization", (_utilization,)),
    Metric("temperature", (_temperature, _temperature_v)),
    Metric("power", (_power,)),
    Metric("power_limit", (_power_limit,)),
    Metric("sm_clock", (_sm_clock,)),
    Metric("memory_clock", (_memory_clock,)),
    Metric("fan", (_fan,)),
    Metric("performance_state", (_performance_state,)),
    Metric("clock_events", (_clock_events, _throttle_reasons)),
    Metric("memory", (_memory_v2, _memory_v1)),
)
#: Polled every DEFAULT_SLOW_INTERVAL_S. The unversioned process call is avoided: pynvml wraps
#: its FUNCTION_NOT_FOUND into an exception outside the NVMLError tree.
SLOW_METRICS: tuple[Metric, ...] = (
    Metric("energy", (_energy,)),
    Metric(
        "processes",
        (
            _processes("nvmlDeviceGetComputeRunningProcesses_v3"),
            _processes("nvmlDeviceGetComputeRunningProcesses_v2"),
        ),
    ),
)
#: Every metric name a GPU reports as supported or unsupported.
METRIC_NAMES: tuple[str, ...] = (*(m.name for m in METRICS + SLOW_METRICS), "xid")


class _Lost(Exception):
    """The GPU answered GPU_IS_LOST or RESET_REQUIRED; ``args[0]`` is the health to report."""


@dataclass
class _Gpu:
    index: int
    handle: Any
    uuid: str
    name: str
    health: Health = "ok"
    probed: bool = False
    readers: list[tuple[str, Reader]] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)
    slow_readers: list[tuple[str, Reader]] = field(default_factory=list)
    event_set: Any = None
    memory: MemoryModel = "unknown"
    addressing_mode: str | None = None
    slow_values: dict[str, Any] = field(default_factory=dict)
    slow_ts: float | None = None
    xid_total: int = 0


class NvmlSampler:
    """Samples every GPU through ``nvml`` plus host memory and pressure. See the module rules."""

    def __init__(
        self,
        nvml: Any | None,
        *,
        clock: Callable[[], float] = time.time,
        slow_interval_s: float = DEFAULT_SLOW_INTERVAL_S,
        meminfo_path: Path = MEMINFO_PATH,
        pressure_path: Path = PRESSURE_PATH,
    ) -> None:
        self._nv = nvml
        self._clock = clock
        self._slow_interval_s = slow_interval_s
        self._meminfo_path = meminfo_path
        self._pressure_path = pressure_path
        self._gpus: list[_Gpu] = []
        self._initialized = False
        self._driver: str | None = None
        self._nvml_version: str | None = None
        self._disabled_reason: str | None = (
            None
            if nvml is not None
            else "nvidia-ml-py is not installed (no module pynvml): GPU telemetry is off; "
            "install it with: pip install 'nvidia-ml-py>=13.580'"
        )
        self._info: TelemetryInfo | None = None
        if nvml is not None:
            self._lost_errors: dict[type[BaseException], Health] = {
                nvml.NVMLError_GpuIsLost: "lost",
                nvml.NVMLError_ResetRequired: "reset_required",
            }
            # Answers that mean "not on this GPU / not with these rights": stop calling it.
            self._refusals: tuple[type[BaseException], ...] = (
                nvml.NVMLError_NotSupported,
                nvml.NVMLError_NoPermission,
                nvml.NVMLError_InvalidArgument,
            )
            # Answers that mean "not in this driver / binding": try the next alternative.
            self._missing: tuple[type[BaseException], ...] = (
                nvml.NVMLError_FunctionNotFound,
                nvml.NVMLError_ArgumentVersionMismatch,
                AttributeError,  # a name this nvidia-ml-py does not have
            )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TelemetryInfo:
        """Initialise NVML and probe every GPU. Never raises; see ``info.disabled_reason``."""
        nv = self._nv
        if nv is None or self._initialized or self._disabled_reason is not None:
            return self.info  # started already, or disabled: nothing is retried
        try:
            nv.nvmlInit()
        except nv.NVMLError_LibraryNotFound:
            self._disabled_reason = (
                "NVML library not found (libnvidia-ml.so.1): no NVIDIA driver is installed; "
                "GPU telemetry is off"
            )
            return self.info
        except nv.NVMLError_DriverNotLoaded:
            self._disabled_reason = (
                "NVIDIA driver not loaded (nvmlInit: Driver Not Loaded): GPU telemetry is off; "
                "check that the nvidia kernel module is loaded (nvidia-smi)"
            )
            return self.info
        except nv.NVMLError as err:
            self._disabled_reason = f"NVML failed to initialise ({err}): GPU telemetry is off"
            return self.info
        self._initialized = True
        self._driver = _text(_try(nv.nvmlSystemGetDriverVersion))
        self._nvml_version = _text(_try(nv.nvmlSystemGetNVMLVersion))
        try:
            count = int(nv.nvmlDeviceGetCount())
        except nv.NVMLError as err:
            self._disabled_reason = f"NVML could not count GPUs ({err}): GPU telemetry is off"
            return self.info
        if count == 0:
            self._disabled_reason = "NVML found no GPU: GPU telemetry is off"
            return self.info
        host = read_meminfo(self._meminfo_path)
        for index in range(count):
            gpu = self._open(index)
            if gpu.health == "ok":
                self._probe(gpu, host)
            self._gpus.append(gpu)
        self._info = None
        return self.info

    def close(self) -> None:
        """Free the event sets and release NVML (reference-counted). Never raises."""
        nv = self._nv
        if nv is None or not self._initialized:
            return
        for gpu in self._gpus:
            if gpu.event_set is not None:
                _try(nv.nvmlEventSetFree, gpu.event_set)
                gpu.event_set = None
        _try(nv.nvmlShutdown)
        self._initialized = False
        self._info = None

    @property
    def disabled_reason(self) -> str | None:
        return self._disabled_reason

    @property
    def info(self) -> TelemetryInfo:
        if self._info is None:
            self._info = TelemetryInfo(
                gpu_enabled=self._disabled_reason is None and self._initialized,
                disabled_reason=self._disabled_reason,
                driver_version=self._driver,
                nvml_version=self._nvml_version,
                gpus=tuple(
                    GpuInfo(
                        index=g.index,
                        uuid=g.uuid,
                        name=g.name,
                        memory=g.memory,
                        addressing_mode=g.addressing_mode,
                        supported=tuple(name for name, _ in g.readers + g.slow_readers)
                        + (("xid",) if g.event_set is not None else ()),
                        unsupported=dict(g.unsupported),
                    )
                    for g in self._gpus
                ),
            )
        return self._info

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, *, slow: bool | None = None) -> TelemetrySample:
        """Sample everything once. Never raises.

        ``slow``: True forces the slow calls (energy, per-process memory), False skips them, None
        (default) makes them when ``slow_interval_s`` has passed since they were last made.
        """
        started = time.perf_counter()
        now = self._clock()
        host = read_meminfo(self._meminfo_path)
        pressure = read_pressure(self._pressure_path)
        gpus = tuple(self._sample_gpu(gpu, host, now, slow) for gpu in self._gpus)
        return TelemetrySample(
            ts=now,
            duration_s=time.perf_counter() - started,
            info=self.info,
            gpus=gpus,
            host=host,
            pressure=pressure,
            unified=any(g.memory == "unified" for g in self._gpus),
        )

    def _sample_gpu(
        self, gpu: _Gpu, host: HostMemory | None, now: float, slow: bool | None
    ) -> GpuSample:
        try:
            if gpu.health != "ok" and not self._recovered(gpu, host):
                return self._empty(gpu)
            values: dict[str, Any] = {}
            errors: list[str] = []
            for name, reader in list(gpu.readers):
                self._poll(gpu, name, reader, values, errors)
            due = gpu.slow_ts is None or now - gpu.slow_ts >= self._slow_interval_s
            if gpu.slow_readers and (slow or (slow is None and due)):
                got: dict[str, Any] = {}
                for name, reader in list(gpu.slow_readers):
                    self._poll(gpu, name, reader, got, errors)
                # Replaced whole: a slow call that failed this time shows None, not a stale value.
                gpu.slow_values, gpu.slow_ts = got, now
            xids = self._drain_xids(gpu, errors)
            gpu.xid_total += len(xids)
        except _Lost as lost:
            gpu.health = lost.args[0]
            self._info = None
            return self._empty(gpu)
        except Exception as err:  # never out of sample(): a bug here must not stop telemetry
            return self._empty(gpu, errors=(f"sampler: {err!r}",))
        return GpuSample(
            index=gpu.index,
            uuid=gpu.uuid,
            slow_ts=gpu.slow_ts,
            xids=xids,
            xid_total=gpu.xid_total,
            errors=tuple(errors),
            **values,
            **gpu.slow_values,
        )

    @staticmethod
    def _empty(gpu: _Gpu, errors: tuple[str, ...] = ()) -> GpuSample:
        """A GPU with no readings this time (lost, or the sampler itself failed)."""
        return GpuSample(
            index=gpu.index,
            uuid=gpu.uuid,
            health=gpu.health,
            xid_total=gpu.xid_total,
            errors=errors,
        )

    def _poll(
        self, gpu: _Gpu, name: str, reader: Reader, out: dict[str, Any], errors: list[str]
    ) -> None:
        """One call of a supported metric; a refusal drops it, a lost GPU raises _Lost."""
        nv = self._nv
        assert nv is not None
        try:
            out.update(reader(nv, gpu.handle))
        except nv.NVMLError as err:
            health = self._lost_health(err)
            if health is not None:
                raise _Lost(health) from None
            if isinstance(err, self._refusals + self._missing):
                self._drop(gpu, name, _reason(err))
            else:
                errors.append(f"{name}: {_reason(err)}")

    def _drop(self, gpu: _Gpu, name: str, reason: str) -> None:
        gpu.readers = [(n, r) for n, r in gpu.readers if n != name]
        gpu.slow_readers = [(n, r) for n, r in gpu.slow_readers if n != name]
        gpu.unsupported[name] = reason
        self._info = None

    def _drain_xids(self, gpu: _Gpu, errors: list[str]) -> tuple[int, ...]:
        nv = self._nv
        if gpu.event_set is None or nv is None:
            return ()
        xids: list[int] = []
        for _ in range(MAX_XIDS_PER_SAMPLE):
            try:
                data = nv.nvmlEventSetWait_v2(gpu.event_set, 0)  # 0 ms: never block the sample
            except nv.NVMLError_Timeout:
                break
            except nv.NVMLError as err:
                if self._lost_health(err) is not None:
                    raise _Lost(self._lost_health(err)) from None
                errors.append(f"xid: {_reason(err)}")
                break
            if int(data.eventType) & nv.nvmlEventTypeXidCriticalError:
                xids.append(int(data.eventData))
        return tuple(xids)

    def _recovered(self, gpu: _Gpu, host: HostMemory | None) -> bool:
        """One call to a GPU marked lost: has it come back?"""
        nv = self._nv
        assert nv is not None
        if gpu.handle is None:
            reopened = self._open(gpu.index)
            if reopened.handle is None:
                return False
            gpu.handle, gpu.uuid, gpu.name = reopened.handle, reopened.uuid, reopened.name
        if not gpu.probed:
            self._probe(gpu, host)
            return gpu.health == "ok"
        reader = gpu.readers[0][1] if gpu.readers else _temperature
        try:
            reader(nv, gpu.handle)
        except nv.NVMLError as err:
            health = self._lost_health(err)
            if health is not None:
                gpu.health = health
                return False
        gpu.health = "ok"
        self._info = None
        return True

    # -- start-up ------------------------------------------------------------------------------

    def _open(self, index: int) -> _Gpu:
        nv = self._nv
        assert nv is not None
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
        except nv.NVMLError as err:
            return _Gpu(
                index, None, f"gpu-{index}", "unknown", health=self._lost_health(err) or "lost"
            )
        uuid = _text(_try(nv.nvmlDeviceGetUUID, handle)) or f"gpu-{index}"
        name = _text(_try(nv.nvmlDeviceGetName, handle)) or "unknown"
        return _Gpu(index, handle, uuid, name)

    def _probe(self, gpu: _Gpu, host: HostMemory | None) -> None:
        """Find which call of each metric answers on this GPU. Sets health if the GPU is lost."""
        nv = self._nv
        assert nv is not None
        if gpu.handle is None:
            return
        gpu.readers, gpu.slow_readers, gpu.unsupported = [], [], {}
        memory: dict[str, Any] | None = None
        slow_values: dict[str, Any] = {}
        try:
            for metric in METRICS + SLOW_METRICS:
                found = self._first_answering(gpu, metric)
                if found is None:
                    continue
                reader, values = found
                if metric.name == "memory":
                    memory = values
                if metric in SLOW_METRICS:
                    gpu.slow_readers.append((metric.name, reader))
                    slow_values.update(values)
                else:
                    gpu.readers.append((metric.name, reader))
            # The probe's slow readings count: the first sample need not pay for them again.
            gpu.slow_values, gpu.slow_ts = slow_values, self._clock()
            gpu.addressing_mode = self._addressing_mode(gpu)
            self._classify_memory(gpu, memory, host)
            self._register_xids(gpu)
        except _Lost as lost:
            gpu.health = lost.args[0]
            return
        gpu.probed = True
        gpu.health = "ok"
        self._info = None

    def _first_answering(self, gpu: _Gpu, metric: Metric) -> tuple[Reader, dict[str, Any]] | None:
        nv = self._nv
        assert nv is not None
        reason = "not supported"
        for reader in metric.calls:
            try:
                return reader, reader(nv, gpu.handle)
            except self._missing as err:
                reason = _reason(err)
            except nv.NVMLError as err:
                health = self._lost_health(err)
                if health is not None:
                    raise _Lost(health) from None
                if not isinstance(err, self._refusals):
                    # Answered, but with a transient error (UNKNOWN, TIMEOUT): keep polling it.
                    return reader, {}
                reason = _reason(err)
        gpu.unsupported[metric.name] = reason
        return None

    def _addressing_mode(self, gpu: _Gpu) -> str | None:
        nv = self._nv
        assert nv is not None
        try:
            mode = int(nv.nvmlDeviceGetAddressingMode(gpu.handle))
        except nv.NVMLError as err:
            health = self._lost_health(err)
            if health is not None:
                raise _Lost(health) from None
            return None
        except AttributeError:
            return None
        return ADDRESSING_MODES.get(mode, f"mode_{mode}")

    def _classify_memory(
        self, gpu: _Gpu, memory: dict[str, Any] | None, host: HostMemory | None
    ) -> None:
        if memory is None:
            gpu.memory = "unified"
            return
        total = memory.get("memory_total_bytes")
        looks_like_host = (
            host is not None
            and isinstance(total, int)
            and abs(total - host.total_bytes) <= UNIFIED_TOLERANCE * host.total_bytes
        )
        if looks_like_host and gpu.addressing_mode not in ("none", "hmm"):
            gpu.memory = "unified"
            gpu.readers = [(n, r) for n, r in gpu.readers if n != "memory"]
            gpu.unsupported["memory"] = "reports host memory (unified): read from /proc/meminfo"
        else:
            gpu.memory = "dedicated"

    def _register_xids(self, gpu: _Gpu) -> None:
        nv = self._nv
        assert nv is not None
        try:
            event_set = nv.nvmlEventSetCreate()
        except (nv.NVMLError, AttributeError) as err:
            gpu.unsupported["xid"] = _reason(err)
            return
        try:
            nv.nvmlDeviceRegisterEvents(gpu.handle, nv.nvmlEventTypeXidCriticalError, event_set)
        except (nv.NVMLError, AttributeError) as err:
            _try(nv.nvmlEventSetFree, event_set)
            health = self._lost_health(err)
            if health is not None:
                raise _Lost(health) from None
            gpu.unsupported["xid"] = _reason(err)
            return
        gpu.event_set = event_set

    def _lost_health(self, err: BaseException) -> Health | None:
        for cls, health in self._lost_errors.items():
            if isinstance(err, cls):
                return health
        return None


def import_nvml() -> Any | None:
    """The ``pynvml`` module of nvidia-ml-py, or None if it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _reason(err: BaseException) -> str:
    """A short reason: NVML's own error string ("Not Supported"), else the exception's repr."""
    try:
        text = str(err)
    except Exception:
        text = ""
    return text or type(err).__name__


def _try(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; None on any exception (for best-effort facts and for shutdown)."""
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None
