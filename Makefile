# Everything the project needs is installed into .venv by these targets; nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DB ?= sqlite:///stabilize.db

.PHONY: venv demo test lint pytest wheel clean bench browser ui clusters-up clusters-status clusters-down

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,mysql]'
	touch $@

venv: $(VENV)/.installed

## The main job: a workflow run by 3 worker processes on the embedded SQLite file, then drawn.
demo: venv
	$(VENV)/bin/stabilize --url '$(DB)' demo --workers 3

## The web dashboard on the same database as the demo: http://127.0.0.1:8000/
ui: venv
	$(VENV)/bin/stabilize --url '$(DB)' ui

## Debian's Chromium for the browser tests (tests/ui), installed once when missing: Playwright drives
## /usr/bin/chromium and never downloads a browser of its own.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }
	@dpkg-query -W -f='browser: chromium $${Version}\n' chromium 2>/dev/null || echo "browser: /usr/bin/chromium"

## The whole test suite on every dialect (SQLite file + memory, PostgreSQL, MariaDB), plus the checkers.
test: lint pytest

lint: venv
	$(VENV)/bin/ruff check stabilize tests migrations bench
	$(VENV)/bin/mypy --strict stabilize

# Three runs: everything in parallel, then the tests that restart the database servers, alone, then
# the tests on the test clusters (they kill and isolate nodes; the fixtures start the clusters if down).
pytest: venv browser
	$(PY) -m pytest -n 2 -p no:cacheprovider -m "not restart and not cluster" $(PYTEST_ARGS)
	$(PY) -m pytest -p no:cacheprovider -m restart $(PYTEST_ARGS)
	$(PY) -m pytest -p no:cacheprovider -m cluster $(PYTEST_ARGS)

## The test clusters of issue 15 (3-node Galera on 33061-33063, PostgreSQL primary 55432 + sync standby
## 55433): up (idempotent), status, down (stops them and removes their data).
clusters-up: venv
	$(PY) -m tests.clusters up
clusters-status: venv
	$(PY) -m tests.clusters status
clusters-down: venv
	$(PY) -m tests.clusters down

## Side-by-side benchmark against upstream stabilize 0.33.1 (own venv, bench/.venv-upstream) on SQLite (WAL),
## PostgreSQL and MariaDB, with the raw-driver ceiling; prints ops/s and ratios. Then upstream's engine end to end
## on its stores and ours (tests/compat's venv). BENCH_ARGS=--small for a smoke run, BENCH_ARGS="--only e2e" for one section.
bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)

wheel: venv
	$(PY) -m build --wheel --outdir dist .

clean:
	rm -rf $(VENV) dist build *.egg-info stabilize.db*
