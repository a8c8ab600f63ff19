# Every target installs what it needs first: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: help venv run test test-unit lint format schemas bench stack-up stack-down clean

help:
	@echo "make run     start Kafka, MongoDB-compatible server, the service and a demo flow"
	@echo "make test    the whole test suite against real local servers"
	@echo "make lint    ruff, ruff format --check, mypy, schema drift"
	@echo "make bench   throughput and snapshot-read benchmarks (prints figures)"
	@echo "make schemas regenerate schemas/ from the code"

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,local]'
	touch $(INSTALLED)

venv: $(INSTALLED)

run: venv
	$(PY) -m dev.run

test: venv
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest tests/unit

lint: venv
	$(PY) -m ruff check service dev tests bench
	$(PY) -m ruff format --check service dev tests bench
	$(PY) -m mypy
	$(PY) -m pytest -q tests/unit/test_schemas.py

format: venv
	$(PY) -m ruff check --fix service dev tests bench
	$(PY) -m ruff format service dev tests bench

schemas: venv
	$(PY) -m service schemas --out schemas

bench: venv
	$(PY) -m bench

stack-up: venv
	$(PY) -m dev.stack up

stack-down: venv
	$(PY) -m dev.stack down

clean: stack-down
	rm -rf .cache/stack
