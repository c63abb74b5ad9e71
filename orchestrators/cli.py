"""``pixels-orchestrator``: report to pixelsd from a shell, through the orchestrator's outbox.

    pixels-orchestrator report NAME --workstream WS --status S [--progress P] [--blocker TEXT]
    pixels-orchestrator escalate NAME --issue TEXT [--type T] [--severity S] [--workstream WS ...]
    pixels-orchestrator depend NAME --workstream WS --on DEP [--reason TEXT]
    pixels-orchestrator outbox NAME
    pixels-orchestrator run NAME [--config FILE] [--agent TEMPLATE] [--workdir DIR] [--plan FILE]

``report``, ``escalate`` and ``depend`` first put the message in NAME's outbox (on disk: from then
on it is never lost), then deliver everything the outbox holds until the daemon acked it all or
``--wait`` runs out. What is left goes with the next run (of any command that delivers, for that
NAME and outbox). ``outbox`` lists what is waiting, without contacting the daemon. ``run`` is the
long-running orchestrator (orchestrators/runner.py): it runs an agent command per workstream the
daemon starts and reports what the agents write, until SIGTERM.

Start-up matters less than for pixelsctl, but ``--help`` and ``outbox`` stay free of zmq and anyio:
the client is imported only by the commands that deliver.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixels_daemon.paths import PathError, bus_endpoint, default_state_dir
from protocol.messages import (
    Error,
    EscalationType,
    Severity,
    WorkstreamStatus,
)

if TYPE_CHECKING:
    from orchestrators.outbox import Durable

EXIT_OK = 0
EXIT_ERROR = 1  # the daemon refused something (a message, or the name), or the outbox is unusable
EXIT_USAGE = 2  # bad command line (argparse uses 2 as well)
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: messages remain in the outbox; run again later
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

#: How long report/escalate wait for the daemon's ack: a local daemon acks in milliseconds, and 10 s
#: rides out a daemon restart (it is back within a second or two) without hanging a script.
DEFAULT_WAIT_S = 10.0
#: Longest --wait accepted (an hour): a bound that keeps timers sane; 0 means enqueue only.
MAX_WAIT_S = 3600.0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # protocol.messages.Name
_TEXT_MAX = 4096  # protocol.messages.Text

EPILOG = f"""\
The daemon's bus is found by --endpoint, else --state-dir, else $PIXELS_BUS_ENDPOINT, else the
default state dir ($PIXELS_STATE_DIR, else $STATE_DIRECTORY, else $XDG_STATE_HOME/pixels).
The outbox is --outbox, else STATE_DIR/outbox-NAME.db (STATE_DIR: --state-dir or the default).

exit codes:
  {EXIT_OK}    every message in the outbox was acked by the daemon
  {EXIT_ERROR}    the daemon refused a message or the orchestrator name, or the outbox is unusable
  {EXIT_USAGE}    usage error (bad command line)
  {EXIT_TEMPFAIL}   messages remain in the outbox (no ack within --wait); they go with the next run
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); what was accepted stays in the outbox
"""


class CliError(Exception):
    """Ends the command with ``pixels-orchestrator: MESSAGE`` on stderr and ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# --- argument types -------------------------------------------------------------------------


def _name(text: str) -> str:
    if len(text) > 64 or not _NAME_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid name: 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (e.g. foundation, WS-01)"
        )
    return text


def _text(text: str) -> str:
    if len(text) > _TEXT_MAX:
        raise argparse.ArgumentTypeError(f"text of {len(text)} characters; at most {_TEXT_MAX}")
    return text


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction between 0 and 1 (e.g. 0.4)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= MAX_WAIT_S:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds between 0 and {MAX_WAIT_S:.0f} (e.g. 10)"
        )
    return value


def _agent_template(text: str) -> str:
    from orchestrators.runconfig import TemplateError, check_template

    try:
        check_template(text)
    except TemplateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _choices(literal: Any) -> list[str]:
    return list(literal.__args__)


# --- the parser -----------------------------------------------------------------------------


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the daemon's state dir: its bus is DIR/run/bus.sock, the outbox DIR/outbox-NAME.db",
    )
    parser.add_argument(
        "--outbox", metavar="PATH", help="the outbox file (default: STATE_DIR/outbox-NAME.db)"
    )


def _add_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server-key",
        metavar="FILE",
        help="tcp:// endpoints: the daemon's public key file (SERVER.key; docs/security.md)",
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="tcp:// endpoints: this orchestrator's secret key file (NAME.key_secret, mode 0600)",
    )


