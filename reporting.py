"""Reports on the deployed model: confusion matrix, PDF report, client risk ranking.

Reads
    the deployed model (verified against manifest.json), testdata/testdata.csv,
    output_folder_path/finaldata.csv and ingestedfiles.txt, the score and
    deployment histories, the latest diagnostics.json and pipeline runs if any.
Writes (output_model_path, each file atomically)
    confusionmatrix.png  the deployed model on testdata (--output picks another name,
                         e.g. confusionmatrix2.png as the course asks after a redeploy)
    riskranking.csv      every corporation of the latest ingested data with its exit
                         probability under the deployed model, highest first, ranked
    report.pdf           metrics, confusion matrix, ROC curve, score history, summary
                         statistics, missing data, feature drift, ingested files, the
                         latest pipeline decision and the 20 clients at highest risk
Run
    python reporting.py
    python reporting.py --output confusionmatrix2.png
    python reporting.py --ranking-only   # the ranking of the latest ingested data, nothing else
Exit status
    0 written; 65 a data file is missing or unusable; 69 no usable deployed model;
    78 bad config.json; 2 a usage error (--output not a .png file name).
"""

from __future__ import annotations

import json
import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from sklearn.metrics import RocCurveDisplay, confusion_matrix

import calllist
import deployment
import diagnostics
import riskmodel
from clientdata import feature_frame, read_data_file, read_labelled_data
from common import (
    CONFUSION_MATRIX,
    DECISION,
    DEPLOYMENT_HISTORY,
    ID_COLUMN,
    INGESTEDFILES,
    LOST_CLIENTS,
    MANIFEST,
    MODEL,
    REFERENCE_DATA,
    REPORT,
    REPORTS_DIR,
    RISK_RANKING,
    RISK_RANKING_BASIS,
    SCORE_HISTORY,
    TARGET,
    Config,
    PipelineError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    command_line,
    live_folder,
    load_config,
    read_ingested_files,
    read_jsonl,
    run_main,
    setup_logging,
    sha256_file,
    utc_now,
)

NAME = "reporting"
TOP_CLIENTS = 20

log = logging.getLogger(NAME)


@dataclass(frozen=True)
class Evaluation:
    """The deployed model on testdata: what the confusion matrix and the report show."""

    version: int | None
    truth: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    metrics: dict

    def title(self, data: Path) -> str:
        return f"Deployed model v{self.version}: F1 {self.metrics['f1']:.3f}\non {data.name} ({len(self.truth)} rows)"


def evaluate_on_testdata(config: Config, scorer: riskmodel.LinearScorer, version: int | None) -> Evaluation:
    """The deployed model's predictions and metrics on testdata (the numbers the API serves)."""
    test = read_labelled_data(config.testdata_file)
    matrix = feature_frame(test, str(config.testdata_file)).to_numpy()
    truth = test[TARGET].astype(int).to_numpy()
    predicted, probability = scorer.predict(matrix).astype(int), scorer.predict_proba(matrix)[:, 1]
    metrics = riskmodel.classification_metrics(truth, predicted, probability)
    return Evaluation(version, truth, predicted, probability, metrics)


def draw_confusion_matrix(axis, truth, predicted, title: str) -> None:
    matrix = confusion_matrix(truth, predicted, labels=[0, 1])
    labels = ["stayed (0)", "exited (1)"]
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, square=True, ax=axis,
                xticklabels=labels, yticklabels=labels, annot_kws={"size": 16})  # fmt: skip
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title, fontsize=11)


def write_confusion_matrix(config: Config, name: str, results: Evaluation) -> Path:
    figure = Figure(figsize=(5.5, 5))
    draw_confusion_matrix(
        figure.subplots(), results.truth, results.predicted, results.title(config.testdata_file)
    )
    figure.tight_layout()
    target = config.model_folder / name
    with atomic_path(target) as temp:
        figure.savefig(temp, format="png", dpi=120)
    return target


