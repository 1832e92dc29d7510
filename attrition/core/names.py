"""Names every part agrees on: where the project and its config are, environment variables,
column names and file names. Pure: the standard library only, no file read.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]  # attrition/core/names.py
DEFAULT_CONFIG = PROJECT_DIR / "config.json"
CONFIG_ENV = "RISK_CONFIG"
DEBUG_ENV = "RISK_DEBUG"
TOKEN_ENV = "RISK_API_TOKEN"
FROZEN_ENV = "RISK_CONFIG_FROZEN"  # fullprocess.py's children: the run's one configuration (load_config)
ID_COLUMN = "corporation"
FEATURES = ("lastmonth_activity", "lastyear_activity", "number_of_employees")
TARGET = "exited"
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)
# File names shared between the scripts.
FINALDATA = "finaldata.csv"  # output_folder_path
EXTRACTS = "finaldataextracts.csv"  # each finaldata.csv row's first and last extract
INGESTEDFILES = "ingestedfiles.txt"
KEPT_EXTRACTS = "kept"  # output_folder_path/kept/: the bytes of every extract ingested (ingestion.py)
INGESTION_RECORD = "ingestionrecord.json"
MODEL = "trainedmodel.pkl"  # output_model_path
MODEL_META = "trainedmodel.json"
REFERENCE_DATA = "referencedata.csv"
LATESTSCORE = "latestscore.txt"
SCORE_METRICS = "latestscore.json"
SCORE_HISTORY = "scorehistory.jsonl"
DIAGNOSTICS = "diagnostics.json"
DIAGNOSTICS_HISTORY = "diagnostics_history"
CONFUSION_MATRIX = "confusionmatrix.png"
CONFUSION_MATRIX_AFTER_REDEPLOY = "confusionmatrix2.png"
RISK_RANKING = "riskranking.csv"  # the call list (calllist.py)
RISK_RANKING_BASIS = "riskranking.json"  # what the call list was computed from: model and data
LOST_CLIENTS = "lostclients.csv"
QUERY_STORE = "riskdata.sqlite"  # output_model_path: the lists and client rows as SQLite (riskdb.py)
DRIFT = "drift.json"  # output_model_path: drift.py's two comparisons, stamped (reporting.py)
DECISION = "decision.json"  # output_model_path: why fullprocess.py deploys this model (deployed with it)
REPORTS_DIR = "reports"  # prod_deployment_path/archive/vNNNN/reports: the reports about that version
REPORT = "report.pdf"
APIRETURNS = "apireturns.txt"
APIRETURNS_AFTER_REDEPLOY = "apireturns2.txt"
TESTDATA = "testdata.csv"  # test_data_path
MANIFEST = "manifest.json"  # prod_deployment_path
DEPLOYMENT_HISTORY = "deployments.jsonl"
ARCHIVE_DIR = "archive"
RUN_HISTORY = "runhistory.jsonl"
CACHE_DIR = ".cache"  # beside the config file: caches and locks, never in the data folders


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser().resolve()