def _curve(opts: argparse.Namespace) -> tuple[bytes, bytes, bytes] | None:
    from pixels_daemon.security.keys import KeyError_, client_curve

    try:
        return client_curve(opts.server_key, opts.key)
    except KeyError_ as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _add_delivery(parser: argparse.ArgumentParser) -> None:
    _add_location(parser)
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="the daemon's bus endpoint, e.g. ipc:///path/bus.sock (overrides --state-dir's)",
    )
    _add_keys(parser)
    parser.add_argument(
        "--wait",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_WAIT_S,
        help=f"how long to wait for the daemon's acks (default {DEFAULT_WAIT_S:.0f}; 0: only "
        "put the message in the outbox)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the client's connection events"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixels-orchestrator",
        description="Report status and escalations to pixelsd as a domain orchestrator, through "
        "a durable outbox: what is accepted is delivered, now or on a later run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        cp = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cp.add_argument(
            "name", metavar="NAME", type=_name, help="the orchestrator, e.g. foundation"
        )
        return cp

    report = command("report", "Report one workstream's status and deliver the outbox.")
    report.add_argument("--workstream", metavar="WS", type=_name, required=True, help="e.g. WS-01")
    report.add_argument(
        "--status",
        required=True,
        choices=_choices(WorkstreamStatus),
        help="the workstream's status",
    )
    report.add_argument(
        "--progress", metavar="P", type=_ratio, default=0.0, help="0..1 (default 0)"
    )
    report.add_argument("--blocker", metavar="TEXT", type=_text, help="what blocks it")
    _add_delivery(report)

    escalate = command("escalate", "Raise an escalation and deliver the outbox.")
    escalate.add_argument(
        "--issue", metavar="TEXT", type=_text, required=True, help="what is wrong"
    )
    escalate.add_argument(
        "--type", choices=_choices(EscalationType), default="blocker", help="default: blocker"
    )
    escalate.add_argument(
        "--severity", choices=_choices(Severity), default="medium", help="default: medium"
    )
    escalate.add_argument(
        "--workstream",
        metavar="WS",
        type=_name,
        action="append",
        default=[],
        help="an affected workstream (repeat for several)",
    )
    escalate.add_argument(
        "--help-needed", metavar="TEXT", type=_text, default="", help="what would unblock it"
    )
    _add_delivery(escalate)

    depend = command(
        "depend",
        "Report a dependency found while implementing (WS must wait for DEP) and deliver.",
    )
    depend.add_argument("--workstream", metavar="WS", type=_name, required=True, help="e.g. WS-10")
    depend.add_argument(
        "--on", metavar="DEP", type=_name, required=True, help="what it must wait for, e.g. WS-05"
    )
    depend.add_argument("--reason", metavar="TEXT", type=_text, default="", help="why")
    _add_delivery(depend)

    run = command(
        "run",
        "Run as orchestrator NAME until SIGTERM: start an agent for each workstream the daemon "
        "starts, report what it says (STATUS.json, PIXELS- lines, or its liveness), obey "
        "halt/resume/stop.",
    )
    run.add_argument(
        "--config",
        metavar="FILE",
        help="the runner config (TOML): [agent] command, env, workdir, halt, grace_s, progress; "
        "[workstreams.WS] command, env (docs/configuration.md)",
    )
    run.add_argument(
        "--agent",
        metavar="TEMPLATE",
        type=_agent_template,
        help="the agent command for workstreams that get none from the config or the plan: "
        "split like a shell would (no shell runs it), with {workstream} {name} {days} {output} "
        "{state_dir} {python} {spec} {agent_type} {priority} {depends} filled in; e.g. "
        "'{python} -m orchestrators.simagent --workstream {workstream} --days {days} "
        "--output {output} --clock {state_dir}/clock.json'",
    )
    run.add_argument(
        "--workdir",
        metavar="DIR",
        help="agents run in DIR/NAME/WS/ (STATUS.json, agent.log, agent.pid) (default: the "
        "config's workdir, else STATE_DIR/work)",
    )
    run.add_argument(
        "--plan",
        metavar="FILE",
        help="the plan the daemon runs, for the workstreams' commands and placeholders "
        "(default: embedded)",
    )
    _add_location(run)
    run.add_argument(
        "--endpoint",
        metavar="URL",
        help="the daemon's bus endpoint, e.g. ipc:///path/bus.sock (overrides --state-dir's)",
    )
    _add_keys(run)
    run.add_argument(
        "-v", "--verbose", action="store_true", help="log the client's connection events too"
    )

    outbox = command("outbox", "List the messages waiting in NAME's outbox (no daemon needed).")
    _add_location(outbox)
    outbox.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


# --- commands -------------------------------------------------------------------------------


def outbox_path(opts: argparse.Namespace) -> Path:
    """--outbox, else STATE_DIR/outbox-NAME.db (STATE_DIR: --state-dir or the default)."""
    if opts.outbox:
        return Path(opts.outbox)
    base = Path(opts.state_dir) if opts.state_dir else default_state_dir()
    return base / f"outbox-{opts.name}.db"


