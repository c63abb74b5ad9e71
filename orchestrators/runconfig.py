"""What ``pixels-orchestrator run`` runs for each workstream: the agent command template and its
placeholders, the runner config file (``--config FILE``), and the settings they resolve to.

The config file (TOML; every key optional; an unknown key is refused, named)::

    [agent]                      # defaults for every workstream of this orchestrator
    command = "npx claude-flow@alpha spawn agent {agent_type} --workstream {workstream}"
    env = { CLAUDE_FLOW_MODE = "ci" }   # added to the agent's environment
    workdir = "/srv/pixels/work"        # default: STATE_DIR/work (relative: to the file's folder)
    halt = "terminate"                  # or "pause" (SIGSTOP / SIGCONT the agent's process group)
    grace_s = 5.0                       # SIGTERM -> SIGKILL grace
    progress = "auto"                   # auto | status_file | stdout | liveness

    [workstreams.WS-04]
    command = "..."                     # this workstream's own command
    env = { ... }                       # merged over [agent].env

A workstream's command is the first of: its ``[workstreams.WS]`` command, the plan workstream's
``command``, ``--agent TEMPLATE``, ``[agent] command`` (a flag beats the file's default, as
everywhere). Pure apart from reading the file.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct

#: The placeholders an agent template may use.
PLACEHOLDERS = (
    "workstream",
    "name",
    "days",
    "output",
    "state_dir",
    "python",
    "spec",
    "agent_type",
    "priority",
    "depends",
)

HaltMode = Literal["terminate", "pause"]
ProgressSource = Literal["auto", "status_file", "stdout", "liveness"]

#: After SIGTERM, how long an agent gets to write its last state and exit before SIGKILL.
DEFAULT_GRACE_S = 5.0
#: Longest grace accepted: an hour bounds how long a halt may take.
MAX_GRACE_S = 3600.0

_T = TypeVar("_T", bound=Struct)
_EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class TemplateError(Exception):
    """An agent template that cannot be used; the message says why."""


class ConfigError(Exception):
    """A runner config file that cannot be used; the message names the file and the fault."""


# --- the agent's command line ---------------------------------------------------------------


def agent_argv(template: str, values: Mapping[str, str]) -> list[str]:
    """The agent's argv: ``template`` split like a shell would (no shell runs it), then each
    word formatted with ``values``. Raises TemplateError naming the fault."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise TemplateError(f"cannot split the agent template: {exc}") from None
    if not words:
        raise TemplateError("the agent template is empty")
    try:
        return [word.format(**values) for word in words]
    except KeyError as exc:
        raise TemplateError(
            f"unknown placeholder {{{exc.args[0]}}} in the agent template; known: "
            + " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        ) from None
    except (ValueError, IndexError) as exc:
        raise TemplateError(
            f"bad agent template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from None


def check_template(template: str) -> None:
    """Raise TemplateError if ``template`` cannot be formatted."""
    agent_argv(template, dict.fromkeys(PLACEHOLDERS, "x"))


def uses_placeholder(template: str, name: str) -> bool:
    """Whether ``template`` fills in ``{name}`` (a checked template: no KeyError here)."""
    probe = dict.fromkeys(PLACEHOLDERS, "")
    probe[name] = "\0"
    return any("\0" in word for word in agent_argv(template, probe))


# --- the config file ------------------------------------------------------------------------


class AgentTable(Struct, kw_only=True, forbid_unknown_fields=True):
    """``[agent]``: defaults for every workstream of the orchestrator."""

    command: str | None = None
    env: dict[_EnvName, str] = {}
    workdir: str | None = None
    halt: HaltMode = "terminate"
    grace_s: Annotated[float, Meta(ge=0.0, le=MAX_GRACE_S)] = DEFAULT_GRACE_S
    progress: ProgressSource = "auto"


class WorkstreamTable(Struct, kw_only=True, forbid_unknown_fields=True):
    """``[workstreams.WS]``: one workstream's own command and environment."""

    command: str | None = None
    env: dict[_EnvName, str] = {}


class RunnerFile(Struct, kw_only=True, forbid_unknown_fields=True):
    agent: AgentTable = msgspec.field(default_factory=AgentTable)
    workstreams: dict[str, WorkstreamTable] = {}


_CHOICES = {"halt": HaltMode, "progress": ProgressSource}


def load_runner_file(path: str | os.PathLike[str]) -> RunnerFile:
    """Read and check a runner config file. Raises ConfigError naming the file and the fault."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text: save the file as UTF-8") from None
    return parse_runner_file(raw, source)


def parse_runner_file(raw: dict[str, Any], source: str) -> RunnerFile:
    """Check a parsed TOML document against the runner config's shape (one table at a time, so
    a message can name the table)."""
    unknown = [key for key in raw if key not in ("agent", "workstreams")]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} at top level; a runner config has an [agent] "
            "table and [workstreams.WS] tables"
        )
    agent = _table(raw.get("agent", {}), AgentTable, "agent", source)
    workstreams = raw.get("workstreams", {})
    if not isinstance(workstreams, dict):
        raise ConfigError(f"{source}: workstreams must be tables: write [workstreams.WS-01]")
    return RunnerFile(
        agent=agent,
        workstreams={
            str(ws): _table(table, WorkstreamTable, f"workstreams.{ws}", source)
            for ws, table in workstreams.items()
        },
    )


def _table(raw: object, kind: type[_T], where: str, source: str) -> _T:
    """One table of the file as ``kind``; ConfigError naming the file, table and key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a table: write [{where}]")
    known = [f.name for f in msgspec.structs.fields(kind)]
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [{where}]; known keys: {', '.join(known)}"
            )
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_shape_message(str(exc), where)}") from None


