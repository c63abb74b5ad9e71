"""docs/architecture.md's state diagram is the one generated from core/machine.py's table."""

from __future__ import annotations

from pathlib import Path

from pixels_daemon.core.diagram import mermaid

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def test_state_machine_diagram_matches_the_table() -> None:
    """The Mermaid block between the markers equals `python -m pixels_daemon.core.diagram`."""
    text = DOC.read_text()
    block = text.split("<!-- state-machine:begin -->")[1].split("<!-- state-machine:end -->")[0]
    assert block.strip() == f"```mermaid\n{mermaid().rstrip()}\n```"
