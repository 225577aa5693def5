# shoal — build, test, demo and benchmark entry points.
# Each target installs what it needs: the virtual environment from the lockfile,
# and Debian packages through apt-get when they are missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

TEST_DEBS  := curl prometheus tmux chromium
UI         := src/shoal/web/ui
UI_BUILT   := $(UI)/dist/index.html
UI_SOURCES := $(shell find $(UI)/src $(UI)/index.html $(UI)/vite.config.js $(UI)/package-lock.json -type f 2>/dev/null)
BENCH_DEBS := wrk nginx haproxy chromium

.PHONY: all venv ui test unit demo bench tutorial lint lock clean debs-test debs-bench debs-node

all: test

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The dashboard, built from the npm registry (package-lock.json); never committed.
debs-node:
	@command -v npm >/dev/null || ./scripts/ensure-debs nodejs npm

$(UI_BUILT): $(UI_SOURCES) | debs-node
	cd $(UI) && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent

ui: $(UI_BUILT)

debs-test:
	@./scripts/ensure-debs $(TEST_DEBS)

debs-bench:
	@./scripts/ensure-debs $(BENCH_DEBS)

test: $(STAMP) debs-test $(UI_BUILT)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

demo: $(STAMP) $(UI_BUILT)
	$(BIN)/shoal demo

bench: $(STAMP) debs-bench $(UI_BUILT)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.tap

# Regenerate docs/TUTORIAL.md from a real run of the demo (about 3 minutes).
tutorial: $(STAMP) $(UI_BUILT)
	$(BIN)/python scripts/tutorial.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

# Regenerate the lockfile after changing dependencies in pyproject.toml.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -e '.[test,bench]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^shoal' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) build *.egg-info $(UI)/dist $(UI)/node_modules
