# dealerloop — every command a newcomer, a developer or CI needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: help install install-dev chromium run migrate seed worker test lint format bench clean

help:
	@echo "make run      serve the API on http://$(HOST):$(PORT) (SQLite, inline jobs, sandbox) — DATABASE_URL/REDIS_URL to use MySQL/Redis"
	@echo "make test     install the dev tools and run the whole suite"
	@echo "make worker   RQ worker (high, default, low) with scheduler, outbox relayer and callback intake pumps (needs REDIS_URL)"
	@echo "make migrate  apply the migrations"
	@echo "make bench    benchmarks (bench/README.md)"
	@echo "make lint     ruff"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

migrate: install
	$(FLASK) db upgrade

seed: migrate
	$(FLASK) seed-demo

# Single process on purpose: the in-process sandbox keeps its one-time codes in memory.
run: migrate
	$(FLASK) seed-demo --if-empty
	PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://$(HOST):$(PORT)} $(FLASK) run --host $(HOST) --port $(PORT) --no-reload --with-threads

worker: migrate
	$(FLASK) worker

# The H5 pages' browser tests drive Debian's chromium through Playwright (no browser download);
# with CI=true a missing chromium fails them.
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: install-dev chromium
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .

format: install-dev
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) instance/*.db .pytest_cache .ruff_cache
