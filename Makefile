# astropipe — `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
# Stage commands in dvc.yaml call `python`: make them find the project's environment.
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := false
export PYTHONHASHSEED := 0

.DEFAULT_GOAL := help
.PHONY: help setup lock params repro test bench lint clean

help: ## List the targets with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Create .venv and install astropipe (editable) with its test extras
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@$(BIN)/python -c "import astropipe; print('astropipe', astropipe.__version__, 'installed in $(VENV)')"

lock: ## Re-resolve the newest allowed versions and pin them in constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade -e '.[test]'
	{ head -3 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

params: ## Compose params.yaml from conf/ (as `dvc exp run` does)
	$(BIN)/python -m astropipe.params

repro: params ## Run the whole pipeline offline on data/sample
	$(BIN)/dvc repro

test: ## Run the test suite (slow and integration tests included)
	$(BIN)/python -m pytest

fuzz: ## Fuzz the parsers longer (ASTROPIPE_FUZZ_CASES, default 20000; ASTROPIPE_FUZZ_SEED)
	ASTROPIPE_FUZZ_CASES=$${ASTROPIPE_FUZZ_CASES:-20000} $(BIN)/python -m pytest -q tests/test_fuzz.py

bench: ## Run the benchmarks and print ratio tables (not part of `make test`)
	$(BIN)/python -m benchmarks

lint: ## Lint with ruff
	$(BIN)/ruff check src stages tests benchmarks
	$(BIN)/ruff format --check src stages tests benchmarks

clean: ## Remove stage outputs (the DVC cache keeps them)
	rm -rf data/raw data/interim data/processed
