# Shipyard's verbs. CI calls `make test`, exactly as the README tells a user to.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint check demo bench clean proto

install: $(STAMP)

# Re-install whenever the project's dependencies or their pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,grpc,torch,sklearn]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

check: lint
	$(VENV)/bin/mypy

test: check
	$(PY) -m pytest

demo: install
	$(PY) examples/build_example_repository.py demo-repo
	@if [ "$${DEMO_SERVE:-1}" = "0" ]; then \
		$(VENV)/bin/shipyard repo list demo-repo; \
	else \
		$(VENV)/bin/shipyard serve demo-repo; \
	fi

# Regenerate the gRPC stubs from proto/grpc_service.proto (commit the result; a test checks it).
proto: install
	$(PY) proto/generate.py src/shipyard/protocol

bench: install
	$(PY) benchmarks/serve_overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis demo-repo
