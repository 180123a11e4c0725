# Every target is a one-liner over uv. uv itself is bootstrapped into .tools/ when not on PATH,
# so a machine with only Python 3.11+ can run `make demo` and `make test` straight away.
PYTHON ?= python3
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
DEMO_ENV := DATABASE_URL=$${DATABASE_URL:-sqlite:///$(CURDIR)/.demo/syncflows.db} \
	PREFECT_HOME=$${PREFECT_HOME:-$(CURDIR)/.demo/prefect}
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export UV_PYTHON_DOWNLOADS ?= never

.PHONY: demo test lint format migrate clean

demo: .venv/.synced  ## run every flow against local sandboxes on SQLite, print one row per flow
	$(DEMO_ENV) $(UV) run --frozen syncflows demo

test: .venv/.synced  ## the whole suite (PostgreSQL tests skip with a reason when no server answers)
	$(UV) run --frozen pytest

lint: .venv/.synced  ## ruff, format check, mypy
	$(UV) run --frozen ruff check . && $(UV) run --frozen ruff format --check . && $(UV) run --frozen mypy

format: .venv/.synced
	$(UV) run --frozen ruff check --fix . && $(UV) run --frozen ruff format .

migrate: .venv/.synced  ## migrate DATABASE_URL to the newest schema
	$(UV) run --frozen syncflows db upgrade

.venv/.synced: uv.lock pyproject.toml $(UV)
	$(UV) sync --frozen
	touch $@

$(CURDIR)/.tools/bin/uv:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

clean:
	rm -rf .venv .tools .demo .pytest_cache .mypy_cache .ruff_cache
