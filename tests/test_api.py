"""The API through app.test_client(): every endpoint, input form and error case."""

import hashlib
import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import ROW as FEATURE_ROW
from conftest import assert_error, deploy_bytes, deploy_model_meta, deployed_pickle, run_ok, timed
from sklearn.metrics import confusion_matrix, f1_score

from attrition.api import serving
from attrition.api.app import create_app
from attrition.core.names import FEATURES

ROW = {"corporation": "abcd", **FEATURE_ROW}


@pytest.fixture
def app(deployed_workspace):
    serving.clear()
    return create_app({"RISK_CONFIG": str(deployed_workspace.config_path), "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def expected(deployed_workspace):
    """The deployed pickle's own predictions and probabilities on the test file."""
    model = deployed_pickle(deployed_workspace.path("prod_deployment_path"))
    test = pd.read_csv(deployed_workspace.path("test_data_path") / "testdata.csv")
    return model.predict(test[list(FEATURES)]).tolist(), model.predict_proba(test[list(FEATURES)])[:, 1]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"method": "POST", "json": {"filepath": "testdata/testdata.csv"}},
        {"method": "POST", "json": {"filename": "testdata/testdata.csv"}},
        {"method": "POST", "json": {"dataset_path": "testdata/testdata.csv"}},
        {"method": "GET", "query_string": {"filepath": "testdata/testdata.csv"}},
        {"method": "GET", "query_string": {"filename": "testdata/testdata.csv"}},
        {"method": "POST", "query_string": {"filepath": "testdata/testdata.csv"}},
        {"method": "POST", "data": {"filepath": "testdata/testdata.csv"}},
    ],
)
def test_prediction_from_a_file_location(client, expected, request_kwargs):
    response = client.open("/prediction", **request_kwargs)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == expected[0]
    assert response.get_json()["model_version"] == 1


def test_prediction_from_an_absolute_path_inside_the_data_folders(client, deployed_workspace, expected):
    path = deployed_workspace.path("test_data_path") / "testdata.csv"
    assert (
        client.get("/prediction", query_string={"filepath": str(path)}).get_json()["predictions"]
        == expected[0]
    )


def test_prediction_from_rows_in_every_form(client, deployed_workspace, expected):
    test = pd.read_csv(deployed_workspace.path("test_data_path") / "testdata.csv")
    records = json.loads(test.to_json(orient="records"))
    split = json.loads(test.to_json(orient="split", index=False))
    for body in ({"records": records}, {"dataframe_records": records}, {"dataframe_split": split}):
        response = client.post("/prediction", json=body)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["predictions"] == expected[0]
    csv = test.to_csv(index=False)
    response = client.post("/prediction", data=csv, content_type="text/csv")
    assert response.get_json()["predictions"] == expected[0]


def test_probabilities_on_request(client, expected):
    response = client.post("/prediction?proba=1", json={"filepath": "testdata/testdata.csv"})
    body = response.get_json()
    np.testing.assert_allclose(body["probabilities"], expected[1])
    assert body["predictions"] == expected[0]
    body = client.post("/prediction", json={"records": [ROW], "proba": True}).get_json()
    assert len(body["probabilities"]) == 1 and body["predictions"] in ([0], [1])


def test_rows_with_missing_values_are_predicted_as_scikit_learn_does(client, deployed_workspace):
    rows = [
        dict(ROW, lastyear_activity=None),
        dict(ROW, lastmonth_activity=None, number_of_employees=None),
        dict(ROW, lastmonth_activity=0, lastyear_activity=2000),
    ]
    response = client.post("/prediction?proba=1", json={"records": rows})
    assert response.status_code == 200, response.get_json()
    frame = pd.DataFrame(rows)[list(FEATURES)].astype(float)
    model = deployed_pickle(deployed_workspace.path("prod_deployment_path"))
    assert response.get_json()["predictions"] == model.predict(frame).tolist()
    np.testing.assert_allclose(
        response.get_json()["probabilities"], model.predict_proba(frame)[:, 1], atol=1e-12
    )
    csv = frame.to_csv(index=False)  # blank fields
    body = client.post("/prediction", data=csv, content_type="text/csv").get_json()
    assert body["predictions"] == model.predict(frame).tolist()


