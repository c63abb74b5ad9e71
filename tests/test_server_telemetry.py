"""Telemetry in the daemon (server.py + telemetry/): the `telemetry` request, threshold crossings
as escalations, and the Prometheus endpoint. No GPU here: the real sampler reports NVML missing
and still samples /proc; crossings come from a fake sampler (the NVML boundary)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from pixels_daemon.plan import default_plan
from pixels_daemon.server import Config, Server
from pixels_daemon.telemetry.meminfo import HostMemory
from pixels_daemon.telemetry.sampler import TelemetryInfo, TelemetrySample
from tests.support import BIN, DaemonProcess, ctl

GIB = 1 << 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        proc.close()


def first_sample(state_dir: Path) -> dict[str, Any]:
    """The `telemetry` answer once the first sample is in (taken at start, off the loop)."""
    result: dict[str, Any] = ctl(state_dir, "telemetry")
    for _ in range(100):
        if result["sample"] is not None:
            break
        time.sleep(0.05)  # waiting for a condition (the first sample), not for time
        result = ctl(state_dir, "telemetry")
    return result


def test_telemetry_request_says_why_gpu_telemetry_is_off_and_shows_host_memory(
    state_dir: Path, daemon: list[DaemonProcess]
) -> None:
    """On a box without NVML: enabled false, the reason names the library, and the sample still
    has /proc/meminfo's host memory."""
    daemon.append(DaemonProcess(state_dir).start())
    result = first_sample(state_dir)
    assert result["enabled"] is False
    assert "NVML" in result["reason"]
    assert result["sample"]["host"]["total_bytes"] > 0


def test_telemetry_off_is_said_plainly(state_dir: Path, daemon: list[DaemonProcess]) -> None:
    """--telemetry-interval 0: the request answers that telemetry is off, and why."""
    daemon.append(DaemonProcess(state_dir, "--telemetry-interval", "0").start())
    result = ctl(state_dir, "telemetry")
    assert result == {"enabled": False, "reason": "telemetry is off (--telemetry-interval 0)"}


def test_metrics_endpoint_serves_gpu_host_and_plan_metrics(
    state_dir: Path, daemon: list[DaemonProcess]
) -> None:
    """--metrics-port serves Prometheus text on loopback with host and plan series."""
    port = free_port()
    daemon.append(DaemonProcess(state_dir, "--metrics-port", str(port)).start())
    # Host series exist once a sample does: the first is taken at start, off the loop.
    assert first_sample(state_dir)["sample"] is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'pixels_workstream_progress_ratio{workstream="WS-01"}' in text
    assert "pixels_host_memory_total_bytes" in text


def test_a_metrics_port_in_use_fails_the_start_with_one_line(state_dir: Path) -> None:
    """The port is taken: exit 1, the error names the address and what to do."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                str(BIN / "pixelsd"),
                "--state-dir",
                str(state_dir),
                "--metrics-port",
                str(port),
                "--launcher",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "--metrics-port" in done.stderr
    assert "Traceback" not in done.stderr


class HotHost:
    """A fake sampler: host memory at 97 % used (over the 95 % line), then 50 %."""

    def __init__(self) -> None:
        self.used = 0.97
        self.info = TelemetryInfo(gpu_enabled=False, disabled_reason="fake: no GPU")

    def start(self) -> TelemetryInfo:
        return self.info

    def sample(self) -> TelemetrySample:
        total = 100 * GIB
        host = HostMemory(
            total_bytes=total,
            available_bytes=int(total * (1 - self.used)),
            swap_total_bytes=0,
            swap_free_bytes=0,
        )
        return TelemetrySample(ts=0.0, duration_s=0.0, info=self.info, host=host)

    def close(self) -> None:
        pass


async def test_a_threshold_crossing_opens_an_escalation_and_clearing_resolves_it(
    state_dir: Path,
) -> None:
    """Memory over 95 %: a telemetry_memory escalation on `host`; back to 50 %: resolved."""
    fake = HotHost()
    srv = Server(
        Config(state_dir=state_dir, telemetry_interval_s=1.0), default_plan(), sampler=fake
    )
    task = asyncio.ensure_future(srv.serve())
    try:
        with anyio.fail_after(10):
            await srv.ready.wait()
            while not [
                e for e in srv.daemon.state.escalations.values() if e.kind == "telemetry_memory"
            ]:
                await anyio.sleep(0.01)
        (esc,) = [e for e in srv.daemon.state.escalations.values() if e.kind == "telemetry_memory"]
        assert (esc.subject, esc.state) == ("host", "open")
        fake.used = 0.5
        assert srv.telemetry is not None
        await srv.telemetry.sample_once()
        with anyio.fail_after(10):
            while srv.daemon.state.escalations[esc.id].state != "resolved":
                await anyio.sleep(0.01)
    finally:
        srv.stop()
        await task
