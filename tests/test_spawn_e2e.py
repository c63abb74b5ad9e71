"""End to end: from nothing, the daemon (--launcher subprocess) spawns the four orchestrators of a
small plan in the plan's order, and they run it to completion with script agents.

The plan is shaped like the embedded one: Foundation first; Model and Interface after gate 1 (on
Foundation's two workstreams); Integration after Model's and Interface's work. Each orchestrator's
runner config (``--orchestrator-config DIR``: DIR/NAME.toml) runs tests/scripts/done_agent.py,
which writes its STATUS.json complete and exits. The order is read from the daemon's records (its
JSON log), not from timing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support import DaemonProcess, ctl
from tests.test_spawn import SCRIPTS, log_events, reap, wait_for

ORCHESTRATORS = ("foundation", "model", "interface", "integration")

PLAN = """
[plan]
name = "spawn-e2e"
weeks = 4

[[milestones]]
id = "M0"

[[milestones]]
id = "M1"

[[orchestrators]]
id = "foundation"

[[orchestrators]]
id = "model"
after_gates = ["gate-1"]

[[orchestrators]]
id = "interface"
after_gates = ["gate-1"]

[[orchestrators]]
id = "integration"
after_workstreams = ["WS-M1", "WS-I1"]

[[workstreams]]
id = "WS-F1"
orchestrator = "foundation"
milestone = "M0"
days = 1

[[workstreams]]
id = "WS-F2"
orchestrator = "foundation"
milestone = "M0"
days = 1
depends_on = ["WS-F1"]

[[workstreams]]
id = "WS-M1"
orchestrator = "model"
milestone = "M1"
days = 2

[[workstreams]]
id = "WS-I1"
orchestrator = "interface"
milestone = "M1"
days = 2

[[workstreams]]
id = "WS-X1"
orchestrator = "integration"
milestone = "M1"
days = 1

[[gates]]
id = "gate-1"
name = "Foundation -> Model/Interface"
week = 1
workstreams = ["WS-F1", "WS-F2"]
"""


def test_daemon_spawns_the_plan_in_order_and_it_runs_to_completion(state_dir: Path) -> None:
    plan = state_dir / "plan.toml"
    plan.write_text(PLAN)
    configs = state_dir / "conf"
    configs.mkdir()
    agent = f"{sys.executable} {SCRIPTS / 'done_agent.py'} {{output}} {{workstream}}"
    for name in ORCHESTRATORS:
        (configs / f"{name}.toml").write_text(f"[agent]\ncommand = {agent!r}\n")
    daemon = DaemonProcess(
        state_dir,
        "--plan", str(plan),
        "--launcher", "subprocess",
        "--orchestrator-config", str(configs),
        "--time-scale", "1000",
        "--telemetry-interval", "0",
    )  # fmt: skip
    try:
        daemon.start()
        wait_for("the completion report", (state_dir / "reports/completion_report.md").exists)
        spawned = [e["orchestrator"] for e in log_events(daemon, "orchestrator_spawned")]
        assert spawned[0] == "foundation"
        assert sorted(spawned[1:3]) == ["interface", "model"]
        assert spawned[3:] == ["integration"]
        # Model and Interface only once gate 1 had passed, Integration once their work was
        # complete: the same log, in order.
        entries = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
        at = {
            (e["event"], e.get("orchestrator") or e.get("gate")): i for i, e in enumerate(entries)
        }
        assert entries[at["gate_decided", "gate-1"]]["passed"] is True
        assert at["gate_decided", "gate-1"] < at["orchestrator_spawned", "model"]
        assert at["gate_decided", "gate-1"] < at["orchestrator_spawned", "interface"]
        activated = {
            e["orchestrator"]: e["reason"]
            for e in entries
            if e["event"] == "orchestrator_activated"
        }
        assert activated["integration"] == "after WS-M1, WS-I1"
        status = ctl(state_dir, "status")
        assert status["phase"] == "complete"
        assert {w["id"]: w["status"] for w in status["workstreams"]} == dict.fromkeys(
            ["WS-F1", "WS-F2", "WS-M1", "WS-I1", "WS-X1"], "complete"
        )
        assert [o["process"]["state"] for o in status["orchestrators"]] == ["running"] * 4
        assert [e["kind"] for e in status["escalations"]] == []
    finally:
        reap(state_dir)
        daemon.close()
