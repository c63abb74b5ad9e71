"""pixelsctl: the operator's client for a running pixelsd.

One request, one reply: a synchronous zmq DEALER sends ``request(command, args)`` to the daemon's
control socket and waits (``--timeout``) for ``reply(result)`` or ``error(code, message)``. Results
are shown as tables, or with ``--json`` as the fields of protocol.views (a stable contract).

Adding a command is one function here, circus-style::

    @command("ack", EscalationView, fmt.render_escalation, Arg("id", help="escalation id"))
    def ack(opts: Options) -> Args:
        '''Acknowledge an escalation (first line: the command's help).'''
        return {"id": opts["id"]}

The function builds the request's ``args`` from the parsed options; its docstring is the help
text; ``result_type`` is what the reply's result is converted to (and what ``--json`` prints);
``render(result, now)`` is the human formatter. Every command also takes the common options
(``--json``, ``--state-dir``, ``--endpoint``, ``--timeout``), before or after its name.

A name of two words ("gate check", "plan add-dep") makes a command group: ``pixelsctl gate check
ID``, parsed by a sub-subparser, with the common options accepted before, between and after the
words. The request's ``command`` is the name with spaces and dashes turned into underscores
("gate_check", "plan_add_dep").

Start-up time is a feature (benchmarked by bench/ctl_latency.py against ``import zmq, msgspec``):
module-level imports are limited to what zmq/msgspec already load plus protocol.messages,
protocol.views and pixels_daemon.paths (not protocol.codec: it builds every direction's decoder at
import). argparse is imported only for command lines that ``_fast_parse`` leaves to it. Never
import structlog, anyio, asyncio or sqlite3 here, nor anything from the daemon's side.
"""

from __future__ import annotations

import math
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec
import zmq

from pixels_daemon import ctl_format as fmt
from pixels_daemon.paths import PathError, ctl_endpoint, ipc_path
from protocol.messages import PROTOCOL_VERSION, CtlResponse, Error, Reply, Request
from protocol.views import (
    DecisionView,
    EscalationView,
    GateView,
    HoldView,
    OrchestratorView,
    PlanChangeView,
    StatusView,
    WorkstreamView,
)

if TYPE_CHECKING:
    import argparse

EXIT_OK = 0
EXIT_ERROR = 1  # the daemon answered with an error (or an unreadable reply)
EXIT_USAGE = 2  # bad command line (argparse uses 2 as well)
EXIT_NO_DAEMON = 3  # nothing answered at the endpoint
EXIT_NOT_FOUND = 4  # the daemon does not know the id named on the command line
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

#: A local daemon answers in milliseconds; 1.5 s tolerates a loaded machine while keeping the
#: "no daemon" verdict (timeout plus start-up) under 2 s.
DEFAULT_TIMEOUT_S = 1.5
#: Longest --timeout accepted: a bound that keeps the poll timeout a sane integer of milliseconds.
MAX_TIMEOUT_S = 3600.0

EPILOG = f"""\
The daemon is found by --endpoint, else --state-dir, else $PIXELS_CTL_ENDPOINT, else the default
state dir ($PIXELS_STATE_DIR, else $STATE_DIRECTORY, else $XDG_STATE_HOME/pixels).
--json, --state-dir, --endpoint and --timeout may be given before or after the command name.

exit codes:
  {EXIT_OK}    ok
  {EXIT_ERROR}    the daemon answered with an error
  {EXIT_USAGE}    usage error (bad command line)
  {EXIT_NO_DAEMON}    no daemon answering at the endpoint
  {EXIT_NOT_FOUND}    the daemon does not know that id
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""

R = TypeVar("R")
#: The request's ``args`` map, as sent to the daemon.
Args = dict[str, Any]
#: The parsed command line: option dest -> value (``vars()`` of argparse's namespace).
Options = dict[str, Any]
Builder = Callable[[Options], Args]


class CtlError(Exception):
    """Raised for any outcome that ends pixelsctl with a one-line message and ``exit_code``.

    Converted to ``pixelsctl: MESSAGE`` on stderr in exactly one place (``main``).
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Arg:
    """One command-line argument of a command: ``ArgumentParser.add_argument``'s parameters."""

    __slots__ = ("flags", "kwargs")

    def __init__(self, *flags: str, **kwargs: Any) -> None:
        self.flags = flags
        self.kwargs = kwargs


