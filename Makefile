# Voxfleet: `make run` serves the whole product on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
RUN_DEBS := espeak-ng
TEST_DEBS := espeak-ng chromium fonts-noto-cjk prometheus

.PHONY: run test install install-dev lint bench bench-billing bench-synthesis bench-fleet bench-portal clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
	bin/ensure-system-packages $(RUN_DEBS)

install-dev: $(VENV)/.installed-dev
	bin/ensure-system-packages $(TEST_DEBS)

run: install
	$(BIN)/python manage.py migrate --noinput -v0
	@echo
	@echo "== Voxfleet demo logins (re-running rotates the API keys and node token) =="
	@$(BIN)/python manage.py seed_demo
	@echo
	@echo "== Voxfleet is serving at http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/) =="
	@echo
	$(BIN)/uvicorn console.asgi:application --host $(HOST) --port $(PORT) --lifespan on

test: install-dev
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/lint-imports

# Benchmarks print their figures; the PostgreSQL/Redis ones use scratch databases on this machine.
BENCH_PG ?= postgres://postgres@127.0.0.1:5432
BENCH_REDIS ?= redis://127.0.0.1:6379/9

bench-billing: install-dev
	$(BIN)/python bench/billing_reserve_settle.py

bench-synthesis: install-dev
	$(BIN)/python bench/synthesis_engine_rtf.py
	-createdb -h 127.0.0.1 -U postgres vf_bench_jobs 2>/dev/null
	DATABASE_URL=$(BENCH_PG)/vf_bench_jobs REDIS_URL=$(BENCH_REDIS) $(BIN)/python bench/synthesis_e2e.py

bench-fleet: install-dev
	-createdb -h 127.0.0.1 -U postgres vf_bench_fleet 2>/dev/null
	DATABASE_URL=$(BENCH_PG)/vf_bench_fleet REDIS_URL=$(BENCH_REDIS) $(BIN)/python bench/fleet_ingest.py

bench-portal: install-dev
	$(BIN)/python bench/portal_pages.py

bench: bench-billing bench-synthesis bench-fleet bench-portal

clean:
	rm -rf $(VENV) var outputs staticfiles test-artifacts
