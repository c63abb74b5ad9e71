"""``pixelsd``: run the daemon, or check a plan file.

    pixelsd [run] [--state-dir DIR] [--runtime-dir DIR] [--plan FILE] [...]
    pixelsd check-plan [--plan FILE]
    pixelsd init [--state-dir DIR] [--allow-missing-gpu] [--allow-other-arch] [--skip-checks]

Exit status: 0 clean stop, 1 cannot start (state dir in use, unusable paths, unreadable log),
2 bad usage or an invalid plan. ``init``: 0 ready, 1 a check failed or the dir cannot be made,
2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from pixels_daemon import __version__
from pixels_daemon.core.engine import DEFAULT_CONFIG
from pixels_daemon.daemon import DEFAULT_HEARTBEAT_S, DEFAULT_SNAPSHOT_EVERY
from pixels_daemon.paths import PathError, default_state_dir
from pixels_daemon.plan import Plan, PlanError, load_plan
from pixels_daemon.schedule import (
    DEFAULT_CHECK_INTERVAL_S,
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_REPORT_AT,
    DEFAULT_REPORT_TZ,
)
from pixels_daemon.spawner import (
    DEFAULT_BACKOFF_INITIAL_S,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_FLAP_LIMIT,
    DEFAULT_FLAP_WINDOW_S,
    LAUNCHERS,
    STOP_GRACE_S,
)

EXIT_CANNOT_START = 1
EXIT_USAGE = 2

_SUBCOMMANDS = ("run", "check-plan", "init", "demo")

#: The spec's runtime layout, made by ``pixelsd init`` under the state dir.
ORCHESTRATION_DIRS = ("logs", "status", "decisions", "reports")

#: The telemetry cadence the issue asks for: often enough to catch a thermal excursion, rare
#: enough that a sample (~0.2 ms per GPU, measured on an H100) is free.
DEFAULT_TELEMETRY_INTERVAL_S = 15.0

#: The least real time a poll is given to be answered, whatever the time scale.
MIN_POLL_TIMEOUT_REAL_S = 1.0

#: Where ``init`` finds the repro scripts: $PIXELS_REPRO_DIR, else the checkout's repro/.
ENV_REPRO_DIR = "PIXELS_REPRO_DIR"

#: A hardware or dependency check that has not finished after this long counts as failed
#: (nvidia-smi on a wedged driver can hang; the scripts bound their own probes well below this).
CHECK_TIMEOUT_S = 120.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelsd",
        description="The DGX-Pixels meta-orchestrator daemon.",
        epilog="Commands: run (default), check-plan, init, demo. Exit status: 0 ok, 1 cannot start "
        "(init: a check failed), 2 bad usage or invalid plan.",
    )
    parser.add_argument("--version", action="version", version=f"pixelsd {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the daemon (the default)")
    _run_options(run)
    check = sub.add_parser("check-plan", help="validate a plan file and summarise it")
    check.add_argument("--plan", metavar="FILE", help="plan file (default: the embedded plan)")
    init = sub.add_parser(
        "init",
        help="prepare a state dir (.orchestration/{logs,status,decisions,reports}) and run the "
        "hardware and dependency checks",
    )
    # demo parses its own options (pixels_daemon/demo.py): listed here for --help only.
    sub.add_parser(
        "demo",
        add_help=False,
        help="the whole product in one command: daemon, four orchestrators and simulated agents "
        "run the embedded plan's 12 weeks in ~2.5 minutes (pixelsd demo --help)",
    )
    init.add_argument("--state-dir", metavar="DIR", help="the state dir to prepare (as for run)")
    init.add_argument("--plan", metavar="FILE", help="plan file to validate (default: embedded)")
    init.add_argument(
        "--allow-missing-gpu", action="store_true", help="a box without an NVIDIA GPU passes"
    )
    init.add_argument(
        "--allow-other-arch", action="store_true", help="a box that is not aarch64 passes"
    )
    init.add_argument(
        "--skip-checks", action="store_true", help="only make the directories; run no check"
    )
    init.add_argument(
        "--repro-dir",
        metavar="DIR",
        help=f"where verify_hardware.sh and check_dependencies.sh are "
        f"(default: ${ENV_REPRO_DIR}, else the source tree's repro/)",
    )
    return parser


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the database, lock and sockets under DIR "
        "(default: $PIXELS_STATE_DIR, $STATE_DIRECTORY or ~/.local/state/pixels)",
    )
    parser.add_argument(
        "--runtime-dir", metavar="DIR", help="put the ipc sockets in DIR (default: STATE_DIR/run)"
    )
    parser.add_argument(
        "--plan", metavar="FILE", help="plan file (default: the embedded DGX-Pixels plan)"
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=DEFAULT_HEARTBEAT_S,
        metavar="SECONDS",
        help=f"heartbeat interval told to orchestrators (default {DEFAULT_HEARTBEAT_S})",
    )
    parser.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL"),
        default="FULL",
        help="SQLite durability: FULL survives power loss (default); NORMAL only a crash",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=DEFAULT_SNAPSHOT_EVERY,
        metavar="N",
        help=f"snapshot the state every N events (default {DEFAULT_SNAPSHOT_EVERY})",
    )
    parser.add_argument(
        "--adr-mode",
        choices=("approve", "auto"),
        default="approve",
        help="decisions: keep ADRs pending until `pixelsctl decision approve|reject` (default), "
        "or write them at once",
    )
    parser.add_argument(
        "--check-interval",
        "--tick",  # the 0.1 spelling, kept working
        dest="check_interval",
        type=_positive_seconds,
        default=DEFAULT_CHECK_INTERVAL_S,
        metavar="SECONDS",
        help="how often the time-based rules (stall, overrun, blocker ageing) run "
        f"(default {DEFAULT_CHECK_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        default=DEFAULT_POLL_INTERVAL_S,
        metavar="SECONDS",
        help=f"poll connected orchestrators this often (default {DEFAULT_POLL_INTERVAL_S:g}: 4 h)",
    )
    parser.add_argument(
        "--poll-timeout",
        type=_positive_seconds,
        default=DEFAULT_CONFIG.poll_timeout_s,
        metavar="SECONDS",
        help="a poll unanswered this long is missed (default "
        f"{DEFAULT_CONFIG.poll_timeout_s:g}; never less than 1 real second)",
    )
    parser.add_argument(
        "--report-at",
        default=DEFAULT_REPORT_AT,
        metavar="'DAY HH:MM'",
        help=f"when the weekly report is written (default '{DEFAULT_REPORT_AT}')",
    )
    parser.add_argument(
        "--report-tz",
        default=DEFAULT_REPORT_TZ,
        metavar="ZONE",
        help=f"time zone of --report-at and of times in reports (default {DEFAULT_REPORT_TZ})",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive_number,
        default=1.0,
        metavar="N",
        help="one real second counts as N seconds for every rule and schedule (default 1; "
        "the demo runs 12 weeks in minutes). Kept in STATE_DIR/clock.json across restarts",
    )
    parser.add_argument(
        "--sim-start",
        metavar="ISO8601",
        help="with --time-scale: the simulated instant the clock starts at, e.g. "
        "2026-01-05T09:00 (in --report-tz unless it has an offset); default now. Ignored when "
        "STATE_DIR/clock.json already anchors the clock",
    )
    parser.add_argument(
        "--telemetry-interval",
        type=_non_negative_seconds,
        default=DEFAULT_TELEMETRY_INTERVAL_S,
        metavar="SECONDS",
        help="sample GPU (NVML) and unified memory this often, in real seconds, at least 1; "
        f"0 turns telemetry off (default {DEFAULT_TELEMETRY_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics on http://ADDR:PORT/metrics (default: off)",
    )
    parser.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        metavar="ADDR",
        help="address of the metrics endpoint (default 127.0.0.1: it has no authentication)",
    )
    parser.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="subprocess",
        help="how orchestrators are started when the plan activates them: subprocess (default: "
        "the daemon runs `pixels-orchestrator run NAME` itself), systemd (`systemctl start "
        "pixels-orchestrator@NAME`), none (someone else starts them)",
    )
    parser.add_argument(
        "--orchestrator-config",
        metavar="DIR",
        help="subprocess launcher: DIR/NAME.toml, when it exists, is passed to orchestrator NAME "
        "as --config (default: STATE_DIR/orchestrators)",
    )
    parser.add_argument(
        "--restart-backoff",
        type=_positive_seconds,
        default=DEFAULT_BACKOFF_INITIAL_S,
        metavar="SECONDS",
        help="a crashed orchestrator is restarted after SECONDS, doubling per crash in a row "
        f"(default {DEFAULT_BACKOFF_INITIAL_S:g})",
    )
    parser.add_argument(
        "--restart-backoff-max",
        type=_positive_seconds,
        default=DEFAULT_BACKOFF_MAX_S,
        metavar="SECONDS",
        help=f"the longest restart delay (default {DEFAULT_BACKOFF_MAX_S:g})",
    )
    parser.add_argument(
        "--flap-limit",
        type=_positive_int,
        default=DEFAULT_FLAP_LIMIT,
        metavar="N",
        help="N crashes within --flap-window: the orchestrator is flapping, escalated and not "
        f"restarted until `pixelsctl spawn NAME` (default {DEFAULT_FLAP_LIMIT})",
    )
    parser.add_argument(
        "--flap-window",
        type=_positive_seconds,
        default=DEFAULT_FLAP_WINDOW_S,
        metavar="SECONDS",
        help=f"the flapping window; a run this long resets the crash count (default "
        f"{DEFAULT_FLAP_WINDOW_S:g})",
    )
    parser.add_argument(
        "--stop-grace",
        type=_positive_seconds,
        default=STOP_GRACE_S,
        metavar="SECONDS",
        help="`pixelsctl stop`: how long an orchestrator gets to obey the stop command before "
        f"SIGTERM (systemd: systemctl stop), and then SIGKILL (default {STOP_GRACE_S:g})",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the daemon's config file (TOML): [notifications] sinks, routes, quiet hours "
        "(docs/configuration.md); default: none, nothing is sent",
    )
    parser.add_argument(
        "--tcp-bus",
        metavar="tcp://HOST:PORT",
        help="also serve the bus on tcp:// with CURVE, for orchestrators on other hosts "
        "(default: off; docs/security.md)",
    )
    parser.add_argument(
        "--tcp-ctl",
        metavar="tcp://HOST:PORT",
        help="also serve control on tcp:// with CURVE, for pixelsctl on other hosts (default: off)",
    )
    parser.add_argument(
        "--server-key",
        metavar="FILE",
        help="the daemon's secret key for tcp:// (default STATE_DIR/keys/server.key_secret; "
        "pixelsctl keys generate --name server)",
    )
    parser.add_argument(
        "--allow-plain-tcp",
        action="store_true",
        help="serve --tcp-bus/--tcp-ctl without CURVE; refused unless they are loopback addresses",
    )
    parser.add_argument(
        "--operator",
        action="append",
        default=[],
        metavar="USER",
        help="a user (name or uid) who may command the daemon over its ipc:// control socket; "
        "repeatable. The daemon's own user and root always may; other users who can reach the "
        "socket may only query",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json", "journal"),
        default="auto",
        help="console lines, JSON lines, or native journald entries; auto (default): journal when "
        "stderr is the journal (under systemd), else console",
    )


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value == 0 or 1 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 (off) or at least 1 second")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _fail(message: str, status: int) -> int:
    print(f"pixelsd: error: {message}", file=sys.stderr)
    return status


def _load(plan_path: str | None) -> Plan:
    return load_plan(plan_path)


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in _SUBCOMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")
    if args_list[0] == "demo":
        from pixels_daemon.demo import run_demo

        return run_demo(args_list[1:])
    args = _parser().parse_args(args_list)
    try:
        plan = _load(args.plan)
    except PlanError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.command == "init":
        return _init(args)
    if args.command == "check-plan":
        print(
            f"{plan.source}: ok: plan {plan.name!r}, {len(plan.orchestrators)} orchestrators, "
            f"{len(plan.workstreams)} workstreams, {len(plan.gates)} gates"
        )
        return 0
    return _run(args, plan)


def _repro_dir(option: str | None) -> Path:
    if option:
        return Path(option)
    env = os.environ.get(ENV_REPRO_DIR)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    packaged = here / "repro"  # a wheel install: pyproject force-includes repro/ here
    if packaged.is_dir():
        return packaged
    return here.parent / "repro"  # a source checkout (editable install)


def _init(args: argparse.Namespace) -> int:
    """Make STATE_DIR/.orchestration/{logs,status,decisions,reports}, then run the checks, each
    writing its JSON to .orchestration/reports/ and its summary to stderr."""
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    base = state_dir / ".orchestration"
    if state_dir.exists() and not state_dir.is_dir():
        return _fail(f"{state_dir} is not a directory; give --state-dir a directory", EXIT_USAGE)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        for name in ORCHESTRATION_DIRS:
            (base / name).mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        where = exc.filename or base  # the path at fault, e.g. a state dir that is a file
        return _fail(f"cannot prepare {where}: {exc.strerror or exc}", EXIT_CANNOT_START)
    print(f"pixelsd: prepared {base}/{{{','.join(ORCHESTRATION_DIRS)}}}", file=sys.stderr)
    if args.skip_checks:
        return 0
    repro = _repro_dir(args.repro_dir)
    hardware = ["--state-dir", str(state_dir)]
    if args.allow_missing_gpu:
        hardware.append("--allow-missing-gpu")
    if args.allow_other_arch:
        hardware.append("--allow-other-arch")
    checks = [
        ("verify_hardware.sh", hardware, "hardware.json"),
        ("check_dependencies.sh", [], "dependencies.json"),
    ]
    failed = []
    for script, extra, report in checks:
        path = repro / script
        if not path.is_file():
            return _fail(
                f"{path} not found; pass --repro-dir DIR (the source tree's repro/) "
                "or --skip-checks",
                EXIT_CANNOT_START,
            )
        # The venv's python, so the dependency check looks at the packages pixelsd runs with.
        env = {**os.environ, "PYTHON": sys.executable}
        try:
            done = subprocess.run(
                ["bash", str(path), *extra],
                stdout=subprocess.PIPE,
                env=env,
                timeout=CHECK_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            failed.append(f"{script} (no result within {CHECK_TIMEOUT_S:.0f}s)")
            continue
        (base / "reports" / report).write_bytes(done.stdout)
        if done.returncode != 0:
            failed.append(f"{script} (exit {done.returncode})")
    if failed:
        return _fail(
            f"checks failed: {', '.join(failed)}; reasons above and in {base / 'reports'}",
            EXIT_CANNOT_START,
        )
    print(f"pixelsd: checks passed; reports in {base / 'reports'}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace, plan: Plan) -> int:
    # Imported here: check-plan and --help stay fast and need no sockets.
    import anyio

    from pixels_daemon.clock import ClockError, ScaledClock
    from pixels_daemon.core.engine import EngineConfig
    from pixels_daemon.logconfig import configure_logging
    from pixels_daemon.paths import StatePaths
    from pixels_daemon.schedule import Schedule, ScheduleError, parse_report_at, parse_zone
    from pixels_daemon.security.transport import SecurityConfig, resolve_users
    from pixels_daemon.server import Config, DaemonError, Server, run_server
    from pixels_daemon.spawner import SupervisionConfig, SupervisionConfigError
    from pixels_daemon.store import StoreError
    from pixels_daemon.supervise import SpawnConfig

    configure_logging(args.log_format)
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    try:
        tz = parse_zone(args.report_tz)
        sched = Schedule(
            poll_interval_s=args.poll_interval,
            check_interval_s=args.check_interval,
            report_at=parse_report_at(args.report_at),
            report_tz=tz,
        )
        start = _parse_instant(args.sim_start, tz) if args.sim_start else None
        supervision = SupervisionConfig(
            backoff_initial_s=args.restart_backoff,
            backoff_max_s=args.restart_backoff_max,
            flap_limit=args.flap_limit,
            flap_window_s=args.flap_window,
        )
        security = SecurityConfig(
            tcp_bus=args.tcp_bus,
            tcp_ctl=args.tcp_ctl,
            server_key=Path(args.server_key) if args.server_key else None,
            allow_plain_tcp=args.allow_plain_tcp,
            operators=resolve_users(args.operator),
        )
    except (ScheduleError, SupervisionConfigError, ValueError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    notifications = None
    if args.config:
        from pixels_daemon.notify.config import ConfigError, load_config, sink_secrets

        try:
            notifications = load_config(args.config).notifications
            for name, sink in notifications.sinks.items():
                sink_secrets(name, sink)  # a missing token stops the start, not a notification
        except ConfigError as exc:
            return _fail(str(exc), EXIT_USAGE)
    try:
        clock = ScaledClock.resume(StatePaths.under(state_dir).clock, args.time_scale, start)
    except (ClockError, OSError) as exc:
        return _fail(str(exc), EXIT_CANNOT_START)
    # A poll's answer travels in real time: at high scales the timeout must still be at least a
    # real second, or every poll would count as missed.
    poll_timeout = max(args.poll_timeout, MIN_POLL_TIMEOUT_REAL_S * clock.scale)
    config = Config(
        state_dir=state_dir,
        runtime_dir=Path(args.runtime_dir) if args.runtime_dir else None,
        synchronous=args.synchronous,
        heartbeat_s=args.heartbeat,
        snapshot_every=args.snapshot_every,
        engine=EngineConfig(adr_mode=args.adr_mode, poll_timeout_s=poll_timeout),
        schedule=sched,
        telemetry_interval_s=args.telemetry_interval or None,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        spawn=SpawnConfig(
            launcher=args.launcher,
            supervision=supervision,
            orchestrator_config=Path(args.orchestrator_config)
            if args.orchestrator_config
            else state_dir / "orchestrators",
            stop_grace_s=args.stop_grace,
        ),
        security=security,
        notifications=notifications,
        tune_gc=True,
    )
    startup_errors = (DaemonError, StoreError, PathError)
    try:
        server = Server(config, plan, clock=clock)
        anyio.run(run_server, server)
    except startup_errors as exc:
        return _fail(str(exc), EXIT_CANNOT_START)
    except BaseExceptionGroup as group:
        # Task groups wrap what a task raised: unwrap an operator-facing start-up error.
        match, _rest = group.split(startup_errors)
        if match is None:
            raise
        return _fail(str(_first_leaf(match)), EXIT_CANNOT_START)
    except KeyboardInterrupt:
        return 0
    return 0


def _parse_instant(text: str, tz: ZoneInfo) -> float:
    """An ISO 8601 date or date-time; without an offset it is in ``tz``."""
    from pixels_daemon.schedule import ScheduleError

    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(
            f"--sim-start {text!r} is not an ISO 8601 date-time; use e.g. 2026-01-05T09:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
