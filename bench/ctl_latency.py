"""Whole-process wall time of ``pixelsctl status`` beside ``python -c "import zmq, msgspec"``.

    python bench/ctl_latency.py [--runs N] [--state-dir DIR] [--smoke] [--no-bytecode-cache]

Starts a real ``pixelsd`` on a fresh temp state dir (or uses the one already answering on
``--state-dir DIR``, else starts one there), waits until it answers ``ping``, then times N runs of
each command as whole processes, interleaved (ABBA order) so that both share the machine's noise:

- pixelsctl: ``pixelsctl --state-dir DIR status`` through the installed console script next to
  sys.executable, output discarded (formatting the tables is part of what is measured);
- floor: ``python -c "import zmq, msgspec"``, the least any Python zmq+msgspec client pays;
- msgspec alone: ``python -c "import msgspec"``, the least pixelsctl itself can pay over ipc://
  (it speaks ZMTP with the standard library there, pixels_daemon/zmtp.py);
- circusctl (when circus is installed: ``pip install circus``, not a dependency of pixels):
  ``circusctl --endpoint ipc://... status`` against a running circusd with one watcher, the
  closest peer (a Python ZeroMQ control client for a process supervisor).

Targets: pixelsctl/floor medians <= 1.3; pixelsctl/circusctl medians <= 0.5. Prints a table,
then ONE JSON line. Stops the daemon (and circusd) it started. ``--smoke`` (3 runs) is for CI:
it checks the bench works, not the ratio (exit 0 either way; a failing pixelsctl run exits 1).

Bytecode: the floor's modules (site-packages) are compiled to .pyc at install time, and so is an
installed pixels; a checkout run with PYTHONDONTWRITEBYTECODE=1 recompiles pixels' modules on every
start instead. By default both commands run with bytecode caching on, cached under a private temp
prefix (PYTHONPYCACHEPREFIX, so nothing is written into the checkout) after one untimed warm-up
run each. ``--no-bytecode-cache`` runs them with the environment as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixels_daemon.ctl import CtlError, call
from pixels_daemon.paths import StatePaths

TARGET_RATIO = 1.3
DEFAULT_RUNS = 30
SMOKE_RUNS = 3
#: pixelsd replays its log and binds before it answers; generous for a loaded CI machine.
READY_TIMEOUT_S = 20.0
#: How long a stopping daemon gets after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
FLOOR_CODE = "import zmq, msgspec"
#: What pixelsctl's ipc:// requests import since they speak ZMTP without pyzmq (zmtp.py).
MSGSPEC_CODE = "import msgspec"


def ping(state_dir: Path, timeout_s: float = 0.5) -> dict[str, object] | None:
    """The daemon's ping result, or None when nothing answers on the state dir yet."""
    try:
        result = call(StatePaths.under(state_dir).ctl_endpoint, "ping", {}, timeout_s)
    except CtlError:
        return None
    return result if isinstance(result, dict) else None


def start_daemon(state_dir: Path) -> subprocess.Popen[bytes]:
    """Start pixelsd on ``state_dir`` and wait (poll with timeout) until ping answers."""
    pixelsd = Path(sys.executable).with_name("pixelsd")
    log = (state_dir / "pixelsd.log").open("ab")
    # --launcher none: a spawned orchestrator would outlive the benchmark (its own session).
    argv = [str(pixelsd), "--state-dir", str(state_dir), "--launcher", "none"]
    proc = subprocess.Popen(argv, stdout=log, stderr=log)
    log.close()  # the child holds its own descriptor
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state_dir / "pixelsd.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"ctl_latency: pixelsd exited with {proc.returncode}:\n{tail}")
        if ping(state_dir) is not None:
            return proc
        time.sleep(0.05)  # the socket file may not exist yet; ping fails at once then
    stop_daemon(proc)
    raise SystemExit(f"ctl_latency: pixelsd did not answer ping within {READY_TIMEOUT_S:.0f} s")


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def child_env(pycache: Path | None) -> dict[str, str]:
    """The timed commands' environment: with a private bytecode cache unless ``pycache`` is None."""
    env = dict(os.environ)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one whole-process run; exits the bench if the command fails."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise SystemExit(f"ctl_latency: {' '.join(cmd)} exited {proc.returncode}: {err}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 and min, in seconds."""
    if len(samples) > 1:
        p90 = statistics.quantiles(samples, n=10, method="inclusive")[-1]
    else:
        p90 = samples[0]
    return {"median": statistics.median(samples), "p90": p90, "min": min(samples)}


TARGET_VS_CIRCUS = 0.5
CIRCUS_INI = """[circus]
endpoint = {endpoint}
pubsub_endpoint = {pubsub}
statsd = False

