# The README's commands. `make test` is also what CI runs (.ci/run).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test test-slow demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Installs the pinned stack plus the test extras, then the package itself (editable), then checks consistency.
$(VENV)/.installed: requirements.txt requirements-edge.txt requirements-test.txt setup.cfg | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

setup: $(VENV)/.installed

# The default suite (under ~10 minutes on 2 CPU cores).
test: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Longer checks (resume after preemption, the CLI end to end); CI runs them too.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# The main demo: teacher then ViCoKD student on the embedded SynthMV; metrics, plots, checkpoints and export in
# runs/demo (rerunning resumes / reuses finished stages).
DEMO_DIR ?= runs/demo
demo: setup
	$(BIN)/python -m vicokd_jax.launch --config experiments/synth_vicokd.py --workdir $(DEMO_DIR)

clean:
	rm -rf $(VENV) .pytest_cache
