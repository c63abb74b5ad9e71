"""Prometheus text exposition: a golden file for the whole output, and the naming rules.

Regenerate the golden file after an intended change with
``PIXELS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_prometheus.py`` and review the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import msgspec
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from pixels_daemon.telemetry.prometheus import (
    PlanMetrics,
    TelemetryCollector,
    TelemetryStats,
    render,
)
from pixels_daemon.telemetry.sampler import NvmlSampler, TelemetrySample
from tests import fake_nvml
from tests.fake_nvml import GIB, FakeGpu, FakeNvml

GOLDEN = Path(__file__).parent / "golden" / "telemetry.prom"
TS = 1_800_000_000.0

PLAN = PlanMetrics(
    workstream_progress={"WS-02": 0.4, "WS-01": 1.0},
    workstream_status={"WS-01": "complete", "WS-02": "in_progress"},
    escalations_open={"high": 2, "critical": 1},
    gate_states={"gate-1": "passed", "gate-2": "pending"},
    orchestrator_last_seen={"foundation": TS - 5, "model": TS - 30},
    messages_ingested={"foundation": 120, "model": 7},
    ack_latency_count=127,
    ack_latency_sum_s=0.254,
)


def take(nv: FakeNvml, tmp_path: Path, *, xid: int | None = None) -> TelemetrySample:
    """One deterministic sample from ``nv`` with /proc files under tmp_path."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal: 131981020 kB\nMemAvailable: 101981020 kB\n"
        "SwapTotal: 8388604 kB\nSwapFree: 8388604 kB\n"
    )
    pressure = tmp_path / "pressure"
    pressure.write_text(
        "some avg10=1.25 avg60=0.50 avg300=0.10 total=4500000\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=250000\n"
    )
    sampler = NvmlSampler(nv, clock=lambda: TS, meminfo_path=meminfo, pressure_path=pressure)
    sampler.start()
    if xid is not None:
        nv.inject_xid(0, xid)
    sample = sampler.sample()
    return msgspec.structs.replace(sample, duration_s=0.000125)


def value(text: str, name: str) -> float:
    """The value of the one unlabelled series ``name`` in an exposition."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and not s.labels:
                return s.value
    raise AssertionError(f"{name} not exported")


def golden_sample(tmp_path: Path) -> TelemetrySample:
    """An H100 running a job (one process of unknown size, an Xid 79) beside a lost GPU."""
    nv = FakeNvml(
        [
            FakeGpu(
                processes=[(4242, 8 * GIB), (4343, None)],
                fail={"nvmlDeviceGetFanSpeed": fake_nvml.NOT_SUPPORTED},
            ),
            FakeGpu(uuid="GPU-99999999-8888-7777-6666-555555555555"),
        ]
    )
    nv.lose(1)
    return take(nv, tmp_path, xid=79)


def test_exposition_matches_the_golden_file(tmp_path: Path) -> None:
    """The whole text for a fixed sample and plan is exactly the reviewed golden file."""
    text = render(golden_sample(tmp_path), PLAN, TelemetryStats(samples=42, skipped=1))
    if os.environ.get("PIXELS_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(text)
    expected = GOLDEN.read_bytes()
    if text != expected:
        diff = difflib.unified_diff(
            expected.decode().splitlines(), text.decode().splitlines(), "golden", "now", lineterm=""
        )
        pytest.fail("Prometheus text differs from tests/golden/telemetry.prom:\n" + "\n".join(diff))


def test_every_name_follows_the_conventions(tmp_path: Path) -> None:
    """pixels_ prefix; counters end in _total; GPU series carry gpu and uuid labels."""
    text = render(golden_sample(tmp_path), PLAN).decode()
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.name.startswith("pixels_")
        for s in family.samples:
            if family.type == "counter":
                assert s.name.endswith("_total"), s.name
            if family.name.startswith("pixels_gpu_"):
                assert {"gpu", "uuid"} <= s.labels.keys(), s
            if family.name.endswith("_ratio"):
                assert 0.0 <= s.value <= 1.0, s


def test_gb10_exports_unified_memory_and_no_gpu_memory(tmp_path: Path) -> None:
    """On a GB10 the GPU memory series are absent and unified memory is exported instead."""
    text = render(take(fake_nvml.gb10(), tmp_path)).decode()
    assert "pixels_gpu_memory_used_bytes" not in text
    assert "pixels_gpu_fan_speed_ratio" not in text
    assert value(text, "pixels_unified_memory_total_bytes") == 131981020 * 1024
    assert value(text, "pixels_unified_memory_used_bytes") == 30000000 * 1024
    assert 'pixels_gpu_unified_memory{gpu="0"' in text
    assert 'metric="memory",uuid="GPU-gb10-0000-1111-2222-333333333333"} 0.0' in text


def test_disabled_gpu_telemetry_still_exports_host_memory(tmp_path: Path) -> None:
    """No driver: enabled is 0, no GPU series, host memory and pressure present."""
    text = render(take(fake_nvml.driver_not_loaded(), tmp_path)).decode()
    assert "pixels_telemetry_gpu_enabled 0.0" in text
    assert "pixels_gpu_" not in text
    assert "pixels_host_memory_available_bytes" in text
    assert 'pixels_memory_pressure_ratio{kind="some",window="10s"} 0.0125' in text


def test_before_the_first_sample_only_counters_are_exported() -> None:
    """No sample yet: the service's counters, nothing pretending to be a reading."""
    names = {f.name for f in text_string_to_metric_families(render(None).decode())}
    assert names == {"pixels_telemetry_samples", "pixels_telemetry_samples_skipped"}


def test_collector_reads_the_latest_snapshot_at_each_scrape(tmp_path: Path) -> None:
    """A registered collector sees a new sample and plan as soon as they are swapped in."""
    latest: dict[str, object] = {"sample": None, "plan": None}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        TelemetryCollector(
            lambda: latest["sample"],  # type: ignore[arg-type,return-value]
            lambda: latest["plan"],  # type: ignore[arg-type,return-value]
        )
    )
    assert b"pixels_gpu_up" not in generate_latest(registry)
    latest["sample"] = take(fake_nvml.discrete(), tmp_path)
    latest["plan"] = PlanMetrics(workstream_status={"WS-01": "blocked"})
    text = generate_latest(registry).decode()
    assert "pixels_gpu_up" in text
    assert 'pixels_workstream_status{status="blocked",workstream="WS-01"} 1.0' in text


def test_unknown_states_are_exported_beside_the_known_ones() -> None:
    """A gate state outside the expected set still gets its series (1), after the known ones."""
    text = render(None, PlanMetrics(gate_states={"g": "checking"})).decode()
    states = [line for line in text.splitlines() if line.startswith("pixels_gate_state{")]
    assert states == [
        'pixels_gate_state{gate="g",state="pending"} 0.0',
        'pixels_gate_state{gate="g",state="passed"} 0.0',
        'pixels_gate_state{gate="g",state="failed"} 0.0',
        'pixels_gate_state{gate="g",state="checking"} 1.0',
    ]


def test_open_escalations_list_every_severity() -> None:
    """Severities with nothing open are exported as 0, so alerts can compare against them."""
    text = render(None, PlanMetrics(escalations_open={"critical": 3})).decode()
    assert 'pixels_escalations_open{severity="low"} 0.0' in text
    assert 'pixels_escalations_open{severity="critical"} 3.0' in text
