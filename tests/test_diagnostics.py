"""diagnostics.py against oracles: pandas, scipy, a hand-computed PSI, the real scripts."""

import hashlib
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, client_frame, deployed_pickle, live_model_path, run_ok
from scipy.stats import ks_2samp

import diagnostics
from attrition.api import serving
from attrition.core.config import load_config
from attrition.core.errors import InputError, ModelIntegrityError, PipelineError
from attrition.core.names import FEATURES
from attrition.model import riskmodel
from attrition.monitoring import dependencies, drift
from attrition.monitoring import diagnostics as monitoring_diagnostics


@pytest.fixture
def config(deployed_workspace):
    return load_config(deployed_workspace.config_path)


def tree_hashes(root):
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".cache" not in path.parts
    }


def test_predictions_match_the_deployed_model_in_any_column_order(config, deployed_workspace):
    test = pd.read_csv(config.testdata_file)
    model = deployed_pickle(config.prod_folder)
    expected = model.predict(test[list(FEATURES)]).tolist()
    assert diagnostics.model_predictions(test, config) == expected
    reordered = test[["number_of_employees", "lastmonth_activity", "lastyear_activity"]]
    predictions = diagnostics.model_predictions(reordered, config)
    assert predictions == expected and all(type(value) is int for value in predictions)
    risks = monitoring_diagnostics.predict(test, riskmodel.load_live(config.prod_folder)).probabilities
    np.testing.assert_allclose(risks, model.predict_proba(test[list(FEATURES)])[:, 1], rtol=0, atol=1e-12)
    with pytest.raises(InputError, match="missing feature column lastyear_activity"):
        diagnostics.model_predictions(test.drop(columns="lastyear_activity"), config)


@pytest.mark.slow
def test_the_served_model_is_cached_and_reloaded_only_when_the_deployment_changes(config, deployed_workspace):
    serving.clear()
    first = serving.served_model(config.prod_folder)
    assert serving.served_model(config.prod_folder) is first
    run_ok(deployed_workspace, "deployment.py")
    second = serving.served_model(config.prod_folder)
    assert second is not first and second.version == first.version + 1


@pytest.mark.slow
def test_a_tampered_model_is_refused(config, deployed_workspace):
    model_path = live_model_path(deployed_workspace)
    model_path.chmod(0o644)
    model_path.write_bytes(model_path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelIntegrityError, match="sha256 does not match manifest.json"):
        riskmodel.load_deployed(config.prod_folder)  # what scoring.py --deployed unpickles
    meta_path = model_path.with_name("trainedmodel.json")  # what diagnostics.py and the API read
    meta_path.chmod(0o644)
    meta_path.write_bytes(meta_path.read_bytes().replace(b'"intercept": ', b'"intercept": 1'))
    result = deployed_workspace.run("diagnostics.py")
    assert_one_line_error(result, "refusing a tampered")
    assert result.returncode == 69  # DeploymentUnavailable


def test_a_loaded_model_keeps_serving_while_its_files_are_damaged_in_place(config, deployed_workspace):
    serving.clear()
    loaded = serving.served_model(config.prod_folder)
    meta_path = live_model_path(deployed_workspace).with_name("trainedmodel.json")
    meta_path.chmod(0o644)
    meta_path.write_bytes(meta_path.read_bytes() + b" ")  # damaged in place: not what a deploy does
    assert serving.served_model(config.prod_folder) is loaded  # read again only when the manifest changes
    serving.clear()
    with pytest.raises(ModelIntegrityError, match="sha256 does not match manifest.json"):
        serving.served_model(config.prod_folder)  # nothing loaded to fall back on


def test_summary_statistics_match_pandas(config):
    frame = pd.read_csv(config.finaldata_file)
    summary = diagnostics.dataframe_summary(config)
    assert list(summary) == ["lastmonth_activity", "lastyear_activity", "number_of_employees", "exited"]
    for column, stats in summary.items():
        assert list(stats) == ["mean", "median", "mode", "std"]
        assert stats["mean"] == pytest.approx(frame[column].mean())
        assert stats["median"] == pytest.approx(frame[column].median())
        assert stats["mode"] == pytest.approx(frame[column].mode().min())
        assert stats["std"] == pytest.approx(frame[column].std())


