# The README's commands. `make test` is also what CI runs (.ci/run).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test test-fast clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Installs the pinned stack plus the test extras, then the package itself (editable), then checks consistency.
$(VENV)/.installed: requirements.txt requirements-test.txt setup.cfg | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

setup: $(VENV)/.installed

# The default suite: everything, slow tests included while CI's budget allows.
test: setup
	$(BIN)/python -m pytest -q

# Fast subset for the edit-test loop.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