[watcher:sleeper]
cmd = sleep 3600
numprocesses = 1
"""


def start_circusd(tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """A circusd with one watcher on ipc sockets under ``tmp``; None if circus is not installed."""
    circusd = Path(sys.executable).with_name("circusd")
    circusctl = Path(sys.executable).with_name("circusctl")
    if not circusd.exists() or not circusctl.exists():
        return None
    endpoint = f"ipc://{tmp}/circus-ctl.sock"
    ini = tmp / "circus.ini"
    ini.write_text(CIRCUS_INI.format(endpoint=endpoint, pubsub=f"ipc://{tmp}/circus-pub.sock"))
    log = (tmp / "circusd.log").open("ab")
    proc = subprocess.Popen([str(circusd), str(ini)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        done = subprocess.run(
            [str(circusctl), "--endpoint", endpoint, "--timeout", "1", "status"],
            capture_output=True,
            check=False,
        )
        if done.returncode == 0 and b"sleeper" in done.stdout:
            return proc, endpoint
        time.sleep(0.1)  # circusd binds after it starts its watcher
    stop_daemon(proc)
    raise SystemExit("ctl_latency: circusd did not answer within the start-up timeout")


def measure(
    state_dir: Path, runs: int, env: dict[str, str], circus_endpoint: str | None = None
) -> dict[str, list[float]]:
    """N interleaved runs of each command (ABBA order), after one untimed warm-up each."""
    commands = {
        "pixelsctl": [
            str(Path(sys.executable).with_name("pixelsctl")),
            "--state-dir",
            str(state_dir),
            "status",
        ],
        "floor": [sys.executable, "-c", FLOOR_CODE],
        "msgspec": [sys.executable, "-c", MSGSPEC_CODE],
    }
    if circus_endpoint is not None:
        circusctl = str(Path(sys.executable).with_name("circusctl"))
        commands["circusctl"] = [circusctl, "--endpoint", circus_endpoint, "status"]
    for cmd in commands.values():
        timed(cmd, env)  # warm-up: fills the bytecode cache and the OS page cache
    samples: dict[str, list[float]] = {name: [] for name in commands}
    order = list(commands)
    for i in range(runs):
        for name in order if i % 2 == 0 else reversed(order):
            samples[name].append(timed(commands[name], env))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs of each command")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_RUNS} runs, for CI")
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="use the daemon answering on DIR, or start one there (default: a fresh temp dir)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run the commands with the environment as it is (see the module docstring)",
    )
    opts = parser.parse_args()
    runs = SMOKE_RUNS if opts.smoke else opts.runs
    if runs < 1:
        parser.error("--runs must be at least 1")

    made_dir = opts.state_dir is None
    # Short dir under /tmp: ipc:// socket paths are limited to 107 bytes.
    state_dir = Path(opts.state_dir or tempfile.mkdtemp(prefix="px-bench-", dir="/tmp"))
    pycache = None if opts.no_bytecode_cache else Path(tempfile.mkdtemp(prefix="px-pyc-"))
    daemon = None
    circus = None
    circus_dir = Path(tempfile.mkdtemp(prefix="px-circus-", dir="/tmp"))
    try:
        if ping(state_dir) is None:
            state_dir.mkdir(parents=True, exist_ok=True)
            daemon = start_daemon(state_dir)
        info = ping(state_dir) or {}
        circus = start_circusd(circus_dir)
        circus_endpoint = circus[1] if circus is not None else None
        samples = measure(state_dir, runs, child_env(pycache), circus_endpoint)
    finally:
        if daemon is not None:
            stop_daemon(daemon)
        if circus is not None:
            stop_daemon(circus[0])
        shutil.rmtree(circus_dir, ignore_errors=True)
        if made_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        if pycache is not None:
            shutil.rmtree(pycache, ignore_errors=True)

    stats = {name: summary(values) for name, values in samples.items()}
    ctl, floor = stats["pixelsctl"], stats["floor"]
    ratio = ctl["median"] / floor["median"]
    print(f"{'command':<34} {'median':>9} {'p90':>9} {'min':>9}")
    labels = {
        "pixelsctl": "pixelsctl --state-dir DIR status",
        "floor": f'python -c "{FLOOR_CODE}"',
        "msgspec": f'python -c "{MSGSPEC_CODE}"',
        "circusctl": "circusctl --endpoint E status",
    }
    for name, s in stats.items():
        print(
            f"{labels[name]:<34} {s['median'] * 1e3:7.1f}ms {s['p90'] * 1e3:7.1f}ms "
            f"{s['min'] * 1e3:7.1f}ms"
        )
    print(f"ratio of medians {ratio:.3f} (target <= {TARGET_RATIO}), runs {runs}")
    vs_circus = None
    if "circusctl" in stats:
        vs_circus = ctl["median"] / stats["circusctl"]["median"]
        print(f"pixelsctl/circusctl medians {vs_circus:.3f} (target <= {TARGET_VS_CIRCUS})")
    else:
        print("circusctl: not installed (pip install circus), not compared")
    print(
        json.dumps(
            {
                "bench": "ctl_latency",
                "pixelsctl_median_s": round(ctl["median"], 5),
                "floor_median_s": round(floor["median"], 5),
                "ratio": round(ratio, 4),
                "target_ratio": TARGET_RATIO,
                "runs": runs,
                "within_target": ratio <= TARGET_RATIO,
                "pixelsctl_p90_s": round(ctl["p90"], 5),
                "pixelsctl_min_s": round(ctl["min"], 5),
                "floor_p90_s": round(floor["p90"], 5),
                "floor_min_s": round(floor["min"], 5),
                "ratio_of_mins": round(ctl["min"] / floor["min"], 4),
                "msgspec_median_s": round(stats["msgspec"]["median"], 5),
                "circusctl_median_s": round(stats["circusctl"]["median"], 5)
                if "circusctl" in stats
                else None,
                "ratio_vs_circusctl": round(vs_circus, 4) if vs_circus is not None else None,
                "target_vs_circusctl": TARGET_VS_CIRCUS,
                "bytecode_cache": pycache is not None,
                "daemon": "started" if daemon is not None else "reused",
                "daemon_version": info.get("daemon"),
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
