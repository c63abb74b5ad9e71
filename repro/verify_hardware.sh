#!/usr/bin/env bash
# verify_hardware.sh: does this machine fit the DGX-Pixels project (an NVIDIA DGX Spark: aarch64,
# one GB10 GPU with unified memory)?
#
#   repro/verify_hardware.sh [--allow-missing-gpu] [--allow-other-arch] [--state-dir DIR]
#
# Reports architecture, CPU, memory, free disk under the state dir, and the GPU (model, driver,
# CUDA version, unified or discrete memory, via nvidia-smi, which reads NVML). JSON on stdout, a
# human summary on stderr. Exit 0 when the machine fits, 1 when it does not (the reasons are in the
# JSON's "problems" and on stderr), 2 on bad usage. Runs, and says what is missing, without a GPU.
#
# Environment: PIXELS_MIN_MEMORY_GIB (default 16) and PIXELS_MIN_DISK_GIB (default 20): the least
# memory and free disk that pass (the daemon, its event log and the tooling; the workloads' own
# needs are checked by their gates). NVIDIA_SMI: the nvidia-smi to run (default: from PATH).
set -uo pipefail # not -e: probes are expected to fail on machines that lack what they look for

readonly EXPECTED_ARCH=aarch64
# A wedged driver can hang nvidia-smi; bound each call so the check always finishes.
readonly PROBE_TIMEOUT_S=20

allow_missing_gpu=false
allow_other_arch=false
state_dir="${PIXELS_STATE_DIR:-${STATE_DIRECTORY:-${HOME:-/}}}"
min_memory_gib="${PIXELS_MIN_MEMORY_GIB:-16}"
min_disk_gib="${PIXELS_MIN_DISK_GIB:-20}"
smi="${NVIDIA_SMI:-nvidia-smi}"

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0" >&2; }

