"""pixelsctl: option parsing, transport, exit codes, --json and human output.

Most tests talk to ``Responder``, a real ROUTER on ipc:// in a thread that answers like pixelsd with
canned protocol.views results; whole-process claims (no daemon within 2 s, no traceback, Ctrl-C)
run the installed console script as a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from pixels_daemon import ctl, ctl_format
from pixels_daemon.paths import StatePaths
from protocol.codec import ctl_request, encode
from protocol.messages import Error, Message, Reply, Request
from protocol.views import (
    BlockerView,
    CheckResultView,
    DecisionView,
    EscalationView,
    GateView,
    HoldView,
    OrchestratorView,
    PlanChangeView,
    ProcessView,
    StatusView,
    WorkstreamView,
)

PIXELSCTL = str(Path(sys.executable).with_name("pixelsctl"))
NOW = 1_700_000_000.0
#: How long a test waits for a real asynchronous event (a request reaching the responder).
WAIT_S = 5.0

ORCHESTRATORS = [
    OrchestratorView(
        name="foundation",
        display_name="Foundation",
        connection="connected",
        last_seen=NOW - 180,
        last_report=NOW - 3600,
        acked_seq=12,
        status="active",
        workstreams=["WS-01", "WS-02"],
    ),
    OrchestratorView(
        name="model",
        display_name="Model",
        connection="never_seen",
        last_seen=None,
        last_report=None,
        acked_seq=0,
        status="starting",
        workstreams=["WS-04"],
    ),
]
WORKSTREAMS = [
    WorkstreamView(
        id="WS-01",
        name="Hardware baselines",
        orchestrator="foundation",
        milestone="M0",
        status="in_progress",
        progress=0.45,
        eta=NOW + 2 * 86400,
        completion_time=None,
        blocker=None,
        updated_at=NOW - 7200,
        estimate_days=[3, 5],
        depends_on=[],
        priority="P0",
    ),
    WorkstreamView(
        id="WS-04",
        name="ComfyUI setup",
        orchestrator="model",
        milestone="M1",
        status="blocked",
        progress=0.1,
        eta=None,
        completion_time=None,
        blocker="waiting for CUDA 13 wheels",
        updated_at=None,
        estimate_days=[4, 6],
        depends_on=["WS-01"],
        priority="P1",
        holds=["gate:gate-1"],
    ),
]
STATUS = StatusView(
    plan="dgx-pixels",
    phase="M0",
    now=NOW,
    events=42,
    orchestrators=ORCHESTRATORS,
    workstreams=WORKSTREAMS,
    blockers=[
        BlockerView(
            orchestrator="model",
            workstream="WS-04",
            text="waiting for CUDA 13 wheels",
            since=NOW - 5400,
        )
    ],
    escalations=[
        EscalationView(
            id="esc-1",
            orchestrator="model",
            type="blocker",
            severity="high",
            issue="CUDA 13 wheels missing",
            affected_workstreams=["WS-04"],
            help_needed="a build",
            raised_at=NOW - 600,
            state="open",
        )
    ],
)
ESCALATION = EscalationView(
    id="E-7",
    orchestrator="pixelsd",
    type="blocker",
    severity="critical",
    issue="WS-04 blocked for 2d: waiting for CUDA 13 wheels",
    affected_workstreams=["WS-04", "WS-05"],
    help_needed="a build of the wheels",
    raised_at=NOW - 2 * 86400,
    state="acknowledged",
    kind="blocker_aged",
    subject="WS-04",
    count=3,
    updated_at=NOW - 60,
    acknowledged_at=NOW - 60,
    snoozed_until=NOW + 4 * 3600,
    inhibited_by=["gate-1"],
    note="on it",
    options=["re-scope", "add resources", "defer"],
    details={"blocked_h": 48.0},
)
#: Lines of output of the failing check: more than the human view shows.
CHECK_OUTPUT = "".join(f"line {i}\n" for i in range(1, 16)) + "FAIL: 2 of 5 benchmarks missing\n"
GATE = GateView(
    id="gate-1",
    name="Foundation -> Model/Interface",
    week=2,
    state="failed",
    run=2,
    workstreams=["WS-01", "WS-02", "WS-03"],
    criteria=["Hardware verification complete", "Benchmark suite running"],
    checks=["m0", "bench"],
    failures=["check bench failed (exit 1)"],
    results={
        "m0": CheckResultView(exit_status=0, output="all good\n", duration_s=1.5),
        "bench": CheckResultView(exit_status=1, output=CHECK_OUTPUT, duration_s=3.5),
    },
    metrics={"inference_time_s": 2.5},
    started_at=NOW - 120,
    decided_at=NOW - 100,
    passed_at=None,
)
GATES = [
    GATE,
    msgspec.structs.replace(
        GATE,
        id="gate-2",
        name="Model/Interface -> Integration",
        week=6,
        state="pending",
        run=0,
        failures=[],
        results={},
        started_at=None,
        decided_at=None,
    ),
]
DECISION = DecisionView(
    id="D-2",
    kind="conflict",
    source="pixelsd",
    title="WS-05 reported broken by interface, complete by model",
    context="interface says the API of WS-05 is broken;\nmodel reported it complete",
    options=["reopen WS-05", "accept as is"],
    workstreams=["WS-05"],
    parties=["interface", "model"],
    consequences="WS-09 waits for the fix",
    created_at=NOW - 3 * 3600,
    state="approved",
    decision="reopen WS-05",
    decided_at=NOW - 30,
    adr=2,
    adr_file="decisions/0002-ws-05-reported-broken.md",
)
HOLD = HoldView(target="model", kind="orchestrator", holds=["gate:gate-1", "operator"])
PLAN_CHANGE = PlanChangeView(
    n=3,
    at=NOW - 600,
    kind="add_dep",
    workstream="WS-05",
    detail="WS-05 now depends on WS-02",
    source="operator",
    reason="needs the repro harness",
)
SPAWNED = msgspec.structs.replace(
    ORCHESTRATORS[1],
    process=ProcessView(launcher="subprocess", state="waiting", next_start_at=NOW),
)
STOPPED = msgspec.structs.replace(
    ORCHESTRATORS[0],
    process=ProcessView(
        launcher="subprocess", state="stopping", pid=4242, operator_stopped=True, restarts=2
    ),
)
#: The canned result of each request command (the wire name, not the command line's).
RESULTS: dict[str, Any] = {
    "status": STATUS,
    "workstreams": WORKSTREAMS,
    "orchestrators": ORCHESTRATORS,
    "ping": {"daemon": "0.1.0", "pid": 4242, "plan": "dgx-pixels"},
    "escalations": [*STATUS.escalations, ESCALATION],
    "ack": ESCALATION,
    "resolve": msgspec.structs.replace(ESCALATION, state="resolved", resolved_at=NOW - 5),
    "snooze": ESCALATION,
    "gates": GATES,
    "gate_check": GATE,
    "halt": HOLD,
    "resume": HoldView(target="model", kind="orchestrator", holds=[]),
    "spawn": SPAWNED,
    "stop": STOPPED,
    "decisions": [DECISION],
    "decision_approve": DECISION,
    "decision_reject": msgspec.structs.replace(DECISION, state="rejected", decision="keep it"),
    "plan_add_dep": PLAN_CHANGE,
    "plan_drop_dep": PLAN_CHANGE,
    "plan_estimate": PLAN_CHANGE,
    "plan_defer": PLAN_CHANGE,
    "plan_changes": [PLAN_CHANGE],
    "poll": {"polled": ["foundation", "model"], "deadline_s": 60.0},
    "telemetry": {"enabled": False, "reason": "telemetry is off (--telemetry-interval 0)"},
    "notifications": [
        {
            "id": 3,
            "sink": "chat",
            "kind": "escalation",
            "key": "escalation:E-3:raised:1800000000.000",
            "severity": "high",
            "title": "[high] E-3 raised: GPU OOM",
            "state": "pending",
            "attempts": 2,
            "created_at": 1_800_000_000.0,
            "next_attempt": 1_800_000_060.0,
            "last_error": "HTTP 500: down",
            "sent_at": None,
        }
    ],
    "notify_test": {"id": 4, "sink": "chat", "key": "test:chat:1800000000.000"},
    "notify_retry": {
        "id": 3,
        "sink": "chat",
        "kind": "escalation",
        "key": "escalation:E-3:raised:1800000000.000",
        "severity": "high",
        "title": "[high] E-3 raised: GPU OOM",
        "state": "pending",
        "attempts": 5,
        "created_at": 1_800_000_000.0,
        "next_attempt": 1_800_090_000.0,
        "last_error": "HTTP 401: bad credentials",
        "sent_at": None,
    },
}
ALL_COMMANDS = sorted(ctl.COMMANDS)
#: A command line for each command (its own arguments included) and the request it must send.
SAMPLES: dict[str, tuple[list[str], str, dict[str, Any]]] = {
    "status": (["status"], "status", {}),
    "workstreams": (["workstreams"], "workstreams", {}),
    "orchestrators": (["orchestrators"], "orchestrators", {}),
    "ping": (["ping"], "ping", {}),
    "escalations": (["escalations"], "escalations", {"all": False}),
    "ack": (["ack", "E-7"], "ack", {"id": "E-7", "note": ""}),
    "resolve": (["resolve", "E-7", "--note", "fixed"], "resolve", {"id": "E-7", "note": "fixed"}),
    "snooze": (["snooze", "E-7", "--until", "4h"], "snooze", {"id": "E-7", "until": "4h"}),
    "gates": (["gates"], "gates", {}),
    "gate check": (["gate", "check", "gate-1"], "gate_check", {"id": "gate-1"}),
    "halt": (["halt", "model"], "halt", {"target": "model", "reason": ""}),
    "spawn": (["spawn", "model"], "spawn", {"name": "model", "reason": ""}),
    "stop": (
        ["stop", "foundation", "--reason", "disk full"],
        "stop",
        {"name": "foundation", "reason": "disk full"},
    ),
    "resume": (
        ["resume", "WS-04", "--reason", "wheels built"],
        "resume",
        {"target": "WS-04", "reason": "wheels built"},
    ),
    "decisions": (["decisions", "--all"], "decisions", {"all": True}),
    "decision approve": (
        ["decision", "approve", "D-2"],
        "decision_approve",
        {"id": "D-2", "note": ""},
    ),
    "decision reject": (
        ["decision", "reject", "D-2", "--note", "keep it"],
        "decision_reject",
        {"id": "D-2", "note": "keep it"},
    ),
    "plan add-dep": (
        ["plan", "add-dep", "WS-05", "WS-02", "--reason", "needs it"],
        "plan_add_dep",
        {"workstream": "WS-05", "depends_on": "WS-02", "reason": "needs it"},
    ),
    "plan drop-dep": (
        ["plan", "drop-dep", "WS-05", "WS-02"],
        "plan_drop_dep",
        {"workstream": "WS-05", "depends_on": "WS-02", "reason": ""},
    ),
    "plan estimate": (
        ["plan", "estimate", "WS-05", "4", "9"],
        "plan_estimate",
        {"workstream": "WS-05", "min_days": 4, "max_days": 9, "reason": ""},
    ),
    "plan defer": (
        ["plan", "defer", "WS-18", "--reason", "out of scope"],
        "plan_defer",
        {"workstream": "WS-18", "reason": "out of scope"},
    ),
    "plan changes": (["plan", "changes"], "plan_changes", {}),
    "poll": (["poll"], "poll", {}),
    "telemetry": (["telemetry"], "telemetry", {}),
    "notifications": (["notifications", "--failed"], "notifications", {"failed": True}),
    "notify test": (["notify", "test", "chat"], "notify_test", {"sink": "chat"}),
    "notify retry": (["notify", "retry", "3"], "notify_retry", {"id": 3}),
}
#: The --json top-level shape of each command: a view's field names, or None for a plain map.
VIEW_OF: dict[str, type[msgspec.Struct] | None] = {
    "status": StatusView,
    "workstreams": WorkstreamView,
    "orchestrators": OrchestratorView,
    "ping": None,
    "escalations": EscalationView,
    "ack": EscalationView,
    "resolve": EscalationView,
    "snooze": EscalationView,
    "gates": GateView,
    "gate check": GateView,
    "halt": HoldView,
    "resume": HoldView,
    "spawn": OrchestratorView,
    "stop": OrchestratorView,
    "decisions": DecisionView,
    "decision approve": DecisionView,
    "decision reject": DecisionView,
    "plan add-dep": PlanChangeView,
    "plan drop-dep": PlanChangeView,
    "plan estimate": PlanChangeView,
    "plan defer": PlanChangeView,
    "plan changes": PlanChangeView,
    "poll": ctl_format.PollResult,
    "telemetry": None,
    "notifications": None,
    "notify test": None,
    "notify retry": None,
}
#: Commands that only read (no arguments naming an id): safe on the module's shared daemon.
READ_ONLY = [
    "status",
    "workstreams",
    "orchestrators",
    "escalations",
    "gates",
    "decisions",
    "plan changes",
    "ping",
]
#: Commands that name an id, with a command line naming one that does not exist.
UNKNOWN_ID: dict[str, list[str]] = {
    "ack": ["ack", "E-999"],
    "resolve": ["resolve", "E-999"],
    "snooze": ["snooze", "E-999", "--until", "1h"],
    "gate check": ["gate", "check", "gate-99"],
    "halt": ["halt", "nobody"],
    "resume": ["resume", "nobody"],
    "spawn": ["spawn", "nobody"],
    "stop": ["stop", "nobody"],
    "decision approve": ["decision", "approve", "D-999"],
    "decision reject": ["decision", "reject", "D-999"],
    "plan add-dep": ["plan", "add-dep", "WS-99", "WS-01"],
    "plan drop-dep": ["plan", "drop-dep", "WS-99", "WS-01"],
    "plan estimate": ["plan", "estimate", "WS-99", "1", "2"],
    "plan defer": ["plan", "defer", "WS-99"],
    "notify test": ["notify", "test", "nobody"],
    "notify retry": ["notify", "retry", "999"],
}


def argv_of(command: str) -> list[str]:
    """The sample command line of ``command``."""
    return SAMPLES[command][0]


Script = Callable[[Request], list[Message]]


def canned(request: Request) -> list[Message]:
    """Answer like pixelsd: the canned result, or unknown_command."""
    if request.command in RESULTS:
        return [Reply(id="d-1", re=request.id, result=RESULTS[request.command])]
    return [Error(id="d-1", re=request.id, code="unknown_command", message=f"{request.command!r}?")]


class Responder:
    """A stand-in for pixelsd's control socket: a ROUTER on ipc:// served by a thread.

    ``script(request)`` gives the frames to answer with (none: stay silent). ``received`` is set
    when a request has arrived; ``requests`` keeps them all.
    """

    def __init__(self, endpoint: str, script: Script = canned) -> None:
        self.script = script
        self.requests: list[Request] = []
        self.received = threading.Event()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            # Short poll only so that close() is noticed promptly.
            if not self._sock.poll(20):
                continue
            *route, payload = self._sock.recv_multipart()
            request = ctl_request.decode(payload)
            self.requests.append(request)
            self.received.set()
            for message in self.script(request):
                self._sock.send_multipart([*route, encode(message)])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)
        self._ctx.destroy(linger=0)


@pytest.fixture
def ctl_socket(state_dir: Path) -> Path:
    """Where pixelsctl --state-dir STATE_DIR looks for the daemon (its run/ dir created)."""
    paths = StatePaths.under(state_dir)
    paths.runtime_dir.mkdir()
    return paths.ctl_socket


@pytest.fixture
def responder(ctl_socket: Path) -> Iterator[Responder]:
    """A canned daemon answering on the state dir's control socket."""
    r = Responder(f"ipc://{ctl_socket}")
    try:
        yield r
    finally:
        r.close()


