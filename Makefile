# Everything a fresh machine needs is installed by these targets (Python 3.11+ and make assumed).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test lint typecheck unit bench fuzz chaos clean

# The editable install also compiles the C extensions (the Avro decoder's reader, the insert's column
# encoder): a change to one installs again.
$(STAMP): pyproject.toml schemas/_avro_reader.c consumers/_native_columns.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the embedded stack (broker, topics, HTTP) with the simulator and live counts; Ctrl-C stops.
run: $(STAMP)
	$(BIN)/collection-audit up --simulate $(ARGS)

# Debian packages the tests run for real (root, as CI runs): Alertmanager receives pushed alerts and
# checks deploy/alertmanager (amtool); promtool (prometheus) checks and unit-tests deploy/prometheus;
# Chromium (with a CJK font) renders the auditor console for Playwright, which never downloads a browser.
DEBIAN_PACKAGES := prometheus-alertmanager prometheus chromium fonts-wqy-microhei
DEBIAN_STAMP    := $(VENV)/.debian-packages
$(DEBIAN_STAMP): | $(STAMP)
	@dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1 || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBIAN_PACKAGES) \
	  || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	  $(DEBIAN_PACKAGES))
	touch $(DEBIAN_STAMP)

## test: lint, type-check and the whole test suite (unit + embedded-stack tests).
test: lint typecheck $(DEBIAN_STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not stack"

## bench: throughput and latency figures on the embedded stack (prints a table, writes bench-results.json).
bench: $(STAMP)
	$(BIN)/python -m tests.bench

## fuzz: each fuzz target coverage-guided for FUZZ_SECONDS (default 600), then its corpus merged into tests/fuzz/corpus.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= store_record jsonl_line ingest_body
fuzz: $(STAMP)
	@for target in $(FUZZ_TARGETS); do \
	  echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
	  $(BIN)/python -m tests.fuzz $$target $(FUZZ_SECONDS) || exit 1; \
	  $(BIN)/python -m tests.fuzz merge $$target || exit 1; \
	done

## chaos: CHAOS_FAULTS (default 20) faults of each kind under load on the embedded stack, then the
## reconciliation table (exit 1 unless nothing is lost or doubled); figures in chaos-results.json, logs in
## chaos-logs/. Root, as CI: the ClickHouse outage fills a tmpfs of its own. `make test` runs one of each.
CHAOS_FAULTS ?= 20
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --faults-per-kind $(CHAOS_FAULTS)

clean:
	rm -rf $(VENV) .fuzz .collection-audit .pytest_cache .mypy_cache .ruff_cache bench-results.json \
	  chaos-results.json chaos-logs
