"""The runner's agent settings (orchestrators/runconfig.py): the config file's shape and its errors,
which command and environment a workstream's agent gets, the placeholders; and the pid file and
/proc reading that adoption rests on (orchestrators/agentproc.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrators.agentproc import (
    AgentProcess,
    PidRecord,
    read_pid_file,
    start_time,
    write_pid_file,
)
from orchestrators.runconfig import (
    AgentSettings,
    ConfigError,
    PlanInfo,
    TemplateError,
    load_runner_file,
)

EXAMPLE = """\
[agent]
command = "npx claude-flow@alpha spawn agent {agent_type} --workstream {workstream} --spec {spec}"
env = { CLAUDE_FLOW_MODE = "ci" }
workdir = "work"
halt = "pause"
grace_s = 2.5
progress = "stdout"

[workstreams.WS-02]
command = "./special.sh {workstream} {depends}"
env = { EXTRA = "1", CLAUDE_FLOW_MODE = "debug" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runner.toml"
    path.write_text(text)
    return path


def settings(tmp_path: Path, text: str = EXAMPLE, flag: str | None = None) -> AgentSettings:
    plan = {
        "WS-01": PlanInfo(days=5, spec="docs/ws01.md", agent_type="ai-engineer", priority="P0"),
        "WS-02": PlanInfo(depends=("WS-01", "WS-03")),
        "WS-03": PlanInfo(command="plan-agent {workstream}"),
    }
    path = write(tmp_path, text)
    return AgentSettings(plan, load_runner_file(path), str(path), flag)


def test_the_documented_example_is_read_whole(tmp_path: Path) -> None:
    """Every key of the documented shape lands where it belongs."""
    s = settings(tmp_path)
    assert (s.halt, s.grace_s, s.progress) == ("pause", 2.5, "stdout")
    assert s.workdir(tmp_path / "state", None, tmp_path) == tmp_path / "work"


def test_command_order_is_workstream_table_then_plan_then_flag_then_agent_table(
    tmp_path: Path,
) -> None:
    """[workstreams.WS] command, the plan's command, --agent, [agent] command: the first given."""
    s = settings(tmp_path, flag="flag-agent")
    ws01, ws02, ws03 = (s.command_for(ws) for ws in ("WS-01", "WS-02", "WS-03"))
    assert ws02 is not None and ws02.template.startswith("./special.sh")
    assert ws03 is not None and ws03.template == "plan-agent {workstream}"
    assert ws01 is not None and ws01.template == "flag-agent"
    file_only = settings(tmp_path).command_for("WS-01")
    assert file_only is not None and file_only.template.startswith("npx claude-flow")
    no_table = AgentSettings(s.plan, flag_command="flag-agent")
    assert no_table.command_for("WS-01") == no_table.command_for("WS-02")
    assert (no_table.command_for("WS-01") or ws01).source == "--agent"
    assert AgentSettings(s.plan).command_for("WS-01") is None


def test_workstream_env_merges_over_the_agent_table(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.env_for("WS-01") == {"CLAUDE_FLOW_MODE": "ci"}
    assert s.env_for("WS-02") == {"CLAUDE_FLOW_MODE": "debug", "EXTRA": "1"}


def test_placeholders_come_from_the_plan(tmp_path: Path) -> None:
    """{spec} {agent_type} {priority} {depends} (comma-joined) {days} besides the old ones."""
    s = settings(tmp_path)
    v1 = s.values("WS-01", "foundation", Path("/w/S.json"), None, "py")
    assert (v1["spec"], v1["agent_type"], v1["priority"], v1["days"]) == (
        "docs/ws01.md",
        "ai-engineer",
        "P0",
        "5",
    )
    assert s.values("WS-02", "foundation", Path("/w/S.json"), None, "py")["depends"] == (
        "WS-01,WS-03"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[agent]\ncomand = 'x'\n",
            "unknown key 'comand' in [agent]; known keys: command, env, workdir, halt, grace_s, "
            "progress",
        ),
        ("[workstreams.WS-01]\nhalt = 'pause'\n", "unknown key 'halt' in [workstreams.WS-01]"),
        ("[agents]\n", "unknown key 'agents' at top level"),
        ("[agent]\nhalt = 'stop'\n", "[agent] halt = 'stop' is not one of: terminate, pause"),
        (
            "[agent]\nprogress = 'logs'\n",
            "[agent] progress = 'logs' is not one of: auto, status_file, stdout, liveness",
        ),
        ("[agent]\ngrace_s = -1\n", "[agent] grace_s: expected `float` >= 0.0"),
        ("[agent]\nenv = { X = 1 }\n", "[agent] env: every value must be a string"),
        ("[agent]\nenv = { 'A B' = 'x' }\n", "[agent] env: a name is letters, digits and '_'"),
        ("agent = 3\n", "agent must be a table: write [agent]"),
        ("[agent\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_fault(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_runner_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read it: No such file"):
        load_runner_file(tmp_path / "nope.toml")


def test_check_names_the_source_of_a_bad_template(tmp_path: Path) -> None:
    """An unknown placeholder in any command this orchestrator may run is named with its source
    and the valid placeholders."""
    s = settings(tmp_path, EXAMPLE.replace("{depends}", "{deps}"))
    with pytest.raises(TemplateError) as caught:
        s.check(state_dir_given=True, other_workstreams=frozenset())
    text = str(caught.value)
    assert text.startswith(f"[workstreams.WS-02] command in {tmp_path / 'runner.toml'}: ")
    assert "unknown placeholder {deps}" in text
    assert "{depends}" in text and "{agent_type}" in text


def test_check_refuses_state_dir_without_a_state_dir(tmp_path: Path) -> None:
    s = AgentSettings({"WS-01": PlanInfo()}, flag_command="agent --clock {state_dir}/clock.json")
    with pytest.raises(TemplateError, match=r"--agent uses \{state_dir\}: give --state-dir DIR"):
        s.check(state_dir_given=False, other_workstreams=frozenset())


def test_check_refuses_a_workstream_table_the_plan_lacks(tmp_path: Path) -> None:
    """A typo (WS-4) is refused; another orchestrator's workstream (a shared file) is not."""
    s = settings(tmp_path, "[workstreams.WS-4]\ncommand = 'x'\n")
    with pytest.raises(ConfigError, match=r"\[workstreams\.WS-4\]: the plan has no workstream"):
        s.check(state_dir_given=True, other_workstreams=frozenset({"WS-09"}))
    shared = settings(tmp_path, "[workstreams.WS-09]\ncommand = 'x'\n")
    shared.check(state_dir_given=True, other_workstreams=frozenset({"WS-09"}))


def test_check_lists_workstreams_without_a_command(tmp_path: Path) -> None:
    s = AgentSettings({"WS-01": PlanInfo(), "WS-02": PlanInfo(command="a")})
    assert s.check(state_dir_given=True, other_workstreams=frozenset()) == ["WS-01"]


def test_workdir_flag_beats_the_file_which_beats_the_state_dir(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.workdir(tmp_path, "/flag", tmp_path) == Path("/flag")
    assert AgentSettings().workdir(tmp_path, None, None) == tmp_path / "work"


# --- agentproc --------------------------------------------------------------------------------


def test_start_time_reads_proc_stat_field_22() -> None:
    """A process's start time is stable; a pid no process holds has none."""
    me = start_time(os.getpid())
    assert isinstance(me, int) and me > 0
    assert start_time(os.getpid()) == me
    assert start_time(2**22 + 1) is None  # above pid_max's ceiling: never a process


def test_pid_file_round_trips(tmp_path: Path) -> None:
    write_pid_file(tmp_path, PidRecord(1234, 567, 89))
    assert read_pid_file(tmp_path) == PidRecord(1234, 567, 89)
    (tmp_path / "agent.pid").write_text("{half")
    assert read_pid_file(tmp_path) is None


def test_adoption_needs_the_same_start_time() -> None:
    """A live pid with another start time (a reused pid) is not adopted; the real one is."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = start_time(proc.pid)
        assert AgentProcess.adopt(PidRecord(proc.pid, started, 0)) is not None
        assert AgentProcess.adopt(PidRecord(proc.pid, (started or 0) + 1, 0)) is None
        assert AgentProcess.adopt(PidRecord(proc.pid, None, 0)) is None
    finally:
        proc.kill()
        proc.wait()
    assert AgentProcess.adopt(PidRecord(proc.pid, started, 0)) is None