TRAVERSALS = [
    "/etc/passwd",
    "../../../../etc/passwd",
    "testdata/../../../etc/passwd",
    "testdata/../config.json",
    "production_deployment/trainedmodel.pkl",
    "practicemodels/trainedmodel.pkl",
    "production_deployment/archive/v0001/referencedata.csv",
    "testdata/%2e%2e/%2e%2e/etc/passwd",
    "testdata/link_out.csv",
    "testdata/link_dir/passwd.csv",
    "/proc/self/environ",
    "~/.bashrc",
    "testdata\x00.csv",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_outside_the_data_folders_are_refused(client, deployed_workspace, tmp_path, path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwd.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees\n"
    )
    test_folder = deployed_workspace.path("test_data_path")
    (test_folder / "link_out.csv").symlink_to(outside / "passwd.csv")
    (test_folder / "link_dir").symlink_to(outside, target_is_directory=True)
    response = client.get("/prediction", query_string={"filepath": path})
    assert response.status_code in (400, 403), (path, response.get_json())
    assert_error(response, response.status_code)
    response = client.post("/prediction", json={"filepath": path})
    assert response.status_code in (400, 403)


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"query_string": {"filepath": "testdata/nothere.csv"}}, 404, "no such data file"),
        ({"data": "{not json", "content_type": "application/json"}, 400, "malformed JSON"),
        ({"json": [1, 2]}, 400, "malformed JSON"),
        ({"json": {"filepath": 7}}, 400, "filepath must be"),
        ({"json": {"records": "nope"}}, 400, "records must be a list"),
        ({"json": {"records": [{"lastmonth_activity": 1}]}}, 400, "row 1 has no lastyear_activity"),
        ({"json": {"records": [dict(ROW, number_of_employees="many")]}}, 400, "non-numeric value 'many'"),
        (
            {"json": {"dataframe_split": {"columns": list(FEATURES), "data": [[1, 2]]}}},
            400,
            "one value per column",
        ),
        ({"data": "a,b\n1,2\n", "content_type": "text/csv"}, 400, "missing feature column"),
        ({"data": b"\x89PNG", "content_type": "image/png"}, 415, "application/json, text/csv or a form"),
    ],
)
def test_bad_prediction_requests_get_a_json_4xx(client, kwargs, status, fragment):
    assert_error(client.post("/prediction", **kwargs), status, fragment=fragment)


def test_a_malformed_csv_file_is_400(client, deployed_workspace):
    (deployed_workspace.path("test_data_path") / "broken.csv").write_bytes(b"a,b\n1,2,3,4\n\x00\xff")
    assert_error(client.get("/prediction?filepath=testdata/broken.csv"), 400)


def test_a_body_over_the_limit_is_413(deployed_workspace):
    deployed_workspace.set_config(api_max_body_bytes=1000)
    app = create_app({"RISK_CONFIG": str(deployed_workspace.config_path)})
    body = {"records": [ROW] * 100}
    assert_error(app.test_client().post("/prediction", json=body), 413)