class CtlCommand(Generic[R]):
    """One pixelsctl command: its request builder, result type and human formatter.

    ``name`` is what the user types (one or two words); ``request`` the wire command it sends.
    """

    __slots__ = ("arguments", "build", "name", "render", "request", "result_type")

    def __init__(
        self,
        name: str,
        result_type: Any,
        render: Callable[[R, float], str],
        build: Builder,
        arguments: tuple[Arg, ...],
    ) -> None:
        self.name = name
        self.request = name.replace(" ", "_").replace("-", "_")
        self.result_type = result_type
        self.render = render
        self.build = build
        self.arguments = arguments

    @property
    def description(self) -> str:
        """The builder's docstring: the command's help text."""
        import inspect  # only for --help: inspect costs ~13 ms of start-up

        return inspect.cleandoc(self.build.__doc__ or "")

    @property
    def summary(self) -> str:
        """The first line of the help text, for the command list."""
        return self.description.split("\n", 1)[0]

    def convert(self, result: Any) -> R:
        """The reply's plain ``result`` as this command's typed view; CtlError if it misfits."""
        try:
            converted: R = msgspec.convert(result, self.result_type)
        except msgspec.ValidationError as exc:
            raise CtlError(
                f"the daemon's {self.name!r} result does not have the expected shape ({exc}); "
                "are pixelsctl and pixelsd the same version?",
                EXIT_ERROR,
            ) from None
        return converted


#: Every command, by name, in the order they are listed in --help.
COMMANDS: dict[str, CtlCommand[Any]] = {}

#: The help line of each command group (the first word of two-word command names).
GROUPS: dict[str, str] = {
    "gate": "Act on a gate: check ID",
    "decision": "Decide a pending decision: approve ID | reject ID",
    "plan": "Change the plan at runtime, or list the changes: add-dep | drop-dep | estimate | "
    "defer | changes",
}


def command(
    name: str, result_type: Any, render: Callable[[R, float], str], *arguments: Arg
) -> Callable[[Builder], Builder]:
    """Register the decorated request builder as the command ``name`` (see the module docstring)."""

    def register(build: Builder) -> Builder:
        COMMANDS[name] = CtlCommand(name, result_type, render, build, arguments)
        return build

    return register


# --- argument types (argparse's ``type=``: imported lazily, only argparse calls them) ----------

#: Unix seconds below this (2001-09-09) are taken for a duration missing its unit ("4" for "4h"):
#: as a time they are long past, which the daemon would refuse anyway.
_MIN_UNIX_S = 1_000_000_000


def _when(text: str) -> str:
    """snooze's WHEN, passed on unchanged (the daemon reads it with its own clock and time zone),
    or a usage error when it has none of the shapes the daemon reads."""
    import argparse
    import re
    from datetime import datetime

    value = text.strip()
    if re.fullmatch(r"(?:\d+(?:\.\d+)?[smhdw])+", value, re.IGNORECASE):
        return text  # a duration: 90m, 4h, 2d, 1h30m
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= _MIN_UNIX_S:
            return text
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: a bare number is unix seconds (e.g. 1798000000); "
            f"for a duration give its unit ({value}h, {value}m)"
        )
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read {text!r} as a time: give a duration (90m, 4h, 2d, 1h30m), an ISO "
            "date-time (2026-12-01T09:00) or unix seconds"
        ) from None
    return text


