"""Cost of one full telemetry sample per GPU, beside a bare NVML call in the same run.

    python bench/telemetry_sample.py [--runs N] [--smoke] [--fake [discrete|gb10]] [--out DIR]

Starts NvmlSampler on the real NVML (or on tests/fake_nvml.py with --fake), then times, interleaved
so both share the machine's noise:

- sample: ``NvmlSampler.sample(slow=False)``, i.e. every supported metric of every GPU, the Xid
  drain, /proc/meminfo and /proc/pressure/memory, EXCLUDING the slow tier (total energy and the
  per-process call, made once a minute: each is timed on its own, and a sample with them too);
- baseline: one bare ``nvmlDeviceGetTemperature(handle, NVML_TEMPERATURE_GPU)`` on GPU 0, the
  cheapest useful NVML call, i.e. the floor any NVML-based sampler pays per value.

Also times each kept call alone (median of the runs). Target: the sample per GPU < 5 ms. Prints
a table, then ONE JSON line. ``--out DIR`` also writes the start-up info, one sample (JSON) and
its Prometheus text there. ``--smoke`` (5 runs) checks the bench works.
Exit 1 if GPU telemetry is disabled on a real run (the reason is printed).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixels_daemon.telemetry.meminfo import read_meminfo, read_pressure
from pixels_daemon.telemetry.prometheus import TelemetryStats, render
from pixels_daemon.telemetry.sampler import NvmlSampler, import_nvml

TARGET_MS_PER_GPU = 5.0
DEFAULT_RUNS = 300
SMOKE_RUNS = 5
WARMUP = 5


def timed_us(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1000


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 and min."""
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[-1] if len(samples) > 1 else 0.0
    return {"median": statistics.median(samples), "p90": p90 or samples[0], "min": min(samples)}


def row(label: str, figures: dict[str, float]) -> None:
    print(f"{label:<36} {figures['median']:>10.1f} {figures['p90']:>10.1f} {figures['min']:>10.1f}")


def make_nvml(fake: str | None) -> Any:
    if fake is None:
        return import_nvml()
    from tests import fake_nvml

    return {"discrete": fake_nvml.discrete, "gb10": fake_nvml.gb10}[fake]()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_RUNS} runs: check it works")
    parser.add_argument("--fake", nargs="?", const="discrete", choices=["discrete", "gb10"])
    parser.add_argument("--out", type=Path, help="write info.json, sample.json, metrics.prom")
    args = parser.parse_args()
    runs = SMOKE_RUNS if args.smoke else args.runs

    nv = make_nvml(args.fake)
    sampler = NvmlSampler(nv)
    info = sampler.start()
    if not info.gpu_enabled:
        print(f"telemetry_sample: GPU telemetry disabled: {info.disabled_reason}", file=sys.stderr)
        return 1
    gpus = sampler._gpus  # the bench times the kept calls one by one
    handle0 = gpus[0].handle

    def baseline() -> object:
        return nv.nvmlDeviceGetTemperature(handle0, nv.NVML_TEMPERATURE_GPU)

    def full() -> object:
        return sampler.sample(slow=False)

    def with_slow() -> object:
        return sampler.sample(slow=True)

    for _ in range(WARMUP):
        baseline()
        full()
    base_us: list[float] = []
    sample_us: list[float] = []
    for i in range(runs):
        # ABBA order: neither side always runs first.
        if i % 2 == 0:
            base_us.append(timed_us(baseline))
            sample_us.append(timed_us(full))
        else:
            sample_us.append(timed_us(full))
            base_us.append(timed_us(baseline))
    slow_us = [timed_us(with_slow) for _ in range(runs)]

    calls: dict[str, list[float]] = {}
    for gpu in gpus:
        for name, reader in gpu.readers + gpu.slow_readers:
            slow = " (slow)" if (name, reader) in gpu.slow_readers else ""
            call = functools.partial(reader, nv, gpu.handle)
            calls[f"gpu{gpu.index}.{name}{slow}"] = [timed_us(call) for _ in range(runs)]
        if gpu.event_set is not None:
            drain = functools.partial(sampler._drain_xids, gpu, [])
            calls[f"gpu{gpu.index}.xid_drain"] = [timed_us(drain) for _ in range(runs)]

    def host() -> object:
        return read_meminfo(), read_pressure()

    calls["host.meminfo+pressure"] = [timed_us(host) for _ in range(runs)]

    sample = sampler.sample(slow=True)
    sampler.close()

    s, b, w = summary(sample_us), summary(base_us), summary(slow_us)
    per_gpu_ms = s["median"] / 1000 / len(gpus)
    print(f"{'what':<36} {'median':>10} {'p90':>10} {'min':>10}   (microseconds)")
    row("sample (all GPUs, no slow tier)", s)
    row("baseline: nvmlDeviceGetTemperature", b)
    for key, values in calls.items():
        row(f"  {key}", summary(values))
    row("sample with the slow tier (1/min)", w)
    print(
        f"{len(gpus)} GPU(s), {runs} runs: {per_gpu_ms:.3f} ms per GPU per sample "
        f"(target < {TARGET_MS_PER_GPU} ms), {s['median'] / b['median']:.1f}x one bare call"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "info.json").write_bytes(msgspec.json.format(msgspec.json.encode(info)))
        (args.out / "sample.json").write_bytes(msgspec.json.format(msgspec.json.encode(sample)))
        (args.out / "metrics.prom").write_bytes(render(sample, stats=TelemetryStats(samples=1)))
    figures = {
        "device": sorted({g.name for g in info.gpus}),
        "driver": info.driver_version,
        "gpus": len(gpus),
        "runs": runs,
        "fake": args.fake,
        "sample_median_ms": round(s["median"] / 1000, 4),
        "sample_p90_ms": round(s["p90"] / 1000, 4),
        "sample_per_gpu_ms": round(per_gpu_ms, 4),
        "baseline_call_us": round(b["median"], 2),
        "ratio_to_baseline": round(s["median"] / b["median"], 2),
        "sample_with_slow_median_ms": round(w["median"] / 1000, 4),
        "calls_median_us": {k: round(statistics.median(v), 2) for k, v in calls.items()},
        "unsupported": {f"gpu{g.index}": g.unsupported for g in info.gpus},
        "target_per_gpu_ms": TARGET_MS_PER_GPU,
        "meets_target": per_gpu_ms < TARGET_MS_PER_GPU,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
