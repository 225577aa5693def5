# shoal — build, test, demo and benchmark entry points.
# Each target installs what it needs: the virtual environment from the lockfile,
# and Debian packages through apt-get when they are missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The proxy's per-request modules, compiled with mypyc (setup.py, ADR 11).
NATIVE := $(VENV)/.native
NATIVE_SOURCES := setup.py src/shoal/proxy/native.py $(shell $(PYTHON) -c \
	"import runpy; print(' '.join(f'src/shoal/proxy/{n}.py' for n in runpy.run_path('src/shoal/proxy/native.py')['COMPILED']))" 2>/dev/null)

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
	touch $(STAMP)

# Installs shoal itself (editable), compiling the native modules in place: again
# whenever one of their sources changes, so a stale build never runs (native.py).
$(NATIVE): $(STAMP) $(NATIVE_SOURCES)
	@$(PYTHON) -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
		|| ./scripts/ensure-debs python3-dev || true
	@command -v gcc >/dev/null || ./scripts/ensure-debs gcc || true
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(NATIVE)

venv: $(NATIVE)

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

test: $(NATIVE) debs-test $(UI_BUILT)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

unit: $(NATIVE)
	$(BIN)/python -m pytest -q tests/unit

demo: $(NATIVE) $(UI_BUILT)
	$(BIN)/shoal demo

# Each benchmark writes its own part of BENCHMARKS.md; one that misses its target
# (exit 1) does not stop the others, but fails the run.
bench: $(NATIVE) debs-bench $(UI_BUILT)
	rc=0; \
	for b in run dashboard tap store; do $(BIN)/python -m bench.$$b || rc=1; done; \
	exit $$rc

# Regenerate docs/TUTORIAL.md from a real run of the demo (about 3 minutes).
tutorial: $(NATIVE) $(UI_BUILT)
	$(BIN)/python scripts/tutorial.py

lint: $(NATIVE)
	$(BIN)/ruff check src tests bench

# Regenerate the lockfile after changing dependencies in pyproject.toml.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -e '.[test,bench,build]'
	.lockvenv/bin/pip freeze --all --exclude-editable | grep -v -e '^shoal' -e '^pip==' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) build src/*.egg-info $(UI)/dist $(UI)/node_modules
	find src -name '*.so' -delete
