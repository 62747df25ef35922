# nf-course: one command per job. Each works on a fresh machine from a clean clone:
# it creates the virtual environment .venv on first use (torch==2.13.0 first, the CPU
# wheel; an unpinned torch would pull a multi-GB CUDA build), then runs the job.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup book test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## Build the HTML book into _build/html, executing every chapter (clean build, warnings fail).
book: $(STAMP)
	rm -rf _build
	$(BIN)/jupyter-book build . --all -W -n --keep-going

## Run the test suite.
test: $(STAMP)
	$(BIN)/python -m pytest

## Lint and check formatting.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf _build .pytest_cache .ruff_cache
