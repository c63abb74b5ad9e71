"""The long fuzz run: hostile frames against both sockets of a running pixelsd.

    python bench/fuzz.py [--frames N] [--batch B] [--smoke]

Starts pixelsd (embedded plan, --launcher none) on a fresh state dir, then sends N frames
(default 100,000, each generated anew), batches of B alternately to the bus and the control
socket, each batch from a fresh DEALER (a new peer with its own budget, so the frames are decoded
rather than throttled).
The frames come from tests/fuzzframes.py (hypothesis: random bytes and msgpack, envelope maps with
wrong values, valid messages mutated, wrong multipart shapes). Watched meanwhile: that the daemon
stays up, its RSS (VmRSS per batch, VmHWM at the end). Then a flood: one peer sends --flood
garbage frames (default 200,000) as fast as it can while pixelsctl ping is timed from another
connection. Afterwards: pixelsctl ping and status answer, and a fresh orchestrator is welcomed and
acked. Prints a summary, then one JSON line. Exit 0 when all of that held.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzzframes import blast, messages  # noqa: E402
from tests.support import DaemonProcess, ctl  # noqa: E402
from tests.test_fuzz import _deliver_one  # noqa: E402


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _flood_seen(state_dir: Path) -> int:
    """Frames the daemon has dropped (throttled) or refused as bad_frame so far."""
    ping = ctl(state_dir, "ping", timeout_s=30)
    return int(ping["security"]["throttled"] + ping["counters"]["frame_errors"].get("bad_frame", 0))


def flood(endpoint: str, state_dir: Path, frames: int, ctx: zmq.Context[bytes]) -> dict[str, float]:
    """One peer sends ``frames`` garbage frames flat out; ping is timed meanwhile."""
    latencies: list[float] = []
    done = threading.Event()

    def pinger() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            ctl(state_dir, "ping", timeout_s=30)
            latencies.append(time.perf_counter() - t0)

    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, 0)  # queue it all on our side: the daemon's RCVHWM decides
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    base = _flood_seen(state_dir)
    thread = threading.Thread(target=pinger)
    thread.start()
    started = time.monotonic()
    for _ in range(frames):
        sock.send(b"\xc1")
    # Until the daemon has seen them all: throttled + counted as errors.
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline:
        seen = _flood_seen(state_dir) - base
        if seen >= frames:
            break
        time.sleep(0.1)
    seconds = time.monotonic() - started
    done.set()
    thread.join()
    sock.close()
    return {
        "flood_frames": frames,
        "flood_seconds": round(seconds, 2),
        "flood_frames_seen": seen,
        "flood_ping_median_ms": round(statistics.median(latencies) * 1000, 1),
        "flood_ping_max_ms": round(max(latencies) * 1000, 1),
        "flood_pings": len(latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    # Lists much longer than 50 make hypothesis slow (it overruns its buffer and retries).
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--flood", type=int, default=200_000)
    parser.add_argument("--smoke", action="store_true", help="2,000 frames: does it still run")
    args = parser.parse_args()
    total = 2_000 if args.smoke else args.frames
    examples = max(2, total // args.batch)
    state_dir = Path(tempfile.mkdtemp(prefix="pxf-", dir="/tmp"))
    daemon = DaemonProcess(state_dir).start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    ctx: zmq.Context[bytes] = zmq.Context()
    run = state_dir / "run"
    sent = 0
    samples: list[float] = [rss_mb(pid)]
    started = time.monotonic()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(messages, min_size=args.batch, max_size=args.batch))
    def fuzz(batch: list[list[bytes]]) -> None:
        nonlocal sent
        sock = ("bus.sock", "ctl.sock")[len(samples) % 2]
        blast(f"ipc://{run / sock}", batch, ctx)
        sent += len(batch)
        if daemon.proc is not None and daemon.proc.poll() is not None:
            raise SystemExit(f"pixelsd died: {daemon.log()[-2000:]}")
        samples.append(rss_mb(pid))

    try:
        fuzz()
        seconds = time.monotonic() - started
        before = ctl(state_dir, "ping")["counters"]["frame_errors"].get("bad_frame", 0)
        flooded = flood(
            f"ipc://{run / 'bus.sock'}", state_dir, 2_000 if args.smoke else args.flood, ctx
        )
        ping = ctl(state_dir, "ping", timeout_s=30)
        status = ctl(state_dir, "status", timeout_s=30)
        welcome, ack = _deliver_one(f"ipc://{run / 'bus.sock'}", ctx)
        ok = ack.acked_seq == welcome.acked_seq + 1 and bool(status["plan"])
        counters = ping["counters"]
        figures = {
            "frames_sent": sent,
            "seconds": round(seconds, 1),
            "frames_per_s": round(sent / seconds),
            "daemon_frames_counted": counters["frames"],
            "frame_errors": counters["frame_errors"],
            "security": {k: v for k, v in ping["security"].items() if k != "bad_frames_by_peer"},
            "rss_start_mb": round(samples[0], 1),
            "rss_after_10pct_mb": round(samples[max(1, len(samples) // 10)], 1),
            "rss_end_mb": round(samples[-1], 1),
            "rss_peak_mb": round(rss_mb(pid, "VmHWM"), 1),
            "answers_after": ok,
            **flooded,
            "flood_decoded": counters["frame_errors"].get("bad_frame", 0) - before,
        }
        print(f"sent {sent:,} frames in {seconds:.0f} s; pixelsd alive, answers: {ok}")
        print(f"RSS {figures['rss_start_mb']} -> {figures['rss_end_mb']} MB")
        print(f"(peak {figures['rss_peak_mb']} MB)")
        print(
            f"flood of {flooded['flood_frames']:,} from one peer: "
            f"{figures['security']['throttled']:,} throttled, "
            f"{figures['flood_decoded']:,} decoded; ping median "
            f"{flooded['flood_ping_median_ms']} ms, max {flooded['flood_ping_max_ms']} ms"
        )
        print(json.dumps(figures))
        return 0 if ok else 1
    finally:
        ctx.destroy(0)
        daemon.close()
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
