"""pixelsctl: the operator's client for a running pixelsd.

One request, one reply: a synchronous DEALER sends ``request(command, args)`` to the daemon's
control socket and waits (``--timeout``) for ``reply(result)`` or ``error(code, message)``: over
ipc:// the standard library's (pixels_daemon/zmtp.py), over tcp:// pyzmq's. Results
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

Start-up time is a feature (benchmarked by bench/ctl_latency.py against ``import zmq, msgspec``
and circusctl): module-level imports are limited to what msgspec already loads plus
protocol.messages, protocol.views and pixels_daemon.paths (not protocol.codec: it builds every
direction's decoder at import). zmq is imported only for tcp:// and ``watch``; argparse only for
command lines that ``_fast_parse`` leaves to it. Never import structlog, anyio, asyncio or sqlite3
here, nor anything from the daemon's side.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from pixels_daemon import ctl_format as fmt
from pixels_daemon.paths import PathError, ctl_endpoint, ipc_endpoint, ipc_file, ipc_path
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
    from pathlib import Path  # imported where used: ~5 ms at start-up (docs/performance.md)

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
  {EXIT_ERROR}    the daemon answered with an error; verify-completion: not complete
  {EXIT_USAGE}    usage error (bad command line)
  {EXIT_NO_DAEMON}    no daemon answering at the endpoint
  {EXIT_NOT_FOUND}    the daemon does not know that id (report: no such report; archive: no files)
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
    "notify": "Try a notification sink, or send one again: test SINK | retry ID",
    "keys": "CURVE keys for tcp:// endpoints: generate | trust FILE --role ROLE | revoke NAME",
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


_ORCHESTRATOR = Arg("name", metavar="NAME", help="an orchestrator's name in the plan, e.g. model")


@command("spawn", OrchestratorView, fmt.render_spawn, _ORCHESTRATOR, _REASON)
def spawn(opts: Options) -> Args:
    """Start an orchestrator now, and supervise it again.

    Clears an operator's stop and its flapping (resolving the orchestrator_flapping escalation)
    and forgets its crashes; the daemon's launcher starts it unless it runs or is connected
    already. Under --launcher none the daemon records this but starts nothing.
    """
    return {"name": opts["name"], "reason": opts["reason"]}


@command("stop", OrchestratorView, fmt.render_stop, _ORCHESTRATOR, _REASON)
def stop(opts: Options) -> Args:
    """Stop an orchestrator, and keep it stopped until `pixelsctl spawn NAME`.

    It is sent a stop command (it stops its agents, delivers what it holds, exits); one still
    running 15 s later gets SIGTERM (systemd: `systemctl stop`). Kept across daemon restarts.
    """
    return {"name": opts["name"], "reason": opts["reason"]}


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


@command("poll", fmt.PollResult, fmt.render_poll)
def poll(opts: Options) -> Args:
    """Ask every connected orchestrator for a fresh status now (as the 4-hourly schedule does).

    Answers come back as status messages; `pixelsctl orchestrators` shows who missed a poll.
    """
    return {}


@command("telemetry", dict[str, Any], fmt.render_telemetry)
def telemetry(opts: Options) -> Args:
    """Show the latest GPU and unified-memory sample, and what this box cannot report.

    GPU telemetry needs NVML (the NVIDIA driver); host memory is sampled everywhere.
    """
    return {}


@command(
    "notifications",
    list[dict[str, Any]],
    fmt.render_notifications,
    Arg("--failed", action="store_true", help="only the ones given up on"),
)
def notifications(opts: Options) -> Args:
    """List the notification outbox: each notification to each sink, and how it went.

    STATE pending (NEXT: when it is tried again; ERROR: why the last try failed), sent, or
    failed (given up: the notification_failed escalation says so too). Once the cause is fixed
    (`pixelsctl notify test SINK` checks a sink), `pixelsctl notify retry ID` sends it again.
    """
    return {"failed": opts["failed"]}


@command(
    "notify test",
    dict[str, Any],
    fmt.render_notify_test,
    Arg("sink", metavar="SINK", help="a sink's name in the daemon's config file"),
)
def notify_test(opts: Options) -> Args:
    """Send a test message to a notification sink; `pixelsctl notifications` shows how it went."""
    return {"sink": opts["sink"]}


@command(
    "notify retry",
    dict[str, Any],
    fmt.render_notify_retry,
    Arg("id", metavar="ID", type=int, help="the notification's id in `pixelsctl notifications`"),
)
def notify_retry(opts: Options) -> Args:
    """Send a failed notification again now (one still waiting: now, not after its backoff).

    Its give-up time starts over. A sent one is left as it is. GitHub comments are not doubled:
    the sink looks for the notification's key before it posts again.
    """
    return {"id": opts["id"]}


# --- commands that are more than one request and one reply ----------------------------------
#
# watch (a stream), report (files, maybe after a request), verify-completion (two requests) and
# archive (files only, daemon or not) run their own code: ``run(opts)`` returns the exit code and
# raises CtlError like the rest. They take the common options too; argparse parses them.


class LocalCommand:
    """A pixelsctl command that does its own work instead of one request and one reply.

    ``requests``: the wire commands it may send (docs/protocol.md lists every one pixelsctl sends).
    """

    __slots__ = ("arguments", "name", "requests", "run")

    def __init__(
        self,
        name: str,
        run: Callable[[Options], int],
        arguments: tuple[Arg, ...],
        requests: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.run = run
        self.arguments = arguments
        self.requests = requests

    @property
    def description(self) -> str:
        """The run function's docstring: the command's help text."""
        import inspect  # only for --help, as above

        return inspect.cleandoc(self.run.__doc__ or "")

    @property
    def summary(self) -> str:
        return self.description.split("\n", 1)[0]


#: The local commands, by name, listed in --help after the request commands.
LOCAL_COMMANDS: dict[str, LocalCommand] = {}


def local_command(
    name: str, *arguments: Arg, requests: tuple[str, ...] = ()
) -> Callable[[Callable[[Options], int]], Callable[[Options], int]]:
    """Register the decorated function as the local command ``name`` (sending ``requests``)."""

    def register(run: Callable[[Options], int]) -> Callable[[Options], int]:
        LOCAL_COMMANDS[name] = LocalCommand(name, run, arguments, requests)
        return run

    return register


#: The kinds of live events (pixels_daemon.events.KINDS, which pixelsctl imports only to watch;
#: a test keeps the two equal).
WATCH_KINDS = ("workstream", "orchestrator", "escalation", "gate", "decision", "report", "plan")


def _positive_int(what: str) -> Callable[[str], int]:
    """argparse's type for a whole number >= 1 (--count, --week)."""

    def convert(text: str) -> int:
        import argparse

        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} (a whole number, 1 or more)")
        return value

    return convert


