"""What an idle daemon costs: CPU time and peak RSS over a quiet minute, beside a floor process.

    python bench/idle.py [--seconds S] [--nvml real|gb10|discrete] [--smoke]

pixelsd runs as it would on the box: the embedded plan, its default intervals, telemetry ON (real
NVML with ``--nvml real``; otherwise tests/fake_nvml.py's GB10 or discrete GPU, installed as
``pynvml`` before the daemon starts), and the four orchestrators of the plan connected and idle
(four ``OrchestratorClient`` instances in a separate process: registered, heartbeating at the
daemon's interval, sending nothing else). Beside it, in the same window, the floor: a Python
process that imports zmq and msgspec, binds a ROUTER and waits in ``poll`` (what any daemon on
this stack costs before doing anything).

CPU seconds come from /proc/PID/stat (utime + stime) between the start and the end of the window
(start-up excluded); peak RSS is VmHWM from /proc/PID/status at the end. Targets: < 0.5 % of one
core, RSS < 80 MB. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import ping  # bench/ is on sys.path: run as a script

ROOT = Path(__file__).resolve().parent.parent
TARGET_CPU_PCT = 0.5
TARGET_RSS_MB = 80.0
ORCHESTRATORS = ("foundation", "model", "interface", "integration")
TICKS = os.sysconf("SC_CLK_TCK")

#: The daemon, with a fake NVML installed as ``pynvml`` first (argv: state_dir, kind, pixelsd args).
DAEMON_WITH_FAKE_NVML = """
import sys
sys.path.insert(0, {tests!r})
import fake_nvml
sys.modules["pynvml"] = getattr(fake_nvml, sys.argv[1])()
from pixels_daemon.cli import main
sys.argv = ["pixelsd", *sys.argv[2:]]
sys.exit(main())
"""

#: The floor: a bound ROUTER waiting in poll, nothing else.
FLOOR = """
import sys, zmq, msgspec
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.bind(sys.argv[1])
print("ready", flush=True)
while True:
    sock.poll(60_000)
"""

#: Four idle orchestrators (argv: endpoint, outbox dir, seconds).
CLIENTS = """
import sys, anyio
sys.path.insert(0, {root!r})
from orchestrators.client import OrchestratorClient
NAMES = {names!r}

async def one(name):
    async with OrchestratorClient(name, sys.argv[1], f"{{sys.argv[2]}}/outbox-{{name}}.db"):
        await anyio.sleep(float(sys.argv[3]))

async def main():
    async with anyio.create_task_group() as tg:
        for name in NAMES:
            tg.start_soon(one, name)

anyio.run(main)
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--nvml", choices=("real", "gb10", "discrete"), default="gb10")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 2.0
    tmp = Path(tempfile.mkdtemp(prefix="pxi-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        state = tmp / "state"
        daemon_args = ["--state-dir", str(state), "--launcher", "none"]
        if args.nvml == "real":
            cmd = [str(Path(sys.executable).with_name("pixelsd")), *daemon_args]
        else:
            code = DAEMON_WITH_FAKE_NVML.format(tests=str(ROOT / "tests"))
            cmd = [sys.executable, "-c", code, args.nvml, *daemon_args]
        daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(daemon)
        floor = subprocess.Popen(
            [sys.executable, "-c", FLOOR, f"ipc://{tmp}/floor.sock"], stdout=subprocess.PIPE
        )
        procs.append(floor)
        if not ping(f"ipc://{state}/run/ctl.sock", timeout_s=30):
            raise RuntimeError("pixelsd did not become ready")
        assert floor.stdout is not None
        floor.stdout.readline()
        code = CLIENTS.format(root=str(ROOT), names=ORCHESTRATORS)
        window = args.seconds + 5.0  # the clients outlive the window
        clients = subprocess.Popen(
            [sys.executable, "-c", code, f"ipc://{state}/run/bus.sock", str(tmp), str(window)],
            stdout=subprocess.DEVNULL,  # their connection log lines are not the bench's output
            stderr=subprocess.DEVNULL,
        )
        procs.append(clients)
        time.sleep(3.0)  # bench only: let the four register and the start-up work finish
        d0, f0, t0 = cpu_s(daemon.pid), cpu_s(floor.pid), time.monotonic()
        time.sleep(args.seconds)  # bench only: the quiet window being measured
        d1, f1, t1 = cpu_s(daemon.pid), cpu_s(floor.pid), time.monotonic()
        d_rss, f_rss = peak_rss_mb(daemon.pid), peak_rss_mb(floor.pid)
        connected = json.loads(
            subprocess.run(
                [
                    str(Path(sys.executable).with_name("pixelsctl")),
                    "--state-dir",
                    str(state),
                    "orchestrators",
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    wall = t1 - t0
    d_pct, f_pct = 100 * (d1 - d0) / wall, 100 * (f1 - f0) / wall
    alive = [o for o in connected if o["connection"] == "connected"]
    print(
        f"window: {wall:.1f} s, telemetry: {args.nvml} NVML, orchestrators connected: {len(alive)}"
    )
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(f"{'process':<36}{'CPU s':>8}{'% of a core':>14}{'peak RSS MB':>14}")
    print(f"{'floor (ROUTER waiting in poll)':<36}{f1 - f0:>8.2f}{f_pct:>14.3f}{f_rss:>14.1f}")
    print(f"{'pixelsd (idle, 4 orchestrators)':<36}{d1 - d0:>8.2f}{d_pct:>14.3f}{d_rss:>14.1f}")
    print(f"targets: < {TARGET_CPU_PCT} % of a core, < {TARGET_RSS_MB:.0f} MB")
    print(
        json.dumps(
            {
                "bench": "idle",
                "seconds": round(wall, 1),
                "nvml": args.nvml,
                "orchestrators_connected": len(alive),
                "pixelsd_cpu_pct": round(d_pct, 3),
                "floor_cpu_pct": round(f_pct, 3),
                "pixelsd_rss_mb": round(d_rss, 1),
                "floor_rss_mb": round(f_rss, 1),
                "ratio": round(d_rss / f_rss, 3) if f_rss else 0.0,
                "target_cpu_pct": TARGET_CPU_PCT,
                "target_rss_mb": TARGET_RSS_MB,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
