"""Thousands of orchestrators at once: ack latency, pixelsctl latency, nothing lost.

    python bench/scale.py [--clients N] [--procs P] [--seconds S] [--ctl-rate R] [--smoke]

A generated plan with N orchestrators (one workstream each, nothing holding them) is loaded by the
real daemon. P client processes hold N/P DEALER sockets between them; each socket is one
orchestrator sending one status (progress of its workstream) every second, spread evenly over the
second, for S seconds. Meanwhile this process asks ``status`` on the control socket R times a
second (one request in flight, like an operator's watch loop). Measured:

- acked messages per second, ack latency p50/p99 (from each send to the cumulative ack that covers
  it, per socket);
- pixelsctl ``status`` latency p50/p99 (request to reply);
- nothing lost: every acked message is in the event log (counted per orchestrator afterwards).

Beside it, in the same run, the baseline: the same clients against a bare pyzmq ROUTER that decodes
only each frame's seq and acks it (no validation, state or storage). Targets: every message acked,
ack p99 < 50 ms, pixelsctl p99 < 20 ms. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import start_daemon  # bench/ is on sys.path: run as a script

from protocol import codec
from protocol.messages import Ack, Request, Status, WorkstreamReport

TARGET_ACK_P99_MS = 50.0
TARGET_CTL_P99_MS = 20.0


class _Seq(msgspec.Struct):
    """Just the envelope's seq (the baseline decodes nothing else)."""

    seq: int = 0


def name(i: int) -> str:
    return f"orch-{i:05d}"


def plan_text(n: int) -> str:
    parts = ['[plan]\nname = "scale"\nweeks = 4\n', '[[milestones]]\nid = "M0"\nname = "All"\n']
    for i in range(n):
        parts.append(f'[[orchestrators]]\nid = "{name(i)}"\n')
        parts.append(
            f'[[workstreams]]\nid = "WS-{i:05d}"\nname = "work {i}"\norchestrator = "{name(i)}"\n'
            'milestone = "M0"\ndays = [5, 10]\n'
        )
    return "\n".join(parts)


