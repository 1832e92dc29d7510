"""reporting.py: the confusion matrix, the PDF report and the risk ranking."""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import (
    PROJECT_DIR,
    assert_one_line_error,
    client_frame,
    deployed_pickle,
    imported_modules,
    run_ok,
)
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score

import reporting
from attrition.core.config import load_config
from attrition.core.names import FEATURES
from attrition.model import riskmodel
from attrition.model import scoring as model_scoring
from attrition.monitoring import diagnostics as monitoring_diagnostics
from attrition.monitoring import drift
from attrition.production import stamps, versions
from attrition.reports import pdf, plots
from attrition.reports import reporting as reports_reporting

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast


@pytest.fixture
def reported(reported_workspace):
    """The deployed workspace after diagnostics.py and reporting.py (a copy of a session template)."""
    return reported_workspace


def test_png_and_pdf_are_valid_and_non_trivial(reported):
    models = reported.path("output_model_path")
    png = (models / "confusionmatrix.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    pdf = (models / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and len(pdf) > 20_000
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
    assert len(pages) == 6  # summary, model and data, plots, score history, data, clients to call
    assert not [p.name for p in models.iterdir() if p.name.endswith(".tmp")]


def test_the_plotted_counts_are_sklearns_confusion_matrix(deployed_workspace):
    config = load_config(deployed_workspace.config_path)
    state = versions.live(config)
    scorer, _ = riskmodel.load_linear(config.prod_folder, state.manifest)
    results = model_scoring.evaluate_on_testdata(config, state, scorer)
    test = pd.read_csv(config.testdata_file)
    model = deployed_pickle(config.prod_folder)
    predicted = model.predict(test[list(FEATURES)])
    oracle = confusion_matrix(test["exited"], predicted)
    axis = Figure().subplots()
    plots.draw_confusion_matrix(axis, results.metrics["confusion"], "t")
    assert [int(text.get_text()) for text in axis.texts] == oracle.ravel().tolist()
    assert results.version == 1
    assert results.metrics["f1"] == pytest.approx(f1_score(test["exited"], predicted))


def test_the_second_run_names_its_png_and_takes_drift_since_training_from_diagnostics(reported):
    """As fullprocess.py's run after a redeploy: diagnostics.py, then reporting.py --output
    confusionmatrix2.png. The KS tests over finaldata.csv run once: reporting.py takes
    diagnostics.json's drift since training when its stamp describes the same version and data
    (the marker below reaches drift.json: nothing recomputed). The heat map is seaborn's."""
    models = reported.path("output_model_path")
    (models / "confusionmatrix.png").unlink()
    path = models / "diagnostics.json"
    report = json.loads(path.read_text())
    assert report["feature_drift"] == json.loads((models / "drift.json").read_text())["since_training"]
    report["feature_drift"]["marker"] = "diagnostics.json's"
    path.write_text(json.dumps(report))
    script = str(PROJECT_DIR / "reporting.py")
    code, names = imported_modules(script, "--output", "confusionmatrix2.png", env=reported.env)
    assert code == 0 and "attrition.monitoring.drift" in names and "seaborn" in names
    assert (models / "confusionmatrix2.png").is_file() and not (models / "confusionmatrix.png").exists()
    assert json.loads((models / "drift.json").read_text())["since_training"]["marker"] == "diagnostics.json's"


def test_drift_from_diagnostics_is_taken_only_for_the_same_version_and_data(reported):
    config = load_config(reported.config_path)
    state = versions.live(config)
    data = stamps.data_fingerprint(config)
    assert monitoring_diagnostics.recorded_drift(config, state, data)["label"] == drift.SINCE
    assert monitoring_diagnostics.recorded_drift(config, state, "0" * 64) is None  # other data
    other = dataclasses.replace(state, manifest={**state.manifest, "timestamp": "2020-01-01T00:00:00Z"})
    assert (
        monitoring_diagnostics.recorded_drift(config, other, data) is None
    )  # another time this version went live
    (config.model_folder / "diagnostics.json").write_text("{")
    assert monitoring_diagnostics.recorded_drift(config, state, data) is None


@pytest.mark.parametrize("name", ["../x.png", "x.jpg", "sub/x.png"])
def test_an_output_name_that_is_not_a_png_file_name_is_refused(name, capsys):
    with pytest.raises(SystemExit) as stopped:
        reporting.main(["--output", name])
    assert stopped.value.code == 2
    assert f"--output {name!r}: give a file name ending in .png" in capsys.readouterr().err


def call_list_oracle(model, final: pd.DataFrame) -> pd.DataFrame:
    """The call list computed independently: the pickle's probabilities and its own coefficients."""
    latest = final.drop_duplicates("corporation", keep="last")
    staying = latest[latest["exited"] != 1].copy()
    features = staying[list(FEATURES)].astype(float)
    staying["p"] = model.predict_proba(features)[:, 1]
    medians = model.named_steps["impute"].statistics_
    shares = (features.fillna(dict(zip(FEATURES, medians, strict=True))) - medians) * model.named_steps[
        "model"
    ].coef_[0]
    staying["top"] = [
        FEATURES[i] if shares.iloc[row, i] > 0 else None
        for row, i in enumerate(np.argmax(shares.to_numpy(), axis=1))
    ]
    staying["corporation"] = staying["corporation"].astype(str)
    return staying.sort_values(["p", "corporation"], ascending=[False, True])


def test_the_call_list_is_the_clients_still_with_us_riskiest_first_with_reasons(reported):
    config = load_config(reported.config_path)
    calls = pd.read_csv(config.model_folder / "riskranking.csv", dtype={"corporation": str})
    final = pd.read_csv(config.finaldata_file, dtype={"corporation": str})
    oracle = call_list_oracle(deployed_pickle(config.prod_folder), final)
    assert calls["corporation"].tolist() == oracle["corporation"].tolist()  # order: probability, then ID
    np.testing.assert_allclose(calls["exit_probability"], oracle["p"], rtol=0, atol=1e-12)
    assert calls["rank"].tolist() == list(range(1, len(calls) + 1))
    latest = final.drop_duplicates("corporation", keep="last")
    assert not set(calls["corporation"]) & set(latest.loc[latest["exited"] == 1, "corporation"])
    words = {
        "lastmonth_activity": "last month's activity",
        "lastyear_activity": "last year's activity",
        "number_of_employees": "number of employees",
    }
    for reason, top in zip(calls["reason"], oracle["top"], strict=True):
        assert reason.startswith(words[top]) if isinstance(top, str) else reason.startswith("no factor")
    assert (calls["reason_log_odds"] >= 0).all() and calls["reason"].notna().all()
    assert set(calls["change"]) == {"new client"}  # the first list
    lost = pd.read_csv(config.model_folder / "lostclients.csv", dtype={"corporation": str})
    rows = final.groupby("corporation", sort=False)["exited"].apply(list)
    left = [
        client for client, states in rows.items() if len(states) > 1 and states[-1] == 1 and states[-2] != 1
    ]
    assert sorted(lost["corporation"]) == sorted(left)
    kept = reported.path("prod_deployment_path") / "archive" / "v0001" / "reports"
    assert {"report.pdf", "riskranking.csv", "lostclients.csv", "confusionmatrix.png"} <= {
        p.name for p in kept.iterdir()
    }


def test_the_change_is_against_the_previous_list_and_a_rerun_keeps_it(reported):
    config = load_config(reported.config_path)
    first = pd.read_csv(config.model_folder / "riskranking.csv", dtype={"corporation": str})
    final = pd.read_csv(config.finaldata_file, dtype={"corporation": str})
    # a new extract: two clients more active, one gone, one new
    stay, leave = first["corporation"].iloc[0], first["corporation"].iloc[1]
    extra = final[final["corporation"].isin([stay, leave])].drop_duplicates("corporation", keep="last").copy()
    extra.loc[extra["corporation"] == stay, "lastmonth_activity"] += 500
    extra.loc[extra["corporation"] == leave, "exited"] = 1
    newcomer = extra.iloc[[0]].assign(corporation="zzzz", exited=0)
    pd.concat([final, extra, newcomer]).to_csv(config.finaldata_file, index=False)
    for _ in range(2):  # the second run (same model, same data) says the same
        result = reported.run("reporting.py")
        assert result.returncode == 0, result.stderr
        calls = pd.read_csv(config.model_folder / "riskranking.csv", dtype={"corporation": str}).set_index(
            "corporation"
        )
        assert leave not in calls.index and calls.loc["zzzz", "change"] == "new client"
        before = first.set_index("corporation")["exit_probability"]
        delta = calls.loc[stay, "exit_probability"] - before[stay]
        assert calls.loc[stay, "change"] == f"risk {'up' if delta > 0 else 'down'} {abs(delta):.3f}"
        assert calls.loc[stay, "previous_probability"] == pytest.approx(before[stay], abs=1e-12)
        others = calls.index.difference([stay, "zzzz"])
        assert set(calls.loc[others, "change"]) == {"unchanged"}
        lost = pd.read_csv(config.model_folder / "lostclients.csv", dtype={"corporation": str})
        assert lost["corporation"].tolist() == [leave]


def test_reporting_without_a_deployment_fails_in_one_line(data_workspace):
    assert_one_line_error(data_workspace.run("reporting.py"), "manifest.json", "no deployment yet")


def test_bad_test_data_is_named(deployed_workspace):
    testdata = deployed_workspace.path("test_data_path") / "testdata.csv"
    testdata.write_text("corporation,exited\nab,1\n")
    assert_one_line_error(deployed_workspace.run("reporting.py"), str(testdata), "missing feature column")


@pytest.mark.parametrize("points", [1, 300])
def test_the_f1_chart_is_readable_with_one_point_and_with_hundreds(deployed_workspace, points):
    import json as json_module
    from datetime import datetime, timedelta

    config = load_config(deployed_workspace.config_path)
    start = datetime(2026, 1, 1)
    with open(config.model_folder / "scorehistory.jsonl", "w") as history:
        for index in range(points):
            stamp = (start + timedelta(minutes=10 * index)).isoformat() + "Z"
            history.write(json_module.dumps({"timestamp": stamp, "f1": 0.7 + 0.1 * (index % 3) / 3}) + "\n")
    (config.prod_folder / "deployments.jsonl").write_text(
        json_module.dumps({"timestamp": start.isoformat() + "Z", "version": 1, "f1": 0.75}) + "\n"
    )
    figure = plots.f1_history_figure(config)
    figure.canvas.draw()
    axis = figure.axes[0]
    labels = [label.get_text() for label in axis.get_xticklabels() if label.get_text()]
    assert 2 <= len(labels) <= 10, labels
    if points == 1:  # the old chart showed three identical labels around a single point
        assert len(labels) == len(set(labels)), labels
    legend = axis.get_legend().get_window_extent()
    assert legend.x0 >= axis.get_window_extent().x1  # the legend sits beside the plot, not over the line


def test_page_one_states_the_decision_with_both_scores(deployed_workspace):
    import json as json_module

    config = load_config(deployed_workspace.config_path)
    manifest = json_module.loads((config.prod_folder / "manifest.json").read_text())
    assert pdf.decision_lines(versions.live(config))[0].startswith("Deployed by hand with deployment.py")
    decision = {
        "summary": "Retrained because of drift",
        "drift": {
            "test_used": "raw",
            "new_score": 0.6644,
            "threshold": 0.7856,
            "rule": "new F1 < deployed F1",
            "drift": True,
        },
        "gate": {"candidate_f1": 0.8714, "deployed_f1": 0.7856, "passed": True},
        "new_files": ["d3.csv"],
    }
    folder = config.prod_folder / manifest["folder"]
    (folder / "decision.json").write_text(json_module.dumps(decision))
    text = " ".join(pdf.decision_lines(versions.live(config)))
    for fragment in ("0.6644", "0.7856", "0.8714", "drift", "passed", "d3.csv"):
        assert fragment in text


def newest_rows_oracle(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, set[str]]:
    """Independently of ingestion: each client's row in its newest extract, and the clients who were
    still clients at the previous extract (their newest row in the extracts before the latest)."""
    tagged = pd.concat(
        [frame.assign(extract=number) for number, frame in enumerate(frames)], ignore_index=True
    )
    newest = tagged.sort_values("extract", kind="stable").drop_duplicates("corporation", keep="last")
    before = tagged[tagged["extract"] < len(frames) - 1]
    at_previous = before.sort_values("extract", kind="stable").drop_duplicates("corporation", keep="last")
    return newest.set_index("corporation"), set(at_previous.loc[at_previous["exited"] == 0, "corporation"])


def test_a_client_is_judged_by_its_newest_extract_even_when_it_repeats_an_older_row(deployed_workspace):
    """Extracts A, B, A: the newest row is A's again (exact duplicates keep the last copy). The lost
    list holds those gone in the latest extract who were still clients at the previous one: a client
    who left earlier, and whose exit the newest extract repeats, is not lost "since the last list"."""
    inputs = deployed_workspace.path("input_folder_path")
    for path in inputs.iterdir():
        path.unlink()
    base = client_frame(60, seed=70).astype({"exited": int})
    ids = base["corporation"].tolist()
    a = base.copy()
    a.loc[a["corporation"] == ids[0], ["lastmonth_activity", "exited"]] = [114, 0]  # A, B, A: active again
    a.loc[a["corporation"] == ids[1], "exited"] = 1  # A, B, A: left, came back, left with A's very row
    a.loc[a["corporation"] == ids[2], "exited"] = 0  # stays, then leaves in the latest extract
    a.loc[a["corporation"] == ids[3], "exited"] = 0  # leaves in B; C repeats B's row exactly
    b = a.copy()
    b.loc[b["corporation"] == ids[0], "lastmonth_activity"] = 0
    b.loc[b["corporation"] == ids[1], "exited"] = 0
    b.loc[b["corporation"] == ids[3], "exited"] = 1
    c = a.copy()
    c.loc[c["corporation"] == ids[2], "exited"] = 1
    c.loc[c["corporation"] == ids[3]] = b.loc[b["corporation"] == ids[3]].to_numpy()
    frames = [a, b, c]
    for name, frame in zip(("extract1.csv", "extract2.csv", "extract3.csv"), frames, strict=True):
        frame.to_csv(inputs / name, index=False)
    forgotten = deployed_workspace.run("ingestion.py", "--forget", "dataset1.csv", "--forget", "dataset2.csv")
    assert forgotten.returncode == 0, forgotten.stderr  # the removed extracts' rows go deliberately
    run_ok(deployed_workspace, "reporting.py")
    newest, were_clients = newest_rows_oracle(frames)
    models = deployed_workspace.path("output_model_path")
    calls = pd.read_csv(models / "riskranking.csv", dtype={"corporation": str}).set_index("corporation")
    assert sorted(calls.index) == sorted(newest.index[newest["exited"] == 0])
    for client in calls.index:  # every client scored on its newest extract's values
        assert calls.loc[client, list(FEATURES)].tolist() == newest.loc[client, list(FEATURES)].tolist()
    assert calls.loc[ids[0], "lastmonth_activity"] == 114
    lost = pd.read_csv(models / "lostclients.csv", dtype={"corporation": str})
    gone = set(newest.index[newest["exited"] == 1])
    assert set(lost["corporation"]) == gone & were_clients == {ids[1], ids[2]}
    basis = json.loads((models / "riskranking.json").read_text())
    assert basis["lost_means"].startswith("on the last list or still clients at the previous extract")


def test_a_rollback_during_reporting_files_only_the_snapshots_version(retrained_workspace, monkeypatch):
    """reporting.py reads the live version once: a rollback while it works (here: as it reads the
    data, after its snapshot) leaves version 2's call list and report with version 2's numbers,
    never version 1's probabilities under version 2's name (issue 31)."""
    workspace = retrained_workspace
    run_ok(workspace, "deployment.py")  # version 2 live
    config = load_config(workspace.config_path)
    numbers = {
        version: json.loads((config.prod_folder / f"archive/v000{version}/trainedmodel.json").read_text())[
            "linear_model"
        ]
        for version in (1, 2)
    }
    assert numbers[1] != numbers[2]
    original = reports_reporting.read_own_file
    rolled = []

    def rollback_meanwhile(path, *args, **kwargs):
        if not rolled:
            rolled.append(workspace.run("deployment.py", "--rollback"))
        return original(path, *args, **kwargs)

    monkeypatch.setenv("RISK_CONFIG", str(workspace.config_path))
    monkeypatch.setattr(reports_reporting, "read_own_file", rollback_meanwhile)
    assert reporting.main([]) == 0
    assert rolled[0].returncode == 0 and versions.live(config).version == 1
    models = config.model_folder
    basis = json.loads((models / "riskranking.json").read_text())
    assert basis["model_version"] == 2
    calls = pd.read_csv(models / "riskranking.csv", dtype={"corporation": str})
    final = pd.read_csv(config.finaldata_file, dtype={"corporation": str}).drop_duplicates(
        "corporation", keep="last"
    )
    rows = final.set_index("corporation").loc[calls["corporation"], FEATURES].to_numpy(dtype=float)
    two = numbers[2]
    expected = 1 / (
        1
        + np.exp(
            -(np.where(np.isnan(rows), two["impute_fill"], rows) @ two["coefficients"] + two["intercept"])
        )
    )
    assert np.allclose(calls["exit_probability"], expected, rtol=1e-12)
    kept = config.prod_folder / "archive/v0002/reports/riskranking.csv"
    assert kept.read_bytes() == (models / "riskranking.csv").read_bytes()
    # the stamp says version 2 while version 1 is live: the next run reports again for version 1
    assert stamps.stamp_problem(basis, versions.live(config), stamps.data_fingerprint(config), True)


def test_after_the_clock_steps_back_the_newest_report_still_sorts_last(reported_workspace):
    """A later report is named by the UTC time, but never before one already there (issue 31: after
    the clock stepped back, the dashboard marked an older report as the latest)."""
    config = load_config(reported_workspace.config_path)
    reports = config.prod_folder / "archive" / "v0001" / "reports"
    ahead = reports / "report-20991231T235959Z.pdf"  # written while the clock was ahead
    ahead.write_bytes((reports / "report.pdf").read_bytes())
    run_ok(reported_workspace, "reporting.py")
    newest = stamps.report_files(config, 1)[-1]
    assert newest.name == "report-21000101T000000Z.pdf"
    assert newest.read_bytes() == (config.model_folder / "report.pdf").read_bytes()
