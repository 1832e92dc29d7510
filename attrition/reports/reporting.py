"""reporting.py's work: one snapshot of the live version, measured on testdata, its call list and
query store (calllist.py, riskdb.py), drift, the confusion matrix (plots.py) and the PDF (pdf.py),
kept with the version in the archive.
"""

from __future__ import annotations

import calendar
import logging
import os
import time
from pathlib import Path

import pandas as pd

from attrition.core.config import Config
from attrition.core.files import atomic_path, atomic_write_bytes, atomic_write_json
from attrition.core.names import (
    DRIFT,
    EXTRACTS,
    FEATURES,
    ID_COLUMN,
    LOST_CLIENTS,
    REPORT,
    RISK_RANKING,
    RISK_RANKING_BASIS,
    TARGET,
)
from attrition.core.records import sha256_file, utc_now
from attrition.data.clientdata import read_own_file
from attrition.model import riskmodel
from attrition.model.scoring import evaluate_on_testdata
from attrition.monitoring import drift
from attrition.monitoring.diagnostics import recorded_drift
from attrition.production import stamps, versions
from attrition.reports import calllist, riskdb
from attrition.reports.pdf import write_report
from attrition.reports.plots import write_confusion_matrix

NAME = "reporting"

log = logging.getLogger(NAME)


def write_call_list(
    config: Config, stamp: dict, final: pd.DataFrame, scorer: riskmodel.LinearScorer
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """riskranking.csv (the call list), lostclients.csv and riskranking.json (what they describe).

    The basis moves with the list: riskranking.json is written first, pending (the new lists'
    sha256 and the basis they replace: calllist.list_basis), then the lists, then riskranking.json
    complete. A kill at any instant leaves the next run comparing with the list on disk, by its
    own basis; a pending basis is a stale stamp, so the next fullprocess.py run reports again."""
    previous = calllist.previous_list(config.model_folder, stamp, config.prod_folder)
    extracts = calllist.read_extracts(config.output_folder / EXTRACTS, final)
    calls, lost = calllist.call_list(
        final, scorer, previous, config.relative(config.finaldata_file), extracts
    )
    before = calllist.list_basis(config.model_folder)
    folder = config.model_folder
    with atomic_path(folder / RISK_RANKING) as list_temp, atomic_path(folder / LOST_CLIENTS) as lost_temp:
        calllist.write_csv(calls, list_temp)
        calllist.write_csv(lost, lost_temp)
        basis = {
            **stamp,
            "written": utc_now(),
            "previous_list": previous is not None,
            "lost_means": calllist.LOST_MEANS,
            "list_sha256": sha256_file(list_temp),
            "lost_sha256": sha256_file(lost_temp),
        }
        atomic_write_json(folder / RISK_RANKING_BASIS, {**basis, "pending": True, "before": before or None})
    # the lists were replaced (lost first, then the call list); then their query store; then the basis
    # says all three are whole
    history = final[[column for column in (ID_COLUMN, *FEATURES, TARGET) if column in final.columns]]
    store = riskdb.write(folder, calls, lost, history, basis)
    basis["store_sha256"] = sha256_file(store)  # checked before it is served, and by every run
    atomic_write_json(folder / RISK_RANKING_BASIS, basis)
    # the list last given for this production: the next one compares with it, wherever it is written
    atomic_write_json(
        config.prod_folder / calllist.LAST_LIST,
        {
            "model_folder": os.path.relpath(folder, config.prod_folder),  # true when the checkout moves
            "list_sha256": basis["list_sha256"],
            "written": basis["written"],
        },
    )
    return calls, lost


def later_report_name(folder: Path) -> str:
    """report-<UTC time>.pdf, its time after every later report's already there: after the clock
    steps back the newest report still sorts last (the dashboard and --summary take the last)."""
    now = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    names = sorted(path.name for path in folder.glob("report-*Z.pdf"))
    if names and names[-1][len("report-") : -len("Z.pdf")] >= now:
        last = calendar.timegm(time.strptime(names[-1][len("report-") : -len("Z.pdf")], "%Y%m%dT%H%M%S"))
        now = time.strftime("%Y%m%dT%H%M%S", time.gmtime(last + 1))
    return f"report-{now}Z.pdf"


def keep_with_version(state: versions.Live, paths: list[Path], report: Path | None) -> Path:
    """This version's reports in its archive folder (archive/vNNNN/reports/): the first, at its
    deployment, with the call list and the files it was made with; never overwritten. Each later
    report is a new file beside it (report-<UTC time>.pdf)."""
    folder = state.reports_folder()
    folder.mkdir(exist_ok=True)
    if (folder / REPORT).is_file():
        kept = [report] if report is not None else []
        names = {report: later_report_name(folder)} if report else {}
    else:
        kept, names = [*paths, *([report] if report else [])], {}
    for path in kept:
        atomic_write_bytes(folder / names.get(path, path.name), path.read_bytes())
    return folder


def report_live_version(config: Config, output: str) -> dict:
    """Every output for one snapshot of the live version; what was written, for the log line."""
    config.model_folder.mkdir(parents=True, exist_ok=True)
    state = versions.live(config)
    if state is None:
        versions.read_manifest(config.prod_folder)  # says "no deployment yet" and what to run
    # one snapshot of production, read once: everything below is this version's, even if a
    # person rolls back meanwhile (the next run then sees a stale stamp and reports again)
    scorer, _ = riskmodel.load_linear(config.prod_folder, state.manifest)
    final = read_own_file(config.finaldata_file)
    stamp = stamps.stamp(config, state, sha256_file(config.finaldata_file))
    results = evaluate_on_testdata(config, state, scorer)
    since = recorded_drift(config, state, stamp["data_sha256"])
    figures = drift.comparisons(config, state, final, stamp["data_sha256"], since)
    atomic_write_json(config.model_folder / DRIFT, figures)
    calls, lost = write_call_list(config, stamp, final, scorer)
    written = [config.model_folder / name for name in (RISK_RANKING, LOST_CLIENTS, RISK_RANKING_BASIS, DRIFT)]
    written.append(write_confusion_matrix(config, output, results))
    report = write_report(config, state, results, figures, calls, lost, final)
    kept = keep_with_version(state, written, report)
    return {
        "version": state.version,
        "written": written,
        "report": report,
        "kept": kept,
        "calls": len(calls),
        "lost": len(lost),
        "since_training": figures["since_training"],
    }