def previous_call_list(config: Config, basis: dict) -> pd.DataFrame | None:
    """The list the team saw before this one: the current riskranking.csv; or, when that one was
    made from the same model and data (a report run again), the list it was itself compared with."""
    try:
        frame = pd.read_csv(config.model_folder / RISK_RANKING, dtype={ID_COLUMN: str})
    except (FileNotFoundError, ValueError):  # pandas' parser errors are ValueErrors
        return None
    if ID_COLUMN not in frame.columns or "exit_probability" not in frame.columns:
        return None
    try:
        old = json.loads((config.model_folder / RISK_RANKING_BASIS).read_text())
    except (FileNotFoundError, ValueError):
        old = {}
    if (old.get("model_sha256"), old.get("data_sha256")) != (basis["model_sha256"], basis["data_sha256"]):
        return frame[[ID_COLUMN, "exit_probability"]]
    if not old.get("previous_list") or "previous_probability" not in frame.columns:
        return None
    try:  # that list's clients: those still listed, and those lost since
        lost = pd.read_csv(config.model_folder / LOST_CLIENTS, dtype={ID_COLUMN: str})
    except (FileNotFoundError, ValueError):
        lost = pd.DataFrame(columns=[ID_COLUMN, "previous_probability"])
    earlier = pd.concat(
        [frame[[ID_COLUMN, "previous_probability"]], lost[[ID_COLUMN, "previous_probability"]]]
    )
    earlier = earlier[earlier["previous_probability"].notna()]
    return pd.DataFrame({ID_COLUMN: earlier[ID_COLUMN], "exit_probability": earlier["previous_probability"]})


