"""`pixelsctl telemetry` (ctl.py + ctl_format.render_telemetry): the latest sample for people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixels_daemon import ctl
from pixels_daemon.ctl_format import render_telemetry
from tests.support import DaemonProcess

GIB = 1 << 30

GB10 = {
    "enabled": True,
    "reason": None,
    "info": {
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA GB10",
                "unsupported": {"fan_speed": "not supported (no fan)", "memory": "unified"},
            }
        ]
    },
    "sample": {
        "ts": 1000.0,
        "gpus": [
            {
                "index": 0,
                "health": "ok",
                "utilization_ratio": 0.93,
                "temperature_celsius": 71.0,
                "power_watts": 88.5,
                "memory_used_bytes": None,
                "memory_total_bytes": None,
                "sm_clock_hertz": 2.4e9,
                "performance_state": 0,
            }
        ],
        "host": {"total_bytes": 128 * GIB, "available_bytes": 32 * GIB},
        "pressure": {"some": {"avg10": 0.012}},
        "unified": True,
    },
    "samples": 12,
}


def test_a_gb10_sample_shows_the_gpu_row_unified_memory_and_what_is_unsupported() -> None:
    """Utilization as %, unified memory from the host, unsupported metrics with their reason."""
    text = render_telemetry(GB10, now=1005.0)
    assert "0 NVIDIA GB10" in text
    assert "93%" in text
    assert "unified memory: 96.0 GiB used of 128.0 GiB (75 %)" in text
    assert "GPU 0 unsupported: fan_speed: not supported (no fan); memory: unified" in text
    assert "GPU telemetry: off" not in text


def test_off_says_why() -> None:
    """Telemetry off: one line with the reason."""
    text = render_telemetry({"enabled": False, "reason": "telemetry is off"}, now=0.0)
    assert text == "GPU telemetry: off (telemetry is off)"


def test_pixelsctl_telemetry_against_a_daemon_without_a_gpu(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0; the reason NVML is off is printed; --json carries the same map."""
    daemon = DaemonProcess(state_dir).start()
    try:
        assert ctl.main(["--state-dir", str(state_dir), "telemetry"]) == 0
        assert "GPU telemetry: off (NVML" in capsys.readouterr().out
        assert ctl.main(["--state-dir", str(state_dir), "--json", "telemetry"]) == 0
        assert json.loads(capsys.readouterr().out)["enabled"] is False
    finally:
        daemon.close()
