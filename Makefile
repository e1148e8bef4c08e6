# Shipyard's verbs. CI calls `make test`, exactly as the README tells a user to.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TF_STAMP := $(VENV)/.installed-tf-stamp

.PHONY: install test test-fast test-tf test-ray test-connections fuzz lint check demo bench soak clean proto chromium

install: $(STAMP) $(TF_STAMP)

# Re-install whenever the project's dependencies or their pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,grpc,otel,torch,sklearn,processing,examples,s3,ray,openvino]'
	touch $(STAMP)

# Keras, TensorFlow (CPU, ~1.3 GB) and LiteRT: `shipyard convert` from Keras/TensorFlow, --to
# tflite, and the tflite backend. Their tests are the `tensorflow` pytest group (make test-tf).
$(TF_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[keras,tensorflow,tflite]'
	touch $(TF_STAMP)

# ruff, then the import contracts of pyproject.toml (the layers of docs/architecture.md).
lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/lint-imports

check: lint
	$(VENV)/bin/mypy

# Everything CI runs: the fast suite, then the TensorFlow group, then the Ray group.
test: test-fast
	$(MAKE) test-tf
	$(MAKE) test-ray

# Debian's Chromium for the dashboard's browser tests (apt-get when missing; quick otherwise).
chromium:
	sh scripts/install-chromium.sh

# Every test but the `tensorflow` and `ray` groups.
test-fast: check chromium
	$(PY) -m pytest -m "not tensorflow and not ray"

# Keras / TensorFlow / TFLite conversion and serving tests (TensorFlow imports are slow).
test-tf: install
	$(PY) -m pytest -m tensorflow

# The adversarial suite's connection flood at full size: 10,000 connections opened and dropped
# against a live gRPC port (`make test` opens 2,000; see tests/adversarial/test_connections.py).
test-connections: install
	SHIPYARD_CONNECTION_FLOOD=10000 $(PY) -m pytest -s tests/adversarial/test_connections.py

# Property-based fuzzing at length: the fuzz tests of `make test` with FUZZ_EXAMPLES cases each
# (they run a few thousand in all there), no per-test time limit. FUZZ_ARGS adds pytest arguments.
FUZZ_EXAMPLES ?= 10000
fuzz: install
	SHIPYARD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz -o timeout=0 $(FUZZ_ARGS)

# `shipyard ray serve` on a real local Ray cluster (a head and a worker node, 1 CPU each,
# started and stopped by the tests); alone, because Ray itself needs the machine's cores.
test-ray: install
	$(PY) -m pytest -m ray

# Train MNIST (cached), convert, optimize, add processing; MiniLM too; then serve demo-repo/
# until Ctrl-C. `DEMO_SERVE=0 make demo` builds demo-repo/ and exits (CI). See examples/demo.py.
demo: install
	$(PY) examples/demo.py

# Regenerate the gRPC stubs from proto/grpc_service.proto (commit the result; a test checks it).
proto: install
	$(PY) proto/generate.py src/shipyard/protocol

# `make bench BENCH_ARGS=--quick`: 2 s rows, prints only (RESULTS.md left alone).
bench: install
	$(PY) benchmarks/serve_overhead.py $(BENCH_ARGS)

# Ten minutes of HTTP + gRPC at 70% of capacity: flat RSS, steady p99, no errors (not in
# `make test`). `make soak SOAK_ARGS="--minutes 1"` for a short run.
soak: install
	$(PY) benchmarks/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache demo-repo
