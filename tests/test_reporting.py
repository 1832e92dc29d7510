"""reporting.py: the confusion matrix, the PDF report and the risk ranking."""

import pickle
import re

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score

import reporting
import riskmodel
from common import FEATURES, load_config


@pytest.fixture
def reported(deployed_workspace):
    result = deployed_workspace.run("reporting.py")
    assert result.returncode == 0, result.stderr
    return deployed_workspace


def test_png_and_pdf_are_valid_and_non_trivial(reported):
    models = reported.path("output_model_path")
    png = (models / "confusionmatrix.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    pdf = (models / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and len(pdf) > 20_000
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
    assert len(pages) == 5  # summary, plots, score history, data, top clients
    assert not [p.name for p in models.iterdir() if p.name.endswith(".tmp")]


def deployed_pickle(config):
    with open(config.prod_folder / "trainedmodel.pkl", "rb") as handle:
        return pickle.load(handle)


def test_the_plotted_counts_are_sklearns_confusion_matrix(deployed_workspace):
    config = load_config(deployed_workspace.config_path)
    results = reporting.evaluate_on_testdata(config, riskmodel.load_deployed(config.prod_folder))
    test = pd.read_csv(config.testdata_file)
    model = deployed_pickle(config)
    predicted = model.predict(test[list(FEATURES)])
    oracle = confusion_matrix(test["exited"], predicted)
    axis = Figure().subplots()
    reporting.draw_confusion_matrix(axis, results.truth, results.predicted, "t")
    assert [int(text.get_text()) for text in axis.texts] == oracle.ravel().tolist()
    assert results.version == 1
    assert results.metrics["f1"] == pytest.approx(f1_score(test["exited"], predicted))


def test_output_name_for_the_second_run(deployed_workspace):
    result = deployed_workspace.run("reporting.py", "--output", "confusionmatrix2.png")
    assert result.returncode == 0, result.stderr
    models = deployed_workspace.path("output_model_path")
    assert (models / "confusionmatrix2.png").is_file() and not (models / "confusionmatrix.png").exists()
    result = deployed_workspace.run("reporting.py", "--output", "../x.png")
    assert result.returncode == 2 and "--output '../x.png': give a file name ending in .png" in result.stderr


def test_risk_ranking_is_sorted_and_covers_every_corporation(reported):
    config = load_config(reported.config_path)
    ranking = pd.read_csv(config.model_folder / "riskranking.csv")
    final = pd.read_csv(config.finaldata_file)
    assert sorted(ranking["corporation"]) == sorted(final["corporation"].unique())
    assert ranking["rank"].tolist() == list(range(1, len(ranking) + 1))
    assert ranking["exit_probability"].is_monotonic_decreasing
    model = deployed_pickle(config)
    latest = final.drop_duplicates("corporation", keep="last").set_index("corporation")
    expected = model.predict_proba(latest.loc[ranking["corporation"], list(FEATURES)])[:, 1]
    np.testing.assert_allclose(ranking["exit_probability"], expected, atol=1e-6)


def test_reporting_without_a_deployment_fails_in_one_line(data_workspace):
    assert_one_line_error(data_workspace.run("reporting.py"), "manifest.json", "no deployment yet")


def test_bad_test_data_is_named(deployed_workspace):
    testdata = deployed_workspace.path("test_data_path") / "testdata.csv"
    testdata.write_text("corporation,exited\nab,1\n")
    assert_one_line_error(deployed_workspace.run("reporting.py"), str(testdata), "missing feature column")
