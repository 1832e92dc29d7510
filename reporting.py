"""Reports on the live version: the call list, drift figures, confusion matrix and PDF report.

Every output is computed for the live version (production.py) and the latest ingested data, and
says so (a stamp: version, model sha256, data fingerprint). fullprocess.py runs it whenever the
live version or the ingested data changes, deployment.py --rollback after a rollback.
Reads
    the live version (its numbers, served as the API serves them: diagnostics.py's course
    functions), testdata/testdata.csv, output_folder_path/finaldata.csv and
    finaldataextracts.csv, the live and earlier versions' training data, the score and
    deployment histories.
Writes (output_model_path, each file atomically)
    riskranking.csv, lostclients.csv, riskranking.json   the call list (calllist.py), the
                         clients lost since the last list, and what they were computed for
    riskdata.sqlite      the two lists and finaldata.csv's rows as the dashboard and the API
                         query them (riskdb.py), swapped in whole before riskranking.json
                         says the lists are complete
    drift.json           drift.py's two comparisons, stamped: what the report and the
                         dashboard show (drift since training is diagnostics.json's when that
                         describes the same version and data: fullprocess.py runs it first)
    confusionmatrix.png  the live version on testdata (--output picks another name,
                         e.g. confusionmatrix2.png as the course asks after a redeploy)
    report.pdf           page 1 for a client manager (why this version is live, F1, the first
                         10 clients of the call list), then metrics, ROC, F1 history, summary
                         statistics, missing data, both drift comparisons, the first 20 clients
Keeps (prod_deployment_path/archive/vNNNN/reports/, the live version's)
    the first report of a version (at its deployment) with the files above: never
    overwritten; every later report (new data, a rollback) as report-<UTC time>.pdf beside it.
Run
    python reporting.py
    python reporting.py --output confusionmatrix2.png
Exit status
    0 written; 65 testdata is missing or unusable; 69 no usable deployed model, or finaldata.csv
    missing or unusable; 74 disk full; 78 bad config.json; 2 a usage error (--output not a .png name).
"""

from __future__ import annotations

import calendar
import logging
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

import diagnostics
from attrition.api import serving
from attrition.core.config import Config, load_config
from attrition.core.files import atomic_path, atomic_write_bytes, atomic_write_json
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import (
    CONFUSION_MATRIX,
    DEPLOYMENT_HISTORY,
    DRIFT,
    EXTRACTS,
    FEATURES,
    ID_COLUMN,
    INGESTEDFILES,
    LOST_CLIENTS,
    REPORT,
    RISK_RANKING,
    RISK_RANKING_BASIS,
    SCORE_HISTORY,
    TARGET,
)
from attrition.core.records import read_ingested_files, read_jsonl, sha256_file, utc_now
from attrition.data.clientdata import feature_frame, read_labelled_data
from attrition.model import riskmodel
from attrition.monitoring import drift
from attrition.production import versions
from attrition.reports import calllist, riskdb

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "reporting"
TOP_CLIENTS = 20

log = logging.getLogger(NAME)


@dataclass(frozen=True)
class Evaluation:
    """The deployed model on testdata: what the confusion matrix and the report show (the
    predictions are in metrics' confusion counts; the ROC curve needs truth and probability)."""

    version: int | None
    truth: np.ndarray
    probability: np.ndarray
    metrics: dict

    def title(self, data: Path) -> str:
        return (
            f"Deployed model v{self.version}: F1 {self.metrics['f1']:.3f}\n"
            f"on {data.name} ({len(self.truth)} rows)"
        )


def evaluate_on_testdata(config: Config, state: versions.Live, scorer: riskmodel.LinearScorer) -> Evaluation:
    """The version's predictions and metrics on testdata (its numbers, as the API serves them)."""
    test = read_labelled_data(config.testdata_file)
    matrix = feature_frame(test, str(config.testdata_file)).to_numpy()
    probability = scorer.predict_proba(matrix)[:, 1]
    predicted = scorer.predict(matrix).astype(int)
    truth = test[TARGET].astype(int).to_numpy()
    metrics = riskmodel.classification_metrics(truth, predicted, probability)
    return Evaluation(state.version, truth, probability, metrics)


