"""Prometheus text exposition of the latest telemetry sample and the plan's own metrics.

Names follow Prometheus and DCGM-exporter conventions: one prefix (``pixels_``), base units in the
name (``_bytes``, ``_seconds``, ``_celsius``, ``_watts``, ``_joules``, ``_hertz``), ``_total`` on
counters, ratios 0..1, GPU series labelled ``gpu`` (NVML index) and ``uuid``. A metric a GPU does
not support is absent for that GPU (never 0); ``pixels_gpu_metric_supported`` says which.

``TelemetryCollector`` is a prometheus-client custom collector reading snapshots through getters
at scrape time; ``render()`` is the same output for one fixed snapshot. The getters are called
from the scrape thread of ``prometheus_client.start_http_server``: hand them immutable snapshots
(a sample, a PlanMetrics) swapped by reference, never live state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import get_args

from msgspec import Struct
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from pixels_daemon.telemetry.sampler import (
    CLOCK_EVENT_REASONS,
    METRIC_NAMES,
    GpuSample,
    TelemetrySample,
    clock_event_names,
)
from protocol.messages import Severity, WorkstreamStatus

GPU_LABELS = ["gpu", "uuid"]
WORKSTREAM_STATUSES: tuple[str, ...] = get_args(WorkstreamStatus)
SEVERITIES: tuple[str, ...] = get_args(Severity)
#: The gate states the engine is expected to use; a state outside these is exported as well.
GATE_STATES: tuple[str, ...] = ("pending", "passed", "failed")


class PlanMetrics(Struct, kw_only=True):
    """The plan's own numbers, filled by the daemon. Every field may stay empty."""

    workstream_progress: Mapping[str, float] = {}  # workstream id -> ratio 0..1
    workstream_status: Mapping[str, str] = {}  # workstream id -> WorkstreamStatus
    escalations_open: Mapping[str, int] = {}  # severity -> open escalations
    gate_states: Mapping[str, str] = {}  # gate id -> state
    orchestrator_last_seen: Mapping[str, float] = {}  # orchestrator id -> unix seconds
    messages_ingested: Mapping[str, int] = {}  # orchestrator id -> durable messages applied
    ack_latency_count: int = 0  # acks sent since start
    ack_latency_sum_s: float = 0.0  # their summed receive-to-ack latency


class TelemetryStats(Struct, frozen=True, kw_only=True):
    """The service's own counters."""

    samples: int = 0
    skipped: int = 0


class TelemetryCollector(Collector):
    """A prometheus-client collector over the latest snapshots, fetched at each scrape."""

    def __init__(
        self,
        sample: Callable[[], TelemetrySample | None],
        plan: Callable[[], PlanMetrics | None] = lambda: None,
        stats: Callable[[], TelemetryStats] = TelemetryStats,
    ) -> None:
        self._sample = sample
        self._plan = plan
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        families = list(telemetry_metrics(self._sample(), self._stats()))
        plan = self._plan()
        if plan is not None:
            families.extend(plan_metrics(plan))
        # A family with no series (a metric no GPU supports, no workstream yet) is left out.
        return [f for f in families if f.samples]


