# astropipe — `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
# Stage commands in dvc.yaml call `python`: make them find the project's environment.
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := false
export PYTHONHASHSEED := 0

.DEFAULT_GOAL := help
.PHONY: help setup lock params repro test fuzz bench lint clean remote nightly

# make test ARGS='-x -q tests/test_cli.py'  ·  make bench QUICK=1 [BENCH='ztf zarr']
ARGS  ?=
QUICK ?=
BENCH ?=
# make nightly: the live night (UTC yesterday unless NIGHT=YYYYMMDD) and a bounded live TESS
# run of the configured target, as `dvc exp run -S` overrides; more in OVERRIDES='k=v ...'.
NIGHT     ?= $(shell date -u -d yesterday +%Y%m%d 2>/dev/null || date -u -v-1d +%Y%m%d)
NIGHTLY   ?= ztf.alerts.nights=['$(NIGHT)'] tess.source=live tess.live.limit=4 tess.live.max_points=20000
OVERRIDES ?=
# make remote URL=s3://bucket/astropipe [ENDPOINT=https://...]: this clone's default remote
URL      ?=
ENDPOINT ?=

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

test: ## Run the test suite (slow and integration tests included); pytest options: ARGS='-x -q tests/test_cli.py'
	$(BIN)/python -m pytest $(ARGS)

fuzz: ## Fuzz the parsers longer (ASTROPIPE_FUZZ_CASES, default 20000; ASTROPIPE_FUZZ_SEED)
	ASTROPIPE_FUZZ_CASES=$${ASTROPIPE_FUZZ_CASES:-20000} $(BIN)/python -m pytest -q tests/test_fuzz.py

bench: ## Run the benchmarks and print ratio tables (not in `make test`); QUICK=1 small, BENCH='ztf zarr' some
	$(BIN)/python -m benchmarks $(BENCH) $(if $(QUICK),--quick)

lint: ## Lint with ruff
	$(BIN)/ruff check src stages tests benchmarks
	$(BIN)/ruff format --check src stages tests benchmarks

clean: ## Remove stage outputs (the DVC cache keeps them)
	rm -rf data/raw data/interim data/processed

remote: ## Set this clone's default DVC remote (in .dvc/config.local): URL=s3://bucket/path [ENDPOINT=https://...]
	@test -n "$(URL)" || { echo "error: make remote: URL is empty; give the remote, e.g. make remote URL=s3://my-bucket/astropipe" >&2; exit 1; }
	$(BIN)/dvc remote add --local --force -d storage '$(URL)'
	$(if $(ENDPOINT),$(BIN)/dvc remote modify --local storage endpointurl '$(ENDPOINT)')

nightly: ## Live night NIGHT=YYYYMMDD (default: yesterday, UTC) + the configured TESS target: dvc exp run, dvc push
	@$(BIN)/dvc remote default >/dev/null 2>&1 || { echo "error: make nightly: no default DVC remote, so nothing could be pushed; run make remote URL=s3://... first (docs/remote.md)" >&2; exit 1; }
	@echo "$(NIGHT)" | grep -Eq '^[0-9]{8}$$' || { echo "error: make nightly: NIGHT=$(NIGHT) is not a YYYYMMDD night" >&2; exit 1; }
	$(BIN)/dvc exp run $(foreach o,$(NIGHTLY) $(OVERRIDES),-S "$(o)")
	$(BIN)/dvc push
