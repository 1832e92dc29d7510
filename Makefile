# Dynamic Risk Assessment System. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test test-fast drills explore mutants lint format ingest train score deploy rollback diagnose report serve apicalls fullprocess cron-line cron-install cron-remove bench bench-growth data clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

# Debian's own python3 needs its python3-venv package for `-m venv`: installed when missing (as root).
$(RUNTIME): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "python3 -m venv failed: installing Debian's python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The dashboard's browser test drives Debian's chromium (Playwright, no browser download): installed when missing.
$(DEV): requirements-dev.txt $(RUNTIME)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; } \
	  || echo "could not install Debian's chromium: the browser test will be skipped"
	touch $@

install: $(RUNTIME) ## create .venv and install requirements.txt

install-dev: $(DEV) ## also install requirements-dev.txt (pytest, ruff)

run: $(RUNTIME) ## fullprocess.py on the bundled data (first run: bootstrap the deployment), then what it wrote
	$(PY) fullprocess.py || { status=$$?; $(PY) fullprocess.py --summary; exit $$status; }
	@echo; $(PY) fullprocess.py --summary

# The suite on every core (pytest-xdist): most tests are pipeline processes of their own.
test: $(DEV) ## run the test suite but the drills (what CI runs; about 5 minutes on 2 cores)
	$(PY) -m pytest -n auto --dist worksteal -m "not drill"

test-fast: $(DEV) ## the tests that run no pipeline script, server or browser (about a minute)
	$(PY) -m pytest -m "not slow"

drills: $(DEV) ## the kill, disk-full and race drills at full count (20-30 minutes; pytest -m drill: a few of each)
	RISK_DRILLS=full $(PY) -m pytest -s -m drill

SECONDS_TO_EXPLORE ?= 600
explore: $(DEV) ## the open-world test for SECONDS_TO_EXPLORE (600): random operator sequences against the real scripts
	RISK_EXPLORE_SECONDS=$(SECONDS_TO_EXPLORE) $(PY) -m pytest -s -p no:randomly tests/test_openworld.py -k open_world

mutants: $(DEV) ## the mutants issue 31 listed and four of issue 33's rules, each alone against the tests that must notice it (about 2 minutes)
	bash tests/mutants.sh

lint: $(DEV) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ingest: $(RUNTIME) ## ingestion.py: input folder -> finaldata.csv
	$(PY) ingestion.py

train: $(RUNTIME) ## training.py: finaldata.csv -> trainedmodel.pkl
	$(PY) training.py

score: $(RUNTIME) ## scoring.py: F1 on testdata -> latestscore.txt
	$(PY) scoring.py

deploy: $(RUNTIME) ## deployment.py: copy model, score, record to production
	$(PY) deployment.py

rollback: $(RUNTIME) ## deployment.py --rollback: restore the previous deployment
	$(PY) deployment.py --rollback

diagnose: $(RUNTIME) ## diagnostics.py: diagnostics.json for the deployed model
	$(PY) diagnostics.py

report: $(RUNTIME) ## reporting.py: confusionmatrix.png, riskranking.csv, report.pdf
	$(PY) reporting.py

serve: $(RUNTIME) ## the API under gunicorn (bind and workers from config.json), access log to stdout
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

apicalls: $(RUNTIME) ## apicalls.py: call the running API, write apireturns.txt
	$(PY) apicalls.py

# crontab.txt rendered for this checkout; override CONFIG, CRON_PYTHON, CRON_LOG to render another.
CONFIG ?= $(CURDIR)/config.json
CRON_PYTHON ?= $(CURDIR)/$(PY)
CRON_LOG ?= $(CURDIR)/cron.log
CRONTAB ?= crontab
CRON_LINE = sed -n -e '/^[^\#]/p' crontab.txt | sed -e 's|@PROJECT_DIR@|$(CURDIR)|g' -e 's|@PYTHON@|$(CRON_PYTHON)|g' -e 's|@CONFIG@|$(CONFIG)|g' -e 's|@LOG@|$(CRON_LOG)|g'

cron-line: ## print the cron line for this checkout
	@$(CRON_LINE)

cron-install: $(RUNTIME) ## install the cron line into your crontab (twice leaves one line)
	@command -v $(CRONTAB) >/dev/null || { echo "crontab not found: apt-get install cron (then: service cron start)"; exit 1; }
	@others=$$($(CRONTAB) -l 2>/dev/null | grep -v -F '# risk-assessment:$(CURDIR)'); \
	{ [ -z "$$others" ] || printf '%s\n' "$$others"; $(CRON_LINE); } | $(CRONTAB) -
	@echo "installed:"; $(CRONTAB) -l | grep -F '# risk-assessment:$(CURDIR)'

cron-remove: ## remove this checkout's cron line (other lines stay)
	@command -v $(CRONTAB) >/dev/null || { echo "crontab not found"; exit 1; }
	@others=$$($(CRONTAB) -l 2>/dev/null | grep -v -F '# risk-assessment:$(CURDIR)'); \
	{ [ -z "$$others" ] || printf '%s\n' "$$others"; } | $(CRONTAB) -
	@echo "removed the risk-assessment line for $(CURDIR)"

fullprocess: $(RUNTIME) ## fullprocess.py once (what cron runs)
	$(PY) fullprocess.py

bench: $(RUNTIME) ## benchmarks: every step, the API, the dashboard, the whole run at 1M and 10M rows beside measured floors (about 50 minutes; wrk installed if missing)
	mkdir -p benchmarks/results
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/bench_dashboard.py --json benchmarks/results/dashboard.json
	$(PY) benchmarks/bench_ingestion.py --json benchmarks/results/ingestion.json
	$(PY) benchmarks/bench_run.py --json benchmarks/results/run.json
	$(PY) benchmarks/bench_api.py --connections 64 --json benchmarks/results/api-c64.json
	$(PY) benchmarks/bench_crowd.py --json benchmarks/results/crowd.json

bench-growth: $(RUNTIME) ## benchmarks: cost per row at 10k, 100k, 1M, 3M rows
	$(PY) benchmarks/bench.py --growth

data: $(RUNTIME) ## regenerate the bundled fabricated data (deterministic)
	$(PY) generate_data.py --bundled

clean: ## remove generated artifacts (keeps .venv and the bundled data)
	find ingesteddata practicemodels models production_deployment -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
