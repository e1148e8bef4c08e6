#!/usr/bin/env bash
# Verify Shipyard's GPU serving on a machine with an NVIDIA GPU, in one go.
#
#   bash benchmarks/gpu_check.sh        # from anywhere; it works in the repository's root
#
# 1. makes a fresh virtual environment and installs Shipyard ([grpc,processing]) with
#    onnxruntime-gpu and the CUDA runtime wheels (onnxruntime-gpu[cuda,cudnn]) in place of the
#    CPU onnxruntime, plus nvidia-ml-py for `shipyard hw`;
# 2. runs benchmarks/gpu_check.py: hw sees the GPU, the MNIST-sized CNN and ResNet-18 run on
#    the CUDA provider with the CPU's outputs (with and without I/O binding), `shipyard serve`
#    serves them on CUDA, raw ORT-GPU against `shipyard serve` at c=1/8/64 over HTTP (binary)
#    and gRPC, and `shipyard optimize --quantize fp16` on CUDA;
# 3. leaves OUT/gpu-results.md (the table for benchmarks/RESULTS.md), OUT/gpu-results.json and
#    OUT/gpu-check.log.
#
# Settings (environment): PYTHON (python3, 3.11+), GPU_VENV (/tmp/shipyard-gpu-venv),
# OUT (gpu-check), DURATION (5 s per row), ORT_GPU (onnxruntime-gpu[cuda,cudnn]),
# WHEELHOUSE (a folder of wheels: install from it alone, for machines without PyPI),
# MNIST (the real MNIST CNN's model.onnx; default: the MNIST-sized test CNN).
# Exit status: gpu_check.py's (0 all checks passed, 1 one failed, 2 no CUDA provider), or the
# failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${GPU_VENV:-/tmp/shipyard-gpu-venv}
OUT=${OUT:-gpu-check}
ORT_GPU=${ORT_GPU:-onnxruntime-gpu[cuda,cudnn]}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1

echo "== the GPU"
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; then
    echo "nvidia-smi failed: no NVIDIA GPU or driver here" >&2
    exit 2
fi

echo "== a fresh virtual environment in $VENV"
"$PYTHON" -m venv --clear "$VENV"
PY="$VENV/bin/python"
pip=("$PY" -m pip install --quiet --disable-pip-version-check)
if [[ -n "${WHEELHOUSE:-}" ]]; then
    pip+=(--no-index --find-links "$WHEELHOUSE")
else
    "${pip[@]}" --upgrade pip
fi
# The project's pins, less the CPU onnxruntime that onnxruntime-gpu replaces.
grep -v '^onnxruntime==' constraints.txt > "$OUT/constraints-gpu.txt"
"${pip[@]}" -c "$OUT/constraints-gpu.txt" -e '.[grpc,processing]'
# Both wheels install the `onnxruntime` package: remove the CPU one before the GPU one lands.
"$PY" -m pip uninstall --quiet --yes onnxruntime
"${pip[@]}" -c "$OUT/constraints-gpu.txt" "$ORT_GPU" nvidia-ml-py
"$PY" -m pip list 2>/dev/null | grep -i -E '^(onnxruntime|nvidia|numpy) ' || true

echo "== the checks and the measurements"
args=(--out "$OUT" --duration "${DURATION:-5}")
if [[ -n "${MNIST:-}" ]]; then
    args+=(--mnist "$MNIST")
fi
status=0
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_check.py "${args[@]}" || status=$?
echo "== done (exit $status); the table: $OUT/gpu-results.md"
exit "$status"
