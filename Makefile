# shoal — build, test, demo and benchmark entry points.
# Each target installs what it needs: the virtual environment from the lockfile,
# and Debian packages through apt-get when they are missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

TEST_DEBS  := curl prometheus tmux
BENCH_DEBS := wrk nginx haproxy

.PHONY: all venv test unit demo bench tutorial lint lock clean debs-test debs-bench

all: test

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

debs-test:
	@./scripts/ensure-debs $(TEST_DEBS)

debs-bench:
	@./scripts/ensure-debs $(BENCH_DEBS)

test: $(STAMP) debs-test
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

demo: $(STAMP)
	$(BIN)/shoal demo

bench: $(STAMP) debs-bench
	$(BIN)/python -m bench.run

# Regenerate docs/TUTORIAL.md from a real run of the demo (about 3 minutes).
tutorial: $(STAMP)
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
	rm -rf $(VENV) build *.egg-info
