"""The workstream state machine as a Mermaid diagram, generated from the table in core/machine.py.

    python -m pixels_daemon.core.diagram            # the diagram alone
    python -m pixels_daemon.core.diagram --fenced   # inside a ```mermaid block, for Markdown

docs/architecture.md shows its output; regenerate it there when the table changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pixels_daemon.core.machine import TRANSITIONS, WS_EVENTS, WS_STATES, WsState

#: Where the machine starts, and where it ends (Mermaid's [*] markers).
INITIAL: WsState = "not_started"


def mermaid() -> str:
    """A ``stateDiagram-v2`` with one arrow per (from, to) pair, labelled with its events."""
    labels: dict[tuple[WsState, WsState], list[str]] = {}
    for (source, event), target in TRANSITIONS.items():
        labels.setdefault((source, target), []).append(event)
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL}"]
    for source in WS_STATES:  # table order is arbitrary; states and events give a stable order
        for target in WS_STATES:
            events = labels.get((source, target))
            if events:
                events.sort(key=WS_EVENTS.index)
                lines.append(f"    {source} --> {target} : {', '.join(events)}")
    outgoing = {source for source, _ in TRANSITIONS}
    lines.extend(f"    {state} --> [*]" for state in WS_STATES if state not in outgoing)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pixels_daemon.core.diagram",
        description="Print the workstream state machine as a Mermaid stateDiagram.",
    )
    parser.add_argument(
        "--fenced", action="store_true", help="wrap it in a ```mermaid block for Markdown"
    )
    args = parser.parse_args(argv)
    text = mermaid()
    if args.fenced:
        text = f"```mermaid\n{text}```\n"
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
