"""training.py and scoring.py as subprocesses, checked against scikit-learn oracles."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, client_frame, run_ok
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from attrition.core.names import FEATURES
from attrition.model.riskmodel import classification_metrics, roc_points

BARE = dict(C=1.0, solver="liblinear", random_state=0, max_iter=100, tol=1e-4)


def load_pickle(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


@pytest.mark.slow
def test_trained_model_equals_the_course_logistic_regression(deployed_workspace):
    """The template's own ingestion.py and training.py run (tests/conftest.py: deployed_template)."""
    models = deployed_workspace.path("output_model_path")
    model = load_pickle(models / "trainedmodel.pkl")
    final = pd.read_csv(deployed_workspace.path("output_folder_path") / "finaldata.csv")
    assert [name for name, _ in model.steps] == ["impute", "model"]
    meta = json.loads((models / "trainedmodel.json").read_text())
    assert meta["features"] == list(FEATURES) and meta["training_rows"] == len(final)
    assert meta["parameters"]["solver"] == "liblinear" and meta["parameters"]["C"] == 1.0
    assert {"scikit-learn", "pandas", "python"} <= set(meta["versions"])
    assert len(meta["model_sha256"]) == 64 and len(meta["training_data_sha256"]) == 64
    assert len(pd.read_csv(models / "referencedata.csv")) == len(final)


@pytest.mark.slow
def test_missing_values_are_filled_with_the_training_medians(data_workspace):
    path = data_workspace.path("input_folder_path") / "dataset1.csv"
    frame = pd.read_csv(path)
    frame.loc[[0, 5], "lastyear_activity"] = np.nan
    frame.to_csv(path, index=False)
    run_ok(data_workspace, "ingestion.py", "training.py")
    model = load_pickle(data_workspace.path("output_model_path") / "trainedmodel.pkl")
    final = pd.read_csv(data_workspace.path("output_folder_path") / "finaldata.csv")
    medians = final[list(FEATURES)].median()  # pandas skips NaN: the oracle for the imputer
    np.testing.assert_allclose(model.named_steps["impute"].statistics_, medians.to_numpy())
    rows = pd.DataFrame(
        {
            "lastmonth_activity": [np.nan, 5.0, 700.0],
            "lastyear_activity": [100.0, np.nan, np.nan],
            "number_of_employees": [3.0, np.nan, 1.0],
        }
    )
    bare = LogisticRegression(**BARE).fit(final[list(FEATURES)].fillna(medians), final["exited"])
    filled = rows.fillna(medians)
    np.testing.assert_array_equal(model.predict(rows), bare.predict(filled))
    np.testing.assert_allclose(model.predict_proba(rows), bare.predict_proba(filled))


@pytest.mark.slow
def test_complete_data_gives_the_bare_models_predictions(deployed_workspace):
    """The template's own ingestion.py and training.py run (tests/conftest.py: deployed_template)."""
    final = pd.read_csv(deployed_workspace.path("output_folder_path") / "finaldata.csv")
    assert not final.isna().any().any()
    model = load_pickle(deployed_workspace.path("output_model_path") / "trainedmodel.pkl")
    bare = LogisticRegression(**BARE).fit(final[list(FEATURES)], final["exited"])
    np.testing.assert_allclose(model.named_steps["model"].coef_, bare.coef_)
    np.testing.assert_array_equal(model.predict(final[list(FEATURES)]), bare.predict(final[list(FEATURES)]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found; run ingestion.py first"),
        ("", "empty file"),
        (
            "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
            "ab,1,2,3,1\ncd,4,5,6,1\n",
            "single class",
        ),
    ],
)
def test_training_refuses_unusable_data(workspace, content, message):
    if content is not None:
        (workspace.path("output_folder_path") / "finaldata.csv").write_text(content)
    result = workspace.run("training.py")
    assert_one_line_error(result, message)
    assert not (workspace.path("output_model_path") / "trainedmodel.pkl").exists()