def _state_dir(opts: Options) -> str:
    """--state-dir, else the default state dir (the same rules as the daemon's)."""
    from pixels_daemon.paths import default_state_dir

    return os.path.abspath(opts["state_dir"] or str(default_state_dir()))


def _print_json(value: Any) -> None:
    out = sys.stdout.buffer
    out.write(msgspec.json.encode(value))
    out.write(b"\n")
    out.flush()


def _events_endpoint(opts: Options) -> tuple[str, str]:
    """(endpoint, where) for watch: --events-endpoint, else events.sock beside the control socket
    pixelsctl would use (--endpoint, --state-dir, $PIXELS_CTL_ENDPOINT, the default state dir).
    ``where`` names the daemon for error messages."""
    from pixels_daemon.paths import ENV_CTL_ENDPOINT

    explicit = opts["events_endpoint"]
    if explicit:
        return explicit, explicit
    try:
        control = ctl_endpoint(opts["state_dir"], opts["endpoint"])
    except PathError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    path = ipc_path(control)
    if path is None:
        raise CtlError(
            f"the control endpoint {control} is not ipc://, so its events socket cannot be "
            "derived; give --events-endpoint URL",
            EXIT_USAGE,
        )
    if opts["endpoint"] or (not opts["state_dir"] and os.environ.get(ENV_CTL_ENDPOINT)):
        where = f"the control endpoint {control}"
    else:
        where = f"state dir {_state_dir(opts)}"
    try:
        return ipc_endpoint(path.with_name("events.sock")), where
    except PathError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None


