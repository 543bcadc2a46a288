# Everything the project needs is installed into .venv by these targets; nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DB ?= sqlite:///stabilize.db

.PHONY: venv demo test lint pytest wheel clean bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,mysql]'
	touch $@

venv: $(VENV)/.installed

## The main job: a workflow run by 3 worker processes on the embedded SQLite file, then drawn.
demo: venv
	$(VENV)/bin/stabilize --url '$(DB)' demo --workers 3

## The whole test suite on every dialect (SQLite file + memory, PostgreSQL, MariaDB), plus the checkers.
test: lint pytest

lint: venv
	$(VENV)/bin/ruff check stabilize tests migrations bench
	$(VENV)/bin/mypy --strict stabilize

# Two runs: everything in parallel, then the tests that restart the database servers, alone.
pytest: venv
	$(PY) -m pytest -n 2 -p no:cacheprovider -m "not restart" $(PYTEST_ARGS)
	$(PY) -m pytest -p no:cacheprovider -m restart $(PYTEST_ARGS)

## Side-by-side benchmark against upstream stabilize 0.33.1 (own venv, bench/.venv-upstream) on SQLite (WAL),
## PostgreSQL and MariaDB, with the raw-driver ceiling; prints ops/s and ratios. BENCH_ARGS=--small for a smoke run.
bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)

wheel: venv
	$(PY) -m build --wheel --outdir dist .

clean:
	rm -rf $(VENV) dist build *.egg-info stabilize.db*