@pytest.mark.slow
def test_score_is_sklearns_f1_and_is_recorded(deployed_workspace):
    result = deployed_workspace.run("scoring.py")  # the template's model scored once more
    assert result.returncode == 0, result.stderr
    models = deployed_workspace.path("output_model_path")
    model = load_pickle(models / "trainedmodel.pkl")
    test = pd.read_csv(deployed_workspace.path("test_data_path") / "testdata.csv")
    oracle = f1_score(test["exited"], model.predict(test[list(FEATURES)]))
    assert float((models / "latestscore.txt").read_text()) == pytest.approx(oracle, abs=1e-12)
    assert float(result.stdout) == pytest.approx(oracle, abs=1e-12)
    metrics = json.loads((models / "latestscore.json").read_text())
    confusion = metrics["confusion"]
    assert sum(confusion.values()) == metrics["rows"] == len(test)
    assert 0.5 < metrics["roc_auc"] <= 1
    history = [json.loads(line) for line in (models / "scorehistory.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[0]["model_sha256"] == history[1]["model_sha256"]
    assert history[0]["data"].endswith("testdata.csv")


@pytest.mark.slow
def test_scoring_any_csv_prints_and_writes_nothing(deployed_workspace):
    models = deployed_workspace.path("output_model_path")
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    finaldata = deployed_workspace.path("output_folder_path") / "finaldata.csv"
    result = deployed_workspace.run("scoring.py", "--deployed", "--data", str(finaldata))
    assert result.returncode == 0, result.stderr
    model = load_pickle(deployed_workspace.path("prod_deployment_path") / "trainedmodel.pkl")
    final = pd.read_csv(finaldata)
    assert float(result.stdout) == pytest.approx(
        f1_score(final["exited"], model.predict(final[list(FEATURES)]))
    )
    result = deployed_workspace.run("scoring.py", "--data", str(finaldata), "--json")
    assert json.loads(result.stdout)["rows"] == len(final)
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before


@pytest.mark.slow
def test_scoring_errors_are_one_line(deployed_workspace, tmp_path):
    assert_one_line_error(
        deployed_workspace.run("scoring.py", "--data", str(tmp_path / "nope.csv")), "not found"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("corporation,lastmonth_activity,exited\nab,1,0\n")
    assert_one_line_error(deployed_workspace.run("scoring.py", "--data", str(bad)), "missing feature column")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    result = deployed_workspace.run("scoring.py", "--model", str(junk))
    assert_one_line_error(result, "not a valid model pickle")
    assert result.returncode == 65  # InputError
    two_features = tmp_path / "two.pkl"
    final = pd.read_csv(deployed_workspace.path("output_folder_path") / "finaldata.csv")
    model = LogisticRegression().fit(final[list(FEATURES[:2])], final["exited"])
    two_features.write_bytes(pickle.dumps(model))
    assert_one_line_error(
        deployed_workspace.run("scoring.py", "--model", str(two_features)), "cannot score the features"
    )


@pytest.mark.slow
def test_scoring_ranks_an_unlabelled_client_file_with_the_deployed_model(deployed_workspace, tmp_path):
    import pickle

    clients = client_frame(50, seed=21).drop(columns="exited")
    path = tmp_path / "newclients.csv"
    clients.to_csv(path, index=False)
    result = deployed_workspace.run("scoring.py", "--rank", str(path))
    assert result.returncode == 0, result.stderr
    calls = pd.read_csv(
        deployed_workspace.path("output_model_path") / "newclients-calllist.csv", dtype={"corporation": str}
    )
    with open(deployed_workspace.path("prod_deployment_path") / "trainedmodel.pkl", "rb") as handle:
        model = pickle.load(handle)
    expected = clients.assign(
        p=model.predict_proba(clients[list(FEATURES)])[:, 1], corporation=clients["corporation"].astype(str)
    )
    expected = expected.sort_values(["p", "corporation"], ascending=[False, True])
    assert calls["corporation"].tolist() == expected["corporation"].tolist()
    assert (
        set(calls.columns) >= {"rank", "exit_probability", "reason", "change"}
        and calls["reason"].notna().all()
    )
    result = deployed_workspace.run("scoring.py", "--rank", str(tmp_path / "missing.csv"))
    assert result.returncode == 65 and "missing.csv: data file not found" in result.stderr


# Rows of (truth, predicted, probability); probabilities from a few values, so that ties are common.
ROWS = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5001, 0.9, 1.0])),
    min_size=1,
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(ROWS)
def test_the_metrics_are_scikit_learns(rows):
    """classification_metrics and roc_points compute with NumPy what scikit-learn does (the oracle),
    on any rows: one class only, no predicted positives, every prediction right or wrong, ties."""
    truth, predicted, probability = (np.array(column) for column in zip(*rows, strict=False))
    metrics = classification_metrics(truth, predicted, probability)
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, predicted, average="binary", zero_division=0
    )
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted, zero_division=0), abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1, abs=1e-12)
    assert (metrics["precision"], metrics["recall"]) == pytest.approx((precision, recall), abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(np.mean(truth == predicted), abs=1e-12)
    counts = confusion_matrix(truth, predicted, labels=[0, 1]).ravel().tolist()
    assert [metrics["confusion"][key] for key in ("tn", "fp", "fn", "tp")] == counts
    assert metrics["rows"] == len(rows) and metrics["positive_rate"] == pytest.approx(truth.mean())
    if len(set(truth)) < 2:
        assert metrics["roc_auc"] is None
        return
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, probability), abs=1e-12)
    false_rates, true_rates, _ = roc_curve(truth, probability, drop_intermediate=False)
    ours = roc_points(truth, probability)
    # scikit-learn's first point is (0, 0) at an infinite threshold; then one per distinct probability
    np.testing.assert_allclose(ours[0], false_rates, atol=1e-12)
    np.testing.assert_allclose(ours[1], true_rates, atol=1e-12)
