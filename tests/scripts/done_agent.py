"""A test agent that finishes at once: it writes its STATUS.json as complete (atomically: a
temporary file renamed over it) and exits 0.

    python done_agent.py OUTPUT WORKSTREAM
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    output, workstream = Path(sys.argv[1]), sys.argv[2]
    status = {"workstream": workstream, "status": "complete", "progress": 1.0, "blockers": []}
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
