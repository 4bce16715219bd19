# Two entry points do all the set-up on a fresh machine:
#   make demo   train, forget, compare against retraining on MovieLens 100K, print the table
#   make test   the test suite (what CI runs after linting)
#   make test-spark   the Spark tests (installs the [spark] extra; needs a JVM, java 17)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: demo test test-spark lint bench install clean lenskit-env

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[torch,bench,parquet,dev,service,http,interop]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recforget demo

# The servers and tools the tests use are installed by the test command itself:
# .ci/chromium.sh installs Debian's chromium for the console's browser test, and
# .ci/postgres.sh starts a throw-away PostgreSQL server for the service tests (installing
# Debian's postgresql first if it is missing and we are root)
test: $(STAMP) lenskit-env
	bash .ci/chromium.sh
	.ci/postgres.sh $(BIN)/python -m pytest -m "not slow and not realdata and not spark" -q

# LensKit round-trip tests: LensKit runs in its own interpreter (it pins pandas 2). If this
# environment cannot be built, those tests skip and say why; nothing else depends on it.
LK_VENV := .venv-lenskit
LK_STAMP := $(LK_VENV)/.installed-$(shell cat constraints-lenskit.txt | sha256sum | cut -c1-12)
lenskit-env:
	-@test -f $(LK_STAMP) || ( $(PYTHON) -m venv $(LK_VENV) \
	  && $(LK_VENV)/bin/python -m pip install --quiet -c constraints-lenskit.txt \
	     lenskit numba click tqdm platformdirs threadpoolctl \
	  && rm -f $(LK_VENV)/.installed-* && touch $(LK_STAMP) )

SPARK_STAMP := $(VENV)/.spark-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[torch,bench,parquet,dev,service,http,interop,spark]"
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
	rm -rf $(VENV) $(LK_VENV) .pytest_cache .ruff_cache
