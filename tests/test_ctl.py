"""pixelsctl: option parsing, transport, exit codes, --json and human output.

Most tests talk to ``Responder``, a real ROUTER on ipc:// in a thread that answers like pixelsd with
canned protocol.views results; whole-process claims (no daemon within 2 s, no traceback, Ctrl-C)
run the installed console script as a subprocess.
"""

from __future__ import annotations

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
    EscalationView,
    OrchestratorView,
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
RESULTS: dict[str, Any] = {
    "status": STATUS,
    "workstreams": WORKSTREAMS,
    "orchestrators": ORCHESTRATORS,
    "ping": {"daemon": "0.1.0", "pid": 4242, "plan": "dgx-pixels"},
    "escalations": STATUS.escalations,
}
ALL_COMMANDS = sorted(ctl.COMMANDS)
#: The --json top-level shape of each command: a view's field names, or None for a plain map.
VIEW_OF: dict[str, type[msgspec.Struct] | None] = {
    "status": StatusView,
    "workstreams": WorkstreamView,
    "orchestrators": OrchestratorView,
    "ping": None,
    "escalations": EscalationView,
}

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
    assert ctl.parse_args([*COMMON, command]) == ctl.parse_args([command, *COMMON])


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_argparse_parses_options_the_same_before_and_after_the_command(command: str) -> None:
    """The argparse parser (help, errors, commands with arguments) agrees on both placements."""
    before, after = argparse_parse([*COMMON, command]), argparse_parse([command, *COMMON])
    assert before == after == ctl.parse_args([command, *COMMON])


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
    opts = ctl.parse_args([command])
    assert opts == argparse_parse([command])
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
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_fast_path_agrees_with_argparse(argv: list[str]) -> None:
    """Wherever the fast path parses a command line, argparse parses it to the same Options."""
    fast = ctl._fast_parse(argv)
    if fast is not None:
        assert fast == argparse_parse(argv)


def test_import_and_parse_load_nothing_heavy() -> None:
    """Importing pixelsctl and parsing an everyday command line loads no heavy modules."""
    code = (
        "import sys; from pixels_daemon import ctl; "
        "ctl.parse_args(['--state-dir', '/tmp/d', 'status', '--json']); "
        "print(' '.join(sorted(m for m in "
        "('argparse', 'asyncio', 'anyio', 'structlog', 'sqlite3', 'protocol.codec') "
        "if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


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


# --- against a canned daemon ----------------------------------------------------------------


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
    argv = [*opts, command] if placement == "before" else [command, *opts]
    assert ctl.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    view = VIEW_OF[command]
    if view is None:
        assert out == RESULTS[command]
    else:
        items = out if isinstance(out, list) else [out]
        assert items and all(set(item) == fields(view) for item in items)
    assert [r.command for r in responder.requests] == [command]


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
    ],
)
def test_command_arguments_become_request_args(
    argv: list[str], args: dict[str, Any], state_dir: Path, responder: Responder
) -> None:
    """A command's own options reach the daemon as the request's args, beside common options."""
    assert ctl.main([*argv, "--state-dir", str(state_dir)]) == 0
    assert [(r.command, r.args) for r in responder.requests] == [("escalations", args)]


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


def test_stale_socket_file_exits_3_within_2s(state_dir: Path, ctl_socket: Path) -> None:
    """A socket file nobody listens on (a crashed daemon's): exit 3 within 2 s, one line."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(ctl_socket))
    stale.close()  # the file stays; connecting to it is refused
    proc, elapsed = run_ctl("status", "--state-dir", str(state_dir))
    assert_no_daemon(proc, elapsed, "")


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


def test_renderers_exist_for_every_command() -> None:
    """Every registered command renders its canned result without error."""
    for name, command in ctl.COMMANDS.items():
        assert command.render(command.convert(msgspec.to_builtins(RESULTS[name])), NOW)


# --- against the real daemon ----------------------------------------------------------------


def _ping(state_dir: Path) -> bool:
    try:
        ctl.call(StatePaths.under(state_dir).ctl_endpoint, "ping", {}, 0.5)
    except ctl.CtlError:
        return False
    return True


@pytest.fixture(scope="module")
def daemon_dir() -> Iterator[Path]:
    """A real pixelsd (embedded plan) on a fresh short state dir, shared by this module's tests
    that only read from it; killed at teardown."""
    path = Path(tempfile.mkdtemp(prefix="px-", dir="/tmp"))
    log = (path / "pixelsd.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("pixelsd")), "--state-dir", str(path)],
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


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_real_daemon_answers_every_command(command: str, daemon_dir: Path) -> None:
    """Every pixelsctl command gets a result of its view's shape from pixelsd."""
    proc, _ = run_ctl(command, "--json", "--state-dir", str(daemon_dir))
    assert proc.returncode == 0, proc.stderr
    ctl.COMMANDS[command].convert(json.loads(proc.stdout))


def test_stopped_daemon_exits_3(state_dir: Path) -> None:
    """After pixelsd stops, pixelsctl on its state dir exits 3 within 2 s."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("pixelsd")), "--state-dir", str(state_dir)],
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
