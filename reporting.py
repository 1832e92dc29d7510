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
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from sklearn.metrics import RocCurveDisplay, confusion_matrix

import diagnostics
import riskmodel
from clientdata import feature_frame, read_data_file, read_labelled_data
from common import (
    CONFUSION_MATRIX,
    DEPLOYMENT_HISTORY,
    DIAGNOSTICS,
    FEATURES,
    ID_COLUMN,
    INGESTEDFILES,
    REPORT,
    RISK_RANKING,
    RUN_HISTORY,
    SCORE_HISTORY,
    TARGET,
    Config,
    PipelineError,
    atomic_path,
    command_line,
    load_config,
    read_ingested_files,
    read_jsonl,
    run_main,
    setup_logging,
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


def evaluate_on_testdata(config: Config, deployed: riskmodel.DeployedModel) -> Evaluation:
    """The deployed model's predictions and metrics on testdata."""
    test = read_labelled_data(config.testdata_file)
    features = feature_frame(test, str(config.testdata_file))
    truth = test[TARGET].astype(int).to_numpy()
    predicted, probability = deployed.predict(features), deployed.exit_probability(features)
    metrics = riskmodel.classification_metrics(truth, predicted, probability)
    return Evaluation(deployed.version, truth, predicted, probability, metrics)


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


def risk_ranking(final: pd.DataFrame, deployed: riskmodel.DeployedModel, source: str) -> pd.DataFrame:
    """Every corporation of finaldata.csv (its latest row), by exit probability, highest first."""
    latest = final.drop_duplicates(subset=[ID_COLUMN], keep="last")
    probability = deployed.exit_probability(feature_frame(latest, source))
    ranking = latest.assign(exit_probability=np.round(probability, 6))
    ranking = ranking.astype({feature: "Int64" for feature in FEATURES})  # counts, with blanks
    ranking = ranking.sort_values(["exit_probability", ID_COLUMN], ascending=[False, True], kind="stable")
    ranking.insert(0, "rank", np.arange(1, len(ranking) + 1))
    return ranking[["rank", ID_COLUMN, "exit_probability", *FEATURES, TARGET]].reset_index(drop=True)


def write_risk_ranking(
    config: Config, deployed: riskmodel.DeployedModel, final: pd.DataFrame
) -> tuple[Path, pd.DataFrame]:
    ranking = risk_ranking(final, deployed, str(config.finaldata_file))
    target = config.model_folder / RISK_RANKING
    with atomic_path(target) as temp:
        ranking.to_csv(temp, index=False)
    return target, ranking


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


def write_report(config: Config, deployed: riskmodel.DeployedModel, results: Evaluation, final: pd.DataFrame,
                 ranking: pd.DataFrame) -> Path:  # fmt: skip
    """One PDF a person reads instead of the raw files."""
    manifest = deployed.manifest
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
    try:
        drift = diagnostics.feature_drift(config, final)
    except PipelineError as error:
        drift = {"error": str(error)}
    saved = config.model_folder / DIAGNOSTICS
    saved_diagnostics = json.loads(saved.read_text()) if saved.is_file() else {}
    ingested_path = config.output_folder / INGESTEDFILES
    ingested = read_ingested_files(ingested_path) if ingested_path.is_file() else []
    runs = read_jsonl(config.prod_folder / RUN_HISTORY)

    target = config.model_folder / REPORT
    with atomic_path(target) as temp, PdfPages(temp) as pdf:
        lines = [
            f"Deployed model   version {manifest.get('version')}, {manifest.get('action')} "
            f"at {manifest.get('timestamp')}",
            f"Production       {config.prod_folder}",
            f"Test data        {config.testdata_file} ({len(truth)} rows)",
            "",
            *_table([[name, _fmt(value)] for name, value in metrics.items()], ["metric", "value"]),
            "",
            f"Ingested files ({len(ingested)}), from {config.input_folder}:",
            *textwrap.wrap(", ".join(ingested) or "none", 95),
            "",
            "Latest pipeline decision:",
        ]
        if runs:
            last = runs[-1]
            lines += textwrap.wrap(
                f"{last.get('end')}: {last.get('decision')} (exit {last.get('exit_status')})", 95
            )
            lines += [f"  {step}" for step in last.get("reasons", [])]
        else:
            lines.append("  no fullprocess.py run recorded yet")
        if saved_diagnostics.get("execution_time_seconds"):
            timing = saved_diagnostics["execution_time_seconds"]
            lines += ["", "Timing (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timing.items())]
        if saved_diagnostics.get("dependencies"):
            outdated = [row for row in saved_diagnostics["dependencies"] if row.get("outdated")]
            lines += ["", "Outdated packages: " + (", ".join(
                f"{row['module']} {row['installed']} -> {row['latest']}" for row in outdated) or "none")]  # fmt: skip
        _text_page(pdf, "Attrition risk model report", lines)

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

        history = read_jsonl(config.model_folder / SCORE_HISTORY)
        deployments = read_jsonl(config.prod_folder / DEPLOYMENT_HISTORY)
        figure = Figure(figsize=(11.69, 5.5))
        axis = figure.subplots()
        if history:
            times = pd.to_datetime([entry["timestamp"] for entry in history])
            axis.plot(
                times, [entry["f1"] for entry in history], marker="o", label="trained model on testdata"
            )
        if deployments:
            times = pd.to_datetime([entry["timestamp"] for entry in deployments])
            axis.step(times, [entry["f1"] for entry in deployments], where="post", marker="s",
                      label="deployed version's F1")  # fmt: skip
        axis.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d %H:%M"))
        axis.set_title("F1 score history")
        axis.set_ylabel("F1")
        axis.legend(loc="lower left")
        figure.autofmt_xdate()
        figure.tight_layout()
        pdf.savefig(figure)

        lines = _table(
            [[column, *(_fmt(stats[key], 2) for key in ("mean", "median", "mode", "std"))]
             for column, stats in summary.items()],
            ["column", "mean", "median", "mode", "std"],
        ) + ["", *_table([[column, f"{value:.3f}%"] for column, value in missing.items()], ["column", "missing"])]  # fmt: skip
        lines += ["", "Feature drift (deployed model's training data -> latest ingested data):"]
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

        top = ranking.head(TOP_CLIENTS)
        lines = [
            f"{len(ranking)} corporations ranked; the full list is {config.model_folder / RISK_RANKING}",
            "",
        ]
        lines += _table(
            [[row["rank"], row[ID_COLUMN], f"{row['exit_probability']:.3f}",
              *(("-" if pd.isna(row[f]) else int(row[f])) for f in FEATURES)] for _, row in top.iterrows()],
            ["rank", ID_COLUMN, "risk", "last month", "last year", "employees"],
        )  # fmt: skip
        _text_page(pdf, f"The {TOP_CLIENTS} clients at highest risk", lines)
        info = pdf.infodict()
        info["Title"] = "Attrition risk model report"
        info["Subject"] = f"deployed model version {manifest.get('version')}"
    return target


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
    deployed = riskmodel.load_deployed(config.prod_folder)
    if args.ranking_only:
        ranking_path, ranking = write_risk_ranking(config, deployed, read_data_file(config.finaldata_file))
        log.info("wrote %s (%d corporations)", ranking_path, len(ranking))
        return 0
    results = evaluate_on_testdata(config, deployed)
    matrix = write_confusion_matrix(config, args.output, results)
    final = read_data_file(config.finaldata_file)
    ranking_path, ranking = write_risk_ranking(config, deployed, final)
    report = write_report(config, deployed, results, final, ranking)
    log.info("wrote %s, %s (%d corporations), %s", matrix, ranking_path, len(ranking), report)
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