def test_missing_data_percent_per_column(deployed_workspace):
    final = deployed_workspace.path("output_folder_path") / "finaldata.csv"
    frame = pd.read_csv(final)
    frame.loc[:9, "lastyear_activity"] = np.nan
    frame.loc[:2, "number_of_employees"] = np.nan
    frame.to_csv(final, index=False)
    config = load_config(deployed_workspace.config_path)
    expected = dict(zip(frame.columns, [0.0, 0.0, 1000 / len(frame), 300 / len(frame), 0.0], strict=True))
    assert diagnostics.missing_data(config) == pytest.approx(expected)
    assert list(diagnostics.missing_data(config)) == list(frame.columns)


@pytest.mark.slow
def test_execution_time_runs_the_real_scripts_and_changes_nothing(config, deployed_workspace):
    before = tree_hashes(deployed_workspace.root)
    seconds = diagnostics.execution_time(config)
    assert len(seconds) == 2 and all(value > 0 for value in seconds)
    assert tree_hashes(deployed_workspace.root) == before


@pytest.mark.slow
def test_concurrent_timing_requests_share_one_run(config):
    import threading

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(diagnostics.execution_time(config))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] == results[1]  # the second caller waited and took the first run's figures


def test_dependency_check_without_network_is_bounded_and_unknown(config, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # the discard port: refused
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    table = diagnostics.outdated_packages_list(
        config, refresh=True
    )  # its bound: benchmarks, not a timed test
    pins = dependencies.requirement_pins()
    assert [row["module"] for row in table] == list(pins)
    assert {row["latest"] for row in table} == {"unknown"}
    assert all(row["installed"] == pins[row["module"]] for row in table)
    assert diagnostics.outdated_packages_list(config) == table  # cached


def test_dependency_check_reads_the_latest_versions_pip_finds(config, monkeypatch, tmp_path):
    """A local package index (wheel names only): requests has a newer release, flask does not."""
    links = tmp_path / "links"
    links.mkdir()
    (links / "requests-99.0.0-py3-none-any.whl").write_bytes(b"")
    (links / "flask-3.1.3-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    table = {row["module"]: row for row in diagnostics.outdated_packages_list(config, refresh=True)}
    assert table["requests"]["latest"] == "99.0.0" and table["requests"]["outdated"]
    assert table["flask"]["latest"] == "3.1.3" and not table["flask"]["outdated"]
    assert table["pandas"]["latest"] == "unknown"


def test_psi_against_a_hand_computed_case():
    reference = np.arange(100)  # deciles: ten bins of 10% each
    current = np.concatenate([np.zeros(50), np.arange(50, 100)])  # half in the first bin
    # bins 0..4 get 0.5, 0, 0, 0, 0 (clipped to 1e-4); bins 5..9 get 0.1 each as expected
    expected = (0.5 - 0.1) * math.log(0.5 / 0.1) + 4 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert drift.psi(reference, current) == pytest.approx(expected)
    assert drift.psi(reference, reference) == pytest.approx(0.0)
    assert [drift.psi_band(v) for v in (0.05, 0.1, 0.3)] == ["none", "moderate", "significant"]


def test_feature_drift_uses_scipys_ks_and_flags_the_data_set():
    reference = client_frame(500, seed=10, regime="last_year")
    same = client_frame(500, seed=11, regime="last_year")
    shifted = same.assign(
        number_of_employees=same["number_of_employees"] * 3,
        lastmonth_activity=same["lastmonth_activity"] + 200,
    )
    result = drift.compare_features(reference, shifted)
    for row in result["features"]:
        oracle = ks_2samp(reference[row["feature"]], shifted[row["feature"]])
        assert row["ks_statistic"] == pytest.approx(oracle.statistic)
        assert row["ks_p_value"] == pytest.approx(oracle.pvalue)
        assert row["drift"] == (oracle.pvalue <= 0.05)
    assert [row["drift"] for row in result["features"]] == [True, False, True]
    assert result["dataset_drift"] is True
    assert drift.compare_features(reference, same)["dataset_drift"] is False


@pytest.mark.slow
def test_main_writes_diagnostics_and_keeps_history(deployed_workspace, config):
    models = deployed_workspace.path("output_model_path")
    result = deployed_workspace.run("diagnostics.py")  # times ingestion.py and training.py itself
    assert result.returncode == 0, result.stderr
    timed = json.loads((models / "diagnostics.json").read_text())["execution_time_seconds"]
    assert set(timed) == {"ingestion", "training"} and all(value > 0 for value in timed.values())
    # --measured (what fullprocess.py passes after its own ingestion and training steps): those
    # seconds are reported, not timed again, and kept as the timing of these inputs for the API
    result = deployed_workspace.run("diagnostics.py", "--measured", "0.25", "1.5")
    assert result.returncode == 0, result.stderr
    report = json.loads((models / "diagnostics.json").read_text())
    assert report["execution_time_seconds"] == {"ingestion": 0.25, "training": 1.5}
    assert diagnostics.execution_time(config, max_age=600) == [0.25, 1.5]
    assert report["deployed_version"] == 1
    assert len(report["predictions"]["values"]) == 200
    assert report["feature_drift"]["dataset_drift"] is False  # same data as training
    assert report["feature_drift"]["label"] == "drift since this version was trained"
    assert report["stamp"]["model_version"] == 1 and len(report["stamp"]["data_sha256"]) == 64
    assert len(list((models / "diagnostics_history").iterdir())) == 2
    caches = list(deployed_workspace.root.rglob("dependencies.json"))
    assert caches == [deployed_workspace.root / ".cache" / "dependencies.json"]  # not in the data folders


def test_the_served_numbers_equal_the_pickle_and_other_models_are_refused(config):
    from sklearn.tree import DecisionTreeClassifier

    model = deployed_pickle(config.prod_folder)
    scorer, manifest = riskmodel.load_linear(config.prod_folder)
    assert manifest["version"] == 1
    test = pd.read_csv(config.testdata_file)
    frame = test[list(FEATURES)].astype(float)
    frame.iloc[::7, 1] = np.nan  # missing values go through the imputer's medians
    assert scorer.predict(frame.to_numpy()).tolist() == model.predict(frame).tolist()
    np.testing.assert_allclose(
        scorer.predict_proba(frame.to_numpy()), model.predict_proba(frame), rtol=0, atol=1e-12
    )
    assert riskmodel.linear_parameters(model) == scorer.parameters()
    tree = DecisionTreeClassifier(random_state=0).fit(frame.fillna(0), test["exited"])
    with pytest.raises(PipelineError, match="the API can serve only that model"):
        riskmodel.linear_parameters(tree)


@pytest.mark.slow
def test_a_recent_timing_of_the_same_inputs_is_reused_only_when_asked(config, deployed_workspace):
    timing_file = deployed_workspace.root / ".cache" / "timing.json"

    def finished():
        return json.loads(timing_file.read_text())["finished"]

    first = diagnostics.execution_time(config)
    measured = finished()
    assert diagnostics.execution_time(config, max_age=600) == first and finished() == measured  # reused
    diagnostics.execution_time(config)  # max_age 0: measured again
    assert finished() > measured
    measured = finished()
    os.utime(deployed_workspace.path("input_folder_path") / "dataset2.csv", ns=(1, 1))
    diagnostics.execution_time(config, max_age=600)  # other inputs: measured again
    assert finished() > measured
    assert json.loads(timing_file.read_text())["inputs"][1][2] == 1


@pytest.mark.parametrize("values", [["-1", "2"], ["nan", "2"], ["inf", "2"], ["1"], ["a", "b"]])
def test_measured_seconds_must_be_two_finite_numbers(values, capsys):
    with pytest.raises(SystemExit) as stopped:
        diagnostics.main(["--measured", *values])
    assert stopped.value.code == 2
    assert "--measured" in capsys.readouterr().err.splitlines()[-1]
