"""report.pdf: page 1 for a client manager (why this version is live, F1, the first clients to call),
then the details a data scientist checks."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from attrition.core.config import Config
from attrition.core.files import atomic_path
from attrition.core.names import (
    ID_COLUMN,
    INGESTEDFILES,
    REPORT,
    RISK_RANKING,
)
from attrition.core.records import read_ingested_files
from attrition.model.scoring import Evaluation
from attrition.monitoring import drift
from attrition.monitoring.diagnostics import missing_percent, summary_statistics
from attrition.production import versions
from attrition.reports import calllist
from attrition.reports.plots import draw_confusion_matrix, draw_roc_curve, f1_history_figure, new_figure

TOP_CLIENTS = 20

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def write_report(
    config: Config,
    state: versions.Live,
    results: Evaluation,
    figures: dict,
    calls: pd.DataFrame,
    lost: pd.DataFrame,
    final: pd.DataFrame,
) -> Path:
    """One PDF a person reads instead of the raw files: page 1 for a client manager, then the details."""
    from matplotlib.backends.backend_pdf import PdfPages

    target = config.model_folder / REPORT
    with atomic_path(target) as temp, PdfPages(temp) as pdf:
        summary_page(pdf, config, state, results, calls, lost)
        _text_page(pdf, "Model and data", model_lines(config, state, results))
        pdf.savefig(evaluation_figure(config, state, results))
        pdf.savefig(f1_history_figure(config))
        _text_page(pdf, "Data: summary, missing values, drift", data_lines(final, figures))
        _text_page(pdf, f"The {TOP_CLIENTS} clients at highest risk", top_clients_lines(calls, lost))
        info = pdf.infodict()
        info["Title"] = "Attrition risk model report"
        # the stamp, and the first 10 of the call list page 1 shows: what the report describes
        info["Subject"] = (
            f"model version {state.version}, sha256 {state.model_sha256[:12]}; data sha256 "
            f"{str(figures['stamp'].get('data_sha256'))[:12]}; first 10 to call: "
            + " ".join(calls[ID_COLUMN].head(10))
        )
    return target


def headline_metrics(results: Evaluation) -> dict:
    names = {
        "F1": "f1",
        "precision": "precision",
        "recall": "recall",
        "accuracy": "accuracy",
        "ROC AUC": "roc_auc",
    }
    return {name: results.metrics[key] for name, key in names.items()}


def model_lines(config: Config, state: versions.Live, results: Evaluation) -> list[str]:
    """The version, its metrics on testdata, the files it was trained on, and why it is live."""
    ingested_path = config.output_folder / INGESTEDFILES
    ingested = read_ingested_files(ingested_path) if ingested_path.is_file() else []
    metrics = headline_metrics(results)
    return [
        f"Model version {state.version}, {state.manifest.get('action')} at {state.timestamp}",
        f"Test data: {config.relative(config.testdata_file)} ({len(results.truth)} rows)",
        "",
        *_table([[name, _fmt(value)] for name, value in metrics.items()], ["metric", "value"]),
        "",
        f"Ingested files ({len(ingested)}), from {config.relative(config.input_folder)}:",
        *textwrap.wrap(", ".join(ingested) or "none", 95),
        "",
        "The decision that made this version live:",
        *[line for text in decision_lines(state) for line in textwrap.wrap(text, 95)],
    ]


def evaluation_figure(config: Config, state: versions.Live, results: Evaluation) -> Figure:
    """The confusion matrix and the ROC curve on testdata, side by side."""
    figure = new_figure(figsize=(11.69, 5.5))
    axes = figure.subplots(1, 2)
    draw_confusion_matrix(axes[0], results.metrics["confusion"], results.title(config.testdata_file))
    auc = results.metrics["roc_auc"]
    if auc is not None:
        draw_roc_curve(axes[1], results.truth, results.probability, auc, f"v{state.version}")
    axes[1].set_title("ROC curve on testdata")
    figure.tight_layout()
    return figure


def data_lines(final: pd.DataFrame, figures: dict) -> list[str]:
    """Summary statistics and missing values of finaldata.csv, then both drift comparisons."""
    summary, missing = summary_statistics(final), missing_percent(final)
    lines = _table(
        [
            [column, *(_fmt(stats[key], 2) for key in ("mean", "median", "mode", "std"))]
            for column, stats in summary.items()
        ],
        ["column", "mean", "median", "mode", "std"],
    )
    lines += [
        "",
        *_table([[column, f"{value:.3f}%"] for column, value in missing.items()], ["column", "missing"]),
    ]
    return lines + ["", *drift_lines(figures["triggered"]), "", *drift_lines(figures["since_training"])]


def top_clients_lines(calls: pd.DataFrame, lost: pd.DataFrame) -> list[str]:
    """The first TOP_CLIENTS of the call list, with their reasons, and who was lost."""
    lines = [
        f"{len(calls)} clients still with us, riskiest first (ties broken by client ID); "
        f"the full list is {RISK_RANKING}.",
        "Reasons: the feature adding most to the log-odds against the training data's median client.",
        "",
    ]
    rows = [
        [row["rank"], row[ID_COLUMN], f"{row['exit_probability']:.4f}", row["reason"][:60], row["change"]]
        for _, row in calls.head(TOP_CLIENTS).iterrows()
    ]
    lines += _table(rows, ["rank", ID_COLUMN, "risk", "top reason", "since last list"])
    if len(lost):
        lines += [
            "",
            f"Lost since the last list ({len(lost)}; {calllist.LOST_MEANS}): "
            + ", ".join(lost[ID_COLUMN].head(40)),
        ]
    return lines
