# The commands the README names. Everything a fresh Debian 12 machine lacks is
# installed here (apt + a venv in .venv), so a clean clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export APPLIANCE_DATA_DIR ?= /var/lib/appliance

.PHONY: up down lab lab-down test lint test-install lint-ansible deps venv dashboard proto bench clean

up: venv
	$(BIN)/appliance up

down:
	@if [ -x $(BIN)/appliance ]; then $(BIN)/appliance down; else echo "nothing to stop"; fi

# Three hosts on this machine, one cluster (docs/cluster-lab.md). On a machine shared with other
# test runs: `flock /tmp/appliance-lxc.lock make lab`. `make lab-down` removes it (safe twice).
lab: venv
	$(BIN)/python -m appliance.lab up

lab-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m appliance.lab down; else echo "nothing to remove"; fi

test: venv lint
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# Lint + import order (ruff.toml) and types (setup.cfg [mypy]); either failing fails `make test`.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Only the Ansible install test (part of `make test` too).
test-install: venv
	$(BIN)/python -m pytest -p no:cacheprovider -m install tests/install $(PYTEST_ARGS)

lint-ansible: venv
	$(BIN)/ansible-lint --offline playbooks/ inventory/

bench: venv
	$(BIN)/python -m bench

deps:
	bash scripts/install-deps.sh

# The venv is rebuilt when setup.cfg changes; the dashboard's assets when its sources do.
venv: $(VENV)/.installed dashboard
$(VENV)/.installed: setup.cfg setup.py | deps
	bash scripts/install-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server,test,compute,seaweedfs]'
	touch $@

# The web dashboard (docs/dashboard.md): built into the package by esbuild from npm
# packages pinned in dashboard/package-lock.json; `npm ci` only when the lockfile changed.
DASHBOARD_BUILT := appliance/http/dashboard_dist/index.html
dashboard: $(DASHBOARD_BUILT)
$(DASHBOARD_BUILT): $(shell find dashboard/src -type f) dashboard/build.mjs dashboard/node_modules/.installed
	cd dashboard && npm run --silent build
dashboard/node_modules/.installed: dashboard/package-lock.json | deps
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Regenerate the committed *_pb2.py modules from proto/.
proto: venv
	$(BIN)/python -m appliance.protogen

clean: down
	rm -rf $(VENV)
