"""/proc/meminfo and /proc/pressure/memory readers, pointed at files under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixels_daemon.telemetry.meminfo import read_meminfo, read_pressure

KIB = 1024

# A DGX Spark's 128 GB, abridged: MemFree is well below MemAvailable (page cache is reclaimable).
SPARK_MEMINFO = """\
MemTotal:       128452152 kB
MemFree:         10234880 kB
MemAvailable:    96543210 kB
Buffers:           512000 kB
Cached:          80000000 kB
SwapCached:             0 kB
SwapTotal:       16777212 kB
SwapFree:        16000000 kB
HugePages_Total:        0
Hugepagesize:        2048 kB
"""

PRESSURE = """\
some avg10=1.50 avg60=0.75 avg300=0.10 total=123456789
full avg10=0.25 avg60=0.00 avg300=0.00 total=2000000
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_meminfo_reads_total_available_and_swap_in_bytes(tmp_path: Path) -> None:
    """MemTotal, MemAvailable (not MemFree), SwapTotal and SwapFree come back in bytes."""
    host = read_meminfo(write(tmp_path, "meminfo", SPARK_MEMINFO))
    assert host is not None
    assert host.total_bytes == 128452152 * KIB
    assert host.available_bytes == 96543210 * KIB
    assert host.swap_total_bytes == 16777212 * KIB
    assert host.swap_free_bytes == 16000000 * KIB


def test_meminfo_used_ratio_is_total_minus_available(tmp_path: Path) -> None:
    """Used = MemTotal - MemAvailable, as a share of MemTotal."""
    host = read_meminfo(write(tmp_path, "meminfo", SPARK_MEMINFO))
    assert host is not None
    assert host.used_ratio == pytest.approx((128452152 - 96543210) / 128452152)


def test_meminfo_without_memavailable_estimates_from_free_and_cache(tmp_path: Path) -> None:
    """An old kernel's file (no MemAvailable) falls back to MemFree + Buffers + Cached."""
    text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"
    host = read_meminfo(write(tmp_path, "meminfo", text))
    assert host is not None
    assert host.available_bytes == 400 * KIB
    assert host.swap_total_bytes == 0


def test_meminfo_missing_file_is_none(tmp_path: Path) -> None:
    """No /proc/meminfo (not Linux) gives None, not an exception."""
    assert read_meminfo(tmp_path / "absent") is None


def test_meminfo_without_memtotal_is_none(tmp_path: Path) -> None:
    """A file with no MemTotal line cannot size memory: None."""
    assert read_meminfo(write(tmp_path, "meminfo", "garbage\nMemFree: x kB\n")) is None


def test_pressure_reads_ratios_and_stall_seconds(tmp_path: Path) -> None:
    """PSI percentages become ratios; the microsecond total becomes seconds."""
    pressure = read_pressure(write(tmp_path, "memory", PRESSURE))
    assert pressure is not None
    assert pressure.some.avg10 == pytest.approx(0.015)
    assert pressure.some.avg60 == pytest.approx(0.0075)
    assert pressure.some.total_seconds == pytest.approx(123.456789)
    assert pressure.full is not None
    assert pressure.full.avg10 == pytest.approx(0.0025)


def test_pressure_without_full_line_keeps_some(tmp_path: Path) -> None:
    """A kernel that writes only the ``some`` line still gives a reading."""
    pressure = read_pressure(write(tmp_path, "memory", PRESSURE.splitlines()[0] + "\n"))
    assert pressure is not None
    assert pressure.full is None


def test_pressure_missing_file_is_none(tmp_path: Path) -> None:
    """PSI disabled (no /proc/pressure) gives None."""
    assert read_pressure(tmp_path / "absent") is None
