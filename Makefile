# The two everyday commands. Each creates the virtualenv it needs in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

run: $(VENV)/.installed  ## console + local agent on SQLite; prints the dashboard URL
	$(BIN)/fleetdeck run

test: $(VENV)/.installed-test  ## the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)

$(VENV)/.installed: setup.py agent/setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ./agent  # the agent's own distribution, which the console's needs
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info agent/*.egg-info agent/build
