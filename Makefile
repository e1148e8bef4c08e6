# Shipyard's verbs. CI calls `make test`, exactly as the README tells a user to.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TF_STAMP := $(VENV)/.installed-tf-stamp

.PHONY: install test test-fast test-tf lint check demo bench clean proto

install: $(STAMP) $(TF_STAMP)

# Re-install whenever the project's dependencies or their pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,grpc,torch,sklearn,processing,examples,openvino]'
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

# Everything CI runs: the fast suite, then the TensorFlow group.
test: test-fast
	$(MAKE) test-tf

# Every test but the `tensorflow` group.
test-fast: check
	$(PY) -m pytest -m "not tensorflow"

# Keras / TensorFlow / TFLite conversion and serving tests (TensorFlow imports are slow).
test-tf: install
	$(PY) -m pytest -m tensorflow

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

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache demo-repo
