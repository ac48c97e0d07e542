# OneNet: `make run` starts the platform, `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-dates lint install bench bench-tools soak fuzz client-tools client clean migration

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/onenet up

# Two workers, each test file on one worker (module-scoped platforms start once); about 13 minutes on 2 cores
# with PostgreSQL and Redis (README, Reliability), twice that in one process. `make test PYTEST_ARGS=` runs in one process.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The calendar-sensitive tests again at shifted dates (quarter's and year's end, a Monday after a 调休 weekend,
# 29 February 2028, a year ahead) under libfaketime (Debian's faketime): tests/shifted_dates.py
# `make test-dates DATES="--only year-end"` runs one of them
DATES ?=
test-dates: $(STAMP)
	$(BIN)/python -m tests.shifted_dates $(DATES)

lint: $(STAMP)
	$(BIN)/ruff check .

# The gateway and intake benchmarks drive load with wrk and compare with nginx (Debian packages).
bench-tools:
	@command -v nginx >/dev/null && command -v wrk >/dev/null || \
	  (command -v apt-get >/dev/null && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk) || \
	  echo "nginx and wrk are needed by bench.gateway and bench.intake: install Debian's nginx and wrk packages"

bench: $(STAMP) bench-tools
	$(BIN)/python -m bench.matching
	$(BIN)/python -m bench.metrics
	$(BIN)/python -m bench.gateway
	$(BIN)/python -m bench.intake
	$(BIN)/python -m bench.import_residents
	$(BIN)/python -m bench.bookings
	$(BIN)/python -m bench.surveys
	$(BIN)/python -m bench.alarms

# Schemathesis through the gateway with every role and many cases per operation (`make test` runs a short pass).
fuzz: $(STAMP)
	ONENET_FUZZ_EXAMPLES=100 ONENET_FUZZ_ALL_ROLES=1 ONENET_FUZZ_CHECKS=all $(BIN)/python -m pytest tests/fuzz -p no:cacheprovider

# The typed-client generator (openapi-python-client) in a venv of its own: it pins httpx and typer below the project's.
# tests/test_generated_client.py generates a client with it and drives the README tour through it (CI requires it).
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
$(TOOLS_STAMP): tools/client-requirements.txt
	test -d $(TOOLS) || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --no-deps -r tools/client-requirements.txt
	touch $(TOOLS_STAMP)

client-tools: $(TOOLS_STAMP)

# a client of the running platform (`make run`; GW= another gateway) in build/client/onenet_client (not committed:
# it is the document's image, regenerated whenever the document changes)
GW ?= http://127.0.0.1:8000
client: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/python -m tools.generate_client --url $(GW) --out build/client

# Long runs, never part of `make test`: the long fuzz run, the fault tests with a full minute of downtime, then a
# 5-minute soak.
soak: $(STAMP) fuzz
	ONENET_FAULT_DOWNTIME=60 $(BIN)/python -m pytest tests/e2e/test_faults.py -p no:cacheprovider
	$(BIN)/python -m bench.soak --duration 300 --workers 8

clean:
	rm -rf var/*.db var/*.db-* var/keys

# make migration SERVICE=svc_residents MSG="add persons"
migration: $(STAMP)
	$(BIN)/onenet makemigration $(SERVICE) "$(MSG)"
