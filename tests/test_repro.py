"""repro/verify_hardware.sh, repro/check_dependencies.sh and ``pixelsd init``, run for real on this
machine (no GPU needed; a fake nvidia-smi stands in for the GPU cases)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.support import BIN

ROOT = Path(__file__).resolve().parent.parent
VERIFY = ROOT / "repro" / "verify_hardware.sh"
DEPS = ROOT / "repro" / "check_dependencies.sh"

#: Thresholds any CI machine meets, so the tests exercise the logic, not this box's size.
SMALL_BOX = {"PIXELS_MIN_MEMORY_GIB": "1", "PIXELS_MIN_DISK_GIB": "1"}
DEV_FLAGS = ["--allow-missing-gpu", "--allow-other-arch"]


def run(script: Path, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    """Run a check; return its exit status, its JSON report and its stderr."""
    done = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def fake_nvidia_smi(tmp_path: Path, query: str, header: str) -> str:
    """An nvidia-smi that answers --query-gpu with ``query`` and prints ``header`` otherwise."""
    path = tmp_path / "nvidia-smi"
    path.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=*) printf \'%s\\n\' "$QUERY" ;; *) printf \'%s\\n\' "$HEADER" ;; '
        "esac\n"
    )
    path.chmod(0o755)
    return str(path)


def gpu_env(tmp_path: Path, query: str, header: str) -> dict[str, str]:
    smi = fake_nvidia_smi(tmp_path, query, header)
    return {"NVIDIA_SMI": smi, "QUERY": query, "HEADER": header, **SMALL_BOX}


# --- verify_hardware.sh --------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_verify_hardware_without_gpu_fails_saying_why() -> None:
    """On a box without a GPU the check exits 1 and names what is missing, without script errors."""
    status, report, err = run(VERIFY, **SMALL_BOX)
    assert status == 1
    assert report["ok"] is False
    assert any("no NVIDIA GPU" in p for p in report["problems"])
    if platform.machine() != "aarch64":
        assert any("aarch64" in p for p in report["problems"])
    assert "FAILED" in err
    assert "line " not in err and "command not found" not in err  # bash ran it cleanly


def test_verify_hardware_dev_flags_turn_problems_into_warnings() -> None:
    """--allow-missing-gpu --allow-other-arch: a dev box passes, the gaps listed as warnings."""
    status, report, err = run(VERIFY, *DEV_FLAGS, NVIDIA_SMI="/nonexistent/nvidia-smi", **SMALL_BOX)
    assert status == 0, err
    assert report["ok"] is True
    assert report["problems"] == []
    assert any("no NVIDIA GPU" in w for w in report["warnings"])
    assert err.rstrip().endswith("ok: this machine fits")


def test_verify_hardware_reports_this_machine() -> None:
    """Architecture, CPU count, memory and disk are this machine's."""
    _status, report, _err = run(VERIFY, *DEV_FLAGS, **SMALL_BOX)
    assert report["arch"] == platform.machine()
    assert report["cpu"]["cores"] == os.cpu_count()
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(
        next(ln for ln in meminfo.splitlines() if ln.startswith("MemTotal:")).split()[1]
    )
    assert report["memory"]["total_bytes"] == total_kib * 1024
    assert report["disk"]["free_bytes"] > 0


def test_verify_hardware_memory_threshold() -> None:
    """Less memory than PIXELS_MIN_MEMORY_GIB is a problem naming the variable."""
    status, report, _err = run(VERIFY, *DEV_FLAGS, PIXELS_MIN_MEMORY_GIB="100000")
    assert status == 1
    assert any("PIXELS_MIN_MEMORY_GIB" in p for p in report["problems"])


def test_verify_hardware_recognises_a_gb10(tmp_path: Path) -> None:
    """A GB10 (memory not supported by NVML) is a GPU with unified memory; driver and CUDA read."""
    env = gpu_env(
        tmp_path,
        "NVIDIA GB10, 580.95.05, [N/A]",
        "| NVIDIA-SMI 580.95.05   Driver Version: 580.95.05   CUDA Version: 13.0 |",
    )
    status, report, err = run(VERIFY, "--allow-other-arch", **env)
    assert status == 0, err
    gpu = report["gpu"]
    assert (gpu["present"], gpu["count"], gpu["model"]) == (True, 1, "NVIDIA GB10")
    assert (gpu["driver"], gpu["memory"], gpu["memory_total_bytes"]) == (
        "580.95.05",
        "unified",
        None,
    )
    assert report["cuda"]["driver_supports"] == "13.0"


def test_verify_hardware_recognises_a_discrete_gpu(tmp_path: Path) -> None:
    """A GPU reporting its memory in MiB has discrete memory of that size."""
    env = gpu_env(tmp_path, "NVIDIA H100 80GB HBM3, 550.54.15, 81559", "CUDA Version: 12.4")
    _status, report, _err = run(VERIFY, "--allow-other-arch", **env)
    assert report["gpu"]["memory"] == "discrete"
    assert report["gpu"]["memory_total_bytes"] == 81559 * 1024 * 1024