def _days(text: str) -> int:
    """An estimate's MIN or MAX: a whole number of days, at least 1 (the daemon's rule too)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days (1 or more)")
    return value


# --- commands -------------------------------------------------------------------------------


@command("status", StatusView, fmt.render_status)
def status(opts: Options) -> Args:
    """Show the whole picture: plan phase, orchestrators, workstreams, open blockers.

    Orchestrators with their connection and when they were last heard from; workstreams with
    status, progress and eta; the open blockers and escalations.
    """
    return {}


@command("workstreams", list[WorkstreamView], fmt.render_workstreams)
def workstreams(opts: Options) -> Args:
    """List the workstreams: owner, milestone, status, progress, eta."""
    return {}


@command("orchestrators", list[OrchestratorView], fmt.render_orchestrators)
def orchestrators(opts: Options) -> Args:
    """List the orchestrators: connection, last seen, status, acked seq, workstreams."""
    return {}


@command(
    "escalations",
    list[EscalationView],
    fmt.render_escalations,
    Arg("--all", action="store_true", help="include resolved escalations"),
)
def escalations(opts: Options) -> Args:
    """List the escalations not resolved yet, the orchestrators' and the daemon's own.

    Open and acknowledged ones (snoozed ones too), oldest first; --all adds the resolved ones.
    INHIBITED BY names the failed gates that halted all of an escalation's work: it is kept but
    not notified until they pass.
    """
    return {"all": opts["all"]}


def _id_arg(what: str, example: str) -> Arg:
    return Arg("id", metavar="ID", help=f"the {what}'s id, e.g. {example}")


def _text_option(flag: str, what: str) -> Arg:
    return Arg(flag, metavar="TEXT", default="", help=what)


_NOTE = _text_option("--note", "a note kept with it (shown in its detail and --json)")
_REASON = _text_option("--reason", "why (kept in the event log and shown with it)")


@command("ack", EscalationView, fmt.render_escalation, _id_arg("escalation", "E-3"), _NOTE)
def ack(opts: Options) -> Args:
    """Acknowledge an escalation: someone is on it. It stays listed until resolved."""
    return {"id": opts["id"], "note": opts["note"]}


@command("resolve", EscalationView, fmt.render_escalation, _id_arg("escalation", "E-3"), _NOTE)
def resolve(opts: Options) -> Args:
    """Resolve an escalation: it is dealt with. A repeat of the same problem opens a new one."""
    return {"id": opts["id"], "note": opts["note"]}


@command(
    "snooze",
    EscalationView,
    fmt.render_escalation,
    _id_arg("escalation", "E-3"),
    Arg(
        "--until",
        metavar="WHEN",
        required=True,
        type=_when,
        help="a duration from now (90m, 4h, 2d, 1h30m), an ISO date-time (2026-12-01T09:00, "
        "the daemon's local time) or unix seconds",
    ),
)
def snooze(opts: Options) -> Args:
    """Snooze an escalation: no notifications about it until WHEN (it stays listed).

    The daemon reads WHEN with its own clock and time zone.
    """
    return {"id": opts["id"], "until": opts["until"]}


@command("gates", list[GateView], fmt.render_gates)
def gates(opts: Options) -> Args:
    """List the gates: state, evaluation run, when decided, what failed."""
    return {}


@command("gate check", GateView, fmt.render_gate, _id_arg("gate", "gate-1"))
def gate_check(opts: Options) -> Args:
    """Evaluate a gate now: its workstreams must be complete; its checks run on the daemon.

    The answer comes at once, usually in state "checking"; `pixelsctl gates` shows the verdict
    when the checks are done. A pass activates what waits for the gate and lifts the holds a
    failed run put on it; a failure halts every dependent.
    """
    return {"id": opts["id"]}


_TARGET = Arg(
    "target", metavar="ORCH|WS", help="an orchestrator's name (e.g. model) or a workstream id"
)


@command("halt", HoldView, fmt.render_halt, _TARGET, _REASON)
def halt(opts: Options) -> Args:
    """Halt an orchestrator (all its work) or one workstream, until `pixelsctl resume`.

    A halted orchestrator is sent a halt command; the hold shows in `workstreams` and `status`.
    """
    return {"target": opts["target"], "reason": opts["reason"]}


@command("resume", HoldView, fmt.render_resume, _TARGET, _REASON)
def resume(opts: Options) -> Args:
    """Lift the operator's halt of an orchestrator or workstream.

    Holds of failed gates stay until the gate passes (`pixelsctl gate check ID`).
    """
    return {"target": opts["target"], "reason": opts["reason"]}


@command(
    "decisions",
    list[DecisionView],
    fmt.render_decisions,
    Arg("--all", action="store_true", help="include decided and recorded ones"),
)
def decisions(opts: Options) -> Args:
    """List the decisions waiting for an operator (--all: every decision record)."""
    return {"all": opts["all"]}


@command("decision approve", DecisionView, fmt.render_decision, _id_arg("decision", "D-2"), _NOTE)
def decision_approve(opts: Options) -> Args:
    """Approve a pending decision; its ADR is written under the state dir's decisions/.

    --note is the decision's text in the ADR (default "Approved.").
    """
    return {"id": opts["id"], "note": opts["note"]}


@command("decision reject", DecisionView, fmt.render_decision, _id_arg("decision", "D-2"), _NOTE)
def decision_reject(opts: Options) -> Args:
    """Reject a pending decision; its ADR records the rejection.

    --note is the decision's text in the ADR (default "Rejected.").
    """
    return {"id": opts["id"], "note": opts["note"]}


_WS = Arg("workstream", metavar="WS", help="the workstream's id, e.g. WS-05")
_DEP = Arg("depends_on", metavar="DEP", help="the id of the workstream it waits for")


@command("plan add-dep", PlanChangeView, fmt.render_plan_change, _WS, _DEP, _REASON)
def plan_add_dep(opts: Options) -> Args:
    """Make WS wait for DEP. Refused, with the cycle named, if DEP already waits for WS."""
    return {
        "workstream": opts["workstream"],
        "depends_on": opts["depends_on"],
        "reason": opts["reason"],
    }


@command("plan drop-dep", PlanChangeView, fmt.render_plan_change, _WS, _DEP, _REASON)
def plan_drop_dep(opts: Options) -> Args:
    """Let WS stop waiting for DEP."""
    return {
        "workstream": opts["workstream"],
        "depends_on": opts["depends_on"],
        "reason": opts["reason"],
    }


@command(
    "plan estimate",
    PlanChangeView,
    fmt.render_plan_change,
    _WS,
    Arg("min_days", metavar="MIN", type=_days, help="whole days, at least 1"),
    Arg("max_days", metavar="MAX", type=_days, help="whole days, at least MIN"),
    _REASON,
)
def plan_estimate(opts: Options) -> Args:
    """Re-scope: set WS's estimate to MIN..MAX days (overrun and schedule slip use MAX)."""
    low, high = opts["min_days"], opts["max_days"]
    if low > high:
        raise CtlError(
            f"plan estimate: MIN ({low}) is more than MAX ({high}); give MIN MAX whole days",
            EXIT_USAGE,
        )
    return {
        "workstream": opts["workstream"],
        "min_days": low,
        "max_days": high,
        "reason": opts["reason"],
    }