@local_command(
    "watch",
    Arg(
        "--kind",
        action="append",
        choices=WATCH_KINDS,
        metavar="KIND",
        help=f"only events of this kind (repeatable): {', '.join(WATCH_KINDS)}; default all",
    ),
    Arg("--count", metavar="N", type=_positive_int("a count"), help="stop after N events"),
    Arg(
        "--events-endpoint",
        metavar="URL",
        help="the daemon's events endpoint (default: run/events.sock beside its control socket)",
    ),
)
def watch(opts: Options) -> int:
    """Print the daemon's live events as they happen, one line each, until Ctrl-C.

    Each line reads `HH:MM:SS  KIND  SUBJECT  TEXT` (local time of the daemon's clock); --json
    prints one JSON object per line instead (kind, at, subject, text, data, seq). Events are
    workstreams changing state or moving 5 points, blockers, orchestrators activated or held,
    escalations opened/acknowledged/snoozed/resolved/raised again, gate verdicts, decisions,
    plan changes and reports written. A watcher that falls behind loses events and says how
    many on stderr. If the daemon restarts, watch picks up again when it is back.
    """
    from pixels_daemon.events import WatchEvent

    endpoint, where = _events_endpoint(opts)
    path = ipc_path(endpoint)
    if path is not None and not str(path).startswith("@") and not os.path.exists(path):
        raise CtlError(
            f"no daemon is running on {where} (no socket file {path}); start pixelsd there or "
            "give --state-dir DIR",
            EXIT_NO_DAEMON,
        )
    import zmq

    decoder = msgspec.msgpack.Decoder(WatchEvent)
    limit: int | None = opts["count"]
    shown = 0
    last_seq: dict[str, int] = {}
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise CtlError(
                f"cannot connect to {endpoint!r}: {exc.strerror} "
                "(endpoints look like ipc:///path/to/events.sock or tcp://host:port)",
                EXIT_USAGE,
            ) from None
        for kind in opts["kind"] or [""]:
            sock.subscribe(kind)
        sys.stderr.write(f"watching {endpoint} (Ctrl-C to stop)\n")
        sys.stderr.flush()
        while limit is None or shown < limit:
            frames = sock.recv_multipart()  # blocks; Ctrl-C interrupts it
            try:
                event = decoder.decode(frames[-1])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise CtlError(
                    f"an event from the daemon cannot be read ({exc}); are pixelsctl and pixelsd "
                    "the same version?",
                    EXIT_ERROR,
                ) from None
            previous = last_seq.get(event.kind)
            # A lower number is a restarted daemon numbering afresh, not a loss.
            if previous is not None and event.seq > previous + 1:
                sys.stderr.write(
                    f"pixelsctl: missed {event.seq - previous - 1} {event.kind} events "
                    "(this watcher fell behind)\n"
                )
            last_seq[event.kind] = event.seq
            if opts["json"]:
                _print_json(event)
            else:
                sys.stdout.write(fmt.watch_line(event) + "\n")
                sys.stdout.flush()
            shown += 1
    except KeyboardInterrupt:
        return EXIT_OK  # the way to stop watching: not an error
    finally:
        ctx.destroy(linger=0)
    return EXIT_OK


_REPORT_FILE = r"week_(\d+)_status\.md"
_REPORTS_WHEN = (
    "reports are written Fridays 17:00 by default (pixelsd --report-at; see "
    "docs/configuration.md) or with `pixelsctl report --now`"
)