def write_call_list(config: Config, scorer: riskmodel.LinearScorer, manifest: dict,
                    final: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """riskranking.csv (the call list), lostclients.csv and riskranking.json (their basis)."""
    basis = {"model_version": manifest.get("version"), "model_sha256": manifest["files"][MODEL]["sha256"],
             "data": config.relative(config.finaldata_file), "data_sha256": sha256_file(config.finaldata_file),
             "written": utc_now()}  # fmt: skip
    previous = previous_call_list(config, basis)
    calls, lost = calllist.call_list(final, scorer, previous, config.relative(config.finaldata_file))
    basis["previous_list"] = previous is not None
    calllist.write_csv(calls, config.model_folder / RISK_RANKING)
    calllist.write_csv(lost, config.model_folder / LOST_CLIENTS)
    atomic_write_json(config.model_folder / RISK_RANKING_BASIS, basis)
    return calls, lost


def _text_page(pdf, title: str, lines: list[str]) -> None:
    figure = Figure(figsize=(8.27, 11.69))
    figure.text(0.07, 0.95, title, fontsize=16, weight="bold", va="top")
    figure.text(0.07, 0.91, "\n".join(lines), fontsize=8.5, family="monospace", va="top")
    pdf.savefig(figure)


def _table(rows: list[list], header: list[str]) -> list[str]:
    cells = [header, *[["-" if value is None else str(value) for value in row] for row in rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _fmt(value, digits: int = 4):
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else value


def decision_lines(config: Config, manifest: dict) -> list[str]:
    """What made this version live, in a manager's words, from its decision.json (written by
    fullprocess.py and deployed with the version) or from the manifest."""
    folder = live_folder(config.prod_folder, manifest)
    try:
        decision = json.loads((folder / DECISION).read_text())
    except (FileNotFoundError, ValueError):
        decision = None
    lines = []
    if manifest.get("action") == "rollback":
        lines.append(f"Rolled back from version {manifest.get('rolled_back_from')} at {manifest.get('timestamp')} "
                     "(deployment.py --rollback): this version is live again, scored on today's data. "
                     "When it was first deployed:")  # fmt: skip
    if decision is None:
        return [*lines, "Deployed by hand with deployment.py (no fullprocess.py decision)."]
    lines.append(f"{decision.get('summary', 'deployed by fullprocess.py')}.")
    drift = decision.get("drift")
    if drift:
        lines.append(f"Drift test ({drift['test_used']}): the model then live scored F1 {drift['new_score']:.4f} on "
                     f"the new data, threshold {drift['threshold']:.4f} ({drift['rule']}): "
                     f"{'drift' if drift['drift'] else 'no drift'}.")  # fmt: skip
    gate = decision.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "failed (deployed anyway)"
        lines.append(f"Promotion gate: the retrained model scored F1 {gate['candidate_f1']:.4f} on the test data "
                     f"against {gate['deployed_f1']:.4f} for the model then live: {verdict}.")  # fmt: skip
    if decision.get("new_files"):
        lines.append("Triggered by the new files: " + ", ".join(decision["new_files"]) + ".")
    if decision.get("rejected_files"):
        lines.append(
            "Rejected input files: " + ", ".join(entry["name"] for entry in decision["rejected_files"]) + "."
        )
    return lines


def previous_version(config: Config, manifest: dict) -> dict | None:
    """The manifest of the version live before this one, if any."""
    earlier = manifest.get("lineage") or []
    if manifest.get("action") == "rollback" and manifest.get("rolled_back_from"):
        earlier = [manifest["rolled_back_from"]]
    if not earlier:
        return None
    try:
        return json.loads((config.prod_folder / deployment.folder_name(earlier[-1]) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def wrapped(text: str, width: int = 100) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def summary_page(pdf, config: Config, manifest: dict, results: Evaluation, calls: pd.DataFrame,
                 lost: pd.DataFrame) -> None:  # fmt: skip
    """Page 1: what a client manager needs, in words, with no server paths."""
    before = previous_version(config, manifest)
    figure = Figure(figsize=(8.27, 11.69))
    figure.text(0.07, 0.955, f"Attrition risk: model version {manifest.get('version')}", fontsize=18,
                weight="bold", va="top")  # fmt: skip
    lines = [f"Live since {manifest.get('timestamp', '?')[:19].replace('T', ' ')} UTC.", ""]
    lines += [line for text in decision_lines(config, manifest) for line in wrapped(text)]
    f1_now = results.metrics["f1"]
    lines += ["", f"Quality on the test data: F1 {f1_now:.3f} now"
              + (f", {before.get('f1'):.3f} for version {before.get('version')} before it." if before
                 and isinstance(before.get("f1"), float) else " (no earlier version).")]  # fmt: skip
    lines += ["", f"{len(calls):,} clients to call, riskiest first (ties: by client ID). "
              f"{len(lost):,} lost since the last list (lostclients.csv)."]  # fmt: skip
    figure.text(0.07, 0.915, "\n".join(lines), fontsize=10, va="top", wrap=True)
    top = calls.head(10)
    axis = figure.add_axes((0.07, 0.08, 0.86, 0.5))
    axis.axis("off")
    axis.set_title("The first 10 clients to call", loc="left", fontsize=12, weight="bold")
    if len(top):
        table = axis.table(
            cellText=[[row["rank"], row[ID_COLUMN], f"{row['exit_probability']:.3f}", row["reason"], row["change"]]
                      for _, row in top.iterrows()],
            colLabels=["#", "client", "risk", "top reason", "since last list"],
            colWidths=[0.04, 0.1, 0.07, 0.6, 0.19], loc="upper left", cellLoc="left",
        )  # fmt: skip
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        table.scale(1, 1.6)
    else:
        axis.text(0, 0.9, "No client to call: every client in the data has left.", fontsize=10)
    pdf.savefig(figure)


def f1_history_figure(config: Config) -> Figure:
    """F1 over time: every trained model on the test data, and each deployed version. Readable with
    one point (its value written beside it) and with hundreds (dates on the axis, no markers)."""
    history = read_jsonl(config.model_folder / SCORE_HISTORY)
    deployments = read_jsonl(config.prod_folder / DEPLOYMENT_HISTORY)
    figure = Figure(figsize=(11.69, 5.5))
    axis = figure.subplots()
    many = len(history) + len(deployments) > 40
    if history:
        times = pd.to_datetime([entry["timestamp"] for entry in history])
        axis.plot(times, [entry["f1"] for entry in history], marker=None if many else "o", linewidth=1,
                  label="each trained model on the test data")  # fmt: skip
    if deployments:
        times = pd.to_datetime([entry["timestamp"] for entry in deployments])
        scores = [entry["f1"] for entry in deployments]
        axis.step(times, scores, where="post", marker=None if many else "s", linewidth=2,
                  label="the live version's F1")  # fmt: skip
        if len(deployments) <= 12:
            for time, score, entry in zip(times, scores, deployments, strict=True):
                axis.annotate(f"v{entry.get('version')} {score:.3f}", (time, score), textcoords="offset points",
                              xytext=(4, 6), fontsize=8)  # fmt: skip
    points = [entry["f1"] for entry in history + deployments]
    if points:
        low, high = min(points), max(points)
        axis.set_ylim(max(0.0, low - 0.05), min(1.0, high + 0.05))
    times = pd.to_datetime([entry["timestamp"] for entry in history + deployments])
    if len(times) and times.max() - times.min() < pd.Timedelta(hours=1):  # one point: an hour around it
        middle = times.min() + (times.max() - times.min()) / 2
        axis.set_xlim(middle - pd.Timedelta(minutes=30), middle + pd.Timedelta(minutes=30))
    axis.xaxis.set_major_locator(AutoDateLocator(maxticks=8))
    axis.xaxis.set_major_formatter(ConciseDateFormatter(axis.xaxis.get_major_locator()))
    axis.set_title("F1 score history")
    axis.set_ylabel("F1 on the test data")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    figure.tight_layout()
    return figure


def write_report(config: Config, manifest: dict, results: Evaluation, final: pd.DataFrame, calls: pd.DataFrame,
                 lost: pd.DataFrame) -> Path:  # fmt: skip
    """One PDF a person reads instead of the raw files: page 1 for a client manager, then the details."""
    truth, predicted, probability = results.truth, results.predicted, results.probability
    metrics = {
        "F1": results.metrics["f1"],
        "precision": results.metrics["precision"],
        "recall": results.metrics["recall"],
        "accuracy": results.metrics["accuracy"],
        "ROC AUC": results.metrics["roc_auc"],
    }
    summary = diagnostics.summary_statistics(final)
    missing = diagnostics.missing_percent(final)
    before = previous_version(config, manifest)
    reference = None
    if before is not None and manifest.get("action") != "rollback":
        reference = config.prod_folder / deployment.folder_name(before["version"]) / REFERENCE_DATA
    if reference is None or not reference.is_file():
        reference = live_folder(config.prod_folder, manifest) / REFERENCE_DATA
    try:
        drift = diagnostics.compare_features(read_data_file(reference), final)
    except PipelineError as error:
        drift = {"error": str(error)}
    ingested_path = config.output_folder / INGESTEDFILES
    ingested = read_ingested_files(ingested_path) if ingested_path.is_file() else []

    target = config.model_folder / REPORT
    with atomic_path(target) as temp, PdfPages(temp) as pdf:
        summary_page(pdf, config, manifest, results, calls, lost)
        lines = [
            f"Model version {manifest.get('version')}, {manifest.get('action')} at {manifest.get('timestamp')}",
            f"Test data: {config.relative(config.testdata_file)} ({len(truth)} rows)",
            "",
            *_table([[name, _fmt(value)] for name, value in metrics.items()], ["metric", "value"]),
            "",
            f"Ingested files ({len(ingested)}), from {config.relative(config.input_folder)}:",
            *textwrap.wrap(", ".join(ingested) or "none", 95),
            "",
            "The decision that made this version live:",
            *[line for text in decision_lines(config, manifest) for line in textwrap.wrap(text, 95)],
        ]
        _text_page(pdf, "Model and data", lines)

        figure = Figure(figsize=(11.69, 5.5))
        axes = figure.subplots(1, 2)
        draw_confusion_matrix(axes[0], truth, predicted, results.title(config.testdata_file))
        if metrics["ROC AUC"] is not None:
            RocCurveDisplay.from_predictions(
                truth, probability, ax=axes[1], name=f"v{manifest.get('version')}"
            )
            axes[1].plot([0, 1], [0, 1], linestyle="--", color="grey")
        axes[1].set_title("ROC curve on testdata")
        figure.tight_layout()
        pdf.savefig(figure)
        pdf.savefig(f1_history_figure(config))

        lines = _table(
            [[column, *(_fmt(stats[key], 2) for key in ("mean", "median", "mode", "std"))]
             for column, stats in summary.items()],
            ["column", "mean", "median", "mode", "std"],
        ) + ["", *_table([[column, f"{value:.3f}%"] for column, value in missing.items()], ["column", "missing"])]  # fmt: skip
        source = (f"version {before['version']}'s training data" if reference.parent.name != live_folder(
            config.prod_folder, manifest).name else "this version's training data")  # fmt: skip
        lines += ["", f"Feature drift ({source} -> the latest ingested data):"]
        if "features" in drift:
            lines += _table(
                [[row["feature"], _fmt(row["ks_statistic"]), _fmt(row["ks_p_value"]), _fmt(row["psi"]),
                  row["psi_band"], "DRIFT" if row["drift"] else "ok"] for row in drift["features"]],
                ["feature", "KS stat", "KS p", "PSI", "PSI band", "verdict"],
            )  # fmt: skip
            lines.append(f"data set drift: {'YES' if drift['dataset_drift'] else 'no'} "
                         f"({drift['drifted_features']} of {len(drift['features'])} features)")  # fmt: skip
        else:
            lines.append(f"  {drift['error']}")
        _text_page(pdf, "Data: summary, missing values, drift", lines)

        top = calls.head(TOP_CLIENTS)
        lines = [f"{len(calls)} clients still with us, riskiest first (ties broken by client ID); "
                 f"the full list is {RISK_RANKING}.", "Reasons: the feature adding most to the log-odds "
                 "against the training data's median client.", ""]  # fmt: skip
        lines += _table(
            [[row["rank"], row[ID_COLUMN], f"{row['exit_probability']:.4f}", row["reason"][:60], row["change"]]
             for _, row in top.iterrows()],
            ["rank", ID_COLUMN, "risk", "top reason", "since last list"],
        )  # fmt: skip
        if len(lost):
            lines += ["", f"Lost since the last list ({len(lost)}): " + ", ".join(lost[ID_COLUMN].head(40))]
        _text_page(pdf, f"The {TOP_CLIENTS} clients at highest risk", lines)
        info = pdf.infodict()
        info["Title"] = "Attrition risk model report"
        info["Subject"] = f"deployed model version {manifest.get('version')}"
    return target


def keep_with_version(config: Config, manifest: dict, paths: list[Path]) -> Path:
    """Copies of this version's reports in its archive folder (archive/vNNNN/reports/)."""
    folder = live_folder(config.prod_folder, manifest) / REPORTS_DIR
    folder.mkdir(exist_ok=True)
    for path in paths:
        atomic_write_bytes(folder / path.name, path.read_bytes())
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument(
        "--output", default=CONFUSION_MATRIX, help="confusion matrix file name (default: %(default)s)"
    )
    parser.add_argument(
        "--ranking-only",
        action="store_true",
        help="only riskranking.csv (fullprocess.py: new data, same model)",
    )
    args = parser.parse_args(argv)
    if Path(args.output).name != args.output or not args.output.lower().endswith(".png"):
        parser.error(
            f"--output {args.output!r}: give a file name ending in .png (it goes to the model folder)"
        )
    setup_logging(NAME)
    config = load_config()
    config.model_folder.mkdir(parents=True, exist_ok=True)
    scorer, manifest = riskmodel.load_linear(config.prod_folder)
    final = read_data_file(config.finaldata_file)
    calls, lost = write_call_list(config, scorer, manifest, final)
    written = [config.model_folder / RISK_RANKING, config.model_folder / LOST_CLIENTS]
    if not args.ranking_only:
        results = evaluate_on_testdata(config, scorer, manifest.get("version"))
        written.append(write_confusion_matrix(config, args.output, results))
        written.append(write_report(config, manifest, results, final, calls, lost))
    kept = keep_with_version(config, manifest, [*written, config.model_folder / RISK_RANKING_BASIS])
    log.info("wrote %s (%d clients to call, %d lost since the last list); copies in %s",
             ", ".join(config.relative(path) for path in written), len(calls), len(lost),
             config.relative(kept))  # fmt: skip
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
