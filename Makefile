# The README's two commands, `make demo` and `make test`, each set up what they need from nothing.
# The first interpreter that actually runs and is 3.11+ (a pyenv shim may exist but not run).
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every venv (this one, the tools') installs pip from it first, then its own lock with that pip.
PIP_LOCK := requirements/pip.lock

.DEFAULT_GOAL := test
include mk/tools.mk

.PHONY: setup lock demo test test-fast unit integration lint lint-python bench reliability cost security-table clean

setup: $(STAMP)

# pip, then every package of requirements/dev.lock, each file checked against its hashes (the
# build backend and uv included: nothing is fetched unchecked); then the project itself,
# editable, adding nothing. A new lock makes the venv anew: it holds the lock and nothing older.
# Last, the repository's root goes on the venv's path (a .pth file, as the editable install puts
# layers/schwab_tokens there), so that scripts/ and benchmarks/ import the development kit
# (devkit/) however they are run; the package's wheel and the layer never hold it.
DEV_LOCK := requirements/dev.lock
$(STAMP): $(PIP_LOCK) $(DEV_LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(if $(filter $(PIP_LOCK) $(DEV_LOCK),$?),--clear) $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(PIP_LOCK)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "schwab_tokens_devkit.pth").write_text(sys.argv[1] + "\n")' "$(CURDIR)"
	@touch $(STAMP)

# Every hash-locked requirements file, compiled by uv from pyproject.toml and the .in files
# (scripts/lock.py; docs/development.md#locks). A pin moves only when its input no longer
# allows it; UPGRADE=1 moves every pin to the newest allowed.
lock: setup
	$(PY) scripts/lock.py $(if $(UPGRADE),--upgrade)

demo: setup
	$(PY) scripts/demo.py

# pytest-xdist: the suite waits on subprocesses, leases and the emulator as much as it computes,
# so more workers than cores; tests are handed out one at a time (the long crash and soak chunks
# are collected first, see tests/conftest.py) so that no worker queues two of them.
WORKERS ?= 6
PARALLEL := -n $(WORKERS) --dist loadgroup --maxschedchunk 1

# Everything: unit, emulator, integration, e2e, template and reliability (under 5 minutes here).
test: setup
	$(PY) -m pytest -q $(PARALLEL)

test-fast: setup
	$(PY) -m pytest -q $(PARALLEL) -m 'not slow'

# The inner loops, one suite each.
unit: setup
	$(PY) -m pytest -q $(PARALLEL) tests/unit tests/emulator

integration: setup
	$(PY) -m pytest -q $(PARALLEL) tests/integration tests/e2e

lint: lint-python lint-template

lint-python: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

reliability: setup
	$(PY) scripts/reliability.py $(PARALLEL)

# The monthly bill of a deployment, from the template and a simulated day of runs on moto.
cost: setup
	$(PY) scripts/cost.py

# docs/security.md's perimeter tables: the stack's policies, deployed on moto for each variant and
# evaluated together (tests/template/perimeter.py); tests/template/test_perimeter.py checks them.
security-table: setup
	$(PY) -m tests.template.perimeter --write docs/security.md

bench: setup build
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .tools .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis

# One Lambda handler, run here without Docker: moto's server and the Schwab emulator stand in for
# AWS and Schwab unless the environment names its own (AWS_ENDPOINT_URL, SCHWAB_API_BASE,
# TOKEN_STORE_URL...). FUNCTION: refresher, login or example_consumer; EVENT: any event file
# (default: the function's sample in events/). The result goes to stdout, the logs to stderr.
FUNCTION ?= refresher
.PHONY: invoke
invoke: setup
	$(PY) scripts/invoke.py $(FUNCTION) $(EVENT)