def run_ctl(*args: str, timeout: float = 10.0) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the installed pixelsctl; return the finished process and its wall time."""
    start = time.monotonic()
    proc = subprocess.run(
        [PIXELSCTL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc, time.monotonic() - start


def fields(view: type[msgspec.Struct]) -> set[str]:
    return set(view.__struct_fields__)


# --- option parsing -------------------------------------------------------------------------


COMMON = ["--json", "--state-dir", "/tmp/x", "--endpoint", "ipc:///tmp/y", "--timeout", "0.5"]


def argparse_parse(argv: list[str]) -> dict[str, Any]:
    """What argparse alone makes of a command line (the fast path bypassed)."""
    return vars(ctl.build_parser().parse_args(argv))


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_common_options_parse_the_same_before_and_after_the_command(command: str) -> None:
    """--json/--state-dir/--endpoint/--timeout mean the same on either side of the command."""
    argv = argv_of(command)
    assert ctl.parse_args([*COMMON, *argv]) == ctl.parse_args([*argv, *COMMON])


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_argparse_parses_options_the_same_before_and_after_the_command(command: str) -> None:
    """The argparse parser (help, errors, commands with arguments) agrees on both placements."""
    argv = argv_of(command)
    before, after = argparse_parse([*COMMON, *argv]), argparse_parse([*argv, *COMMON])
    assert before == after == ctl.parse_args([*argv, *COMMON])


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_common_options_default_when_absent(command: str) -> None:
    """Without options every command gets the documented defaults."""
    expected = {
        "command": command,
        "json": False,
        "state_dir": None,
        "endpoint": None,
        "timeout": ctl.DEFAULT_TIMEOUT_S,
    }
    opts = ctl.parse_args(argv_of(command))
    assert opts == argparse_parse(argv_of(command))
    assert {key: opts[key] for key in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--state-dir", "/tmp/d", "status"],
        ["status", "--state-dir=/tmp/d", "--json"],
        ["--json", "workstreams", "--timeout", "3", "--endpoint", "ipc:///tmp/c.sock"],
    ],
)
def test_everyday_command_lines_skip_argparse(argv: list[str]) -> None:
    """Common options plus an argument-less command are parsed without argparse (start-up)."""
    assert ctl._fast_parse(argv) == argparse_parse(argv)


TOKENS = [
    *ALL_COMMANDS,
    *("--json", "--state-dir", "--endpoint", "--timeout", "--state-dir=/a", "--endpoint="),
    *("--timeout=2", "--timeout=0", "--timeout=x", "--timeout=nan", "--json=1", "--js"),
    *("/tmp/d", "ipc:///x", "0.5", "7", "-1", "-", "", "--", "-h", "bogus", "a=b"),
    *("gate", "check", "plan", "changes", "decision", "approve", "E-1", "--all", "--note"),
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_fast_path_agrees_with_argparse(argv: list[str]) -> None:
    """Wherever the fast path parses a command line, argparse parses it to the same Options."""
    fast = ctl._fast_parse(argv)
    if fast is not None:
        assert fast == argparse_parse(argv)


def test_import_and_parse_load_nothing_heavy() -> None:
    """Importing pixelsctl, parsing an everyday command line and picking its transport (no
    CURVE keys) load no heavy modules, not even zmq (ipc:// goes through pixels_daemon/zmtp.py)."""
    code = (
        "import sys; from pixels_daemon import ctl; "
        "ctl._curve(ctl.parse_args(['--state-dir', '/tmp/d', 'status', '--json'])); "
        "print(' '.join(sorted(m for m in "
        "('argparse', 'asyncio', 'anyio', 'structlog', 'sqlite3', 'protocol.codec', "
        "'pathlib', 'dataclasses', 'zmq') "
        "if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


HEAVY = ("argparse", "asyncio", "anyio", "structlog", "sqlite3", "zmq", "pathlib", "tarfile")


def test_an_everyday_request_loads_nothing_heavy(state_dir: Path, responder: Responder) -> None:
    """A whole `status` request over ipc:// (the canned daemon answers it) loads none of the
    heavy modules: not zmq (pixels_daemon/zmtp.py speaks to the socket), not pathlib."""
    code = (
        "import sys; from pixels_daemon import ctl; "
        f"code = ctl.main(['--state-dir', {str(state_dir)!r}, 'status']); "
        f"print(code, ' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr.splitlines()[-1] == "0 "
    assert [r.command for r in responder.requests] == ["status"]


def test_option_after_the_command_wins_over_one_before() -> None:
    """Given on both sides, the later value is used."""
    assert ctl.parse_args(["--timeout", "2", "status", "--timeout", "3"])["timeout"] == 3.0


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "nan", "1e9"])
def test_bad_timeout_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A --timeout that is not a sane number of seconds exits 2 saying so."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["status", "--timeout", bad])
    assert exc.value.code == 2
    assert f"argument --timeout: {bad!r} is not a number of seconds" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits 2 naming the valid ones."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """--help's epilog lists every exit code."""
    with pytest.raises(SystemExit):
        ctl.main(["--help"])
    out = capsys.readouterr().out
    for code, meaning in [("0", "ok"), ("1", "error"), ("2", "usage"), ("3", "no daemon")]:
        assert f"\n  {code} " in out and meaning in out
    assert "4    the daemon does not know that id" in out


def test_command_help_is_its_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    """`pixelsctl status --help` shows the status builder's docstring."""
    with pytest.raises(SystemExit):
        ctl.main(["status", "--help"])
    assert ctl.status.__doc__ is not None
    assert ctl.status.__doc__.splitlines()[0] in capsys.readouterr().out


def test_two_word_command_help_is_its_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    """`pixelsctl gate check --help` shows the gate check builder's docstring."""
    with pytest.raises(SystemExit):
        ctl.main(["gate", "check", "--help"])
    assert ctl.gate_check.__doc__ is not None
    assert ctl.gate_check.__doc__.splitlines()[0] in capsys.readouterr().out


def test_every_command_has_a_sample_and_a_canned_result() -> None:
    """The tables of this module cover every registered command (a new one must be added)."""
    assert set(SAMPLES) == set(VIEW_OF) == set(ctl.COMMANDS)
    assert {c.request for c in ctl.COMMANDS.values()} == set(RESULTS)


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_request_command_is_the_wire_name(command: str) -> None:
    """Each command sends the request command of the wire contract ("gate check" -> gate_check)."""
    assert ctl.COMMANDS[command].request == SAMPLES[command][1]


def test_common_options_may_stand_between_the_two_words() -> None:
    """`gate --json check ID` parses as `--json gate check ID` and `gate check ID --json`."""
    between = ctl.parse_args(["gate", "--json", "check", "gate-1"])
    assert between == ctl.parse_args(["--json", "gate", "check", "gate-1"])
    assert between == ctl.parse_args(["gate", "check", "gate-1", "--json"])
    assert between["command"] == "gate check" and between["json"] is True


def test_two_word_commands_are_left_to_argparse() -> None:
    """The fast path declines `plan changes`; argparse names the command with both words."""
    assert ctl._fast_parse(["plan", "changes"]) is None
    assert ctl.parse_args(["plan", "changes"])["command"] == "plan changes"


def test_group_without_its_second_word_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`pixelsctl plan` alone exits 2 naming the words that may follow."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["plan"])
    assert exc.value.code == 2
    assert "required: {add-dep,drop-dep,estimate,defer,changes}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "when",
    [
        "90m",
        "4h",
        "2d",
        "1h30m",
        "2D",
        "0.5h",
        "2026-12-01T09:00",
        "2026-12-01 09:00+02:00",
        "2026-12-01",
        "1798000000",
        "1798000000.5",
    ],
)
def test_snooze_passes_every_form_the_daemon_reads_unchanged(when: str) -> None:
    """Durations, ISO date-times and unix seconds reach the daemon exactly as typed."""
    assert ctl.parse_args(["snooze", "E-1", "--until", when])["until"] == when


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("tomorrow", "give a duration (90m, 4h, 2d, 1h30m), an ISO date-time"),
        ("4", "for a duration give its unit (4h, 4m)"),
        ("nan", "a bare number is unix seconds"),
        ("4x", "cannot read '4x' as a time"),
        ("", "cannot read '' as a time"),
    ],
)
def test_snooze_with_an_unreadable_when_is_a_usage_error(
    when: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A WHEN of none of the daemon's forms exits 2 before asking it, saying what would do."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["snooze", "E-1", "--until", when])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --until: " in err and why in err


def test_snooze_without_until_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--until is required: without it snooze exits 2 naming it."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["snooze", "E-1"])
    assert exc.value.code == 2
    assert "required: --until" in capsys.readouterr().err


@pytest.mark.parametrize("days", ["0", "x", "1.5", "-2"])
def test_estimate_days_must_be_whole_and_positive(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan estimate's MIN is a whole number of days >= 1, else exit 2 saying so."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["plan", "estimate", "WS-05", days, "9"])
    assert exc.value.code == 2
    assert f"argument MIN: {days!r} is not a whole number of days" in capsys.readouterr().err


def test_estimate_min_above_max_is_a_usage_error_before_any_daemon(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MIN > MAX exits 2 with one line, not 3: it is refused before the daemon is looked for."""
    assert ctl.main(["plan", "estimate", "WS-05", "9", "4", "--state-dir", str(state_dir)]) == 2
    err = capsys.readouterr().err
    assert (
        err == "pixelsctl: plan estimate: MIN (9) is more than MAX (4); give MIN MAX whole days\n"
    )


# --- against a canned daemon ----------------------------------------------------------------


@pytest.mark.parametrize("placement", ["before", "after"])
@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_command_line_becomes_the_request(
    command: str, placement: str, state_dir: Path, responder: Responder
) -> None:
    """Each command sends its wire command and args, common options before or after it."""
    argv, request, args = SAMPLES[command]
    opts = ["--json", "--state-dir", str(state_dir), "--timeout", "5"]
    assert ctl.main([*opts, *argv] if placement == "before" else [*argv, *opts]) == 0
    assert [(r.command, r.args) for r in responder.requests] == [(request, args)]


@pytest.mark.parametrize("placement", ["before", "after"])
@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_json_result_has_the_view_fields(
    command: str,
    placement: str,
    state_dir: Path,
    responder: Responder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--json, before or after the command, prints the result with exactly the views' fields."""
    opts = ["--json", "--state-dir", str(state_dir)]
    argv = [*opts, *argv_of(command)] if placement == "before" else [*argv_of(command), *opts]
    assert ctl.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    view = VIEW_OF[command]
    if view is None:
        assert out == RESULTS[SAMPLES[command][1]]
    else:
        items = out if isinstance(out, list) else [out]
        assert items and all(set(item) == fields(view) for item in items)
    assert [r.command for r in responder.requests] == [SAMPLES[command][1]]


def test_status_json_nested_views_have_their_fields(
    state_dir: Path, responder: Responder, capsys: pytest.CaptureFixture[str]
) -> None:
    """status --json nests orchestrators, workstreams, blockers, escalations with their fields."""
    assert ctl.main(["status", "--json", "--state-dir", str(state_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    nested: dict[str, type[msgspec.Struct]] = {
        "orchestrators": OrchestratorView,
        "workstreams": WorkstreamView,
        "blockers": BlockerView,
        "escalations": EscalationView,
    }
    for key, view in nested.items():
        assert out[key] and all(set(item) == fields(view) for item in out[key])
    assert msgspec.convert(out, StatusView) == STATUS


def test_status_human_output_has_the_key_facts(
    state_dir: Path, responder: Responder, capsys: pytest.CaptureFixture[str]
) -> None:
    """status prints phase, orchestrators with last seen, progress as %, eta, open blockers."""
    assert ctl.main(["status", "--state-dir", str(state_dir)]) == 0
    out = capsys.readouterr().out
    for fact in [
        "phase: M0",
        "foundation",
        "3m ago",  # last_seen, relative to the daemon's clock
        "never",  # model was never seen
        "45%",
        ctl_format.local_time(NOW + 2 * 86400),  # WS-01's eta
        "waiting for CUDA 13 wheels",
        "OPEN BLOCKERS (1)",
        "esc-1",
    ]:
        assert fact in out, fact


def test_endpoint_option_overrides_the_state_dir(
    ctl_socket: Path, responder: Responder, capsys: pytest.CaptureFixture[str]
) -> None:
    """--endpoint is used as given, whatever --state-dir says."""
    argv = ["ping", "--endpoint", f"ipc://{ctl_socket}", "--state-dir", "/nonexistent"]
    assert ctl.main(argv) == 0
    assert "pixelsd 0.1.0 (pid 4242)" in capsys.readouterr().out


def test_env_endpoint_is_used_without_options(
    ctl_socket: Path,
    responder: Responder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """$PIXELS_CTL_ENDPOINT finds the daemon when no option names it."""
    monkeypatch.setenv("PIXELS_CTL_ENDPOINT", f"ipc://{ctl_socket}")
    assert ctl.main(["ping"]) == 0
    assert "is answering" in capsys.readouterr().out


def test_request_carries_envelope_and_command(state_dir: Path, responder: Responder) -> None:
    """The request sent is a valid `request` with an id, a timestamp and empty args."""
    assert ctl.main(["workstreams", "--json", "--state-dir", str(state_dir)]) == 0
    (request,) = responder.requests
    assert request.command == "workstreams" and request.args == {}
    assert request.id and request.ts > 0 and request.seq == 0


@pytest.mark.parametrize(
    ("argv", "args"),
    [
        (["escalations"], {"all": False}),
        (["escalations", "--all", "--json"], {"all": True}),
        (["--json", "escalations", "--all"], {"all": True}),
        (["ack", "--note", "on it", "E-7"], {"id": "E-7", "note": "on it"}),
        (
            ["--json", "snooze", "--until", "2026-12-01T09:00", "E-7"],
            {"id": "E-7", "until": "2026-12-01T09:00"},
        ),
        (["gate", "--json", "check", "gate-1"], {"id": "gate-1"}),
        (["halt", "--reason", "disk full", "WS-04"], {"target": "WS-04", "reason": "disk full"}),
        (["decision", "approve", "D-2", "--note", "go"], {"id": "D-2", "note": "go"}),
        (
            ["plan", "estimate", "--reason", "re-scoped", "WS-05", "2", "3"],
            {"workstream": "WS-05", "min_days": 2, "max_days": 3, "reason": "re-scoped"},
        ),
    ],
)
def test_command_arguments_become_request_args(
    argv: list[str], args: dict[str, Any], state_dir: Path, responder: Responder
) -> None:
    """A command's own options reach the daemon as the request's args, beside common options."""
    assert ctl.main([*argv, "--state-dir", str(state_dir)]) == 0
    assert [r.args for r in responder.requests] == [args]


#: What each command's human output must show (times relative to now are tested purely below:
#: pixelsctl renders with the wall clock, the canned views are dated NOW).
FACTS: dict[str, list[str]] = {
    "workstreams": ["WS-01", "Hardware baselines", "45%", "blocked (gate:gate-1)"],
    "orchestrators": ["foundation", "WS-01, WS-02", "never_seen"],
    "ping": ["pixelsd 0.1.0 (pid 4242)"],
    "escalations": [
        "INHIBITED BY",
        "esc-1",
        "E-7",
        "critical",
        "blocker_aged",
        "gate-1",
        "WS-04, WS-05",
        "WS-04 blocked for 2d: waiting for CUDA 13 wheels",
    ],
    "ack": [
        "E-7  acknowledged  critical  blocker_aged",
        "pixelsd",
        "raised 3 times",
        "a build of the wheels",
        "on it",
        "gate-1 (not notified until it passes)",
        "re-scope; add resources; defer",
        "blocked_h=48.0",
    ],
    "resolve": ["E-7  resolved", "resolved:"],
    "snooze": [f"snoozed:      until {ctl_format.local_time(NOW + 4 * 3600)}"],
    "gates": [
        "gate-1",
        "Foundation -> Model/Interface",
        "failed",
        "check bench failed (exit 1)",
        "gate-2",
        "pending",
    ],
    "gate check": [
        "gate-1  Foundation -> Model/Interface  (week 2)",
        "failed (run 2)",
        "WS-01, WS-02, WS-03",
        "inference_time_s = 2.5",
        "  - Hardware verification complete",
        "  - check bench failed (exit 1)",
        "  m0: passed (exit 0) in 1.5s",
        "  bench: failed (exit 1) in 3.5s",
        "    | FAIL: 2 of 5 benchmarks missing",
    ],
    "halt": ["halted model: gate:gate-1, operator"],
    "resume": ["resumed model"],
    "spawn": ["spawning model (subprocess)"],
    "stop": ["stopping foundation; it stays stopped until `pixelsctl spawn foundation`"],
    "decisions": ["D-2", "approved", "conflict", "pixelsd", "WS-05 reported broken by interface"],
    "decision approve": [
        "D-2  approved  conflict",
        "interface, model",
        "decision:     reopen WS-05",
        "WS-09 waits for the fix",
        "2 (decisions/0002-ws-05-reported-broken.md)",
        "  interface says the API of WS-05 is broken;\n  model reported it complete",
        "  1. reopen WS-05\n  2. accept as is",
    ],
    "decision reject": ["D-2  rejected", "keep it"],
    "plan add-dep": [
        "plan change 3: WS-05 now depends on WS-02 (operator: needs the repro harness)"
    ],
    "plan drop-dep": ["plan change 3: "],
    "plan estimate": ["plan change 3: "],
    "plan defer": ["plan change 3: "],
    "plan changes": [
        "3",
        ctl_format.local_time(NOW - 600),
        "add_dep",
        "WS-05 now depends on WS-02",
        "needs the repro harness",
    ],
    "poll": ["polled foundation, model (answers due within 60 s)"],
    "telemetry": ["GPU telemetry: off (telemetry is off (--telemetry-interval 0))"],
    "notifications": ["chat", "escalation:E-3:raised:1800000000.000", "pending", "HTTP 500"],
    "notify test": ["test notification 4 queued for chat"],
    "notify retry": ["notification 3 to chat will be sent again now"],
}


@pytest.mark.parametrize("command", sorted(FACTS))
def test_human_output_has_the_key_facts(
    command: str, state_dir: Path, responder: Responder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json each command prints the facts an operator acts on."""
    assert ctl.main([*argv_of(command), "--state-dir", str(state_dir)]) == 0
    out = capsys.readouterr().out
    for fact in FACTS[command]:
        assert fact in out, fact


def test_gate_json_nests_check_results_with_their_fields(
    state_dir: Path, responder: Responder, capsys: pytest.CaptureFixture[str]
) -> None:
    """gate check --json nests each check's result with CheckResultView's fields, whole output."""
    assert ctl.main(["gate", "check", "gate-1", "--json", "--state-dir", str(state_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(set(r) == fields(CheckResultView) for r in out["results"].values())
    assert msgspec.convert(out, GateView) == GATE


@pytest.mark.parametrize("command", sorted(UNKNOWN_ID))
def test_unknown_id_exits_4_with_the_daemons_message(
    command: str, state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A not_found answer to any command naming an id exits 4 with one line."""
    r = Responder(f"ipc://{ctl_socket}", _error_script("not_found"))
    try:
        assert ctl.main([*UNKNOWN_ID[command], "--state-dir", str(state_dir)]) == 4
    finally:
        r.close()
    assert capsys.readouterr().err == "pixelsctl: not_found: no escalation 'esc-9'\n"


def _error_script(code: str) -> Script:
    def script(request: Request) -> list[Message]:
        return [Error(re=request.id, code=code, message="no escalation 'esc-9'")]  # type: ignore[arg-type]

    return script


@pytest.mark.parametrize(
    ("code", "exit_code"), [("not_found", 4), ("bad_args", 1), ("internal", 1)]
)
def test_error_reply_prints_code_and_message_and_exits(
    code: str, exit_code: int, state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error reply prints `pixelsctl: CODE: MESSAGE`; exit 4 for not_found, 1 otherwise."""
    r = Responder(f"ipc://{ctl_socket}", _error_script(code))
    try:
        assert ctl.main(["status", "--state-dir", str(state_dir)]) == exit_code
    finally:
        r.close()
    captured = capsys.readouterr()
    assert captured.err == f"pixelsctl: {code}: no escalation 'esc-9'\n"
    assert captured.out == ""


def test_reply_to_another_request_is_not_taken_as_the_answer(
    state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reply whose `re` names another request is skipped; the matching one is used."""

    def script(request: Request) -> list[Message]:
        stray = Reply(re="someone-else", result={"daemon": "stray", "pid": 1, "plan": "x"})
        return [stray, *canned(request)]

    r = Responder(f"ipc://{ctl_socket}", script)
    try:
        assert ctl.main(["ping", "--state-dir", str(state_dir)]) == 0
    finally:
        r.close()
    assert "pid 4242" in capsys.readouterr().out


def test_result_of_the_wrong_shape_is_an_error(
    state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A result that does not fit the command's view exits 1 with one line, not a traceback."""
    r = Responder(f"ipc://{ctl_socket}", lambda req: [Reply(re=req.id, result={"phase": 3})])
    try:
        assert ctl.main(["status", "--state-dir", str(state_dir)]) == 1
    finally:
        r.close()
    err = capsys.readouterr().err
    assert err.startswith("pixelsctl: the daemon's 'status' result does not have the expected")
    assert err.count("\n") == 1


# --- no daemon (whole process) --------------------------------------------------------------


def assert_no_daemon(proc: subprocess.CompletedProcess[str], elapsed: float, why: str) -> None:
    assert proc.returncode == 3, proc.stderr
    assert elapsed < 2.0
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("pixelsctl: no daemon answering at ipc://")
    assert "is pixelsd running? try --state-dir DIR" in proc.stderr
    assert why in proc.stderr


def test_missing_socket_file_exits_3_at_once(state_dir: Path) -> None:
    """No socket file: exit 3 at once (a long --timeout is not waited for), one line."""
    proc, elapsed = run_ctl("status", "--state-dir", str(state_dir), "--timeout", "30")
    assert_no_daemon(proc, elapsed, "no socket file")


def test_plain_file_at_the_socket_path_exits_3_at_once(ctl_socket: Path) -> None:
    """A regular file where the socket should be: exit 3 at once, saying it is not a socket."""
    ctl_socket.write_text("")
    proc, elapsed = run_ctl("status", "--endpoint", f"ipc://{ctl_socket}", "--timeout", "30")
    assert_no_daemon(proc, elapsed, "is not a socket")


def test_stale_socket_file_exits_3_at_once(state_dir: Path, ctl_socket: Path) -> None:
    """A socket file nobody listens on (a crashed daemon's): exit 3 at once (a long --timeout is
    not waited for), one line saying so."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(ctl_socket))
    stale.close()  # the file stays; connecting to it is refused
    proc, elapsed = run_ctl("status", "--state-dir", str(state_dir), "--timeout", "30")
    assert_no_daemon(proc, elapsed, f"nothing listens on {ctl_socket}")


def test_silent_daemon_exits_3_within_2s(state_dir: Path, ctl_socket: Path) -> None:
    """A daemon that takes the request but never answers: exit 3 within 2 s, one line."""
    r = Responder(f"ipc://{ctl_socket}", lambda req: [])
    try:
        proc, elapsed = run_ctl("status", "--state-dir", str(state_dir))
    finally:
        r.close()
    assert_no_daemon(proc, elapsed, "")
    assert [req.command for req in r.requests] == ["status"]


def test_ctrl_c_exits_130_quietly(state_dir: Path, ctl_socket: Path) -> None:
    """SIGINT while waiting for the daemon: exit 130, nothing printed."""
    r = Responder(f"ipc://{ctl_socket}", lambda req: [])
    try:
        proc = subprocess.Popen(
            [PIXELSCTL, "status", "--state-dir", str(state_dir), "--timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert r.received.wait(WAIT_S), "pixelsctl never sent its request"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        r.close()
    assert (proc.returncode, out, err) == (130, "", "")


def test_too_long_state_dir_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A state dir whose socket path exceeds the ipc limit exits 2 with the reason."""
    assert ctl.main(["status", "--state-dir", "/tmp/" + "d" * 120]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelsctl: socket path ") and "limited to 107" in err


def test_unusable_endpoint_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An endpoint zmq cannot parse exits 2 with an example of a valid one."""
    assert ctl.main(["ping", "--endpoint", "nonsense"]) == 2
    assert "endpoints look like ipc://" in capsys.readouterr().err


# --- human formatting (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "text"),
    [(0, "0s ago"), (59, "59s ago"), (180, "3m ago"), (7200, "2h ago"), (3 * 86400, "3d ago")],
)
def test_ago_is_coarse_and_relative(delta: float, text: str) -> None:
    """Past times read as the largest whole unit ago."""
    assert ctl_format.ago(NOW - delta, NOW) == text


def test_ago_of_a_future_time_reads_in() -> None:
    """A time after now reads "in ..." (clocks of two machines can disagree)."""
    assert ctl_format.ago(NOW + 90, NOW) == "in 1m"


def test_ago_of_none_reads_never() -> None:
    """A missing time reads "never"."""
    assert ctl_format.ago(None, NOW) == "never"


def test_local_time_is_iso_local_to_the_minute() -> None:
    """Unix seconds print as local YYYY-MM-DD HH:MM; None prints a dash."""
    ts = time.mktime((2025, 3, 14, 17, 0, 30, 0, 0, -1))
    assert ctl_format.local_time(ts) == "2025-03-14 17:00"
    assert ctl_format.local_time(None) == "-"


def test_table_aligns_columns() -> None:
    """Cells are padded to their column's widest entry."""
    text = ctl_format.table(["A", "BB"], [["xxx", "y"], ["z", "w"]])
    assert text.splitlines() == ["A    BB", "xxx  y", "z    w"]


def test_workstreams_table_shows_done_time_for_complete_workstreams() -> None:
    """A complete workstream shows its completion time in place of the eta."""
    done = msgspec.structs.replace(
        WORKSTREAMS[0], status="complete", progress=1.0, completion_time=NOW - 86400
    )
    text = ctl_format.workstreams_table([done], NOW)
    assert ctl_format.local_time(NOW - 86400) in text and "100%" in text


def test_escalation_age_and_snooze_read_relative_to_now() -> None:
    """The escalations table shows the age and how long the snooze has left."""
    text = ctl_format.escalations_table([ESCALATION], NOW)
    assert "acknowledged, snoozed 4h" in text and "  2d  " in text


def test_a_snooze_that_ended_is_not_shown() -> None:
    """Once snoozed_until has passed, the state reads plain again."""
    assert ctl_format.escalation_state(ESCALATION, NOW + 5 * 3600) == "acknowledged"


def test_escalation_detail_times_are_relative() -> None:
    """The single escalation shows when it was raised, acknowledged, and the snooze's end."""
    text = ctl_format.render_escalation(ESCALATION, NOW)
    assert "raised:       2d ago, raised 3 times, last change 1m ago" in text
    assert "acknowledged: 1m ago" in text
    assert f"until {ctl_format.local_time(NOW + 4 * 3600)} (in 4h)" in text


def test_gate_detail_shows_only_the_tail_of_a_checks_output() -> None:
    """A long check output shows its last OUTPUT_TAIL_LINES lines and says how many are cut."""
    lines = ctl_format.render_gate(GATE, NOW).splitlines()
    assert "    | [... 6 earlier lines: see --json ...]" in lines
    assert "    | line 6" not in lines and "    | line 7" in lines
    assert lines[-1] == "    | FAIL: 2 of 5 benchmarks missing"


def test_gate_detail_while_checking_points_to_gates() -> None:
    """A gate still checking says that `pixelsctl gates` will show the verdict."""
    checking = msgspec.structs.replace(GATE, state="checking", run=3)
    assert "checking (run 3): checks running; `pixelsctl gates` shows the verdict" in (
        ctl_format.render_gate(checking, NOW)
    )


def test_check_that_did_not_finish_says_so() -> None:
    """A check without an exit status reads as timed out or not started."""
    result = CheckResultView(exit_status=None, output="", duration_s=300.0)
    assert ctl_format.check_result("m0", result) == (
        "  m0: did not finish (timed out or could not start) in 300.0s"
    )


def test_gates_table_shows_when_decided() -> None:
    """The gates table gives the decision time relative to now, a dash when undecided."""
    rows = ctl_format.gates_table(GATES, NOW).splitlines()
    assert "1m ago" in rows[1] and rows[2].split()[-2:] == ["-", "-"]


def test_resume_with_a_gate_hold_left_says_it_is_still_halted() -> None:
    """Resuming what a failed gate also holds says which holds remain."""
    held = HoldView(target="WS-04", kind="workstream", holds=["gate:gate-1"])
    assert ctl_format.render_resume(held, NOW) == (
        "lifted the operator's hold on WS-04; still halted by gate:gate-1"
    )


def test_renderers_exist_for_every_command() -> None:
    """Every registered command renders its canned result without error."""
    for command in ctl.COMMANDS.values():
        assert command.render(command.convert(msgspec.to_builtins(RESULTS[command.request])), NOW)


# --- against the real daemon ----------------------------------------------------------------


def _ping(state_dir: Path) -> bool:
    try:
        ctl.call(StatePaths.under(state_dir).ctl_endpoint, "ping", {}, 0.5)
    except ctl.CtlError:
        return False
    return True


@contextlib.contextmanager
def real_daemon(path: Path) -> Iterator[Path]:
    """A real pixelsd (embedded plan) on ``path``, answering; killed on exit."""
    log = (path / "pixelsd.log").open("ab")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("pixelsd")),
            "--state-dir",
            str(path),
            "--launcher",
            "none",
        ],
        stdout=log,
        stderr=log,
    )
    log.close()
    try:
        deadline = time.monotonic() + 20.0
        while not _ping(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pixelsd did not start: {(path / 'pixelsd.log').read_text()}")
            time.sleep(0.05)  # polling for readiness, not waiting for time to pass
        yield path
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def daemon_dir() -> Iterator[Path]:
    """A real pixelsd on a fresh short state dir, shared by this module's tests that change
    nothing (they read, or are refused); killed at teardown."""
    path = Path(tempfile.mkdtemp(prefix="px-", dir="/tmp"))
    try:
        with real_daemon(path):
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_real_daemon_status_json_is_a_status_view(daemon_dir: Path) -> None:
    """pixelsctl status --json against pixelsd prints a StatusView of the embedded plan."""
    proc, _ = run_ctl("status", "--json", "--state-dir", str(daemon_dir))
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(proc.stdout)
    assert set(raw) == fields(StatusView)
    view = msgspec.convert(raw, StatusView)
    names = {o.name for o in view.orchestrators}
    assert names == {"foundation", "model", "interface", "integration"}
    assert len(view.workstreams) == 18


def test_real_daemon_status_human_lists_every_orchestrator(daemon_dir: Path) -> None:
    """pixelsctl status against pixelsd shows the phase and every orchestrator, never seen."""
    proc, _ = run_ctl("--state-dir", str(daemon_dir), "status")
    assert proc.returncode == 0, proc.stderr
    assert "phase: " in proc.stdout and "OPEN BLOCKERS" in proc.stdout
    for name in ("foundation", "model", "interface", "integration"):
        assert name in proc.stdout
    assert "never_seen" in proc.stdout


@pytest.mark.parametrize("command", READ_ONLY)
def test_real_daemon_answers_every_reading_command(command: str, daemon_dir: Path) -> None:
    """Every pixelsctl command that only reads gets a result of its view's shape from pixelsd."""
    proc, _ = run_ctl(*argv_of(command), "--json", "--state-dir", str(daemon_dir))
    assert proc.returncode == 0, proc.stderr
    ctl.COMMANDS[command].convert(json.loads(proc.stdout))


@pytest.mark.parametrize("command", sorted(UNKNOWN_ID))
def test_real_daemon_unknown_id_exits_4(
    command: str, daemon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pixelsd reads each command's args and answers not_found for an unknown id: exit 4."""
    assert ctl.main([*UNKNOWN_ID[command], "--state-dir", str(daemon_dir)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("pixelsctl: not_found: ") and err.count("\n") == 1


def test_real_daemon_halt_then_resume(state_dir: Path) -> None:
    """halt and resume of an orchestrator on pixelsd print the hold, then its release."""
    with real_daemon(state_dir):
        halted, _ = run_ctl("halt", "model", "--reason", "test", "--state-dir", str(state_dir))
        resumed, _ = run_ctl("--state-dir", str(state_dir), "resume", "model")
    assert (halted.returncode, halted.stdout) == (0, "halted model: operator\n"), halted.stderr
    assert (resumed.returncode, resumed.stdout) == (0, "resumed model\n"), resumed.stderr


def test_stopped_daemon_exits_3(state_dir: Path) -> None:
    """After pixelsd stops, pixelsctl on its state dir exits 3 within 2 s."""
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("pixelsd")),
            "--state-dir",
            str(state_dir),
            "--launcher",
            "none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20.0
        while not _ping(state_dir):
            assert proc.poll() is None and time.monotonic() < deadline, "pixelsd did not start"
            time.sleep(0.05)  # polling for readiness
        proc.terminate()
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
    result, elapsed = run_ctl("status", "--state-dir", str(state_dir))
    assert result.returncode == 3 and elapsed < 2.0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# --- poll, watch, report, verify-completion, archive ----------------------------------------

#: A command line for each local command (no request, or more than one) and what it parses to.
LOCAL_SAMPLES: dict[str, list[str]] = {
    "watch": ["watch", "--kind", "gate", "--kind", "escalation", "--count", "3"],
    "report": ["report", "--week", "2"],
    "verify-completion": ["verify-completion"],
    "archive": ["archive", "--out", "/tmp/a.tar.gz"],
    "keys generate": ["keys", "generate", "--name", "alice", "--out", "/tmp/k"],
    "keys trust": ["keys", "trust", "/tmp/k/alice.key", "--role", "viewer"],
    "keys revoke": ["keys", "revoke", "alice"],
}


def test_every_local_command_has_a_sample() -> None:
    """The local commands table covers every registered one (a new one must be added)."""
    assert set(LOCAL_SAMPLES) == set(ctl.LOCAL_COMMANDS)
    assert not set(ctl.LOCAL_COMMANDS) & set(ctl.COMMANDS)


@pytest.mark.parametrize("command", sorted(LOCAL_SAMPLES))
def test_local_commands_take_common_options_before_or_after(command: str) -> None:
    """--json/--state-dir/--endpoint/--timeout mean the same on either side of a local command."""
    argv = LOCAL_SAMPLES[command]
    before, after = ctl.parse_args([*COMMON, *argv]), ctl.parse_args([*argv, *COMMON])
    assert before == after
    assert before["command"] == command and before["state_dir"] == "/tmp/x"


def test_watch_options_parse_to_kinds_and_count() -> None:
    """--kind repeats; --count is a number; both default to everything, forever."""
    opts = ctl.parse_args(LOCAL_SAMPLES["watch"])
    assert (opts["kind"], opts["count"]) == (["gate", "escalation"], 3)
    bare = ctl.parse_args(["watch"])
    assert (bare["kind"], bare["count"], bare["events_endpoint"]) == (None, None, None)


def test_watch_kinds_are_the_daemons() -> None:
    """pixelsctl's list of kinds (kept to spare start-up an import) is the daemon's."""
    from pixels_daemon.events import KINDS

    assert ctl.WATCH_KINDS == KINDS


def test_watch_of_an_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--kind names one of the kinds, else exit 2 listing them."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["watch", "--kind", "gates"])
    assert exc.value.code == 2
    assert "argument --kind: invalid choice: 'gates'" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "-1", "x"])
def test_watch_count_must_be_positive(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--count N is a whole number >= 1, else exit 2 saying so."""
    with pytest.raises(SystemExit) as exc:
        ctl.main(["watch", "--count", count])
    assert exc.value.code == 2
    assert f"argument --count: {count!r} is not a count" in capsys.readouterr().err


def test_parsing_the_new_commands_loads_nothing_heavy() -> None:
    """Parsing watch/report/archive command lines imports neither tarfile nor the event module."""
    code = (
        "import sys; from pixels_daemon import ctl; "
        "[ctl.parse_args(a) for a in (['watch'], ['report'], ['archive'], ['poll'])]; "
        "print(' '.join(sorted(m for m in "
        "('asyncio', 'anyio', 'structlog', 'tarfile', 'pixels_daemon.events') "
        "if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


# poll ------------------------------------------------------------------------------------------


def test_poll_with_nobody_connected_says_nothing_was_polled(
    state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty `polled` reads "no orchestrator is connected; nothing polled", exit 0."""
    r = Responder(
        f"ipc://{ctl_socket}",
        lambda req: [Reply(re=req.id, result={"polled": [], "deadline_s": 60.0})],
    )
    try:
        assert ctl.main(["poll", "--state-dir", str(state_dir)]) == 0
    finally:
        r.close()
    assert capsys.readouterr().out == "no orchestrator is connected; nothing polled\n"


def test_real_daemon_poll_with_nobody_connected(daemon_dir: Path) -> None:
    """pixelsd answers poll; with no orchestrator connected nothing is polled (exit 0)."""
    proc, _ = run_ctl("poll", "--state-dir", str(daemon_dir))
    assert (proc.returncode, proc.stdout) == (
        0,
        "no orchestrator is connected; nothing polled\n",
    ), proc.stderr


# watch -----------------------------------------------------------------------------------------


def watch_event(kind: str = "gate", subject: str = "gate-1", text: str = "") -> Any:
    from pixels_daemon.events import WatchEvent

    return WatchEvent(
        kind=kind,
        at=NOW,
        subject=subject,
        text=text or f"{subject} checking -> passed (run 1)",
        data={"run": 1},
    )


@pytest.fixture
def events_pub(state_dir: Path) -> Iterator[Any]:
    """The daemon's event publisher, on the state dir's events socket."""
    from pixels_daemon.events import EventPublisher

    ctx = zmq.Context()
    pub = EventPublisher(ctx, StatePaths.under(state_dir).events_endpoint)
    try:
        yield pub
    finally:
        pub.close()
        ctx.term()


def start_watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PIXELSCTL, "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def until_subscribed(pub: Any, proc: subprocess.Popen[str]) -> None:
    """Wait for the watcher's subscription to reach the publisher (it then gets what follows)."""
    deadline = time.monotonic() + WAIT_S
    while not pub.wants_events():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "pixelsctl watch never subscribed"
        time.sleep(0.01)  # polling for the subscription, not waiting for time to pass


def test_watch_without_a_daemon_exits_3_saying_so(state_dir: Path) -> None:
    """No events socket under the state dir: exit 3 at once, one line naming the state dir."""
    proc, _ = run_ctl("watch", "--state-dir", str(state_dir))
    assert (proc.returncode, proc.stdout) == (3, "")
    assert proc.stderr.startswith(f"pixelsctl: no daemon is running on state dir {state_dir} ")
    assert proc.stderr.count("\n") == 1


def test_watch_prints_one_line_per_event_and_stops_after_count(
    state_dir: Path, events_pub: Any
) -> None:
    """Each event is one `HH:MM:SS  kind  subject  text` line; --count 2 stops after two."""
    proc = start_watch("--state-dir", str(state_dir), "--count", "2")
    until_subscribed(events_pub, proc)
    events_pub.publish([watch_event(), watch_event("escalation", "E-3", "E-3 opened (high): x")])
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    clock = time.strftime("%H:%M:%S", time.localtime(NOW))
    assert out.splitlines() == [
        f"{clock}  gate          gate-1       checking -> passed (run 1)",
        f"{clock}  escalation    E-3          opened (high): x",
    ]
    endpoint = StatePaths.under(state_dir).events_endpoint
    assert err == f"watching {endpoint} (Ctrl-C to stop)\n"


def test_watch_json_prints_one_object_per_line(state_dir: Path, events_pub: Any) -> None:
    """--json prints each event as one JSON object: kind, at, subject, text, data, seq."""
    proc = start_watch("--json", "--state-dir", str(state_dir), "--count", "1")
    until_subscribed(events_pub, proc)
    events_pub.publish([watch_event()])
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    (line,) = out.splitlines()
    assert json.loads(line) == {
        "kind": "gate",
        "at": NOW,
        "subject": "gate-1",
        "text": "gate-1 checking -> passed (run 1)",
        "data": {"run": 1},
        "seq": 1,
    }


def test_watch_kind_shows_only_those_kinds(state_dir: Path, events_pub: Any) -> None:
    """--kind escalation skips the gate events published before and after it."""
    proc = start_watch("--kind", "escalation", "--state-dir", str(state_dir), "--count", "1")
    until_subscribed(events_pub, proc)
    events_pub.publish(
        [watch_event(), watch_event("escalation", "E-3", "E-3 resolved"), watch_event()]
    )
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    assert [line.split()[1:] for line in out.splitlines()] == [["escalation", "E-3", "resolved"]]


def test_watch_says_how_many_events_it_missed(state_dir: Path) -> None:
    """A jump in an event kind's numbers is reported on stderr as events this watcher missed."""
    from pixels_daemon.events import WatchEvent

    ctx = zmq.Context()
    xpub = ctx.socket(zmq.XPUB)  # a stand-in for the daemon's publisher, numbering by hand
    xpub.setsockopt(zmq.LINGER, 0)
    (state_dir / "run").mkdir()
    xpub.bind(StatePaths.under(state_dir).events_endpoint)
    try:
        proc = start_watch("--state-dir", str(state_dir), "--count", "2")
        assert xpub.poll(int(WAIT_S * 1000)), "pixelsctl watch never subscribed"
        xpub.recv()
        for seq in (1, 5):
            event = WatchEvent(kind="gate", at=NOW, subject="gate-1", text=f"n{seq}", seq=seq)
            xpub.send_multipart([b"gate", msgspec.msgpack.encode(event)])
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        ctx.destroy(linger=0)
    assert proc.returncode == 0 and len(out.splitlines()) == 2
    assert err.splitlines()[1:] == ["pixelsctl: missed 3 gate events (this watcher fell behind)"]


def test_watch_ctrl_c_exits_0_quietly(state_dir: Path, events_pub: Any) -> None:
    """SIGINT is how a watch ends: exit 0, nothing printed but the first line."""
    proc = start_watch("--state-dir", str(state_dir))
    until_subscribed(events_pub, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT_S)
    assert (proc.returncode, out) == (0, "")
    assert err.startswith("watching ") and err.count("\n") == 1


def test_real_daemon_watch_shows_an_operator_halt(state_dir: Path) -> None:
    """pixelsctl watch on pixelsd's state dir prints the halt of an orchestrator as it happens."""
    with real_daemon(state_dir):
        proc = start_watch("--kind", "orchestrator", "--count", "1", "--state-dir", str(state_dir))
        try:
            # The subscription reaches the daemon asynchronously: repeat a harmless change until
            # the watcher has its event and exits, within a bounded number of tries.
            for _ in range(100):
                if proc.poll() is not None:
                    break
                run_ctl("halt", "foundation", "--state-dir", str(state_dir))
                run_ctl("resume", "foundation", "--state-dir", str(state_dir))
            out, err = proc.communicate(timeout=WAIT_S)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    (line,) = out.splitlines()
    assert line.split()[1:4] in (
        ["orchestrator", "foundation", "halted:"],
        ["orchestrator", "foundation", "resumed"],
    )


def test_watch_finds_events_beside_an_ipc_control_endpoint() -> None:
    """With --endpoint ipc:///D/ctl.sock and no --state-dir, watch subscribes to /D/events.sock."""
    opts = ctl.parse_args(["watch", "--endpoint", "ipc:///srv/px/run/ctl.sock"])
    assert ctl._events_endpoint(opts)[0] == "ipc:///srv/px/run/events.sock"


def test_watch_events_endpoint_option_wins() -> None:
    """--events-endpoint is used as given, whatever --state-dir says."""
    argv = ["watch", "--events-endpoint", "tcp://127.0.0.1:5599", "--state-dir", "/tmp/x"]
    assert ctl._events_endpoint(ctl.parse_args(argv))[0] == "tcp://127.0.0.1:5599"


def test_watch_finds_events_beside_the_env_control_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$PIXELS_CTL_ENDPOINT (ipc) without options: watch subscribes beside that socket."""
    monkeypatch.setenv("PIXELS_CTL_ENDPOINT", "ipc:///run/pixels/ctl.sock")
    assert ctl._events_endpoint(ctl.parse_args(["watch"]))[0] == "ipc:///run/pixels/events.sock"


def test_watch_beside_a_tcp_control_endpoint_needs_events_endpoint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A tcp:// control endpoint says nothing of the events socket: exit 2 asking for it."""
    assert ctl.main(["watch", "--endpoint", "tcp://127.0.0.1:5555"]) == 2
    assert "give --events-endpoint URL" in capsys.readouterr().err


def test_watch_line_does_not_repeat_the_subject() -> None:
    """A text starting with its subject shows the subject once, in its column."""
    line = ctl_format.watch_line(watch_event("workstream", "WS-04", "WS-04 progress 10% -> 25%"))
    assert line.split("  ", 1)[1].split() == ["workstream", "WS-04", "progress", "10%", "->", "25%"]


def test_watch_line_keeps_a_text_that_does_not_start_with_the_subject() -> None:
    """Plan changes are about a workstream but read "plan change N: ...": shown whole."""
    line = ctl_format.watch_line(watch_event("plan", "WS-05", "plan change 3: WS-05 now ..."))
    assert line.endswith("WS-05        plan change 3: WS-05 now ...")


# report ----------------------------------------------------------------------------------------


def write_reports(state_dir: Path, *weeks: int) -> Path:
    folder = StatePaths.under(state_dir).reports
    folder.mkdir(parents=True, exist_ok=True)
    for week in weeks:
        (folder / f"week_{week:02d}_status.md").write_text(f"# Week {week} status\n\nbody\n")
    (folder / "completion_report.md").write_text("# not a weekly report\n")
    return folder


def test_report_prints_the_latest_week(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --week the highest-numbered week's report is printed (week 10 after week 9)."""
    write_reports(state_dir, 1, 9, 10)
    assert ctl.main(["report", "--state-dir", str(state_dir)]) == 0
    assert capsys.readouterr().out == "# Week 10 status\n\nbody\n"


def test_report_week_prints_that_week(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--week N prints week N's report."""
    write_reports(state_dir, 1, 2, 3)
    assert ctl.main(["report", "--week", "2", "--state-dir", str(state_dir)]) == 0
    assert capsys.readouterr().out.startswith("# Week 2 status\n")


def test_report_of_a_missing_week_exits_4_saying_when_reports_are_written(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A week with no report exits 4 with one line: when they are written, how to get one now."""
    write_reports(state_dir, 1, 2)
    assert ctl.main(["report", "--week", "3", "--state-dir", str(state_dir)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("pixelsctl: no report for week 3 yet; reports are written Fridays 17:00")
    assert "docs/configuration.md" in err and "`pixelsctl report --now`" in err
    assert err.count("\n") == 1


def test_report_with_no_reports_exits_4(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No reports/ at all (a fresh state dir, no daemon needed): exit 4 naming the folder."""
    assert ctl.main(["report", "--state-dir", str(state_dir)]) == 4
    assert f"no report yet in {state_dir}/reports; " in capsys.readouterr().err


def test_report_json_has_week_path_and_text(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints {"week", "path", "text"}."""
    folder = write_reports(state_dir, 4)
    assert ctl.main(["report", "--json", "--state-dir", str(state_dir)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "week": 4,
        "path": str(folder / "week_04_status.md"),
        "text": "# Week 4 status\n\nbody\n",
    }


def test_report_now_asks_the_daemon_then_prints_what_it_wrote(
    state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--now sends report_now (no args), then prints the file the reply names (relative to the
    state dir)."""

    def script(request: Request) -> list[Message]:
        write_reports(state_dir, 5)  # what the daemon does before it answers
        return [Reply(re=request.id, result={"week": 5, "path": "reports/week_05_status.md"})]

    r = Responder(f"ipc://{ctl_socket}", script)
    try:
        assert ctl.main(["report", "--now", "--state-dir", str(state_dir)]) == 0
    finally:
        r.close()
    assert [(q.command, q.args) for q in r.requests] == [("report_now", {})]
    assert capsys.readouterr().out == "# Week 5 status\n\nbody\n"


def test_report_now_and_week_together_is_a_usage_error(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--now writes this week's report; with --week as well it is refused, exit 2."""
    assert ctl.main(["report", "--now", "--week", "2", "--state-dir", str(state_dir)]) == 2
    assert "give --week N (an existing report) or --now" in capsys.readouterr().err


def test_report_now_without_a_daemon_exits_3(state_dir: Path) -> None:
    """--now needs the daemon: without one, exit 3 like every request."""
    proc, _ = run_ctl("report", "--now", "--state-dir", str(state_dir))
    assert proc.returncode == 3 and "no daemon answering" in proc.stderr


def test_real_daemon_report_now_writes_and_prints_week_1(state_dir: Path) -> None:
    """Against pixelsd, --now writes this week's report (week 1 of a fresh plan) and prints it."""
    with real_daemon(state_dir):
        proc, _ = run_ctl("report", "--now", "--json", "--state-dir", str(state_dir))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["week"] == 1
    assert out["path"] == str(StatePaths.under(state_dir).reports / "week_01_status.md")
    assert out["text"] == Path(out["path"]).read_text()


# verify-completion -----------------------------------------------------------------------------


def completion_daemon(
    ctl_socket: Path, workstreams: list[WorkstreamView], gates: list[GateView]
) -> Responder:
    def script(request: Request) -> list[Message]:
        result = {"workstreams": workstreams, "gates": gates}[request.command]
        return [Reply(re=request.id, result=result)]

    return Responder(f"ipc://{ctl_socket}", script)


def test_verify_completion_lists_what_is_missing_and_exits_1(
    state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Work not complete and gates not passed are listed one per line; exit 1."""
    r = completion_daemon(ctl_socket, WORKSTREAMS, GATES)
    try:
        assert ctl.main(["verify-completion", "--state-dir", str(state_dir)]) == 1
    finally:
        r.close()
    assert capsys.readouterr().out.splitlines() == [
        "incomplete: 0/2 workstreams complete, 0/2 gates passed",
        "WS-01 in_progress 45%",
        "WS-04 blocked 10% (held by gate:gate-1)",
        "gate-1 failed: check bench failed (exit 1)",
        "gate-2 pending",
    ]
    assert [q.command for q in r.requests] == ["workstreams", "gates"]


def test_verify_completion_of_a_finished_plan_exits_0_with_one_line(
    state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every workstream complete and every gate passed: exit 0, one line with the counts."""
    done = [msgspec.structs.replace(w, status="complete", progress=1.0) for w in WORKSTREAMS]
    passed = [msgspec.structs.replace(g, state="passed", failures=[]) for g in GATES]
    r = completion_daemon(ctl_socket, done, passed)
    try:
        assert ctl.main(["verify-completion", "--state-dir", str(state_dir)]) == 0
    finally:
        r.close()
    assert capsys.readouterr().out == "complete: 2/2 workstreams complete, 2/2 gates passed\n"


def test_verify_completion_json_has_complete_and_missing(
    state_dir: Path, ctl_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints {"complete": false, "missing": [...]} (and still exits 1)."""
    r = completion_daemon(ctl_socket, WORKSTREAMS[:1], [])
    try:
        assert ctl.main(["verify-completion", "--json", "--state-dir", str(state_dir)]) == 1
    finally:
        r.close()
    assert json.loads(capsys.readouterr().out) == {
        "complete": False,
        "missing": ["WS-01 in_progress 45%"],
    }


def test_verify_completion_counts_deferred_work_as_missing() -> None:
    """A deferred workstream was not done: it is listed."""
    deferred = msgspec.structs.replace(WORKSTREAMS[0], status="deferred")
    summary, missing = ctl_format.completion([deferred], [])
    assert summary.startswith("incomplete: 0/1") and missing == ["WS-01 deferred 45%"]


def test_real_daemon_verify_completion_of_a_fresh_plan(daemon_dir: Path) -> None:
    """A fresh plan: exit 1 listing all 18 workstreams and every gate of the plan."""
    gates_out, _ = run_ctl("gates", "--json", "--state-dir", str(daemon_dir))
    n_gates = len(json.loads(gates_out.stdout))
    proc, _ = run_ctl("verify-completion", "--state-dir", str(daemon_dir))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"incomplete: 0/18 workstreams complete, 0/{n_gates} gates passed"
    assert len(lines) == 1 + 18 + n_gates


# archive ---------------------------------------------------------------------------------------


@pytest.fixture
def full_state_dir(state_dir: Path) -> Path:
    """A state dir with every kind of file: the four archived dirs, and what must stay out."""
    paths = StatePaths.under(state_dir)
    write_reports(state_dir, 1)
    for folder, name, text in [
        (paths.decisions, "0001-sdxl.md", "# ADR 0001\n"),
        (paths.status, "meta_status.json", "{}\n"),
        (paths.logs / "model", "agent.log", "line\n"),
    ]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (paths.reports / ".week_02_status.md.tmp").write_text("half a report")
    (paths.logs / "latest.log").symlink_to(paths.logs / "model" / "agent.log")
    paths.db.write_bytes(b"SQLite format 3\0")
    paths.lock.write_text("4242\n")
    paths.runtime_dir.mkdir()
    for sock_path in (paths.ctl_socket, paths.logs / "agent.sock"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(sock_path))
        sock.close()
    return state_dir


#: What full_state_dir's archive holds, in the manifest's order (reports, decisions, status, logs).
ARCHIVED = [
    "reports/completion_report.md",
    "reports/week_01_status.md",
    "decisions/0001-sdxl.md",
    "status/meta_status.json",
    "logs/model/agent.log",
]


def test_archive_packs_the_four_dirs_and_a_manifest_only(
    full_state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """reports/, decisions/, status/, logs/ and MANIFEST.txt, under one top folder; never the
    db, the lock, sockets, symlinks or half-written temp files. Prints path and file count."""
    import tarfile

    out = tmp_path / "px.tar.gz"
    assert ctl.main(["archive", "--out", str(out), "--state-dir", str(full_state_dir)]) == 0
    assert capsys.readouterr().out == f"{out} (5 files from {full_state_dir})\n"
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
        agent_log = tar.extractfile("px/logs/model/agent.log")
        assert agent_log is not None and agent_log.read() == b"line\n"
    assert names == sorted(["px/MANIFEST.txt", *(f"px/{name}" for name in ARCHIVED)])


def test_archive_manifest_names_time_state_dir_and_files(
    full_state_dir: Path, tmp_path: Path
) -> None:
    """MANIFEST.txt says when, which state dir, how many files, and lists them."""
    import tarfile

    out = tmp_path / "px.tar.gz"
    assert ctl.main(["archive", "--out", str(out), "--state-dir", str(full_state_dir)]) == 0
    with tarfile.open(out) as tar:
        member = tar.extractfile("px/MANIFEST.txt")
        assert member is not None
        manifest = member.read().decode().splitlines()
    assert manifest[0] == "pixels archive"
    assert manifest[1].startswith("created: ") and manifest[2] == f"state dir: {full_state_dir}"
    assert manifest[3:] == ["files: 5", "", *ARCHIVED]


def test_archive_refuses_to_overwrite(
    full_state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing --out FILE is left alone: exit 2 saying so."""
    out = tmp_path / "px.tar.gz"
    out.write_text("precious")
    assert ctl.main(["archive", "--out", str(out), "--state-dir", str(full_state_dir)]) == 2
    assert "exists; give another --out FILE" in capsys.readouterr().err
    assert out.read_text() == "precious"


def test_archive_default_name_is_dated_in_the_current_dir(
    full_state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out: ./pixels-archive-YYYYmmdd-HHMMSS.tar.gz, and no temp file left behind."""
    import re

    monkeypatch.chdir(tmp_path)
    assert ctl.main(["archive", "--state-dir", str(full_state_dir)]) == 0
    (name,) = [p.name for p in tmp_path.iterdir()]
    assert re.fullmatch(r"pixels-archive-\d{8}-\d{6}\.tar\.gz", name)


def test_archive_of_a_state_dir_without_files_exits_4(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing under the four dirs: exit 4 saying there is nothing to archive; no file made."""
    out = tmp_path / "px.tar.gz"
    assert ctl.main(["archive", "--out", str(out), "--state-dir", str(state_dir)]) == 4
    assert "nothing to archive in " in capsys.readouterr().err
    assert not out.exists()


def test_archive_of_a_missing_state_dir_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state dir that does not exist: exit 4 naming it."""
    missing = tmp_path / "nope"
    assert ctl.main(["archive", "--state-dir", str(missing)]) == 4
    assert (
        capsys.readouterr().err == f"pixelsctl: no state dir at {missing}; give --state-dir DIR\n"
    )
