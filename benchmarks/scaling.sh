#!/usr/bin/env bash
# The scaling curve of `shipyard serve --workers N` on the seed CNN: N = 1, 2, 4, 8, 16.
#
# One prepared run for a bigger machine (e.g. a 16-core box): for each N it starts
# `shipyard serve REPO --workers N`, waits for /v2/health/ready, drives it with
# `python -m shipyard.loadgen` (binary tensors, closed loop) at concurrency 64 and 256 from a
# separate process, records req/s, p50/p99 and the server's total RSS, and prints a Markdown
# table for benchmarks/RESULTS.md ("Scaling beyond 2 cores"). Run from the repository root:
#
#     bash benchmarks/scaling.sh [DURATION_S]        # default 20 s per row
#
# WORKERS and CONCURRENCY override the lists (a smoke run: WORKERS="1 2" CONCURRENCY=64
# bash benchmarks/scaling.sh 3); PY and SHIPYARD name the interpreter and the CLI. The load
# generator is one process: its CPU column near 100% means it, not the server, was the limit.
# It needs `shipyard serve --workers` (issue 14, part 1); an older shipyard stops at once.
set -euo pipefail

PY=${PY:-.venv/bin/python}
SHIPYARD=${SHIPYARD:-.venv/bin/shipyard}
DURATION=${1:-20}
WORKERS=${WORKERS:-"1 2 4 8 16"}
CONCURRENCY=${CONCURRENCY:-"64 256"}

if ! "$SHIPYARD" serve --help | grep -q -- "--workers"; then
    echo "error: this shipyard has no 'serve --workers N' yet (issue 14, part 1);" \
         "benchmarks/scaling.sh measures it once it exists" >&2
    exit 2
fi

work=$(mktemp -d)
server=""
cleanup() {
    if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
        kill -INT "$server"; wait "$server" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$PY" - "$work" <<'PYEOF'
import sys
from pathlib import Path
import numpy as np
from shipyard.loadgen.http import raw_request
from shipyard.testing.models import cnn_model, write_model
work = Path(sys.argv[1])
write_model(work / "repo", "cnn", cnn_model())
pixels = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32).astype("<f4")
raw = pixels.tobytes()
head = ('{"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32",'
        f'"parameters":{{"binary_data_size":{len(raw)}}}}}],'
        '"parameters":{"binary_data_output":true}}').encode()
(work / "body.bin").write_bytes(head + raw)
(work / "head.len").write_text(str(len(head)))
PYEOF

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mb() {  # the server and its children (the workers), in MiB
    local pids total=0
    pids=$(ps -o pid= --ppid "$1"; echo "$1")
    for pid in $pids; do total=$((total + $(awk '/VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0))); done
    echo $((total / 1024))
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| workers | concurrency | req/s | p50 ms | p99 ms | server RSS MiB | errors | loadgen CPU |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $WORKERS; do
    port=$(free_port)
    "$SHIPYARD" serve "$work/repo" --workers "$n" --http-port "$port" --grpc-port 0 \
        --log-level warning > "$work/server-$n.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null && break
        kill -0 "$server" 2>/dev/null || { cat "$work/server-$n.log" >&2; exit 1; }
        sleep 0.1
    done
    "$PY" - "$work" "$port" <<'PYEOF'
import sys
from pathlib import Path
from shipyard.loadgen.http import raw_request
work, port = Path(sys.argv[1]), int(sys.argv[2])
body = (work / "body.bin").read_bytes()
headers = {"Content-Type": "application/octet-stream",
           "Inference-Header-Content-Length": (work / "head.len").read_text()}
(work / "request.bin").write_bytes(raw_request("127.0.0.1", port, "/v2/models/cnn/infer", body, headers))
PYEOF
    for c in $CONCURRENCY; do
        "$PY" -m shipyard.loadgen --port "$port" --request "$work/request.bin" --protocol http \
            --concurrency "$c" --warmup 2 --duration "$DURATION" > "$work/result.json"
        rss=$(rss_mb "$server")
        "$PY" - "$work/result.json" "$n" "$c" "$rss" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
n, c, rss = sys.argv[2:5]
print(f"| {n} | {c} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {rss} "
      f"| {r['error_count']} | {r['client_cpu']:.0%} |")
PYEOF
    done
    kill -INT "$server"; wait "$server" || true; server=""
done
