# Dynamic Risk Assessment System. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test lint format ingest train score deploy rollback diagnose report serve apicalls data clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(RUNTIME): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV): requirements-dev.txt $(RUNTIME)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(RUNTIME) ## create .venv and install requirements.txt

install-dev: $(DEV) ## also install requirements-dev.txt (pytest, ruff)

run: $(RUNTIME) ## run the pipeline on the bundled data (ingest, train, score, deploy)
	$(PY) ingestion.py
	$(PY) training.py
	$(PY) scoring.py
	$(PY) deployment.py
	@$(PY) -c 'from common import load_config as l; c = l(); print(f"\nOutputs:\n  ingested data   {c.output_folder}\n  model, scores   {c.model_folder}\n  production      {c.prod_folder}")'

test: $(DEV) ## run the whole test suite
	$(PY) -m pytest

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

data: $(RUNTIME) ## regenerate the bundled fabricated data (deterministic)
	$(PY) generate_data.py --bundled

clean: ## remove generated artifacts (keeps .venv and the bundled data)
	find ingesteddata practicemodels models production_deployment -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