while (($#)); do
    case "$1" in
    --allow-missing-gpu) allow_missing_gpu=true ;;
    --allow-other-arch) allow_other_arch=true ;;
    --state-dir)
        [[ $# -ge 2 ]] || { echo "verify_hardware: --state-dir needs a directory" >&2; exit 2; }
        state_dir="$2"
        shift
        ;;
    --state-dir=*) state_dir="${1#--state-dir=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "verify_hardware: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for n in "$min_memory_gib" "$min_disk_gib"; do
    [[ "$n" =~ ^[0-9]+$ ]] || {
        echo "verify_hardware: PIXELS_MIN_MEMORY_GIB and PIXELS_MIN_DISK_GIB must be whole numbers of GiB, got '$n'" >&2
        exit 2
    }
done

problems=()
warnings=()

# JSON string literal of $1 (escapes quotes, backslashes and control characters).
json_str() {
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    s="${s//$'\n'/\\n}"
    s="${s//$'\r'/\\r}"
    s="${s//$'\t'/\\t}"
    s="$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')"
    printf '"%s"' "$s"
}
json_or_null() { if [[ -n "$1" ]]; then json_str "$1"; else printf 'null'; fi; }
num_or_null() { if [[ "$1" =~ ^[0-9]+$ ]]; then printf '%s' "$1"; else printf 'null'; fi; }
json_array() {
    local first=true item
    printf '['
    for item in "$@"; do
        $first || printf ', '
        first=false
        json_str "$item"
    done
    printf ']'
}
trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

# --- architecture and CPU -------------------------------------------------------------------------
arch="$(uname -m)"
if [[ "$arch" != "$EXPECTED_ARCH" ]]; then
    msg="architecture is $arch; the DGX Spark is $EXPECTED_ARCH"
    if $allow_other_arch; then warnings+=("$msg"); else problems+=("$msg (--allow-other-arch for a dev box)"); fi
fi
cpu_model=""
if command -v lscpu >/dev/null 2>&1; then
    # ARM big.LITTLE parts list one "Model name" per core type: keep them all.
    cpu_model="$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | paste -sd ',' - | sed 's/,/, /g')"
fi
if [[ -z "$cpu_model" ]]; then
    cpu_model="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n1)"
fi
cpu_cores="$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo "")"

# --- memory and disk ------------------------------------------------------------------------------
meminfo_kib() { awk -v k="$1:" '$1 == k { print $2; exit }' /proc/meminfo 2>/dev/null; }
mem_total="$(meminfo_kib MemTotal)"
mem_available="$(meminfo_kib MemAvailable)"
[[ "$mem_total" =~ ^[0-9]+$ ]] && mem_total=$((mem_total * 1024)) || mem_total=""
[[ "$mem_available" =~ ^[0-9]+$ ]] && mem_available=$((mem_available * 1024)) || mem_available=""
if [[ -z "$mem_total" ]]; then
    problems+=("cannot read /proc/meminfo")
elif ((mem_total < min_memory_gib * 1024 * 1024 * 1024)); then
    problems+=("memory is $((mem_total / 1024 / 1024 / 1024)) GiB, less than $min_memory_gib GiB (PIXELS_MIN_MEMORY_GIB)")
fi

disk_path="$state_dir"
while [[ ! -e "$disk_path" && "$disk_path" != "/" && -n "$disk_path" ]]; do
    disk_path="$(dirname "$disk_path")" # the state dir may not exist yet: measure where it will be
done
disk_free=""
df_line="$(df -Pk "$disk_path" 2>/dev/null | awk 'NR == 2 { print $4 }')"
if [[ "$df_line" =~ ^[0-9]+$ ]]; then
    disk_free=$((df_line * 1024))
    if ((disk_free < min_disk_gib * 1024 * 1024 * 1024)); then
        problems+=("free disk under $disk_path is $((disk_free / 1024 / 1024 / 1024)) GiB, less than $min_disk_gib GiB (PIXELS_MIN_DISK_GIB)")
    fi
else
    problems+=("cannot measure free disk under $disk_path")
fi

# --- GPU ------------------------------------------------------------------------------------------
gpu_present=false
gpu_count=0
gpu_model=""
gpu_driver=""
gpu_memory_total=""
gpu_memory_kind="unknown"
cuda_driver=""
cuda_toolkit=""
gpu_problem=""
if ! command -v "$smi" >/dev/null 2>&1; then
    gpu_problem="no NVIDIA GPU found: $smi is not installed (no NVIDIA driver)"
elif ! query="$(timeout "$PROBE_TIMEOUT_S" "$smi" --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader,nounits 2>&1)"; then
    gpu_problem="no usable NVIDIA GPU: $smi failed: $(printf '%s' "$query" | head -n1)"
elif [[ -z "$(trim "$query")" ]]; then
    gpu_problem="no NVIDIA GPU found: $smi lists none"
else
    gpu_present=true
    gpu_count="$(printf '%s\n' "$query" | grep -c .)"
    IFS=',' read -r gpu_model gpu_driver gpu_memory_total <<<"$(printf '%s\n' "$query" | head -n1)"
    gpu_model="$(trim "$gpu_model")"
    gpu_driver="$(trim "$gpu_driver")"
    gpu_memory_total="$(trim "$gpu_memory_total")"
    # GB10 has no memory of its own: NVML reports its memory as not supported ("[N/A]" or
    # "[Not Supported]") and the GPU uses system RAM. A number in MiB means discrete memory.
    if [[ "$gpu_memory_total" =~ ^[0-9]+$ ]]; then
        gpu_memory_kind="discrete"
        gpu_memory_total=$((gpu_memory_total * 1024 * 1024))
    else
        gpu_memory_kind="unified"
        gpu_memory_total=""
    fi
    cuda_driver="$(timeout "$PROBE_TIMEOUT_S" "$smi" 2>/dev/null | sed -n 's/.*CUDA Version:[[:space:]]*\([0-9.]*\).*/\1/p' | head -n1)"
fi
if command -v nvcc >/dev/null 2>&1; then
    cuda_toolkit="$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' | head -n1)"
fi
if [[ -n "$gpu_problem" ]]; then
    if $allow_missing_gpu; then warnings+=("$gpu_problem"); else problems+=("$gpu_problem (--allow-missing-gpu for a dev box)"); fi
fi

# --- report ---------------------------------------------------------------------------------------
ok=true
((${#problems[@]} == 0)) || ok=false
cat <<JSON
{
  "check": "verify_hardware",
  "ok": $ok,
  "arch": $(json_str "$arch"),
  "expected_arch": $(json_str "$EXPECTED_ARCH"),
  "cpu": {"model": $(json_or_null "$cpu_model"), "cores": $(num_or_null "$cpu_cores")},
  "memory": {"total_bytes": $(num_or_null "$mem_total"), "available_bytes": $(num_or_null "$mem_available"), "min_gib": $min_memory_gib},
  "disk": {"path": $(json_str "$disk_path"), "free_bytes": $(num_or_null "$disk_free"), "min_gib": $min_disk_gib},
  "gpu": {"present": $gpu_present, "count": $gpu_count, "model": $(json_or_null "$gpu_model"), "driver": $(json_or_null "$gpu_driver"), "memory": $(json_str "$gpu_memory_kind"), "memory_total_bytes": $(num_or_null "$gpu_memory_total")},
  "cuda": {"driver_supports": $(json_or_null "$cuda_driver"), "toolkit": $(json_or_null "$cuda_toolkit")},
  "problems": $(json_array "${problems[@]}"),
  "warnings": $(json_array "${warnings[@]}")
}
JSON

gib() { if [[ -n "$1" ]]; then echo "$(($1 / 1024 / 1024 / 1024)) GiB"; else echo "unknown"; fi; }
{
    echo "verify_hardware: arch $arch; CPU ${cpu_model:-unknown} x ${cpu_cores:-?}; memory $(gib "$mem_total") ($(gib "$mem_available") available); free disk $(gib "$disk_free") under $disk_path"
    if $gpu_present; then
        echo "verify_hardware: GPU $gpu_model x $gpu_count, driver $gpu_driver, CUDA ${cuda_driver:-unknown}, $gpu_memory_kind memory"
    else
        echo "verify_hardware: GPU none"
    fi
    for w in "${warnings[@]}"; do echo "verify_hardware: warning: $w"; done
    if $ok; then
        echo "verify_hardware: ok: this machine fits"
    else
        echo "verify_hardware: FAILED: ${#problems[@]} problem(s):"
        for p in "${problems[@]}"; do echo "  - $p"; done
    fi
} >&2
$ok