@command("plan defer", PlanChangeView, fmt.render_plan_change, _WS, _REASON)
def plan_defer(opts: Options) -> Args:
    """Defer WS out of this plan: it stops (if started) and nothing may wait for it."""
    return {"workstream": opts["workstream"], "reason": opts["reason"]}


@command("plan changes", list[PlanChangeView], fmt.render_plan_changes)
def plan_changes(opts: Options) -> Args:
    """List the runtime plan changes, the operators' and the orchestrators', in order."""
    return {}


@command("ping", dict[str, Any], fmt.render_ping)
def ping(opts: Options) -> Args:
    """Check that the daemon answers; show its version, pid and plan."""
    return {}


# --- command line ---------------------------------------------------------------------------


def _parse_seconds(text: str) -> float | None:
    """A --timeout value, or None when it is not a number of seconds in (0, MAX_TIMEOUT_S]."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value <= MAX_TIMEOUT_S else None  # also refuses nan


def _seconds(text: str) -> float:
    """argparse's type for --timeout: the value, or a usage error saying what is expected."""
    import argparse  # lazily: only for command lines _fast_parse leaves to argparse

    value = _parse_seconds(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds between 0 and {MAX_TIMEOUT_S:.0f} (e.g. 1.5)"
        )
    return value


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes. On subparsers their defaults are SUPPRESS, so that an
    option given before the command name is not overwritten by the subparser's default."""
    import argparse  # lazily, as above

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("common options (before or after the command name)")
    group.add_argument(
        "--json",
        action="store_true",
        default=default(_DEFAULTS["json"]),
        help="print the result as JSON (the fields of protocol.views) instead of tables",
    )
    group.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default(_DEFAULTS["state_dir"]),
        help="the daemon's state dir (its control socket is DIR/run/ctl.sock)",
    )
    group.add_argument(
        "--endpoint",
        metavar="URL",
        default=default(_DEFAULTS["endpoint"]),
        help="the daemon's control endpoint, e.g. ipc:///path/ctl.sock (overrides --state-dir)",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=default(_DEFAULTS["timeout"]),
        help=f"how long to wait for the daemon's answer (default {DEFAULT_TIMEOUT_S})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for every registered command (two-word ones under their group)."""
    import argparse  # lazily, as above

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="pixelsctl",
        description="Ask a running pixelsd about the plan, its orchestrators and workstreams, "
        "and act on its escalations, gates, holds, decisions and plan.",
        epilog=EPILOG,
        formatter_class=raw,
    )
    _add_common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for cmd in COMMANDS.values():
        group, _, leaf = cmd.name.rpartition(" ")
        if not group:
            cp = sub.add_parser(
                cmd.name,
                help=cmd.summary,
                description=cmd.description,
                epilog=EPILOG,
                formatter_class=raw,
            )
        else:
            if group not in groups:
                gp = sub.add_parser(group, help=GROUPS[group], description=GROUPS[group])
                _add_common(gp, suppress=True)
                leaves = [n.split(" ")[1] for n in COMMANDS if n.startswith(f"{group} ")]
                # dest "command" as well: the leaf's default (its full name) overwrites it. The
                # metavar names the choices in the "required" error (3.11 would say "command").
                groups[group] = gp.add_subparsers(
                    dest="command", metavar=f"{{{','.join(leaves)}}}", required=True
                )
            cp = groups[group].add_parser(
                leaf,
                help=cmd.summary,
                description=cmd.description,
                epilog=EPILOG,
                formatter_class=raw,
            )
            cp.set_defaults(command=cmd.name)
        for arg in cmd.arguments:
            cp.add_argument(*arg.flags, **arg.kwargs)
        _add_common(cp, suppress=True)
    return parser


