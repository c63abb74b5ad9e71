"""The benchmarks still run (a few seconds each): their figures are not judged here, only that they
finish and end with the JSON line their readers parse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    ("script", "keys"),
    [
        ("ingest.py", {"baseline_msgs_per_s", "pixelsd_msgs_per_s", "ratio", "target_ratio"}),
        ("ctl_latency.py", {"pixelsctl_median_s", "floor_median_s", "ratio", "target_ratio"}),
        ("restart.py", {"baseline_s", "clean_s", "crash_s", "ratio", "target_s"}),
        ("idle.py", {"pixelsd_cpu_pct", "pixelsd_rss_mb", "floor_rss_mb", "ratio"}),
        ("scale.py", {"all_acked", "stored_ok", "ack_p99_ms", "ctl_p99_ms", "ratio"}),
        ("store_insert.py", {"append_us_per_row", "busy_append_us_per_row", "ratio"}),
    ],
)
def test_benchmark_smoke_run_ends_with_its_json_line(script: str, keys: set[str]) -> None:
    """A --smoke run exits 0 and its last line is JSON carrying the figures and the target."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert keys <= figures.keys()
    assert figures["ratio"] > 0
