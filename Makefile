# Every target is a one-liner over uv. uv itself is bootstrapped into .tools/ when not on PATH,
# so a machine with only Python 3.11+ can run `make demo` and `make test` straight away.
PYTHON ?= python3
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
DEMO_ENV := DATABASE_URL=$${DATABASE_URL:-sqlite:///$(CURDIR)/.demo/syncflows.db} \
	PREFECT_HOME=$${PREFECT_HOME:-$(CURDIR)/.demo/prefect}
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export UV_PYTHON_DOWNLOADS ?= never

.PHONY: demo test bench lint format migrate deploy status clean

demo: .venv/.synced  ## run every flow against local sandboxes on SQLite, print one row per flow
	mkdir -p .demo/prefect
	$(DEMO_ENV) $(UV) run --frozen syncflows demo

# Three workers on two cores (the tests mostly wait on latency and pacing), then the tests that
# measure rates or time (marker `serial`) alone, even after a failure; either run fails the target.
test: .venv/.synced  ## the whole suite (PostgreSQL tests skip with a reason when no server answers)
	$(UV) run --frozen pytest -n 3 --dist worksteal -m "not serial"; status=$$?; \
	$(UV) run --frozen pytest -m serial && exit $$status

bench: .venv/.synced  ## every benchmark scenario; fails if any result is incorrect
	mkdir -p .bench/prefect
	PREFECT_HOME=$${PREFECT_HOME:-$(CURDIR)/.bench/prefect} $(UV) run --frozen python -m bench run --all

lint: .venv/.synced  ## ruff, format check, mypy
	$(UV) run --frozen ruff check . && $(UV) run --frozen ruff format --check . && $(UV) run --frozen mypy

format: .venv/.synced
	$(UV) run --frozen ruff check --fix . && $(UV) run --frozen ruff format .

deploy: .venv/.synced  ## against PREFECT_API_URL: work pool, provider limits, every deployment
	$(UV) run --frozen syncflows deploy

status: .venv/.synced  ## last run, cursor, failures and next scheduled run per provider
	$(UV) run --frozen syncflows status

migrate: .venv/.synced  ## migrate DATABASE_URL to the newest schema
	$(UV) run --frozen syncflows db upgrade

.venv/.synced: uv.lock pyproject.toml $(UV)
	$(UV) sync --locked
	touch $@

# uv into .tools/: a venv when Python has the venv module, else pip's --target (Debian ships
# python3 without venv unless python3-venv is installed).
$(CURDIR)/.tools/bin/uv:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	if $(PYTHON) -m venv $(CURDIR)/.tools; then \
	  $(CURDIR)/.tools/bin/pip install --quiet uv; \
	else \
	  $(PYTHON) -m pip install --quiet --target $(CURDIR)/.tools/lib uv && \
	  mkdir -p $(CURDIR)/.tools/bin && ln -sf $(CURDIR)/.tools/lib/bin/uv $(CURDIR)/.tools/bin/uv; \
	fi

clean:
	rm -rf .venv .tools .demo .pytest_cache .mypy_cache .ruff_cache