#: The common options that take a value: flag -> (dest, converter returning None if invalid).
_VALUE_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--state-dir": ("state_dir", str),
    "--endpoint": ("endpoint", str),
    "--timeout": ("timeout", _parse_seconds),
}
_DEFAULTS: Options = {
    "json": False,
    "state_dir": None,
    "endpoint": None,
    "timeout": DEFAULT_TIMEOUT_S,
}


def _fast_parse(argv: list[str]) -> Options | None:
    """Parse the everyday command lines without argparse, or return None.

    Importing argparse and building the parser costs ~6 ms of a ~70 ms run, and pixelsctl's
    start-up is benchmarked. This handles only common options (``--opt VALUE`` or ``--opt=VALUE``)
    and one command of one word that takes no arguments of its own, in any order, and gives up
    (None) on anything else: help, abbreviations, values that start with "-", invalid values,
    commands with arguments, two-word commands. argparse then parses that command line and
    reports its errors as usual. Tests check that wherever this returns Options, argparse returns
    the same.
    """
    opts = dict(_DEFAULTS)
    command: str | None = None
    tokens = iter(argv)
    for token in tokens:
        if token == "--json":
            opts["json"] = True
            continue
        flag, eq, value = token.partition("=")
        option = _VALUE_OPTIONS.get(flag)
        if option is not None:
            if not eq:
                value = next(tokens, "-")
                if value.startswith("-"):  # missing, an option, or a negative number
                    return None
            dest, convert = option
            converted = convert(value)
            if converted is None:
                return None
            opts[dest] = converted
            continue
        if token.startswith("-") or command is not None:
            return None
        cmd = COMMANDS.get(token)
        if cmd is None or cmd.arguments or " " in token:
            return None
        command = token
    if command is None:
        return None
    opts["command"] = command
    return opts


def parse_args(argv: list[str]) -> Options:
    """The command line as Options (``command`` names the command). Usage errors exit 2."""
    fast = _fast_parse(argv)
    if fast is not None:
        return fast
    return vars(build_parser().parse_args(argv))


# --- transport ------------------------------------------------------------------------------


_response_decoder: msgspec.msgpack.Decoder[CtlResponse] = msgspec.msgpack.Decoder(CtlResponse)


def _no_daemon(endpoint: str, why: str = "") -> CtlError:
    reason = f"{why}; " if why else ""
    return CtlError(
        f"no daemon answering at {endpoint} ({reason}is pixelsd running? try --state-dir DIR)",
        EXIT_NO_DAEMON,
    )


