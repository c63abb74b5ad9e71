"""Threshold rules: raise above the line, clear below a lower one, never flap; pure functions."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixels_daemon.telemetry.meminfo import HostMemory
from pixels_daemon.telemetry.sampler import GpuInfo, GpuSample, TelemetryInfo, TelemetrySample
from pixels_daemon.telemetry.thresholds import (
    Crossing,
    ThresholdConfig,
    ThresholdState,
    evaluate,
)

GIB = 1024**3
INFO = TelemetryInfo(
    gpu_enabled=True,
    gpus=(
        GpuInfo(
            index=0,
            uuid="GPU-abc",
            name="NVIDIA H100",
            memory="dedicated",
            addressing_mode="none",
            supported=(),
            unsupported={},
        ),
    ),
)


def gpu(**values: object) -> GpuSample:
    return GpuSample(index=0, uuid="GPU-abc", **values)  # type: ignore[arg-type]


def sample(
    *gpus: GpuSample, ts: float = 0.0, host: HostMemory | None = None, unified: bool = False
) -> TelemetrySample:
    return TelemetrySample(
        ts=ts, duration_s=0.001, info=INFO, gpus=gpus, host=host, unified=unified
    )


def memory(ratio: float) -> GpuSample:
    return gpu(memory_total_bytes=100 * GIB, memory_used_bytes=round(ratio * 100 * GIB))


def host(ratio: float) -> HostMemory:
    total = 128 * GIB
    return HostMemory(
        total_bytes=total,
        available_bytes=round(total * (1 - ratio)),
        swap_total_bytes=0,
        swap_free_bytes=0,
    )


def run(
    samples: Iterable[TelemetrySample], config: ThresholdConfig | None = None
) -> list[Crossing]:
    """Feed samples in order from a fresh state; all crossings."""
    state, out = ThresholdState(), list[Crossing]()
    for s in samples:
        state, crossings = evaluate(s, state, config or ThresholdConfig())
        out.extend(crossings)
    return out


def test_memory_above_95_percent_raises_once() -> None:
    """96 % used raises one high-severity crossing keyed to the GPU, naming it and the value."""
    [crossing] = run([sample(memory(0.96), ts=10)])
    assert (crossing.rule, crossing.subject, crossing.direction) == ("memory", "gpu0", "raised")
    assert crossing.severity == "high"
    assert crossing.key == "telemetry:memory:gpu0"
    assert crossing.uuid == "GPU-abc"
    assert crossing.ts == 10
    assert crossing.message == "GPU 0 (NVIDIA H100) memory used 96.0 % (above 95.0 %)"


def test_exactly_at_the_line_does_not_raise() -> None:
    """The rule is strictly above: 95.0 % is not an alarm."""
    assert run([sample(memory(0.95))]) == []


def test_value_hovering_at_the_line_does_not_flap() -> None:
    """Around 95 % (94.9 .. 95.2) the alarm is raised once and never cleared."""
    values = [0.951, 0.949, 0.952, 0.93, 0.96, 0.94, 0.951]
    crossings = run(sample(memory(v)) for v in values)
    assert [c.direction for c in crossings] == ["raised"]


def test_memory_clears_below_90_percent() -> None:
    """Once raised, memory clears only when it drops under the clear line."""
    crossings = run(sample(memory(v)) for v in (0.97, 0.91, 0.899))
    assert [c.direction for c in crossings] == ["raised", "cleared"]
    assert crossings[1].message == "GPU 0 (NVIDIA H100) memory used back to 89.9 % (below 90.0 %)"


def test_temperature_raises_above_85_and_clears_below_80() -> None:
    """86 °C raises; 84 and 80 hold it; 79 clears."""
    crossings = run(sample(gpu(temperature_celsius=t)) for t in (84, 86, 84, 80, 79))
    assert [(c.rule, c.direction, c.value) for c in crossings] == [
        ("temperature", "raised", 86),
        ("temperature", "cleared", 79),
    ]
    assert crossings[0].message == "GPU 0 (NVIDIA H100) temperature 86 °C (above 85 °C)"


def test_missing_reading_changes_nothing() -> None:
    """A raised alarm stays raised through samples without that reading."""
    crossings = run(sample(gpu(temperature_celsius=t)) for t in (90, None, None))
    assert [c.direction for c in crossings] == ["raised"]


def test_gpu_lost_raises_critical_once_and_clears_when_it_answers() -> None:
    """Lost for two samples: one critical raise; answering again clears it."""
    lost = gpu(health="lost")
    crossings = run([sample(lost), sample(lost), sample(gpu(temperature_celsius=40))])
    assert [(c.rule, c.direction, c.severity) for c in crossings] == [
        ("gpu_lost", "raised", "critical"),
        ("gpu_lost", "cleared", "critical"),
    ]
    assert "is lost" in crossings[0].message


def test_reset_required_is_raised_as_gpu_lost() -> None:
    """RESET_REQUIRED raises the same alarm, saying the GPU needs a reset."""
    [crossing] = run([sample(gpu(health="reset_required"))])
    assert crossing.rule == "gpu_lost"
    assert "needs a reset" in crossing.message


def test_xid_raises_once_and_clears_after_a_quiet_hour() -> None:
    """A second Xid pushes the clearing back; an hour after the last one it clears."""
    crossings = run(
        [
            sample(gpu(xids=(79,)), ts=0),
            sample(gpu(xids=(48,)), ts=1800),
            sample(gpu(), ts=3600),  # an hour after the first, half after the last: still raised
            sample(gpu(), ts=5400),
        ]
    )
    assert [(c.direction, c.ts) for c in crossings] == [("raised", 0), ("cleared", 5400)]
    assert crossings[0].message.startswith("GPU 0 (NVIDIA H100) reported Xid 79")
    assert crossings[0].value == 79


def test_unified_memory_is_named_as_such() -> None:
    """On a unified box the host memory alarm says unified memory."""
    [crossing] = run([sample(host=host(0.97), unified=True)])
    assert (crossing.rule, crossing.subject) == ("memory", "host")
    assert crossing.message.startswith("unified memory (CPU + GPU) used 97.0 %")


def test_host_memory_is_checked_without_any_gpu() -> None:
    """No GPU at all: host memory still has its alarm."""
    [crossing] = run([sample(host=host(0.99))])
    assert crossing.message.startswith("host memory used 99.0 %")


def test_gpu_without_memory_info_has_no_gpu_memory_alarm() -> None:
    """A unified GPU reports no memory fields; only the host subject is evaluated."""
    crossings = run([sample(gpu(temperature_celsius=40), host=host(0.5), unified=True)])
    assert crossings == []


def test_rules_can_be_switched_off() -> None:
    """None turns a level rule off; False turns gpu_lost and xid off."""
    config = ThresholdConfig(
        memory_raise_ratio=None, temperature_raise_celsius=None, gpu_lost=False, xid=False
    )
    hot = gpu(
        health="lost",
        temperature_celsius=99,
        memory_used_bytes=99,
        memory_total_bytes=100,
        xids=(79,),
    )
    assert run([sample(hot)], config) == []


def test_custom_lines_are_used() -> None:
    """A configured 70 °C raise line raises at 71 °C."""
    config = ThresholdConfig(temperature_raise_celsius=70, temperature_clear_celsius=65)
    assert [c.threshold for c in run([sample(gpu(temperature_celsius=71))], config)] == [70]


def test_clear_line_must_be_below_raise_line() -> None:
    """A clear line at or above the raise line is refused with a message naming both."""
    with pytest.raises(ValueError, match=r"temperature_clear_celsius \(85\.0\) must be below"):
        ThresholdConfig(temperature_clear_celsius=85.0)


def test_config_from_a_table_rejects_unknown_keys() -> None:
    """Loaded from configuration, a misspelt key is an error, not silently ignored."""
    with pytest.raises(msgspec.ValidationError, match="memory_raise"):
        msgspec.convert({"memory_raise": 0.9}, ThresholdConfig)
    assert msgspec.convert({"memory_raise_ratio": 0.99}, ThresholdConfig).memory_raise_ratio == 0.99


def test_evaluate_leaves_the_given_state_unchanged() -> None:
    """Pure: the old state still has no alarm after a raising sample."""
    before = ThresholdState()
    after, _ = evaluate(sample(memory(0.99)), before)
    assert before.alarms == ()
    assert after.active("memory", "gpu0") is not None


@given(st.lists(st.floats(min_value=0.9001, max_value=0.9999), min_size=1, max_size=50))
def test_values_inside_the_band_never_flap(values: list[float]) -> None:
    """Any walk that stays above the clear line produces at most one crossing, a raise."""
    crossings = run(sample(memory(v)) for v in values)
    assert [c.direction for c in crossings] in ([], ["raised"])


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=60))
def test_crossings_alternate_raise_and_clear(values: list[float]) -> None:
    """Whatever the walk, raised and cleared alternate, starting with raised."""
    directions = [c.direction for c in run(sample(memory(v)) for v in values)]
    assert all(d == ("raised" if i % 2 == 0 else "cleared") for i, d in enumerate(directions))