_SHAPE = re.compile(r"^(?P<what>.*?) - at (?:`key` in )?`\$(?P<path>[^`]*)`$")


def _shape_message(message: str, where: str) -> str:
    """msgspec's "... - at `$.halt`" as a line a person can act on."""
    m = _SHAPE.match(message)
    what, path = (m["what"], m["path"].removeprefix(".")) if m else (message, "")
    key = path.split("[", 1)[0].split(".", 1)[0]
    if key in _CHOICES and what.startswith("Invalid enum value"):
        value = what.removeprefix("Invalid enum value").strip()
        return f"[{where}] {key} = {value} is not one of: {', '.join(get_args(_CHOICES[key]))}"
    if key == "env" and "regex" in what:
        return f"[{where}] env: a name is letters, digits and '_', not starting with a digit"
    if key == "env":
        return f"[{where}] env: every value must be a string (quote it)"
    what = what.replace("Expected", "expected").replace("`str | null`", "a string")
    return f"[{where}] {key}: {what}" if key else f"[{where}]: {what}"


# --- the settings they resolve to -----------------------------------------------------------


@dataclass(frozen=True)
class PlanInfo:
    """What the runner takes from the plan about one of its workstreams."""

    days: int = 1
    spec: str = ""
    agent_type: str = ""
    priority: str = ""
    depends: tuple[str, ...] = ()
    command: str | None = None


@dataclass(frozen=True)
class AgentCommand:
    """A workstream's agent template and where it came from (for messages)."""

    template: str
    source: str


@dataclass(frozen=True)
class AgentSettings:
    """The runner's agent settings, resolved from the config file, the plan and the flags."""

    plan: Mapping[str, PlanInfo] = field(default_factory=dict)
    file: RunnerFile = field(default_factory=RunnerFile)
    file_name: str = "the runner config"
    flag_command: str | None = None  # --agent

    @property
    def halt(self) -> HaltMode:
        return self.file.agent.halt

    @property
    def grace_s(self) -> float:
        return self.file.agent.grace_s

    @property
    def progress(self) -> ProgressSource:
        return self.file.agent.progress

    def command_for(self, ws: str) -> AgentCommand | None:
        """The first of: [workstreams.WS] command, the plan's, --agent, [agent] command."""
        own = self.file.workstreams.get(ws)
        if own is not None and own.command is not None:
            return AgentCommand(own.command, f"[workstreams.{ws}] command in {self.file_name}")
        info = self.plan.get(ws)
        if info is not None and info.command is not None:
            return AgentCommand(info.command, f"the plan's command for {ws}")
        if self.flag_command is not None:
            return AgentCommand(self.flag_command, "--agent")
        if self.file.agent.command is not None:
            return AgentCommand(self.file.agent.command, f"[agent] command in {self.file_name}")
        return None

    def env_for(self, ws: str) -> dict[str, str]:
        """What the config adds to the agent's environment: [agent].env, then the workstream's."""
        own = self.file.workstreams.get(ws)
        return {**self.file.agent.env, **(own.env if own is not None else {})}

    def values(
        self, ws: str, name: str, output: Path, state_dir: Path | None, python: str
    ) -> dict[str, str]:
        """The placeholders' values for ``ws``'s agent."""
        info = self.plan.get(ws, PlanInfo())
        return {
            "workstream": ws,
            "name": name,
            "days": str(info.days),
            "output": str(output),
            "state_dir": str(state_dir) if state_dir is not None else "",
            "python": python,
            "spec": info.spec,
            "agent_type": info.agent_type,
            "priority": info.priority,
            "depends": ",".join(info.depends),
        }

    def check(self, *, state_dir_given: bool, other_workstreams: frozenset[str]) -> list[str]:
        """Check every template this orchestrator may run and the config's workstream tables.

        ``other_workstreams``: the plan's workstreams of other orchestrators (a shared config may
        name them; they are ignored). Raises ConfigError (a [workstreams.WS] the plan does not
        have) or TemplateError naming the template's source. Returns this orchestrator's
        workstreams that have no command from any source.
        """
        for ws in self.file.workstreams:
            if ws not in self.plan and ws not in other_workstreams:
                known = ", ".join(self.plan) or "none"
                raise ConfigError(
                    f"{self.file_name}: [workstreams.{ws}]: the plan has no workstream {ws!r} "
                    f"(this orchestrator's: {known})"
                )
        commands: list[AgentCommand] = []
        if self.flag_command is not None:
            commands.append(AgentCommand(self.flag_command, "--agent"))
        if self.file.agent.command is not None:
            commands.append(
                AgentCommand(self.file.agent.command, f"[agent] command in {self.file_name}")
            )
        missing = []
        for ws in self.plan:
            command = self.command_for(ws)
            if command is None:
                missing.append(ws)
            elif command not in commands:
                commands.append(command)
        for command in commands:
            try:
                check_template(command.template)
            except TemplateError as exc:
                raise TemplateError(f"{command.source}: {exc}") from None
            if not state_dir_given and uses_placeholder(command.template, "state_dir"):
                raise TemplateError(f"{command.source} uses {{state_dir}}: give --state-dir DIR")
        return missing

    def workdir(self, state_dir: Path, flag: str | None, file_dir: Path | None) -> Path:
        """--workdir, else [agent] workdir (relative: to the config file's folder), else
        STATE_DIR/work."""
        if flag:
            return Path(flag)
        configured = self.file.agent.workdir
        if configured:
            path = Path(configured).expanduser()
            return path if path.is_absolute() or file_dir is None else file_dir / path
        return state_dir / "work"
