"""``pixelsd`` as a user runs it: plan errors are one line and exit 2, check-plan summarises."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import BIN

GOOD = """
[plan]
name = "Tiny"
weeks = 2

[[phases]]
id = 1
name = "Only"
weeks = [1, 2]
milestones = ["M0"]

[[milestones]]
id = "M0"
name = "Start"

[[orchestrators]]
id = "solo"
name = "Solo"
agent_types = ["any"]

[[workstreams]]
id = "WS-01"
name = "First"
orchestrator = "solo"
milestone = "M0"
days = [1, 2]
depends_on = []
priority = "P0"
agent_type = "any"

[[workstreams]]
id = "WS-02"
name = "Second"
orchestrator = "solo"
milestone = "M0"
days = [1, 2]
depends_on = ["WS-01"]
priority = "P1"
agent_type = "any"
"""

CASES = {
    "unknown_dependency": (
        GOOD.replace('depends_on = ["WS-01"]', 'depends_on = ["WS-99"]'),
        "WS-99",
    ),
    "cycle": (GOOD.replace("depends_on = []", 'depends_on = ["WS-02"]'), "cycle"),
    "duplicate_id": (GOOD.replace('id = "WS-02"', 'id = "WS-01"'), "duplicate"),
    "unknown_orchestrator": (
        GOOD.replace(
            'orchestrator = "solo"\nmilestone = "M0"\ndays = [1, 2]\ndepends_on = ["WS-01"]',
            'orchestrator = "ghost"\nmilestone = "M0"\ndays = [1, 2]\ndepends_on = ["WS-01"]',
        ),
        "ghost",
    ),
    "bad_toml": (GOOD.replace('name = "Tiny"', 'name = "Tiny'), "line 3"),
}


def pixelsd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pixelsd"), *args], capture_output=True, text=True, timeout=30, check=False
    )


def assert_one_line_plan_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pixelsd: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_good_plan_checks_ok(tmp_path: Path) -> None:
    """check-plan on a valid file prints a one-line summary and exits 0."""
    path = tmp_path / "plan.toml"
    path.write_text(GOOD)
    result = pixelsd("check-plan", "--plan", str(path))
    assert result.returncode == 0, result.stderr
    assert "2 workstreams" in result.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_plan_is_one_line_exit_2(tmp_path: Path, state_dir: Path, case: str) -> None:
    """Each invalid plan stops pixelsd with one line naming the file and the problem, exit 2."""
    text, needle = CASES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    result = pixelsd("--state-dir", str(state_dir), "--plan", str(path))
    assert_one_line_plan_error(result, str(path), needle)
    assert not (state_dir / "pixels.db").exists()  # nothing was started


def test_missing_plan_file(tmp_path: Path) -> None:
    """A plan path that does not exist is one line, exit 2."""
    missing = tmp_path / "nope.toml"
    assert_one_line_plan_error(pixelsd("check-plan", "--plan", str(missing)), str(missing))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_plan_file(tmp_path: Path) -> None:
    """A plan file that cannot be read is one line, exit 2."""
    path = tmp_path / "plan.toml"
    path.write_text(GOOD)
    path.chmod(0)
    assert_one_line_plan_error(pixelsd("check-plan", "--plan", str(path)), str(path))


def test_plan_that_is_a_directory(tmp_path: Path) -> None:
    """A directory given as the plan is one line, exit 2 (unreadable as a file, even for root)."""
    assert_one_line_plan_error(pixelsd("check-plan", "--plan", str(tmp_path)), str(tmp_path))


def test_unknown_option_is_usage_error() -> None:
    """An unknown option is argparse's usage error, exit 2."""
    result = pixelsd("--no-such-option")
    assert result.returncode == 2
    assert "usage:" in result.stderr
