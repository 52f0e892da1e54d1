# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: one node on 127.0.0.1, RESP on 6380, HTTP (API and dashboard) on 8380.
run: $(STAMP)
	$(BIN)/ringkv serve --host 127.0.0.1 --resp-port 6380 --http-port 8380 --data-dir ./.ringkv/n1

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/single_node.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
