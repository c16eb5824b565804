# Entry points: `make run`, `make test`, `make lint`, `make format`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PEERS_VENV ?= .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python

.PHONY: run test lint format install clean audit bench-tools bench-peers

# The venv is (re)installed when pyproject.toml changes; the stamp files record that it was.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m service.launcher

test: $(VENV)/.installed-dev
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Installed packages against PyPI's advisory database (needs to reach pypi.org's JSON API;
# tests/test_dependencies.py checks the advisories known to concern this service offline).
audit: $(VENV)/.installed-dev
	$(PY) -m pip_audit --skip-editable --progress-spinner off

format: $(VENV)/.installed-dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The load generator of bench/predict_load.py: Debian's wrk (without it the bench falls back
# to its own Python generator, which takes more of the CPU it shares with the servers).
bench-tools:
	@command -v wrk >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

# BentoML, the peer bench/predict_load.py compares the service with, in a venv of its own: its
# dependencies would change packages in $(VENV) (bench/peers/requirements.py says which).
$(PEERS_VENV)/.installed: pyproject.toml bench/peers/requirements.py
	@test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --quiet --upgrade pip
	$(PEERS_PY) bench/peers/requirements.py $(VENV) > $(PEERS_VENV)/requirements.txt
	$(PEERS_PY) -m pip install --quiet -r $(PEERS_VENV)/requirements.txt
	@touch $@

bench-peers: $(PEERS_VENV)/.installed

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache .ruff_cache
