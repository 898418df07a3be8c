PYTHON ?= python3
VENV ?= .venv

.PHONY: test build run bench hostile clean check

# The test command of the README: a virtual environment with pytest, then the suite.
test: $(VENV)/bin/pytest
	$(VENV)/bin/python -m pytest -q tests

$(VENV)/bin/pytest:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check pytest

build:
	$(PYTHON) build_zipapp.py

run: build
	$(PYTHON) dist/cliproxy.pyz $(ARGS)

check: build
	$(PYTHON) dist/cliproxy.pyz check $(ARGS)

bench: build
	bash bench/run.sh

# The hostile probe of the built zipapp (docs/LIMITS.md): standard library only.
hostile: build
	$(PYTHON) bench/hostile.py $(ARGS)

clean:
	rm -rf dist .pytest_cache bench/out
