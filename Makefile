# The two everyday commands. Each creates the virtualenv it needs in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean messages

run: $(VENV)/.installed  ## console + local agent on SQLite; prints the dashboard URL
	$(BIN)/fleetdeck run

test: $(VENV)/.installed-test  ## the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test  ## ruff, then mypy, with the settings in pyproject.toml
	$(BIN)/ruff check console agents collectors tests bench
	$(BIN)/mypy

# Quick variants of every bench (minutes, not the hours of the full sizes in BENCHMARKS.md):
# a smoke check that each still runs, not figures to quote. deploy_rolling needs dockerd and
# busybox-static (deploy_lb also haproxy and nginx), ssh_fanout an sshd binary, remote_write a
# prometheus binary, fleet nginx and $$FLEETDECK_TEST_POSTGRES_URL, as the tests do.
BENCH := PYTHONPATH=$(CURDIR) $(BIN)/python bench
bench: $(VENV)/.installed-test  ## quick variants of every bench in bench/
	$(BENCH)/storage.py --samples 100000 --series 100
	$(BENCH)/rollup_codec.py --data random --hours 2 --series 10
	$(BENCH)/ingest.py --hosts 4 --seconds 3 --pairs 1 --paced 0 --workers 1,2
	$(BENCH)/query.py --runs 3 --keep /tmp/fleetdeck-bench-q500.db
	$(BENCH)/query_parts.py --keep /tmp/fleetdeck-bench-q500.db --runs 1
	$(BENCH)/query_growth.py --small /tmp/fleetdeck-bench-q500.db --large /tmp/fleetdeck-bench-q500.db --runs 1
	$(BENCH)/block_stream.py --keep /tmp/fleetdeck-bench-q500.db --runs 1
	$(BENCH)/promql.py --quick --runs 3
	$(BENCH)/alerting.py --hosts 20 --rules 20 --hours 1 --runs 1
	$(BENCH)/remote_write.py --series 1000 --seconds 10
	$(BENCH)/logs_ingest.py --lines 20000 --batch 5000
	$(BENCH)/logs_search.py --rows 20000 --runs 5
	$(BENCH)/logs_agent_cpu.py --lines 20000
	$(BENCH)/agent_footprint.py --cycles 5 --interval 1
	$(BENCH)/agent_steady_state.py --interval 2 --seconds 10
	$(BENCH)/ssh_fanout.py --hosts 4 --parallel 4 --runs 1
	$(BENCH)/deploy_rolling.py --replicas 2 --runs 1
	$(BENCH)/deploy_lb.py --replicas 2 --runs 1
	$(BENCH)/fleet.py --agents 100 --minutes 0.5 --drain 20

# Extract the text of the pages (babel.cfg), scripts (babel-scripts.cfg), CLI (babel-cli.cfg) and error
# messages (babel-errors.cfg) and merge it into
# the catalogs of console/locale/ (console/i18n.py); then translate the new msgids (empty msgstr).
LOCALES := console/locale
messages: $(VENV)/.installed  ## update the translation catalogs from the source text
	$(BIN)/pybabel extract -F babel.cfg --project Fleetdeck --version 0.1.0 -k _ -k translate --no-location --sort-output -o $(LOCALES)/messages.pot .
	$(BIN)/pybabel update -i $(LOCALES)/messages.pot -d $(LOCALES) -D messages --no-fuzzy-matching
	$(BIN)/pybabel extract -F babel-scripts.cfg --project Fleetdeck --version 0.1.0 -k t --no-default-keywords --no-location --sort-output -o $(LOCALES)/scripts.pot .
	$(BIN)/pybabel update -i $(LOCALES)/scripts.pot -d $(LOCALES) -D scripts --no-fuzzy-matching
	$(BIN)/pybabel extract -F babel-cli.cfg --project Fleetdeck --version 0.1.0 -k tr --no-location --sort-output -o $(LOCALES)/cli.pot .
	$(BIN)/pybabel update -i $(LOCALES)/cli.pot -d $(LOCALES) -D cli --no-fuzzy-matching
	$(BIN)/pybabel extract -F babel-errors.cfg --project Fleetdeck --version 0.1.0 -k tx -k N_ --no-default-keywords --no-location --sort-output -o $(LOCALES)/errors.pot .
	$(BIN)/pybabel update -i $(LOCALES)/errors.pot -d $(LOCALES) -D errors --no-fuzzy-matching

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