def new_figure(**kwargs) -> Figure:
    """A matplotlib Figure (no pyplot, no GUI backend). matplotlib is imported where a plot is drawn,
    so that --help and a usage error answer at once."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def draw_confusion_matrix(axis, confusion: dict, title: str) -> None:
    """The confusion counts (classification_metrics' "confusion") as seaborn's annotated heat map
    (the design card's package): rows are the actual classes, columns the predicted ones. seaborn
    is imported here, so that only a script that draws pays for it (about 0.3 s)."""
    import seaborn

    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    labels = ["stayed (0)", "exited (1)"]
    seaborn.heatmap(
        matrix,
        annot=True,
        fmt="d",
        cmap="Blues",
        vmin=0,
        vmax=max(int(matrix.max()), 1),
        cbar=False,
        square=True,
        annot_kws={"size": 16},
        xticklabels=labels,
        yticklabels=labels,
        ax=axis,
    )
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title, fontsize=11)


def draw_roc_curve(axis, truth, probability, auc: float, name: str) -> None:
    false_rates, true_rates = riskmodel.roc_points(truth, probability)
    axis.plot(false_rates, true_rates, label=f"{name} (AUC = {auc:.2f})")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.set(xlabel="False Positive Rate", ylabel="True Positive Rate", aspect="equal")
    axis.legend(loc="lower right")


def write_confusion_matrix(config: Config, name: str, results: Evaluation) -> Path:
    figure = new_figure(figsize=(5.5, 5))
    draw_confusion_matrix(
        figure.subplots(), results.metrics["confusion"], results.title(config.testdata_file)
    )
    figure.tight_layout()
    target = config.model_folder / name
    with atomic_path(target) as temp:
        figure.savefig(temp, format="png", dpi=120)
    return target


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


def _text_page(pdf, title: str, lines: list[str]) -> None:
    figure = new_figure(figsize=(8.27, 11.69))
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


def decision_lines(state: versions.Live) -> list[str]:
    """How this version came to be live (a rollback, fullprocess.py's reasons, or by hand), in a
    manager's words, from its manifest and its decision.json (deployed with it)."""
    lines = [state.how()]
    forced = state.manifest.get("forced")
    if forced:
        lines.append(
            f"FORCED: deployed past the promotion gate's refusal (--force): F1 {forced.get('candidate_f1')} "
            f"against {forced.get('deployed_f1')} for the model then live."
        )
    decision = state.decision or {}
    drift_test = decision.get("drift")
    if drift_test:
        lines.append(
            f"Drift test ({drift_test['test_used']}): the model then live scored F1 "
            f"{drift_test['new_score']:.4f} on the new data, threshold {drift_test['threshold']:.4f} "
            f"({drift_test['rule']}): {'drift' if drift_test['drift'] else 'no drift'}."
        )
    gate = decision.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "refused (deployed anyway)"
        lines.append(
            f"Promotion gate: the retrained model scored F1 {gate['candidate_f1']:.4f} on the test data "
            f"against {gate['deployed_f1']:.4f} for the model then live: {verdict}."
        )
    if decision.get("new_files"):
        lines.append("Triggered by the new files: " + ", ".join(decision["new_files"]) + ".")
    if decision.get("rejected_files"):
        lines.append(
            "Rejected input files: " + ", ".join(entry["name"] for entry in decision["rejected_files"]) + "."
        )
    return lines


def previous_version(config: Config, state: versions.Live) -> dict | None:
    """The manifest of the version live before this one (for a rollback: the one rolled back from)."""
    earlier = [state.rolled_back_from] if state.rolled_back_from else state.manifest.get("lineage") or []
    return versions.archived_manifest(config.prod_folder, earlier[-1]) if earlier else None


def wrapped(text: str, width: int = 100) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def page_one_lines(
    config: Config, state: versions.Live, results: Evaluation, lost: pd.DataFrame, calls: pd.DataFrame
) -> list[str]:
    """Page 1's text above the first 10: why this version is live, its F1, the list's size."""
    before = previous_version(config, state)
    lines = [f"Live since {str(state.timestamp)[:19].replace('T', ' ')} UTC.", ""]
    lines += [line for text in decision_lines(state) for line in wrapped(text)]
    f1_before = before.get("f1") if before else None
    lines += [
        "",
        f"Quality on the test data: F1 {results.metrics['f1']:.3f} now"
        + (
            f", {f1_before:.3f} for version {before.get('version')} before it."
            if isinstance(f1_before, float)
            else " (no earlier version)."
        ),
    ]
    lines += [
        "",
        f"{len(calls):,} clients to call, riskiest first (ties: by client ID). {len(lost):,} lost since "
        f"the last list ({calllist.LOST_MEANS}: lostclients.csv).",
    ]
    return lines


def summary_page(
    pdf, config: Config, state: versions.Live, results: Evaluation, calls: pd.DataFrame, lost: pd.DataFrame
) -> None:
    """Page 1: what a client manager needs, in words, with no server paths."""
    figure = new_figure(figsize=(8.27, 11.69))
    figure.text(
        0.07, 0.955, f"Attrition risk: model version {state.version}", fontsize=18, weight="bold", va="top"
    )
    figure.text(
        0.07,
        0.915,
        "\n".join(page_one_lines(config, state, results, lost, calls)),
        fontsize=10,
        va="top",
        wrap=True,
    )
    top = calls.head(10)
    axis = figure.add_axes((0.07, 0.08, 0.86, 0.5))
    axis.axis("off")
    axis.set_title("The first 10 clients to call", loc="left", fontsize=12, weight="bold")
    if len(top):
        table = axis.table(
            cellText=[
                [row["rank"], row[ID_COLUMN], f"{row['exit_probability']:.3f}", row["reason"], row["change"]]
                for _, row in top.iterrows()
            ],
            colLabels=["#", "client", "risk", "top reason", "since last list"],
            colWidths=[0.04, 0.1, 0.07, 0.6, 0.19],
            loc="upper left",
            cellLoc="left",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        table.scale(1, 1.6)
    else:
        axis.text(0, 0.9, "No client to call: every client in the data has left.", fontsize=10)
    pdf.savefig(figure)


def drift_lines(result: dict) -> list[str]:
    """One comparison of drift.py, labelled, as the report's table."""
    lines = [
        f"{result['label'].capitalize()}"
        + (f" ({result['reference']} -> {result['current']}):" if "reference" in result else ":")
    ]
    if "features" in result:
        lines += _table(
            [
                [
                    row["feature"],
                    _fmt(row["ks_statistic"]),
                    _fmt(row["ks_p_value"]),
                    _fmt(row["psi"]),
                    row["psi_band"],
                    "DRIFT" if row["drift"] else "ok",
                ]
                for row in result["features"]
            ],
            ["feature", "KS stat", "KS p", "PSI", "PSI band", "verdict"],
        )
    lines.append(f"  {drift.verdict(result)}")
    return lines


def f1_history_figure(config: Config) -> Figure:
    """F1 over time: every trained model on the test data, and each deployed version. Readable with
    one point (its value written beside it) and with hundreds (dates on the axis, no markers)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    history = read_jsonl(config.model_folder / SCORE_HISTORY)
    deployments = read_jsonl(config.prod_folder / DEPLOYMENT_HISTORY)
    figure = new_figure(figsize=(11.69, 5.5))
    axis = figure.subplots()
    many = len(history) + len(deployments) > 40
    if history:
        times = pd.to_datetime([entry["timestamp"] for entry in history])
        axis.plot(
            times,
            [entry["f1"] for entry in history],
            marker=None if many else "o",
            linewidth=1,
            label="each trained model on the test data",
        )
    if deployments:
        times = pd.to_datetime([entry["timestamp"] for entry in deployments])
        scores = [entry["f1"] for entry in deployments]
        axis.step(
            times,
            scores,
            where="post",
            marker=None if many else "s",
            linewidth=2,
            label="the live version's F1",
        )
        if len(deployments) <= 12:
            for time, score, entry in zip(times, scores, deployments, strict=True):
                axis.annotate(
                    f"v{entry.get('version')} {score:.3f}",
                    (time, score),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                )
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


def write_report(
    config: Config,
    state: versions.Live,
    results: Evaluation,
    figures: dict,
    calls: pd.DataFrame,
    lost: pd.DataFrame,
) -> Path:
    """One PDF a person reads instead of the raw files: page 1 for a client manager, then the details."""
    truth, probability = results.truth, results.probability
    metrics = {
        "F1": results.metrics["f1"],
        "precision": results.metrics["precision"],
        "recall": results.metrics["recall"],
        "accuracy": results.metrics["accuracy"],
        "ROC AUC": results.metrics["roc_auc"],
    }
    summary, missing = diagnostics.dataframe_summary(config), diagnostics.missing_data(config)
    ingested_path = config.output_folder / INGESTEDFILES
    ingested = read_ingested_files(ingested_path) if ingested_path.is_file() else []

    from matplotlib.backends.backend_pdf import PdfPages

    target = config.model_folder / REPORT
    with atomic_path(target) as temp, PdfPages(temp) as pdf:
        summary_page(pdf, config, state, results, calls, lost)
        lines = [
            f"Model version {state.version}, {state.manifest.get('action')} at {state.timestamp}",
            f"Test data: {config.relative(config.testdata_file)} ({len(truth)} rows)",
            "",
            *_table([[name, _fmt(value)] for name, value in metrics.items()], ["metric", "value"]),
            "",
            f"Ingested files ({len(ingested)}), from {config.relative(config.input_folder)}:",
            *textwrap.wrap(", ".join(ingested) or "none", 95),
            "",
            "The decision that made this version live:",
            *[line for text in decision_lines(state) for line in textwrap.wrap(text, 95)],
        ]
        _text_page(pdf, "Model and data", lines)

        figure = new_figure(figsize=(11.69, 5.5))
        axes = figure.subplots(1, 2)
        draw_confusion_matrix(axes[0], results.metrics["confusion"], results.title(config.testdata_file))
        if metrics["ROC AUC"] is not None:
            draw_roc_curve(axes[1], truth, probability, metrics["ROC AUC"], f"v{state.version}")
        axes[1].set_title("ROC curve on testdata")
        figure.tight_layout()
        pdf.savefig(figure)
        pdf.savefig(f1_history_figure(config))

        lines = _table(
            [
                [column, *(_fmt(stats[key], 2) for key in ("mean", "median", "mode", "std"))]
                for column, stats in summary.items()
            ],
            ["column", "mean", "median", "mode", "std"],
        ) + [
            "",
            *_table([[column, f"{value:.3f}%"] for column, value in missing.items()], ["column", "missing"]),
        ]
        lines += ["", *drift_lines(figures["triggered"]), "", *drift_lines(figures["since_training"])]
        _text_page(pdf, "Data: summary, missing values, drift", lines)

        top = calls.head(TOP_CLIENTS)
        lines = [
            f"{len(calls)} clients still with us, riskiest first (ties broken by client ID); "
            f"the full list is {RISK_RANKING}.",
            "Reasons: the feature adding most to the log-odds against the training data's median client.",
            "",
        ]
        lines += _table(
            [
                [
                    row["rank"],
                    row[ID_COLUMN],
                    f"{row['exit_probability']:.4f}",
                    row["reason"][:60],
                    row["change"],
                ]
                for _, row in top.iterrows()
            ],
            ["rank", ID_COLUMN, "risk", "top reason", "since last list"],
        )
        if len(lost):
            lines += [
                "",
                f"Lost since the last list ({len(lost)}; {calllist.LOST_MEANS}): "
                + ", ".join(lost[ID_COLUMN].head(40)),
            ]
        _text_page(pdf, f"The {TOP_CLIENTS} clients at highest risk", lines)
        info = pdf.infodict()
        info["Title"] = "Attrition risk model report"
        # the stamp, and the first 10 of the call list page 1 shows: what the report describes
        info["Subject"] = (
            f"model version {state.version}, sha256 {state.model_sha256[:12]}; data sha256 "
            f"{str(figures['stamp'].get('data_sha256'))[:12]}; first 10 to call: "
            + " ".join(calls[ID_COLUMN].head(10))
        )
    return target


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


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument(
        "--output", default=CONFUSION_MATRIX, help="confusion matrix file name (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if Path(args.output).name != args.output or not args.output.lower().endswith(".png"):
        parser.error(
            f"--output {args.output!r}: give a file name ending in .png (it goes to the model folder)"
        )
    setup_logging(NAME)
    config = load_config()
    config.model_folder.mkdir(parents=True, exist_ok=True)
    state = versions.live(config)
    if state is None:
        versions.read_manifest(config.prod_folder)  # says "no deployment yet" and what to run
    # one snapshot of production, read once: everything below is this version's, even if a
    # person rolls back meanwhile (the next run then sees a stale stamp and reports again)
    scorer, _ = riskmodel.load_linear(config.prod_folder, state.manifest)
    final = serving.server_data(config.finaldata_file)
    stamp = versions.stamp(config, state, sha256_file(config.finaldata_file))
    results = evaluate_on_testdata(config, state, scorer)
    since = diagnostics.recorded_drift(config, state, stamp["data_sha256"])
    figures = drift.comparisons(config, state, final, stamp["data_sha256"], since)
    atomic_write_json(config.model_folder / DRIFT, figures)
    calls, lost = write_call_list(config, stamp, final, scorer)
    written = [config.model_folder / name for name in (RISK_RANKING, LOST_CLIENTS, RISK_RANKING_BASIS, DRIFT)]
    written.append(write_confusion_matrix(config, args.output, results))
    report = write_report(config, state, results, figures, calls, lost)
    kept = keep_with_version(state, written, report)
    log.info(
        "version %d: wrote %s and %s (%d clients to call, %d lost since the last list; %s: %s); kept in %s",
        state.version,
        ", ".join(config.relative(path) for path in written),
        config.relative(report),
        len(calls),
        len(lost),
        drift.SINCE,
        drift.verdict(figures["since_training"]),
        config.relative(kept),
    )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
