# Two commands do all set-up on a fresh machine:
#   make demo   - create/update .venv from the hashed lock file, then run `ehds demo`
#   make test   - same environment, then ruff, mypy and the whole pytest suite
# Needs only python3 (3.11 or 3.12) and network access to the package registry.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements/lock.txt
STAMP  := $(VENV)/.synced
PACKAGES := trust audit_chain permits fhir_adapters federation gateway
PYTEST_ARGS ?=

export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: env demo test lint typecheck pytest lock bench clean

env: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv==0.13.9"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

demo: env
	$(BIN)/ehds demo

test: env lint typecheck pytest

lint: env
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/ruff format --check $(PACKAGES) tests bench

typecheck: env
	$(BIN)/mypy

pytest: env
	$(BIN)/pytest $(PYTEST_ARGS)

# Re-resolve the lock after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --generate-hashes \
		--python-version 3.11 -o $(LOCK)

bench: env
	$(BIN)/python bench/audit_bench.py --quick
	$(BIN)/python bench/permit_bench.py --quick
	$(BIN)/python bench/fhir_bench.py --quick
	$(BIN)/python bench/federated_bench.py --quick
	$(BIN)/python bench/gateway_load.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