def test_verify_hardware_failing_nvidia_smi_is_a_problem(tmp_path: Path) -> None:
    """nvidia-smi present but failing (driver not loaded) is reported with its first line."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed: driver not loaded' >&2\nexit 9\n")
    smi.chmod(0o755)
    status, report, _err = run(VERIFY, "--allow-other-arch", NVIDIA_SMI=str(smi), **SMALL_BOX)
    assert status == 1
    assert any("driver not loaded" in p for p in report["problems"])


def test_verify_hardware_bad_option_is_usage_error() -> None:
    """An unknown option exits 2 with one line."""
    done = subprocess.run(
        ["bash", str(VERIFY), "--fast"], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "verify_hardware: unknown option '--fast' (see --help)"


# --- check_dependencies.sh ----------------------------------------------------------------------


def test_check_dependencies_passes_with_the_venv_python() -> None:
    """With the venv's python: exit 0, every package found, libzmq version and CURVE reported."""
    status, report, err = run(DEPS, PYTHON=sys.executable)
    assert status == 0, err
    assert report["ok"] is True
    assert report["python"]["version"] == platform.python_version()
    assert all(p["ok"] for p in report["packages"].values())
    assert report["libzmq"]["version"] == zmq.zmq_version()
    assert report["libzmq"]["curve"] is bool(zmq.has("curve"))


def test_check_dependencies_requirements_match_pyproject() -> None:
    """The script checks exactly pyproject.toml's runtime dependencies."""
    _status, report, _err = run(DEPS, PYTHON=sys.executable)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert report["requirements"] == project["dependencies"]


def test_check_dependencies_lists_missing_packages() -> None:
    """A python without the packages: exit 1 naming each missing one."""
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None or subprocess.run([bare, "-c", "import zmq"], check=False).returncode == 0:
        pytest.skip("no system python3 without pyzmq on this machine")
    status, report, err = run(DEPS, PYTHON=bare)
    assert status == 1
    assert "pyzmq is not installed (needs >=26.0)" in report["problems"]
    assert "pyzmq is not installed" in err


def test_check_dependencies_without_python() -> None:
    """A PYTHON that does not exist: exit 1, JSON and one clear reason."""
    status, report, err = run(DEPS, PYTHON="/nonexistent/python")
    assert status == 1
    assert report["ok"] is False
    assert "set PYTHON" in report["problems"][0]
    assert "FAILED" in err


# --- pixelsd init --------------------------------------------------------------------------------


def init(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pixelsd"), "init", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **SMALL_BOX, "NVIDIA_SMI": "/nonexistent/nvidia-smi"},
    )


def test_init_prepares_the_layout_and_keeps_the_reports(state_dir: Path) -> None:
    """pixelsd init makes .orchestration/{logs,status,decisions,reports} and saves both reports."""
    done = init(state_dir, *DEV_FLAGS)
    assert done.returncode == 0, done.stderr
    base = state_dir / ".orchestration"
    assert sorted(p.name for p in base.iterdir()) == ["decisions", "logs", "reports", "status"]
    assert json.loads((base / "reports" / "hardware.json").read_text())["ok"] is True
    assert json.loads((base / "reports" / "dependencies.json").read_text())["ok"] is True


def test_init_fails_when_the_box_does_not_fit(state_dir: Path) -> None:
    """Without the dev flags on a GPU-less box: exit 1, one error line naming the failed check."""
    done = init(state_dir)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pixelsd: error: checks failed: verify_hardware.sh (exit 1)")
    assert (state_dir / ".orchestration" / "logs").is_dir()  # the layout is made anyway


def test_init_skip_checks_only_makes_directories(state_dir: Path) -> None:
    """--skip-checks prepares the layout and runs nothing."""
    done = init(state_dir, "--skip-checks")
    assert done.returncode == 0, done.stderr
    assert not any((state_dir / ".orchestration" / "reports").iterdir())


def test_init_without_the_scripts_says_where_to_look(state_dir: Path, tmp_path: Path) -> None:
    """A repro dir without the scripts is one line suggesting --repro-dir or --skip-checks."""
    done = init(state_dir, "--repro-dir", str(tmp_path))
    assert done.returncode == 1
    assert "--repro-dir" in done.stderr
    assert "Traceback" not in done.stderr


def test_init_on_a_file_is_a_usage_error(tmp_path: Path) -> None:
    """A --state-dir that is a file: exit 2 with one line saying so."""
    path = tmp_path / "not-a-dir"
    path.write_text("")
    done = init(path, "--skip-checks")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"pixelsd: error: {path} is not a directory; give --state-dir a directory"
    )