def _reports(folder: str) -> dict[int, str]:
    """week -> file name of the weekly reports in ``folder`` (none if it does not exist)."""
    import re

    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CtlError(f"cannot read {folder}: {exc.strerror}", EXIT_ERROR) from None
    found: dict[int, str] = {}
    for name in names:
        match = re.fullmatch(_REPORT_FILE, name)
        if match:
            found[int(match.group(1))] = name
    return found


@local_command(
    "report",
    Arg("--week", metavar="N", type=_positive_int("a week"), help="week N's report"),
    Arg("--now", action="store_true", help="ask the daemon to write this week's report now"),
    requests=("report_now",),
)
def report(opts: Options) -> int:
    """Print the latest weekly status report (STATE_DIR/reports/week_NN_status.md), or week N's.

    --now asks the running daemon to write this week's report first, then prints it. Without
    --now the daemon need not be running. --json prints {"week", "path", "text"}.
    """
    state_dir = _state_dir(opts)
    folder = os.path.join(state_dir, "reports")
    week: int | None = opts["week"]
    if opts["now"]:
        if week is not None:
            raise CtlError(
                "report: give --week N (an existing report) or --now (write this week's), not both",
                EXIT_USAGE,
            )
        try:
            endpoint = ctl_endpoint(opts["state_dir"], opts["endpoint"])
        except PathError as exc:
            raise CtlError(str(exc), EXIT_USAGE) from None
        raw = call(endpoint, "report_now", {}, opts["timeout"], _curve(opts))
        try:
            written = msgspec.convert(raw, fmt.ReportNowResult)
        except msgspec.ValidationError as exc:
            raise CtlError(
                f"the daemon's 'report_now' result does not have the expected shape ({exc}); "
                "are pixelsctl and pixelsd the same version?",
                EXIT_ERROR,
            ) from None
        week = written.week
        path = os.path.join(state_dir, written.path)  # an absolute path stays as it is
    else:
        found = _reports(folder)
        if week is None:
            if not found:
                raise CtlError(f"no report yet in {folder}; {_REPORTS_WHEN}", EXIT_NOT_FOUND)
            week = max(found)
        elif week not in found:
            raise CtlError(f"no report for week {week} yet; {_REPORTS_WHEN}", EXIT_NOT_FOUND)
        path = os.path.join(folder, found[week])
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise CtlError(
            f"the daemon says it wrote week {week}'s report to {path}, but there is no such "
            "file; is --state-dir the daemon's?",
            EXIT_NOT_FOUND,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CtlError(f"cannot read {path}: {exc}", EXIT_ERROR) from None
    if opts["json"]:
        _print_json({"week": week, "path": path, "text": text})
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    return EXIT_OK


@local_command("verify-completion", requests=("workstreams", "gates"))
def verify_completion(opts: Options) -> int:
    """Check that the plan is done: every workstream complete and every gate passed.

    Exit 0 and one line when it is; else exit 1, listing what is missing one per line
    ("WS-14 in_progress 60%", "gate-3 failed: ..."). Deferred workstreams count as missing.
    --json prints {"complete": bool, "missing": [...]}.
    """
    try:
        endpoint = ctl_endpoint(opts["state_dir"], opts["endpoint"])
    except PathError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    timeout = opts["timeout"]
    curve = _curve(opts)
    streams = COMMANDS["workstreams"].convert(call(endpoint, "workstreams", {}, timeout, curve))
    gate_views = COMMANDS["gates"].convert(call(endpoint, "gates", {}, timeout, curve))
    summary, missing = fmt.completion(streams, gate_views)
    if opts["json"]:
        _print_json({"complete": not missing, "missing": missing})
    else:
        sys.stdout.write("\n".join([summary, *missing]) + "\n")
        sys.stdout.flush()
    return EXIT_ERROR if missing else EXIT_OK


#: What `archive` takes from the state dir: what people read and what explains it afterwards.
#: Never the event log, the lock or the sockets (live files the daemon owns).
ARCHIVED_DIRS = ("reports", "decisions", "status", "logs")


def _archive_files(state_dir: str) -> list[str]:
    """The regular files under ARCHIVED_DIRS, relative to ``state_dir``, sorted. Symlinks,
    sockets and the ``.NAME.tmp`` files of atomic writes in progress are left out."""
    files: list[str] = []
    for top in ARCHIVED_DIRS:
        for root, dirs, names in os.walk(os.path.join(state_dir, top)):
            dirs.sort()
            for name in sorted(names):
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                full = os.path.join(root, name)
                if stat.S_ISREG(os.lstat(full).st_mode):
                    files.append(os.path.relpath(full, state_dir))
    return files


@local_command(
    "archive",
    Arg(
        "--out",
        metavar="FILE",
        help="the archive to write (default ./pixels-archive-YYYYmmdd-HHMMSS.tar.gz); never "
        "overwritten",
    ),
)
def archive(opts: Options) -> int:
    """Pack the state dir's reports/, decisions/, status/ and logs/ into a .tar.gz.

    With a MANIFEST.txt (when, which state dir, the files). Never the event log, the lock or the
    sockets; the daemon need not be running. An existing FILE is not overwritten.
    """
    import io
    import tarfile
    from datetime import datetime

    state_dir = _state_dir(opts)
    if not os.path.isdir(state_dir):
        raise CtlError(f"no state dir at {state_dir}; give --state-dir DIR", EXIT_NOT_FOUND)
    created = datetime.now().astimezone()
    out = os.path.abspath(
        opts["out"] or f"pixels-archive-{created.strftime('%Y%m%d-%H%M%S')}.tar.gz"
    )
    if os.path.lexists(out):
        raise CtlError(
            f"{out} exists; give another --out FILE (archives are never overwritten)", EXIT_USAGE
        )
    folder, name = os.path.split(out)
    if not os.path.isdir(folder):
        raise CtlError(f"cannot write {out}: no directory {folder}", EXIT_USAGE)
    files = _archive_files(state_dir)
    if not files:
        raise CtlError(
            f"nothing to archive in {state_dir}: no files under {', '.join(ARCHIVED_DIRS)}",
            EXIT_NOT_FOUND,
        )
    top = name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar") or "pixels-archive"
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    packed: list[str] = []
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for rel in files:
                try:
                    tar.add(os.path.join(state_dir, rel), arcname=f"{top}/{rel}", recursive=False)
                except OSError as exc:  # removed or truncated while packing: say so, go on
                    sys.stderr.write(f"pixelsctl: archive: skipped {rel}: {exc}\n")
                    continue
                packed.append(rel)
            manifest = "".join(
                [
                    "pixels archive\n",
                    f"created: {created.isoformat(timespec='seconds')}\n",
                    f"state dir: {state_dir}\n",
                    f"files: {len(packed)}\n\n",
                    *(f"{rel}\n" for rel in packed),
                ]
            ).encode()
            info = tarfile.TarInfo(f"{top}/MANIFEST.txt")
            info.size = len(manifest)
            info.mtime = int(created.timestamp())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(manifest))
        try:
            os.link(tmp, out)  # unlike rename, never replaces a file that appeared meanwhile
        except FileExistsError:
            raise CtlError(
                f"{out} exists; give another --out FILE (archives are never overwritten)",
                EXIT_USAGE,
            ) from None
        except OSError:  # a filesystem without hard links
            os.rename(tmp, out)
    except OSError as exc:
        raise CtlError(f"cannot write {out}: {exc.strerror or exc}", EXIT_ERROR) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if opts["json"]:
        _print_json({"path": out, "files": len(packed)})
    else:
        sys.stdout.write(f"{out} ({len(packed)} files from {state_dir})\n")
        sys.stdout.flush()
    return EXIT_OK


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
    group.add_argument(
        "--server-key",
        metavar="FILE",
        default=default(_DEFAULTS["server_key"]),
        help="tcp:// endpoints: the daemon's public key file (SERVER.key; docs/security.md)",
    )
    group.add_argument(
        "--key",
        metavar="FILE",
        default=default(_DEFAULTS["key"]),
        help="tcp:// endpoints: this client's secret key file (NAME.key_secret, mode 0600)",
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
    every: list[CtlCommand[Any] | LocalCommand] = [*COMMANDS.values(), *LOCAL_COMMANDS.values()]
    for cmd in every:
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
                leaves = [
                    n.split(" ")[1]
                    for n in [*COMMANDS, *LOCAL_COMMANDS]
                    if n.startswith(f"{group} ")
                ]
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
    "--server-key": ("server_key", str),
    "--key": ("key", str),
}
_DEFAULTS: Options = {
    "json": False,
    "state_dir": None,
    "endpoint": None,
    "timeout": DEFAULT_TIMEOUT_S,
    "server_key": None,
    "key": None,
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
    path = ipc_file(endpoint)
    if path is None or path.startswith("@"):  # not ipc, or Linux's abstract namespace
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


def call(
    endpoint: str,
    command: str,
    args: Args,
    timeout_s: float,
    curve: tuple[bytes, bytes, bytes] | None = None,
) -> Any:
    """Send ``request(command, args)`` to the daemon at ``endpoint``; return the reply's result.

    Raises CtlError: no daemon answering within ``timeout_s`` (exit 3), an error reply (exit 4
    for not_found, 1 otherwise), an unreadable reply (1), an endpoint zmq refuses (2).
    """
    _check_socket_file(endpoint)
    request = Request(id=_new_id(), ts=time.time(), command=command, args=args)
    deadline = time.monotonic() + timeout_s
    path = ipc_file(endpoint)
    if path is not None and curve is None:
        response = _exchange_ipc(endpoint, path, request, deadline)
    else:
        response = _exchange_zmq(endpoint, request, deadline, curve)
    if isinstance(response, Error):
        code = EXIT_NOT_FOUND if response.code == "not_found" else EXIT_ERROR
        raise CtlError(f"{response.code}: {response.message}", code)
    return response.result


def _exchange_ipc(endpoint: str, path: str, request: Request, deadline: float) -> Reply | Error:
    """The request over ipc:// with the standard-library DEALER (pixels_daemon/zmtp.py says why
    not pyzmq). Unlike libzmq, which reconnects quietly until the timeout, a refused connection
    (a socket file nobody listens on) is reported at once."""
    from pixels_daemon import zmtp

    try:
        with zmtp.Dealer(path, deadline) as dealer:
            dealer.send(msgspec.msgpack.encode(request))
            while True:
                # The payload is the last frame (a DEALER's reply has no envelope).
                response = _decode(dealer.recv()[-1])
                if response.re == request.id:
                    return response
                # Anything else is not an answer to this request (cannot happen on a fresh
                # connection, but a reply must never be mistaken for another's).
    except TimeoutError:
        raise _no_daemon(endpoint) from None
    except ConnectionRefusedError:
        raise _no_daemon(endpoint, f"nothing listens on {path}") from None
    except PermissionError:
        raise _no_daemon(
            endpoint, f"permission denied on {path}: this user may not use the daemon"
        ) from None
    except ConnectionError:  # reset, broken pipe: the daemon went away mid-request
        raise _no_daemon(endpoint, "the connection was closed") from None
    except zmtp.ZmtpError as exc:
        raise CtlError(f"cannot talk to {endpoint}: {exc}", EXIT_ERROR) from None
    except OSError as exc:  # e.g. a path the kernel refuses (too long for a unix socket)
        raise CtlError(
            f"cannot connect to {endpoint!r}: {exc.strerror or exc} "
            "(endpoints look like ipc:///path/to/ctl.sock or tcp://host:port)",
            EXIT_USAGE,
        ) from None


def _exchange_zmq(
    endpoint: str, request: Request, deadline: float, curve: tuple[bytes, bytes, bytes] | None
) -> Reply | Error:
    """The request with a pyzmq DEALER: tcp:// (plain or CURVE), or anything not ipc://."""
    import zmq

    # A private context: nothing else in this process uses zmq, and destroy() ends it cleanly.
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        # LINGER 0: a request nobody took must not keep the process alive at exit.
        sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:  # (server public, own public, own secret): security.client_curve
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
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
                return response
    finally:
        ctx.destroy(linger=0)


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


def _curve(opts: Options) -> tuple[bytes, bytes, bytes] | None:
    """--server-key and --key as CURVE client keys, or None (ipc://, or plain tcp)."""
    if not opts.get("server_key") and not opts.get("key"):
        return None  # the everyday case: without importing the key module (it loads structlog)
    from pixels_daemon.security.keys import KeyError_, client_curve

    try:
        return client_curve(opts.get("server_key"), opts.get("key"))
    except KeyError_ as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None


# --- keys: local files, no daemon -----------------------------------------------------------


def _keys_dir(opts: Options) -> Path:
    from pathlib import Path

    return Path(_state_dir(opts)) / "keys"


@local_command(
    "keys generate",
    Arg(
        "--name",
        metavar="NAME",
        help="the key's name: NAME.key and NAME.key_secret (default: this host's name)",
    ),
    Arg("--out", metavar="DIR", help="where to write them (default: STATE_DIR/keys)"),
)
def keys_generate(opts: Options) -> int:
    """Make a CURVE key pair: NAME.key (public, give it to the other side) and NAME.key_secret
    (mode 0600, never copied). The daemon's is `--name server`; never overwrites a key."""
    import socket
    from pathlib import Path

    from pixels_daemon.security.keys import KeyError_, generate

    name = opts.get("name") or socket.gethostname().split(".")[0]
    out = Path(opts["out"]) if opts.get("out") else _keys_dir(opts)
    try:
        public, secret = generate(name, out)
    except (KeyError_, OSError) as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    sys.stdout.write(f"wrote {public} (public) and {secret} (secret, mode 0600)\n")
    return EXIT_OK


@local_command(
    "keys trust",
    Arg("file", metavar="FILE", help="the client's public key file (NAME.key)"),
    Arg("--role", metavar="ROLE", required=True, help="operator, viewer or orchestrator:NAME"),
    Arg("--name", metavar="NAME", help="the entry's name (default: FILE's name before .key)"),
)
def keys_trust(opts: Options) -> int:
    """Let a client's key in, with a role, in STATE_DIR/keys/trusted.json (a running daemon
    reads the change at once). Re-trusting a key or a name replaces its entry."""
    from pathlib import Path

    from pixels_daemon.security.keys import KeyError_, trust
    from pixels_daemon.security.policy import RoleError, parse_role

    try:
        entry = trust(
            _keys_dir(opts) / "trusted.json",
            Path(opts["file"]),
            parse_role(opts["role"]),
            opts.get("name"),
        )
    except (KeyError_, RoleError, OSError) as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    sys.stdout.write(f"trusted {entry.name} as {entry.role}\n")
    return EXIT_OK


@local_command(
    "keys revoke",
    Arg("what", metavar="NAME", help="a trusted entry's name, its public key, or its key file"),
)
def keys_revoke(opts: Options) -> int:
    """Take a key off the allow list: its next frame is refused, its next handshake fails."""
    from pixels_daemon.security.keys import KeyError_, revoke

    try:
        gone = revoke(_keys_dir(opts) / "trusted.json", opts["what"])
    except (KeyError_, OSError) as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    for entry in gone:
        sys.stdout.write(f"revoked {entry.name} ({entry.role})\n")
    return EXIT_OK


# --- main -----------------------------------------------------------------------------------


def run(opts: Options) -> int:
    """Run one parsed command line: ask the daemon, print the result. Raises CtlError."""
    local = LOCAL_COMMANDS.get(opts["command"])
    if local is not None:
        return local.run(opts)
    cmd = COMMANDS[opts["command"]]
    args = cmd.build(opts)  # may raise a usage error of its own (plan estimate's MIN > MAX)
    try:
        endpoint = ctl_endpoint(opts["state_dir"], opts["endpoint"])
    except PathError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    result = cmd.convert(call(endpoint, cmd.request, args, opts["timeout"], _curve(opts)))
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
