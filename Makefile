# ALS tomography orchestration: local development entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DAG ?= bl832_transfer_check
CONF ?= {}
PYTEST_ARGS ?=
#: test processes for `make test` (pytest-xdist); the e2e tests share one stack on one of them (tests/conftest.py).
#: Three on two cores: many tests wait on services (polls, stacks), so a third process keeps both cores busy
#: (measured on this 2-core machine: 18:01 with two, 13:53 with three, the same tests passing).
TEST_WORKERS ?= 3
#: the stack of `make serve` / `stop` / `airflow` / `scan`: its folder; PORT, STACK_DB, FACILITY_PORT (serve only:
#: recorded in $(STACK_HOME)/stack.json, which the others read) default to 8080, als_airflow, 8765
STACK_HOME ?= .airflow-stack
STACK := $(PY) -m tools.local_stack --home $(STACK_HOME)
ARGS ?= dags list
#: what `make bench` runs, in order (each prints its table; docs/performance.md keeps them)
BENCHES ?= bench_dag_parse bench_manifests bench_prune_check bench_prune_months bench_engines bench_recon bench_one_pass bench_zarr bench_orchestration bench_full_scan bench_burst
export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins

.PHONY: help venv demo test bench lint format dags-test facility lock clean serve stop e2e airflow scan placeholders

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

venv: $(STAMP) ## build .venv from the pinned requirements and the lock

demo: $(STAMP) ## write a sample scan, run the dispatcher on it (local profile), print its outputs
	$(PY) -m tools.demo

dags-test: $(STAMP) ## run DAG=<dag_id> CONF='<json>' end to end on the local profile [FACILITY_URL=<running facility>]
	$(PY) -m tools.run_dag $(DAG) --conf '$(CONF)' $(if $(FACILITY_URL),--facility-url $(FACILITY_URL))

test: $(STAMP) ## lint, then every test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --durations=25 $(PYTEST_ARGS)

bench: $(STAMP) ## the long proofs on the real stack (pytest -m long), then every benchmark with its defaults (an hour or more)
	$(VENV)/bin/pytest -m long -p no:cacheprovider tests
	for bench in $(BENCHES); do $(PY) -m benchmarks.$$bench || exit 1; done

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff fix and format
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

facility: $(STAMP) ## serve the local facility on 127.0.0.1:8765 (foreground)
	$(PY) -m facility --root .facility --port 8765 --log-level info

serve: $(STAMP) ## start the facility + Airflow (api-server, scheduler, dag-processor, triggerer) on PostgreSQL; print UI and login [STACK_HOME= PORT= STACK_DB= FACILITY_PORT=]
	$(STACK) $(if $(PORT),--port $(PORT)) $(if $(STACK_DB),--database $(STACK_DB)) $(if $(FACILITY_PORT),--facility-port $(FACILITY_PORT)) serve

stop: ## stop everything `make serve` started (by pid, under STACK_HOME, default .airflow-stack)
	$(STACK) stop

airflow: $(STAMP) ## run the stack's airflow CLI: ARGS='dags trigger bl832_dispatcher' [CONF='<json>'] [STACK_HOME=]
	@$(STACK) airflow $(ARGS) $(if $(CONF:{}=),--conf '$(CONF)')

scan: $(STAMP) ## write a sample scan on the stack's spot832 and print the command that triggers the dispatcher on it
	@$(STACK) scan

placeholders: $(STAMP) ## list the values still to replace before going live (exit 1 if the production profile has any)
	@$(PY) -m tools.placeholders

e2e: $(STAMP) ## only the end-to-end tests on a real stack (PostgreSQL, Redis)
	$(VENV)/bin/pytest tests/e2e -m e2e $(PYTEST_ARGS)

lock: ## rewrite constraints.txt: the pins resolved in a fresh venv, with the current lock as the starting point
	rm -rf /tmp/als-lock-venv && $(PYTHON) -m venv /tmp/als-lock-venv
	/tmp/als-lock-venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	{ echo "# Full lock of every package (pip freeze of requirements.txt + requirements-dev.txt on Python 3.11)."; \
	  echo "# Regenerate with 'make lock' after changing a pin."; \
	  /tmp/als-lock-venv/bin/pip freeze --exclude-editable; } > constraints.txt

clean: ## remove local state (.facility, .airflow); keeps .venv
	rm -rf .facility .airflow
