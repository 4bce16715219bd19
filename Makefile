# Two entry points do all the set-up on a fresh machine:
#   make demo   train, forget, compare against retraining on MovieLens 100K, print the table
#   make test   the test suite (what CI runs after linting)
#   make test-spark   the Spark tests (installs the [spark] extra; needs a JVM, java 17)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: demo test test-spark lint bench install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[torch,bench,parquet,dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recforget demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not realdata and not spark" -q

SPARK_STAMP := $(VENV)/.spark-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[torch,bench,parquet,dev,spark]"
	rm -f $(VENV)/.spark-*
	touch $(SPARK_STAMP)

test-spark: $(SPARK_STAMP)
	$(BIN)/python -m pytest -m spark -q tests/spark

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/als_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