def serve_baseline(endpoint: str) -> None:
    """ROUTER: decode each frame's seq, ack it; nothing else."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    decoder = msgspec.msgpack.Decoder(_Seq)
    encoder = msgspec.msgpack.Encoder()
    while True:
        ident, payload = sock.recv_multipart()
        sock.send_multipart([ident, encoder.encode(Ack(acked_seq=decoder.decode(payload).seq))])


def run_clients(endpoint: str, first: int, count: int, seconds: float, out: str) -> None:
    """``count`` orchestrators (first..first+count-1), one status a second each; write figures."""
    ctx = zmq.Context()
    socks, names = [], [name(i) for i in range(first, first + count)]
    poller = zmq.Poller()
    for _ in names:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        poller.register(sock, zmq.POLLIN)
        socks.append(sock)
    index = {sock: i for i, sock in enumerate(socks)}
    sent_at: list[dict[int, float]] = [{} for _ in names]
    acked = [0] * count
    next_seq = [1] * count
    latencies: list[float] = []
    errors: list[str] = []
    decoder = codec.to_orchestrator
    start = time.perf_counter() + 0.5  # all sockets connected before the first send
    due = [start + i / count for i in range(count)]  # spread evenly over each second
    end = start + seconds
    while True:
        now = time.perf_counter()
        if now < end:
            for i in range(count):
                if due[i] <= now:
                    seq = next_seq[i]
                    frame = codec.encode(
                        Status(
                            id=f"{names[i]}-{seq}",
                            seq=seq,
                            ts=time.time(),
                            orchestrator=names[i],
                            status="active",
                            workstreams={
                                f"WS-{first + i:05d}": WorkstreamReport(
                                    status="in_progress", progress=min(1.0, seq / 1e4)
                                )
                            },
                        )
                    )
                    socks[i].send(frame, zmq.NOBLOCK)
                    sent_at[i][seq] = time.perf_counter()
                    next_seq[i] += 1
                    due[i] += 1.0
        elif all(acked[i] == next_seq[i] - 1 for i in range(count)) or now > end + 10:
            break
        wait_ms = max(0, min(10, int((min(due) - time.perf_counter()) * 1000)))
        for sock, _ in poller.poll(wait_ms):
            i = index[sock]
            while True:
                try:
                    reply = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = decoder.decode(reply)
                if not isinstance(msg, Ack):
                    errors.append(repr(msg)[:300])
                    continue
                got = time.perf_counter()
                for seq in range(acked[i] + 1, msg.acked_seq + 1):
                    t = sent_at[i].pop(seq, None)
                    if t is not None:
                        latencies.append(got - t)
                acked[i] = max(acked[i], msg.acked_seq)
    for sock in socks:
        sock.close(0)
    Path(out).write_text(
        json.dumps(
            {
                "sent": sum(n - 1 for n in next_seq),
                "acked": sum(acked),
                "latencies": latencies,
                "errors": errors[:5],
                "per_orchestrator": dict(zip(names, acked, strict=True)),
            }
        )
    )


def ctl_load(endpoint: str, rate: float, until: float) -> list[float]:
    """``status`` requests at ``rate`` per second, one in flight; their latencies."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    out = []
    n = 0
    while time.perf_counter() < until:
        n += 1
        t = time.perf_counter()
        sock.send(codec.encode(Request(id=f"q{n}", ts=time.time(), command="status")))
        if sock.poll(5000):
            sock.recv()
            out.append(time.perf_counter() - t)
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - t)))  # bench pacing
    sock.close(0)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def one_round(args: argparse.Namespace, tmp: Path, daemon: bool) -> dict[str, Any]:
    if daemon:
        state = tmp / "state"
        plan = tmp / "plan.toml"
        plan.write_text(plan_text(args.clients))
        server = start_daemon(state, "--plan", str(plan), "--telemetry-interval", "0", timeout_s=60)
        bus = f"ipc://{state}/run/bus.sock"
    else:
        bus = f"ipc://{tmp}/baseline.sock"
        server = subprocess.Popen([sys.executable, __file__, "--serve-baseline", bus])
        time.sleep(0.3)  # bench only: the baseline has no readiness signal
    per = args.clients // args.procs
    clients = []
    for p in range(args.procs):
        count = per if p < args.procs - 1 else args.clients - per * (args.procs - 1)
        out = tmp / f"clients-{p}.json"
        clients.append(
            (
                out,
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--run-clients",
                        bus,
                        str(p * per),
                        str(count),
                        str(args.seconds),
                        str(out),
                    ]
                ),
            )
        )
    ctl_lat: list[float] = []
    try:
        if daemon:
            ctl_lat = ctl_load(
                f"ipc://{tmp}/state/run/ctl.sock", args.ctl_rate, time.perf_counter() + args.seconds
            )
        for _, proc in clients:
            proc.wait(timeout=args.seconds + 120)
    finally:
        server.terminate()
        server.wait(timeout=30)
    sent = acked = 0
    lat: list[float] = []
    errors: list[str] = []
    per_orch: dict[str, int] = {}
    for out, _ in clients:
        figures = json.loads(out.read_text())
        sent += figures["sent"]
        acked += figures["acked"]
        lat += figures["latencies"]
        errors += figures["errors"]
        per_orch.update(figures["per_orchestrator"])
    stored_ok = True
    if daemon:
        with sqlite3.connect(f"file:{tmp}/state/pixels.db?mode=ro", uri=True) as conn:
            rows = dict(
                conn.execute(
                    "SELECT orchestrator, max(seq) FROM events WHERE kind = 'msg' GROUP BY 1"
                ).fetchall()
            )
            (count,) = conn.execute("SELECT count(*) FROM events WHERE kind = 'msg'").fetchone()
        stored_ok = count >= acked and all(rows.get(o, 0) >= a for o, a in per_orch.items())
    return {
        "sent": sent,
        "acked": acked,
        "rate": acked / args.seconds,
        "ack_p50_ms": pct(lat, 50) * 1000,
        "ack_p99_ms": pct(lat, 99) * 1000,
        "ctl_p50_ms": pct(ctl_lat, 50) * 1000,
        "ctl_p99_ms": pct(ctl_lat, 99) * 1000,
        "ctl_requests": len(ctl_lat),
        "errors": errors[:3],
        "stored_ok": stored_ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ctl-rate", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    parser.add_argument("--serve-baseline", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--run-clients", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return 0
    if args.run_clients:
        endpoint, first, count, seconds, out = args.run_clients
        run_clients(endpoint, int(first), int(count), float(seconds), out)
        return 0
    if args.smoke:
        args.clients, args.procs, args.seconds = 40, 2, 2.0
    tmp = Path(tempfile.mkdtemp(prefix="pxs-", dir="/tmp"))
    try:
        (tmp / "b").mkdir()
        (tmp / "d").mkdir()
        base = one_round(args, tmp / "b", daemon=False)
        mine = one_round(args, tmp / "d", daemon=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{args.clients} orchestrators in {args.procs} processes, 1 status/s each for "
        f"{args.seconds:.0f} s; pixelsctl status at {args.ctl_rate}/s"
    )
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    head = f"{'server':<30}{'sent':>9}{'acked':>9}{'msg/s':>8}{'ack p50':>9}{'ack p99':>9}"
    print(head + f"{'ctl p50':>9}{'ctl p99':>9}")
    for label, r in (("baseline (seq-echo ROUTER)", base), ("pixelsd", mine)):
        print(
            f"{label:<30}{r['sent']:>9}{r['acked']:>9}{r['rate']:>8.0f}"
            f"{r['ack_p50_ms']:>9.2f}{r['ack_p99_ms']:>9.2f}"
            f"{r['ctl_p50_ms']:>9.2f}{r['ctl_p99_ms']:>9.2f}"
        )
    print(f"every message in the log: {mine['stored_ok']}; errors: {mine['errors'] or 'none'}")
    print(f"targets: all acked, ack p99 < {TARGET_ACK_P99_MS} ms, ctl p99 < {TARGET_CTL_P99_MS} ms")
    ratio = float(mine["ack_p99_ms"]) / max(float(base["ack_p99_ms"]), 1e-6)
    print(
        json.dumps(
            {
                "bench": "scale",
                "clients": args.clients,
                "seconds": args.seconds,
                "sent": mine["sent"],
                "acked": mine["acked"],
                "all_acked": mine["acked"] == mine["sent"],
                "stored_ok": mine["stored_ok"],
                "ack_p50_ms": round(float(mine["ack_p50_ms"]), 3),
                "ack_p99_ms": round(float(mine["ack_p99_ms"]), 3),
                "ctl_p50_ms": round(float(mine["ctl_p50_ms"]), 3),
                "ctl_p99_ms": round(float(mine["ctl_p99_ms"]), 3),
                "baseline_ack_p99_ms": round(float(base["ack_p99_ms"]), 3),
                "ratio": round(ratio, 3),
                "target_ack_p99_ms": TARGET_ACK_P99_MS,
                "target_ctl_p99_ms": TARGET_CTL_P99_MS,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