def _check_socket_file(endpoint: str) -> None:
    """Fail at once, without waiting for the timeout, when an ipc socket file is not there."""
    path = ipc_path(endpoint)
    if path is None or str(path).startswith("@"):  # not ipc, or Linux's abstract namespace
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise _no_daemon(endpoint, f"no socket file {path}") from None
    except OSError as exc:
        raise _no_daemon(endpoint, f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise _no_daemon(endpoint, f"{path} is not a socket")


def _new_id() -> str:
    # Unique enough per sender: the reply's ``re`` must name this request and no earlier one.
    return f"ctl-{os.getpid()}-{os.urandom(6).hex()}"


def call(endpoint: str, command: str, args: Args, timeout_s: float) -> Any:
    """Send ``request(command, args)`` to the daemon at ``endpoint``; return the reply's result.

    Raises CtlError: no daemon answering within ``timeout_s`` (exit 3), an error reply (exit 4
    for not_found, 1 otherwise), an unreadable reply (1), an endpoint zmq refuses (2).
    """
    _check_socket_file(endpoint)
    request = Request(id=_new_id(), ts=time.time(), command=command, args=args)
    deadline = time.monotonic() + timeout_s
    # A private context: nothing else in this process uses zmq, and destroy() ends it cleanly.
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        # LINGER 0: a request nobody took must not keep the process alive at exit.
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise CtlError(
                f"cannot connect to {endpoint!r}: {exc.strerror} "
                "(endpoints look like ipc:///path/to/ctl.sock or tcp://host:port)",
                EXIT_USAGE,
            ) from None
        # connect() creates the pipe at once (ZMQ_IMMEDIATE is off), so the first send is queued
        # even before the connection is up; NOBLOCK only guards against surprises.
        try:
            sock.send(msgspec.msgpack.encode(request), zmq.NOBLOCK)
        except zmq.Again:
            raise _no_daemon(endpoint) from None
        while True:
            remaining_ms = math.ceil((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not sock.poll(remaining_ms, zmq.POLLIN):
                raise _no_daemon(endpoint)
            # One frame from a DEALER-style exchange; the payload is the last frame either way.
            response = _decode(sock.recv_multipart()[-1])
            if response.re == request.id:
                break
            # Anything else is not an answer to this request (cannot happen on a fresh socket,
            # but a reply must never be mistaken for another's).
    finally:
        ctx.destroy(linger=0)
    if isinstance(response, Error):
        code = EXIT_NOT_FOUND if response.code == "not_found" else EXIT_ERROR
        raise CtlError(f"{response.code}: {response.message}", code)
    return response.result


def _decode(frame: bytes) -> Reply | Error:
    try:
        response = _response_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CtlError(
            f"the daemon's answer cannot be read ({exc}); are pixelsctl and pixelsd the same "
            "version?",
            EXIT_ERROR,
        ) from None
    if response.v != PROTOCOL_VERSION:
        raise CtlError(
            f"the daemon speaks protocol version {response.v}; this pixelsctl speaks "
            f"{PROTOCOL_VERSION}",
            EXIT_ERROR,
        )
    return response


# --- main -----------------------------------------------------------------------------------


def run(opts: Options) -> int:
    """Run one parsed command line: ask the daemon, print the result. Raises CtlError."""
    cmd = COMMANDS[opts["command"]]
    args = cmd.build(opts)  # may raise a usage error of its own (plan estimate's MIN > MAX)
    try:
        endpoint = ctl_endpoint(opts["state_dir"], opts["endpoint"])
    except PathError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    result = cmd.convert(call(endpoint, cmd.request, args, opts["timeout"]))
    if opts["json"]:
        out = sys.stdout.buffer
        out.write(msgspec.json.encode(result))
        out.write(b"\n")
        out.flush()
    else:
        sys.stdout.write(cmd.render(result, time.time()) + "\n")
        sys.stdout.flush()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """The ``pixelsctl`` console script. Returns the exit code (see EPILOG)."""
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
        return run(opts)
    except CtlError as exc:
        sys.stderr.write(f"pixelsctl: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``pixelsctl status | head``): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
