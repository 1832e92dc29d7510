"""The report's figures (matplotlib, and seaborn's heatmap for the confusion matrix, imported only
where it is drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from attrition.core.config import Config
from attrition.core.files import atomic_path
from attrition.core.names import (
    DEPLOYMENT_HISTORY,
    SCORE_HISTORY,
)
from attrition.core.records import read_jsonl
from attrition.model import riskmodel
from attrition.model.scoring import Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
