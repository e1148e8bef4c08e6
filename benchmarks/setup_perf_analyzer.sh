#!/usr/bin/env bash
# Install Triton's perf_analyzer for benchmarks/serve_overhead.py --perf-analyzer.
#
# perf_analyzer ships as a binary inside the tritonclient[all] wheel up to 2.50.0 (newer
# wheels no longer carry it). That release pins numpy < 2, so it gets its own virtual
# environment, .bench-venv-pa. The binary links against Debian's libb64 and the CUDA runtime
# library (from the nvidia-cuda-runtime-cu12 wheel); it needs no GPU.
#
# Prints the command line that runs perf_analyzer (with LD_LIBRARY_PATH set) on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${PA_VENV:-$ROOT/.bench-venv-pa}"
PYTHON="${PYTHON:-python3}"

if ! ldconfig -p | grep -q 'libb64\.so\.0d'; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null
    else
        echo "perf_analyzer needs Debian's libb64-0d: sudo apt-get install libb64-0d" >&2
        exit 1
    fi
fi

if [ ! -x "$VENV/bin/perf_analyzer" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet 'tritonclient[all]==2.50.0' nvidia-cuda-runtime-cu12
fi

CUDA_LIB="$("$VENV/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))')"
LD_LIBRARY_PATH="$CUDA_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$VENV/bin/perf_analyzer" --version >/dev/null 2>&1 || {
    echo "perf_analyzer does not start; run it by hand to see why:" >&2
    echo "LD_LIBRARY_PATH=$CUDA_LIB $VENV/bin/perf_analyzer --help" >&2
    exit 1
}
echo "env LD_LIBRARY_PATH=$CUDA_LIB $VENV/bin/perf_analyzer"
