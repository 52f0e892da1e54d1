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

# The main job: a local 3-node cluster on 127.0.0.1 (node i: RESP 6379+i,
# peers 7379+i, HTTP 8379+i; data, logs and cluster.json in ./.ringkv/cluster).
# Ctrl-C stops every node.
run: $(STAMP)
	$(BIN)/ringkv cluster up -n 3 --dir ./.ringkv/cluster

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