def test_scoring_matches_the_deployed_score_and_writes_nothing(client, deployed_workspace):
    folders = [deployed_workspace.path(k) for k in ("output_model_path", "prod_deployment_path")]
    before = {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}
    body = client.get("/scoring").get_json()
    test = pd.read_csv(deployed_workspace.path("test_data_path") / "testdata.csv")
    predicted = deployed_pickle(deployed_workspace.path("prod_deployment_path")).predict(test[list(FEATURES)])
    assert body["f1"] == pytest.approx(f1_score(test["exited"], predicted))
    assert body["confusion"] == dict(
        zip(
            ["tn", "fp", "fn", "tp"],
            confusion_matrix(test["exited"], predicted).ravel().tolist(),
            strict=True,
        )
    )
    deployed = float((deployed_workspace.path("prod_deployment_path") / "latestscore.txt").read_text())
    assert body["f1"] == pytest.approx(deployed)  # and it is the score deployment.py recorded
    assert {"precision", "recall", "accuracy", "roc_auc", "confusion", "model_version"} <= set(body)
    after = {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.slow
def test_summarystats_and_diagnostics(client, deployed_workspace, monkeypatch):
    final = pd.read_csv(deployed_workspace.path("output_folder_path") / "finaldata.csv")
    final.loc[:9, "lastyear_activity"] = np.nan
    final.to_csv(deployed_workspace.path("output_folder_path") / "finaldata.csv", index=False)
    body = client.get("/summarystats").get_json()
    numeric = final.drop(columns="corporation")
    assert list(body["statistics"]) == list(numeric.columns)
    for column, stats in body["statistics"].items():
        assert stats["mean"] == pytest.approx(numeric[column].mean())
        assert stats["median"] == pytest.approx(numeric[column].median())
        assert stats["mode"] == pytest.approx(numeric[column].mode().min())
        assert stats["std"] == pytest.approx(numeric[column].std())
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    timed(deployed_workspace, (0.25, 2.5))  # kept by a run; a real timing: test_diagnostics, test_serving
    body = client.get("/diagnostics").get_json()
    assert set(body) == {"execution_time_seconds", "data", "missing_data_percent", "dependencies"}
    assert body["execution_time_seconds"] == {"ingestion": 0.25, "training": 2.5}
    assert body["missing_data_percent"] == pytest.approx(
        {
            "corporation": 0.0,
            "lastmonth_activity": 0.0,
            "lastyear_activity": 1000 / len(final),
            "number_of_employees": 0.0,
            "exited": 0.0,
        }
    )
    assert {row["module"] for row in body["dependencies"]} >= {"pandas", "scikit-learn", "flask"}
    assert set(client.get("/diagnostics?timing=0").get_json()) == {
        "data",
        "missing_data_percent",
        "dependencies",
    }


def test_health_reports_the_version_or_503(client, deployed_workspace, data_workspace):
    manifest = json.loads((deployed_workspace.path("prod_deployment_path") / "manifest.json").read_text())
    model = deployed_workspace.path("output_model_path") / "trainedmodel.pkl"
    assert client.get("/health").get_json() == {
        "status": "ok",
        "model_version": 1,
        "deployed_at": manifest["timestamp"],
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
    }
    empty = create_app({"RISK_CONFIG": str(data_workspace.config_path)}).test_client()
    assert_error(empty.get("/health"), 503, error="model_unavailable")
    assert_error(empty.get("/prediction?filepath=testdata/testdata.csv"), 503, error="model_unavailable")


@pytest.mark.slow
def test_a_redeployed_model_is_picked_up_without_restart(retrained_workspace):
    serving.clear()
    client = create_app({"RISK_CONFIG": str(retrained_workspace.config_path)}).test_client()
    assert client.get("/health").get_json()["model_version"] == 1
    run_ok(retrained_workspace, "deployment.py")  # the other candidate: version 2
    assert client.get("/health").get_json()["model_version"] == 2
    assert client.post("/prediction", json={"records": [ROW]}).get_json()["model_version"] == 2


def test_bearer_token_protects_everything_but_health(deployed_workspace):
    app = create_app({"RISK_CONFIG": str(deployed_workspace.config_path), "API_TOKEN": "s3cret"})
    client = app.test_client()
    assert client.get("/health").status_code == 200
    for path in (
        "/",
        "/prediction?filepath=testdata/testdata.csv",
        "/scoring",
        "/summarystats",
        "/diagnostics",
    ):
        response = client.get(path)
        assert_error(response, 401, error="unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error(client.get("/scoring", headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/scoring", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_unknown_routes_and_methods_are_json(client):
    assert_error(client.get("/nothing"), 404, error="not_found")
    assert_error(client.delete("/prediction"), 405, error="method_not_allowed")


def test_runs_lists_the_run_history(client, deployed_workspace):
    history = deployed_workspace.path("prod_deployment_path") / "runhistory.jsonl"
    history.write_text("".join(json.dumps({"run": n}) + "\n" for n in range(15)))
    assert [run["run"] for run in client.get("/runs?limit=3").get_json()["runs"]] == [12, 13, 14]
    assert_error(client.get("/runs?limit=x"), 400)


@pytest.mark.slow
def test_a_model_that_cannot_be_used_is_503_on_every_model_endpoint(deployed_workspace):
    """A deployment that matches its manifest but cannot be served: the deployment's fault, never
    the caller's."""
    config = str(deployed_workspace.config_path)

    def linear(**changes):
        return lambda meta: {**meta, "linear_model": {**meta["linear_model"], **changes}}

    cases = [
        (lambda meta: b"{not json", "not valid JSON"),
        (lambda meta: {k: v for k, v in meta.items() if k != "linear_model"}, "no model parameters"),
        (linear(coefficients=[1.0, 2.0]), "'coefficients' must be 3 finite numbers"),
        (linear(features=["a", "b", "c"]), "for features"),
        (linear(intercept="1"), "'intercept' must be a finite number"),
        (linear(coefficients=[1e308, -1e308, 1.0]), "no finite risk"),
        (lambda meta: {**meta, "model_sha256": "0" * 64}, "describes another model"),
    ]
    for change, fragment in cases:
        deploy_model_meta(deployed_workspace, change)
        serving.clear()
        client = create_app({"RISK_CONFIG": config}).test_client()
        for request in ("/health", "/prediction?filepath=testdata/testdata.csv", "/scoring"):
            assert_error(client.get(request), 503, error="model_unavailable", fragment=fragment)
        assert_error(
            client.post("/prediction", json={"records": [ROW]}),
            503,
            error="model_unavailable",
            fragment=fragment,
        )
        run_ok(deployed_workspace, "deployment.py")  # a good version again, for the next case


def test_a_corrupt_pickle_matching_its_manifest_is_503_everywhere_too(deployed_workspace):
    """The pickle the course's scripts use and the numbers the API serves must be one model."""
    deploy_bytes(deployed_workspace, b"\x80\x05corrupt")
    client = create_app({"RISK_CONFIG": str(deployed_workspace.config_path)}).test_client()
    for request in ("/health", "/prediction?filepath=testdata/testdata.csv", "/scoring"):
        assert_error(client.get(request), 503, error="model_unavailable", fragment="describes another model")


@pytest.mark.slow
def test_a_broken_deployment_is_read_and_logged_once_while_the_last_good_model_serves(
    client, deployed_workspace, monkeypatch, caplog
):
    assert client.get("/health").get_json()["status"] == "ok"
    deploy_model_meta(deployed_workspace, lambda meta: b"not json")
    loads = []
    real_load = serving.riskmodel.load_linear
    monkeypatch.setattr(serving.riskmodel, "load_linear", lambda folder: loads.append(1) or real_load(folder))
    for _ in range(3):
        health = client.get("/health")
        assert health.status_code == 200 and health.get_json()["status"] == "serving_previous_version"
        assert "not valid JSON; still serving version 1" in health.get_json()["problem"]
        assert client.post("/prediction", json={"records": [ROW]}).get_json()["model_version"] == 1
    assert len(loads) == 1  # remembered until the manifest changes
    assert sum("still serving" in record.getMessage() for record in caplog.records) == 1
    run_ok(deployed_workspace, "deployment.py")  # a good deployment again
    assert client.get("/health").get_json()["status"] == "ok" and len(loads) == 2


@pytest.mark.slow
def test_server_data_problems_are_503_and_failures_500(client, deployed_workspace, monkeypatch):
    testdata = deployed_workspace.path("test_data_path") / "testdata.csv"
    testdata.rename(testdata.with_suffix(".away"))
    assert_error(client.get("/scoring"), 503, error="data_unavailable", fragment="testdata.csv")
    (deployed_workspace.path("output_folder_path") / "finaldata.csv").write_text("")
    assert_error(client.get("/summarystats"), 503, error="data_unavailable", fragment="empty file")
    assert_error(client.get("/diagnostics?timing=0"), 503, error="data_unavailable")
    # a timing run that fails is the server's failure: 500 with the reason, not a 400
    for path in deployed_workspace.path("input_folder_path").iterdir():
        path.unlink()
    assert_error(
        client.get("/diagnostics?fresh=1"),
        500,
        error="pipeline_error",
        fragment="timing ingestion.py failed (exit 65)",
    )


def test_405_names_the_allowed_methods(client):
    response = client.delete("/scoring")
    assert_error(response, 405, error="method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) >= {"GET"}


def test_answers_carry_the_client_ids_when_the_input_has_them(client, deployed_workspace):
    test = pd.read_csv(deployed_workspace.path("test_data_path") / "testdata.csv", dtype={"corporation": str})
    body = client.get("/prediction?filepath=testdata/testdata.csv").get_json()
    assert body["corporations"] == test["corporation"].tolist()
    rows = [dict(ROW, corporation="ab<1>"), {k: v for k, v in ROW.items() if k != "corporation"}]
    assert client.post("/prediction", json={"records": rows}).get_json()["corporations"] == ["ab<1>", None]
    csv = "corporation,lastmonth_activity,lastyear_activity,number_of_employees\nxy,1,2,3\n"
    assert client.post("/prediction", data=csv, content_type="text/csv").get_json()["corporations"] == ["xy"]
    bare = "lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n"
    assert "corporations" not in client.post("/prediction", data=bare, content_type="text/csv").get_json()


@pytest.mark.slow
def test_the_call_list_and_reasons_through_the_api(client, deployed_workspace):
    assert_error(client.get("/calllist"), 503, error="data_unavailable")  # no report yet
    run_ok(deployed_workspace, "reporting.py")
    calls = pd.read_csv(
        deployed_workspace.path("output_model_path") / "riskranking.csv", dtype={"corporation": str}
    )
    page = client.get("/calllist?limit=5&offset=2").get_json()
    assert page["total"] == len(calls) and page["model_version"] == 1 and page["offset"] == 2
    assert [row["corporation"] for row in page["rows"]] == calls["corporation"].iloc[2:7].tolist()
    assert page["rows"][0]["exit_probability"] == calls["exit_probability"].iloc[2]
    assert_error(client.get("/calllist?limit=0"), 400, fragment="limit must be a whole number")
    top = calls.iloc[0]
    row = {feature: int(top[feature]) for feature in FEATURES}
    answer = client.post("/prediction?reasons=1", json={"records": [row]}).get_json()
    assert answer["reasons"] == [top["reason"]]


def named_file(deployed_workspace):
    """A data file other than the default of every route: the ingested finaldata.csv (labelled)."""
    path = deployed_workspace.path("output_folder_path") / "finaldata.csv"
    return "ingesteddata/finaldata.csv", pd.read_csv(path, dtype={"corporation": str})


@pytest.mark.parametrize("where", ["json", "form", "query", "multipart"])
@pytest.mark.parametrize("route", ["/prediction", "/scoring", "/summarystats", "/diagnostics?timing=0"])
def test_a_named_data_file_is_honoured_wherever_it_is_put_on_get(client, deployed_workspace, route, where):
    """A course client sends GET with a JSON body naming the file: honoured, on every route that
    reads data, and the answer names the file it describes (issue 33)."""
    name, frame = named_file(deployed_workspace)
    kwargs = {
        "json": {"json": {"datafile": name}},
        "form": {"data": {"datafile": name}},
        "query": {"query_string": {"datafile": name}},
        "multipart": {"data": {"datafile": name}, "content_type": "multipart/form-data"},
    }[where]
    if where == "query" and "?" in route:
        route, _, options = route.partition("?")
        kwargs["query_string"].update(dict([options.split("=")]))
    answer = client.get(route, **kwargs)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["data"] == name
    if route == "/prediction":
        assert len(body["predictions"]) == len(frame)
    elif route == "/scoring":
        assert body["rows"] == len(frame)
    elif route == "/summarystats":
        mean = body["statistics"]["lastmonth_activity"]["mean"]
        assert mean == pytest.approx(frame["lastmonth_activity"].mean())
    else:
        assert body["missing_data_percent"] == pytest.approx((frame.isna().mean() * 100).round(6).to_dict())


@pytest.mark.parametrize("route", ["/prediction", "/scoring", "/summarystats", "/diagnostics?timing=0"])
def test_the_default_data_is_named_in_the_answer(client, route):
    default = "ingesteddata/finaldata.csv" if route.startswith(("/summarystats", "/diagnostics")) else None
    body = client.get(route).get_json()
    assert body["data"] == (default or "testdata/testdata.csv")


FORM = "application/x-www-form-urlencoded"
REFUSED_BODIES = {  # each made afresh per request: an upload's stream is read once
    "csv body": (lambda: {"data": "a,b\n1,2\n", "content_type": "text/csv"}, 415, "text/csv"),
    "upload": (lambda: {"data": {"upload": (io.BytesIO(b"x"), "x.csv")}}, 400, "reads no uploaded file"),
    "two names": (lambda: {"json": {"filepath": "testdata/testdata.csv", "datafile": "x.csv"}}, 400, "twice"),
    "a form field twice": (
        lambda: {"data": "datafile=a.csv&datafile=b.csv", "content_type": FORM},
        400,
        "twice",
    ),
    "json not an object": (lambda: {"json": ["filepath"]}, 400, "expected an object"),
}


@pytest.mark.parametrize("case", REFUSED_BODIES)
def test_a_body_that_cannot_name_a_file_is_refused_not_ignored(client, case):
    make, status, fragment = REFUSED_BODIES[case]
    for route in ("/scoring", "/summarystats", "/diagnostics?timing=0"):
        assert_error(client.get(route, **make()), status, fragment)


def test_two_files_under_one_multipart_field_are_refused(client, deployed_workspace):
    test = (deployed_workspace.path("test_data_path") / "testdata.csv").read_bytes()
    data = {"file": [(io.BytesIO(test), "a.csv"), (io.BytesIO(test), "b.csv")]}
    assert_error(client.post("/prediction", data=data, content_type="multipart/form-data"), 400, "2 files")


def test_a_remembered_location_whose_link_moves_out_is_refused(client, deployed_workspace, tmp_path):
    """A location is resolved once and remembered by its file (device, inode): moved to lead out
    of the data folders, it is resolved and refused afresh, never served from the memory."""
    link = deployed_workspace.path("test_data_path") / "link.csv"
    link.symlink_to(deployed_workspace.path("test_data_path") / "testdata.csv")
    assert client.get("/prediction?filepath=testdata/link.csv").status_code == 200
    assert client.get("/prediction?filepath=testdata/link.csv").status_code == 200  # remembered
    outside = tmp_path / "outside.csv"
    outside.write_bytes((deployed_workspace.path("test_data_path") / "testdata.csv").read_bytes())
    link.unlink()
    link.symlink_to(outside)
    assert_error(client.get("/prediction?filepath=testdata/link.csv"), 403, "outside the data folders")
