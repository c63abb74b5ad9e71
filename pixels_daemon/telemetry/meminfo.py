"""Host memory from /proc/meminfo and memory pressure from /proc/pressure/memory.

On a GB10 the GPU has no memory of its own: CPU and GPU share one pool, and NVML cannot size it.
These readers are then the only source of "GPU memory" (shown as unified memory), and on every
other machine they are plain host memory. Both paths are parameters so tests point them at files.

Units on the way out are base units: bytes, seconds, ratios 0..1. Both readers return None when the
file is missing or unreadable (not Linux, PSI compiled out or disabled with ``psi=0``): telemetry
goes on without them rather than failing.
"""

from __future__ import annotations

from pathlib import Path

from msgspec import Struct

MEMINFO_PATH = Path("/proc/meminfo")
PRESSURE_PATH = Path("/proc/pressure/memory")

_KIB = 1024


class HostMemory(Struct, frozen=True, kw_only=True):
    """One reading of /proc/meminfo, in bytes."""

    total_bytes: int
    #: MemAvailable: what can be allocated without swapping (MemFree leaves out reclaimable cache).
    available_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int

    @property
    def used_bytes(self) -> int:
        return max(self.total_bytes - self.available_bytes, 0)

    @property
    def used_ratio(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes > 0 else 0.0


class PressureLine(Struct, frozen=True, kw_only=True):
    """One line of a PSI file: share of wall time some (or all) tasks stalled on memory."""

    avg10: float  # ratio 0..1 over the last 10 s
    avg60: float
    avg300: float
    total_seconds: float  # cumulative stall time since boot


class MemoryPressure(Struct, frozen=True, kw_only=True):
    """/proc/pressure/memory: ``some`` (at least one task stalled) and ``full`` (all stalled)."""

    some: PressureLine
    full: PressureLine | None = None


def read_meminfo(path: Path = MEMINFO_PATH) -> HostMemory | None:
    """Parse /proc/meminfo; None if it cannot be read or has no MemTotal."""
    try:
        text = path.read_text()
    except OSError:
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        # Every size field is in KiB (the file says "kB"); a few counters (HugePages_*) are not.
        scale = _KIB if len(parts) > 1 and parts[1] == "kB" else 1
        fields[key.strip()] = int(parts[0]) * scale
    total = fields.get("MemTotal")
    if total is None:
        return None
    available = fields.get("MemAvailable")
    if available is None:
        # Kernels before 3.14 lack MemAvailable; free + page cache is the usual estimate.
        available = fields.get("MemFree", 0) + fields.get("Buffers", 0) + fields.get("Cached", 0)
    return HostMemory(
        total_bytes=total,
        available_bytes=min(available, total),
        swap_total_bytes=fields.get("SwapTotal", 0),
        swap_free_bytes=fields.get("SwapFree", 0),
    )


def read_pressure(path: Path = PRESSURE_PATH) -> MemoryPressure | None:
    """Parse a PSI file; None if it cannot be read or has no ``some`` line."""
    try:
        text = path.read_text()
    except OSError:
        return None
    lines: dict[str, PressureLine] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        values: dict[str, str] = {}
        for item in rest.split():
            key, _, value = item.partition("=")
            values[key] = value
        try:
            lines[kind] = PressureLine(
                avg10=float(values["avg10"]) / 100,
                avg60=float(values["avg60"]) / 100,
                avg300=float(values["avg300"]) / 100,
                total_seconds=int(values["total"]) / 1_000_000,  # the kernel counts microseconds
            )
        except (KeyError, ValueError):
            continue
    some = lines.get("some")
    if some is None:
        return None
    return MemoryPressure(some=some, full=lines.get("full"))