def render(
    sample: TelemetrySample | None,
    plan: PlanMetrics | None = None,
    stats: TelemetryStats | None = None,
) -> bytes:
    """The text exposition (format 0.0.4) of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        TelemetryCollector(lambda: sample, lambda: plan, lambda: stats or TelemetryStats())
    )
    return generate_latest(registry)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=GPU_LABELS if labels is None else labels)


def telemetry_metrics(sample: TelemetrySample | None, stats: TelemetryStats) -> Iterable[Metric]:
    """The pixels_telemetry_*, pixels_gpu_*, pixels_host_* and pixels_memory_pressure_* families."""
    samples = CounterMetricFamily("pixels_telemetry_samples", "Telemetry samples taken.")
    samples.add_metric([], stats.samples)
    yield samples
    skipped = CounterMetricFamily(
        "pixels_telemetry_samples_skipped",
        "Samples skipped because the previous one was still running.",
    )
    skipped.add_metric([], stats.skipped)
    yield skipped
    if sample is None:
        return
    info = sample.info
    enabled = GaugeMetricFamily(
        "pixels_telemetry_gpu_enabled", "1 if GPU telemetry (NVML) is on, 0 if disabled."
    )
    enabled.add_metric([], 1 if info.gpu_enabled else 0)
    yield enabled
    ts = GaugeMetricFamily(
        "pixels_telemetry_last_sample_timestamp_seconds", "When the latest sample was taken."
    )
    ts.add_metric([], sample.ts)
    yield ts
    duration = GaugeMetricFamily(
        "pixels_telemetry_sample_duration_seconds", "Wall time the latest sample took."
    )
    duration.add_metric([], sample.duration_s)
    yield duration
    yield from _gpu_metrics(sample)
    yield from _host_metrics(sample)


def _gpu_metrics(sample: TelemetrySample) -> Iterable[Metric]:
    info = sample.info
    gpu_info = _gauge(
        "pixels_gpu_info",
        "GPU identity; memory is dedicated or unified (shared with the CPU).",
        [*GPU_LABELS, "name", "memory", "driver_version"],
    )
    supported = _gauge(
        "pixels_gpu_metric_supported",
        "1 if the driver answers this metric on this GPU, 0 if it is not polled.",
        [*GPU_LABELS, "metric"],
    )
    for g in info.gpus:
        gpu_info.add_metric([str(g.index), g.uuid, g.name, g.memory, info.driver_version or ""], 1)
        for metric in METRIC_NAMES:
            # A GPU lost before its probe has neither list: nothing is claimed for it.
            if metric in g.supported or metric in g.unsupported:
                answers = 1 if metric in g.supported else 0
                supported.add_metric([str(g.index), g.uuid, metric], answers)
    yield gpu_info
    yield supported

    up = _gauge("pixels_gpu_up", "1 if the GPU answers NVML, 0 if it is lost or needs a reset.")
    unified = _gauge(
        "pixels_gpu_unified_memory", "1 if the GPU's memory is the host's (see pixels_host_*)."
    )
    memory_of = {g.index: g.memory for g in info.gpus}
    for gpu in sample.gpus:
        labels = [str(gpu.index), gpu.uuid]
        up.add_metric(labels, 1 if gpu.health == "ok" else 0)
        unified.add_metric(labels, 1 if memory_of.get(gpu.index) == "unified" else 0)
    yield up
    yield unified

    def gauge(name: str, doc: str, value: Callable[[GpuSample], float | None]) -> Metric:
        family = _gauge(name, doc)
        for gpu in sample.gpus:
            v = value(gpu)
            if v is not None:
                family.add_metric([str(gpu.index), gpu.uuid], v)
        return family

    yield gauge(
        "pixels_gpu_utilization_ratio",
        "Share of the last sample period a kernel was running.",
        lambda g: g.utilization_ratio,
    )
    yield gauge(
        "pixels_gpu_memory_copy_utilization_ratio",
        "Share of the last sample period device memory was read or written.",
        lambda g: g.memory_copy_utilization_ratio,
    )
    yield gauge(
        "pixels_gpu_temperature_celsius", "GPU die temperature.", lambda g: g.temperature_celsius
    )
    yield gauge("pixels_gpu_power_watts", "Power draw.", lambda g: g.power_watts)
    yield gauge(
        "pixels_gpu_power_limit_watts", "Enforced power limit.", lambda g: g.power_limit_watts
    )
    energy = CounterMetricFamily(
        "pixels_gpu_energy_joules", "Energy used since the driver loaded.", labels=GPU_LABELS
    )
    for gpu in sample.gpus:
        if gpu.energy_joules is not None:
            energy.add_metric([str(gpu.index), gpu.uuid], gpu.energy_joules)
    yield energy
    yield gauge("pixels_gpu_sm_clock_hertz", "SM clock.", lambda g: g.sm_clock_hertz)
    yield gauge("pixels_gpu_memory_clock_hertz", "Memory clock.", lambda g: g.memory_clock_hertz)
    yield gauge(
        "pixels_gpu_fan_speed_ratio", "Fan speed, share of maximum.", lambda g: g.fan_speed_ratio
    )
    yield gauge(
        "pixels_gpu_performance_state",
        "Performance state: 0 (P0, fastest) to 15.",
        lambda g: g.performance_state,
    )
    reasons = _gauge(
        "pixels_gpu_clock_event_reason",
        "1 if this reason is holding the clocks down now (NVML clock-event reasons).",
        [*GPU_LABELS, "reason"],
    )
    for gpu in sample.gpus:
        if gpu.clock_event_reasons is None:
            continue
        active = set(clock_event_names(gpu.clock_event_reasons))
        for reason in sorted(set(CLOCK_EVENT_REASONS.values()) | active):
            reasons.add_metric([str(gpu.index), gpu.uuid, reason], 1 if reason in active else 0)
    yield reasons
    yield gauge(
        "pixels_gpu_throttled",
        "1 if a power or thermal reason is holding the clocks down now.",
        lambda g: None if g.clock_event_reasons is None else (1 if g.throttled else 0),
    )
    yield gauge(
        "pixels_gpu_memory_used_bytes",
        "Dedicated GPU memory in use (absent for unified memory: see pixels_host_memory_*).",
        lambda g: g.memory_used_bytes,
    )
    yield gauge(
        "pixels_gpu_memory_total_bytes", "Dedicated GPU memory.", lambda g: g.memory_total_bytes
    )
    procs = _gauge(
        "pixels_gpu_process_memory_used_bytes",
        "GPU memory held by a process (read at a slower rate).",
        [*GPU_LABELS, "pid"],
    )
    for gpu in sample.gpus:
        for p in gpu.processes or ():
            if p.used_bytes is not None:
                procs.add_metric([str(gpu.index), gpu.uuid, str(p.pid)], p.used_bytes)
    yield procs
    xids = CounterMetricFamily(
        "pixels_gpu_xid_errors", "Xid errors reported since the daemon started.", labels=GPU_LABELS
    )
    last_xid = _gauge("pixels_gpu_last_xid", "The latest Xid code seen in the last sample.")
    for gpu in sample.gpus:
        if "xid" in _supported(sample, gpu.index):
            xids.add_metric([str(gpu.index), gpu.uuid], gpu.xid_total)
        if gpu.xids:
            last_xid.add_metric([str(gpu.index), gpu.uuid], gpu.xids[-1])
    yield xids
    yield last_xid


def _supported(sample: TelemetrySample, index: int) -> tuple[str, ...]:
    return next((g.supported for g in sample.info.gpus if g.index == index), ())


def _host_metrics(sample: TelemetrySample) -> Iterable[Metric]:
    host = sample.host
    if host is not None:
        for name, doc, value in (
            ("pixels_host_memory_total_bytes", "MemTotal.", host.total_bytes),
            (
                "pixels_host_memory_available_bytes",
                "MemAvailable: allocatable without swapping.",
                host.available_bytes,
            ),
            ("pixels_host_swap_total_bytes", "SwapTotal.", host.swap_total_bytes),
            ("pixels_host_swap_free_bytes", "SwapFree.", host.swap_free_bytes),
        ):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        if sample.unified:
            total = GaugeMetricFamily(
                "pixels_unified_memory_total_bytes",
                "Memory shared by CPU and GPU (the host's MemTotal).",
            )
            total.add_metric([], host.total_bytes)
            yield total
            used = GaugeMetricFamily(
                "pixels_unified_memory_used_bytes",
                "Shared memory in use: MemTotal - MemAvailable.",
            )
            used.add_metric([], host.used_bytes)
            yield used
    pressure = sample.pressure
    if pressure is not None:
        ratio = GaugeMetricFamily(
            "pixels_memory_pressure_ratio",
            "Share of time tasks stalled on memory (PSI): some = at least one, full = all.",
            labels=["kind", "window"],
        )
        stalled = CounterMetricFamily(
            "pixels_memory_pressure_stalled_seconds",
            "Time tasks stalled on memory since boot (PSI).",
            labels=["kind"],
        )
        for kind, line in (("some", pressure.some), ("full", pressure.full)):
            if line is None:
                continue
            ratio.add_metric([kind, "10s"], line.avg10)
            ratio.add_metric([kind, "60s"], line.avg60)
            ratio.add_metric([kind, "300s"], line.avg300)
            stalled.add_metric([kind], line.total_seconds)
        yield ratio
        yield stalled


def plan_metrics(plan: PlanMetrics) -> Iterable[Metric]:
    """The pixels_workstream_*, pixels_escalations_*, pixels_gate_*, pixels_orchestrator_*,
    pixels_messages_* and pixels_ack_* families."""
    progress = GaugeMetricFamily(
        "pixels_workstream_progress_ratio", "Workstream progress, 0..1.", labels=["workstream"]
    )
    for ws, value in sorted(plan.workstream_progress.items()):
        progress.add_metric([ws], value)
    yield progress
    status = GaugeMetricFamily(
        "pixels_workstream_status",
        "1 for the workstream's current status, 0 for the others.",
        labels=["workstream", "status"],
    )
    for ws, current in sorted(plan.workstream_status.items()):
        for name in _states(WORKSTREAM_STATUSES, current):
            status.add_metric([ws, name], 1 if name == current else 0)
    yield status
    escalations = GaugeMetricFamily(
        "pixels_escalations_open", "Open escalations by severity.", labels=["severity"]
    )
    for severity in _states(SEVERITIES, *plan.escalations_open):
        escalations.add_metric([severity], plan.escalations_open.get(severity, 0))
    yield escalations
    gates = GaugeMetricFamily(
        "pixels_gate_state",
        "1 for the gate's current state, 0 for the others.",
        labels=["gate", "state"],
    )
    for gate, current in sorted(plan.gate_states.items()):
        for name in _states(GATE_STATES, current):
            gates.add_metric([gate, name], 1 if name == current else 0)
    yield gates
    seen = GaugeMetricFamily(
        "pixels_orchestrator_last_seen_timestamp_seconds",
        "When the daemon last heard from the orchestrator.",
        labels=["orchestrator"],
    )
    for orch, ts in sorted(plan.orchestrator_last_seen.items()):
        seen.add_metric([orch], ts)
    yield seen
    ingested = CounterMetricFamily(
        "pixels_messages_ingested",
        "Durable messages applied, per orchestrator.",
        labels=["orchestrator"],
    )
    for orch, count in sorted(plan.messages_ingested.items()):
        ingested.add_metric([orch], count)
    yield ingested
    yield SummaryMetricFamily(
        "pixels_ack_latency_seconds",
        "From receiving a durable message to sending its ack (after the commit).",
        count_value=plan.ack_latency_count,
        sum_value=plan.ack_latency_sum_s,
    )


def _states(known: tuple[str, ...], *current: str) -> list[str]:
    """The known states in their order, then any others seen, so no series is ever lost."""
    return [*known, *sorted(set(current) - set(known))]