def build_message(opts: argparse.Namespace) -> Durable:
    """The status, escalation or dependency the command line describes (checked like the daemon
    would)."""
    from orchestrators.outbox import InvalidMessage, check_message
    from protocol.messages import DependencyFound, Escalation, Status, WorkstreamReport

    message: Durable
    if opts.command == "depend":
        message = DependencyFound(
            orchestrator=opts.name,
            workstream=opts.workstream,
            depends_on=opts.on,
            reason=opts.reason,
        )
    elif opts.command == "report":
        report = WorkstreamReport(
            status=opts.status, progress=opts.progress, blocker=opts.blocker or None
        )
        message = Status(orchestrator=opts.name, workstreams={opts.workstream: report})
    else:
        message = Escalation(
            orchestrator=opts.name,
            type=opts.type,
            severity=opts.severity,
            issue=opts.issue,
            affected_workstreams=list(dict.fromkeys(opts.workstream)),
            help_needed=opts.help_needed,
        )
    try:
        check_message(message, opts.name)
    except InvalidMessage as exc:
        raise CliError(f"invalid {opts.command}: {exc}", EXIT_USAGE) from None
    return message


@dataclass
class Delivery:
    acked_seq: int
    pending: int
    rejected: list[Error]
    refused: Error | None


async def deliver(
    name: str,
    endpoint: str,
    outbox: Path,
    message: Durable,
    wait_s: float,
    *,
    curve: tuple[bytes, bytes, bytes] | None = None,
) -> Delivery:
    """Enqueue ``message`` durably, then deliver the outbox for up to ``wait_s`` seconds."""
    from orchestrators.client import OrchestratorClient

    async with OrchestratorClient(name, endpoint, outbox, curve=curve) as client:
        await client.send(message)
        if wait_s > 0:
            await client.wait_acked(wait_s)
        return Delivery(client.acked_seq, client.pending, list(client.rejected), client.refused)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run_deliver(opts: argparse.Namespace) -> int:
    message = build_message(opts)
    try:
        endpoint = bus_endpoint(opts.state_dir, opts.endpoint)
    except PathError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    path = outbox_path(opts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise CliError(
            f"cannot create {path.parent} for the outbox: {exc.strerror}; use --outbox PATH",
            EXIT_ERROR,
        ) from None

    import anyio

    from orchestrators.client import ClientError
    from orchestrators.outbox import OutboxError

    try:
        send = functools.partial(deliver, curve=_curve(opts))
        result = anyio.run(send, opts.name, endpoint, path, message, opts.wait)
    except OutboxError as exc:
        raise CliError(str(exc), EXIT_ERROR) from None
    except ClientError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    for error in result.rejected:
        seq = f"seq {error.rejected_seq}" if error.rejected_seq else f"message {error.re}"
        _say(f"the daemon rejected {seq}: {error.code}: {error.message}")
    if result.refused is not None:
        raise CliError(
            f"the daemon at {endpoint} refused orchestrator {opts.name!r}: "
            f"{result.refused.message}; {_plural(result.pending, 'message')} kept in {path}",
            EXIT_ERROR,
        )
    if result.pending:
        waited = f"within {opts.wait:g} s" if opts.wait > 0 else "(--wait 0)"
        raise CliError(
            f"{_plural(result.pending, 'message')} not acked by a daemon at {endpoint} {waited}; "
            f"kept in {path} for the next run",
            EXIT_TEMPFAIL,
        )
    print(f"{opts.name}: acked up to seq {result.acked_seq}, nothing pending")
    return EXIT_ERROR if result.rejected else EXIT_OK


def run_outbox(opts: argparse.Namespace) -> int:
    path = outbox_path(opts)
    if not path.exists():
        if opts.json:
            print('{"outbox": null, "acked_seq": 0, "pending": []}')
        else:
            print(f"no outbox at {path}: nothing pending for {opts.name}")
        return EXIT_OK
    from orchestrators.outbox import Outbox, OutboxError

    try:
        with Outbox.open(path, opts.name) as box:
            counters = box.counters()
            rows = box.list_pending()
    except OutboxError as exc:
        raise CliError(str(exc), EXIT_ERROR) from None
    if opts.json:
        import json

        doc = {
            "outbox": str(path),
            "acked_seq": counters.acked_seq,
            "pending": [
                {"seq": r.seq, "kind": r.kind, "enqueued_at": r.enqueued_at, "bytes": r.size}
                for r in rows
            ],
        }
        print(json.dumps(doc))
        return EXIT_OK
    print(f"{path}: acked up to seq {counters.acked_seq}, {_plural(len(rows), 'message')} pending")
    if rows:
        print(f"{'SEQ':>8}  {'KIND':<11} {'ENQUEUED AT (UTC)':<20} {'BYTES':>6}")
        for r in rows:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.enqueued_at))
            seq = str(r.seq) if r.seq is not None else "-"
            print(f"{seq:>8}  {r.kind:<11} {at:<20} {r.size:>6}")
        if any(r.seq is None for r in rows):
            print("(-: numbered when the daemon first answers)")
    return EXIT_OK


