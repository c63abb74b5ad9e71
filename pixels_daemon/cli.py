"""``pixelsd``: run the daemon, or check a plan file.

    pixelsd [run] [--state-dir DIR] [--runtime-dir DIR] [--plan FILE] [...]
    pixelsd check-plan [--plan FILE]

Exit status: 0 clean stop, 1 cannot start (state dir in use, unusable paths, unreadable log),
2 bad usage or an invalid plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixels_daemon import __version__
from pixels_daemon.daemon import DEFAULT_HEARTBEAT_S, DEFAULT_SNAPSHOT_EVERY
from pixels_daemon.paths import PathError, default_state_dir
from pixels_daemon.plan import Plan, PlanError, load_plan

EXIT_CANNOT_START = 1
EXIT_USAGE = 2

_SUBCOMMANDS = ("run", "check-plan")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelsd",
        description="The DGX-Pixels meta-orchestrator daemon.",
        epilog="Commands: run (default), check-plan. Exit status: 0 ok, 1 cannot start, "
        "2 bad usage or invalid plan.",
    )
    parser.add_argument("--version", action="version", version=f"pixelsd {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the daemon (the default)")
    _run_options(run)
    check = sub.add_parser("check-plan", help="validate a plan file and summarise it")
    check.add_argument("--plan", metavar="FILE", help="plan file (default: the embedded plan)")
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
        "--log-format", choices=("console", "json"), default="console", help="log line format"
    )


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
    args = _parser().parse_args(args_list)
    try:
        plan = _load(args.plan)
    except PlanError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.command == "check-plan":
        print(
            f"{plan.source}: ok: plan {plan.name!r}, {len(plan.orchestrators)} orchestrators, "
            f"{len(plan.workstreams)} workstreams, {len(plan.gates)} gates"
        )
        return 0
    return _run(args, plan)


def _run(args: argparse.Namespace, plan: Plan) -> int:
    # Imported here: check-plan and --help stay fast and need no sockets.
    import anyio

    from pixels_daemon.logconfig import configure_logging
    from pixels_daemon.server import Config, DaemonError, Server, run_server
    from pixels_daemon.store import StoreError

    configure_logging(args.log_format)
    config = Config(
        state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(),
        runtime_dir=Path(args.runtime_dir) if args.runtime_dir else None,
        synchronous=args.synchronous,
        heartbeat_s=args.heartbeat,
        snapshot_every=args.snapshot_every,
    )
    startup_errors = (DaemonError, StoreError, PathError)
    try:
        server = Server(config, plan)
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


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
