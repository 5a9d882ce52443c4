# Entry points of the token interop testbed. Both `run` and `test` set up what they
# need from nothing: a virtual environment with the package, and a Docker engine
# (see scripts/ensure-docker).
PYTHON ?= python3
VENV ?= .venv
OUT ?= out
BIN := $(VENV)/bin

.PHONY: all venv docker run compliance test test-fast lint down clean

all: test

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

docker:
	scripts/ensure-docker

# The main job: the default matrix, results in $(OUT)/.
run: venv docker
	$(BIN)/testbed run --output $(OUT)

# Every token variant against every validator, results in $(OUT)/compliance/.
compliance: venv docker
	$(BIN)/testbed run --scenarios compliance --output $(OUT)/compliance

# The whole test suite: fast tests and the tests against the real Docker engine.
test: venv docker
	$(BIN)/pytest tests

test-fast: venv
	$(BIN)/pytest tests -m "not docker"

lint: venv
	$(BIN)/ruff check testbed scenarios tests containers
	$(BIN)/ruff format --check testbed scenarios tests containers
	$(BIN)/mypy

down: venv
	$(BIN)/testbed down

clean:
	rm -rf $(VENV) $(OUT) *.egg-info