def run_agents(opts: argparse.Namespace) -> int:
    """``run``: the long-running orchestrator (orchestrators/runner.py)."""
    from orchestrators.runconfig import (
        AgentSettings,
        ConfigError,
        PlanInfo,
        RunnerFile,
        TemplateError,
        load_runner_file,
    )
    from pixels_daemon.plan import PlanError, load_plan

    try:
        endpoint = bus_endpoint(opts.state_dir, opts.endpoint)
    except PathError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        plan = load_plan(opts.plan)
    except PlanError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if opts.name not in plan.orchestrators:
        known = ", ".join(plan.orchestrators)
        raise CliError(
            f"the plan {plan.source} has no orchestrator {opts.name!r}; it has: {known}", EXIT_USAGE
        )
    try:
        file = load_runner_file(opts.config) if opts.config else RunnerFile()
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    settings = AgentSettings(
        plan={
            ws.id: PlanInfo(
                days=ws.max_days,
                spec=ws.spec,
                agent_type=ws.agent_type,
                priority=ws.priority,
                depends=ws.depends_on,
                command=ws.command,
            )
            for ws in plan.workstreams_of(opts.name)
        },
        file=file,
        file_name=opts.config or "the runner config",
        flag_command=opts.agent,
    )
    others = frozenset(ws for ws in plan.workstreams if ws not in settings.plan)
    try:
        missing = settings.check(state_dir_given=bool(opts.state_dir), other_workstreams=others)
    except (ConfigError, TemplateError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    base = Path(opts.state_dir) if opts.state_dir else default_state_dir()
    config_dir = Path(opts.config).absolute().parent if opts.config else None
    workdir = settings.workdir(base, opts.workdir, config_dir)
    path = outbox_path(opts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"cannot create {exc.filename}: {exc.strerror}; use --workdir or --outbox", EXIT_ERROR
        ) from None
    _configure_logging(opts.verbose, level=logging.DEBUG if opts.verbose else logging.INFO)

    import anyio
    import structlog

    from orchestrators.client import ClientError
    from orchestrators.outbox import OutboxError
    from orchestrators.runner import Runner, RunnerConfig

    if missing:
        # Not fatal: a start for one of them is an escalation saying how to give it a command.
        structlog.get_logger("pixels.runner").warning(
            "no_agent_command", workstreams=missing, fix="--config FILE, the plan, or --agent"
        )
    if opts.agent is not None and file.agent.command is not None:
        structlog.get_logger("pixels.runner").info(
            "agent_table_command_unused",
            why=f"--agent comes before [agent] command in {opts.config}",
        )
    config = RunnerConfig(
        name=opts.name,
        endpoint=endpoint,
        outbox=path,
        workdir=workdir.absolute(),
        state_dir=Path(opts.state_dir).absolute() if opts.state_dir else None,
        agents=settings,
        curve=_curve(opts),
    )
    try:
        return anyio.run(Runner(config).run)
    except OutboxError as exc:
        raise CliError(str(exc), EXIT_ERROR) from None
    except ClientError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run_agents,
    "report": run_deliver,
    "escalate": run_deliver,
    "depend": run_deliver,
    "outbox": run_outbox,
}


# --- main -----------------------------------------------------------------------------------


def _say(text: str) -> None:
    sys.stderr.write(f"pixels-orchestrator: {text}\n")


#: Client log events that run_deliver turns into its own lines.
_REPORTED_EVENTS = frozenset({"rejected", "unknown_orchestrator", "refused_by_decoder"})


def _configure_logging(verbose: bool, level: int | None = None) -> None:
    """The client's structlog events on stderr: warnings (renumbering, a silent daemon) always,
    connection events with --verbose. stdout carries only the command's result. ``level``
    overrides that choice (``run`` logs its agents' lives at INFO)."""
    import structlog

    def drop_reported(_logger: object, _method: str, event: Any) -> Any:
        # main() reports these itself, one line each: do not say them twice.
        if event.get("event") in _REPORTED_EVENTS:
            raise structlog.DropEvent
        return event

    structlog.configure(
        processors=[
            drop_reported,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            level if level is not None else logging.DEBUG if verbose else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def main(argv: list[str] | None = None) -> int:
    """The ``pixels-orchestrator`` console script. Returns the exit code (see EPILOG)."""
    opts = build_parser().parse_args(sys.argv[1:] if argv is None else argv)  # usage: exit 2
    try:
        if opts.command != "outbox":
            _configure_logging(opts.verbose)
        return _COMMANDS[opts.command](opts)
    except CliError as exc:
        _say(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted; what was accepted stays in the outbox")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
