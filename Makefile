# Everything the project needs is installed into .venv by these targets; nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DB ?= sqlite:///stabilize.db

.PHONY: venv demo test lint pytest wheel clean

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

pytest: venv
	$(PY) -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

wheel: venv
	$(PY) -m build --wheel --outdir dist .

clean:
	rm -rf $(VENV) dist build *.egg-info stabilize.db*
