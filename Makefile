# Two entry points do all the set-up on a fresh machine:
#   make demo   train, forget, compare against retraining on MovieLens 100K, print the table
#   make test   the test suite (what CI runs after linting)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[torch,bench,parquet,dev,http]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recforget demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not realdata" -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/als_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
