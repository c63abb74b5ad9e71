#!/usr/bin/env bash
# check_dependencies.sh: can this machine run pixelsd? Python, the packages pixels needs, libzmq
# (version, CURVE support) and SQLite, as seen by the Python that will run the daemon.
#
#   PYTHON=/opt/pixels/venv/bin/python repro/check_dependencies.sh
#
# $PYTHON: the interpreter to check (default: python3 from PATH); give the virtual environment's
# python to check what the daemon will import. JSON on stdout, a human summary on stderr. Exit 0
# when everything is there, 1 when not (the reasons are in "problems" and on stderr), 2 on bad
# usage. The requirements below mirror pyproject.toml's (tests/test_repro.py keeps them equal).
set -uo pipefail

case "${1:-}" in
"") ;;
-h | --help) sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 0 ;;
*) echo "check_dependencies: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    reason="python not found: '$python' is not an executable (set PYTHON to the venv's python)"
    reason="${reason//\\/\\\\}"
    printf '{"check": "check_dependencies", "ok": false, "problems": ["%s"]}\n' "${reason//\"/\\\"}"
    echo "check_dependencies: FAILED: $reason" >&2
    exit 1
fi

# Written for any Python 3 (no 3.8+ syntax), so an interpreter that is too old is reported, not a
# syntax error.
exec "$python" - <<'PY'
import json
import re
import sqlite3
import sys

MIN_PYTHON = (3, 11)
MIN_LIBZMQ = (4, 3)  # CURVE with libsodium/tweetnacl and ZMQ_ROUTER_MANDATORY as used here
REQUIREMENTS = [
    "pyzmq>=26.0",
    "anyio>=4.4",
    "msgspec>=0.19",
    "structlog>=24.1",
    "nvidia-ml-py>=13.580",
    "apscheduler>=3.11,<4",
    "prometheus-client>=0.26",
    "httpx>=0.27",
]


def version_tuple(text):
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def satisfies(installed, spec):
    have = version_tuple(installed)
    for clause in spec.split(","):
        match = re.match(r"\s*(>=|<=|==|!=|>|<)\s*([\w.]+)\s*$", clause)
        if not match:
            continue
        op, want = match.group(1), version_tuple(match.group(2))
        ok = {
            ">=": have >= want, "<=": have <= want, "==": have == want,
            "!=": have != want, ">": have > want, "<": have < want,
        }[op]
        if not ok:
            return False
    return True


def installed_version(dist):
    try:
        from importlib import metadata
    except ImportError:
        return None
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


problems = []
report = {"check": "check_dependencies", "requirements": REQUIREMENTS}

py = sys.version_info
report["python"] = {"executable": sys.executable, "version": "%d.%d.%d" % tuple(py[:3])}
if tuple(py[:2]) < MIN_PYTHON:
    problems.append("python %d.%d is too old: pixels needs %d.%d or later"
                    % (py[0], py[1], MIN_PYTHON[0], MIN_PYTHON[1]))

packages = {}
for requirement in REQUIREMENTS:
    name, spec = re.match(r"([A-Za-z0-9_.-]+)(.*)", requirement).groups()
    version = installed_version(name)
    ok = version is not None and satisfies(version, spec)
    packages[name] = {"required": spec, "installed": version, "ok": ok}
    if version is None:
        problems.append("%s is not installed (needs %s)" % (name, spec))
    elif not ok:
        problems.append("%s %s is installed; pixels needs %s" % (name, version, spec))
report["packages"] = packages

try:
    import zmq
except ImportError as exc:
    report["libzmq"] = {"version": None, "curve": None}
    if packages.get("pyzmq", {}).get("installed"):
        problems.append("pyzmq does not import: %s" % exc)
else:
    libzmq = zmq.zmq_version()
    curve = bool(zmq.has("curve"))
    report["libzmq"] = {"version": libzmq, "curve": curve, "pyzmq": zmq.pyzmq_version()}
    if version_tuple(libzmq) < MIN_LIBZMQ:
        problems.append("libzmq %s is too old: pixels needs %d.%d or later" % ((libzmq,) + MIN_LIBZMQ))
    if not curve:
        problems.append("libzmq %s has no CURVE support (tcp:// endpoints need it): "
                        "install pyzmq's wheel, which bundles libzmq with CURVE" % libzmq)

report["sqlite"] = sqlite3.sqlite_version
report["problems"] = problems
report["ok"] = not problems
print(json.dumps(report, indent=2))

zmq_line = report["libzmq"]
err = sys.stderr
err.write("check_dependencies: python %s (%s); libzmq %s, CURVE %s; SQLite %s\n" % (
    report["python"]["version"], sys.executable, zmq_line.get("version") or "missing",
    {True: "yes", False: "no", None: "unknown"}[zmq_line.get("curve")], report["sqlite"]))
err.write("check_dependencies: packages: %s\n" % ", ".join(
    "%s %s" % (name, p["installed"] or "MISSING") for name, p in packages.items()))
if problems:
    err.write("check_dependencies: FAILED: %d problem(s):\n" % len(problems))
    for problem in problems:
        err.write("  - %s\n" % problem)
else:
    err.write("check_dependencies: ok: everything pixelsd needs is there\n")
sys.exit(0 if not problems else 1)
PY
