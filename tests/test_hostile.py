"""The API against hostile and careless clients: issue 11's cases, each a regression test.

Every answer must be strict JSON, every error the documented {"error", "message"} with a 4xx
for the caller's mistakes and a 503 for the deployment's, and the work per request bounded by
its size. Those needing a real gunicorn (chunked bodies, slow clients, gunicorn's own errors,
a malicious pickle) are in test_serving.py.
"""

import json
import pickle
import tracemalloc

import pytest
from conftest import ROW, assert_error, deploy_bytes, deploy_model_meta, strict_json

from attrition.api import serving
from attrition.api.app import create_app
from attrition.core.names import FEATURES

HEADER = ",".join(FEATURES)


@pytest.fixture
def client(api_client):
    return api_client


def post_json_text(client, text: str, path="/prediction?proba=1"):
    return client.post(path, data=text, content_type="application/json")


def post_csv(client, text: str | bytes):
    return client.post("/prediction?proba=1", data=text, content_type="text/csv")


# 1. Work bounded by size: a header of 35,000 names used to take seconds in pandas.
def test_a_huge_csv_header_is_refused_before_parsing(client):
    assert_error(
        post_csv(client, ",".join(["a"] * 35_000) + "\n"), 400, "columns in the header (api_max_columns)"
    )


def test_too_many_rows_are_refused(client, deployed_workspace):
    deployed_workspace.set_config(api_max_rows=50)
    small = create_app({"RISK_CONFIG": str(deployed_workspace.config_path)}).test_client()
    assert_error(post_csv(small, HEADER + "\n" + "1,2,3\n" * 51), 400, "at most 50 per request")
    assert post_csv(small, HEADER + "\n" + "1,2,3\n" * 50).status_code == 200
    assert_error(small.post("/prediction", json={"records": [ROW] * 51}), 400, "at most 50 per request")
    split = {"dataframe_split": {"columns": list(FEATURES), "data": [[1, 2, 3]] * 51}}
    assert_error(small.post("/prediction", json=split), 400)
    # the test file has 200 rows: a file named by a request obeys the same limit
    assert_error(small.get("/prediction?filepath=testdata/testdata.csv"), 400, "at most 50 per request")


def test_memory_is_bounded_by_the_body_not_amplified(client, deployed_workspace):
    """16 MB of {"records":[{},{},...]} used to cost about 1 GB and 17 s; refused before parsing now."""
    deployed_workspace.set_config(api_max_body_bytes=32 * 1024 * 1024)
    big = create_app({"RISK_CONFIG": str(deployed_workspace.config_path)}).test_client()
    body = '{"records":[' + ",".join(["{}"] * 5_000_000) + "]}"
    tracemalloc.start()
    try:
        response = post_json_text(big, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_error(response, 400, "more objects and arrays than api_max_rows")
    assert peak < 4 * len(body), f"peak {peak:,} bytes for a {len(body):,}-byte body"


def test_a_data_file_larger_than_a_body_is_refused(client, deployed_workspace):
    deployed_workspace.set_config(api_max_body_bytes=10_000)
    small = create_app({"RISK_CONFIG": str(deployed_workspace.config_path)}).test_client()
    big = deployed_workspace.path("test_data_path") / "big.csv"
    big.write_text(HEADER + "\n" + "1,2,3\n" * 5000)
    answer = small.get("/prediction?filepath=testdata/big.csv")
    assert_error(answer, 400, "score large files with scoring.py", workspace=deployed_workspace)


# 3. Strict JSON in and out.
@pytest.mark.parametrize(
    "text",
    [
        '{"records":[{"lastmonth_activity":Infinity,"lastyear_activity":-Infinity,"number_of_employees":1}]}',
        '{"records":[{"lastmonth_activity":NaN,"lastyear_activity":1,"number_of_employees":1}]}',
        '{"records":[{"lastmonth_activity":1e999,"lastyear_activity":1,"number_of_employees":1}]}',
        '{"records":[{"lastmonth_activity":'
        + "9" * 400
        + ',"lastyear_activity":1,"number_of_employees":1}]}',
        '{"dataframe_split":{"columns":["lastmonth_activity","lastyear_activity","number_of_employees"],'
        '"data":[[1e999,1,1]]}}',
    ],
)
def test_non_finite_and_huge_numbers_are_400_never_nan(client, text):
    assert_error(post_json_text(client, text), 400)


@pytest.mark.parametrize(
    "value", ["inf", "-inf", "nan", "1e999", "9" * 400, "-1", "2.5", "true", "9007199254740993"]
)
def test_csv_values_that_are_not_counts_are_400(client, value):
    response = post_csv(client, f"{HEADER}\n1,2,3\n{value},2,3\n")
    if value == "nan":  # pandas reads "nan" as a missing value, as ingestion does: imputed
        assert response.status_code == 200 and len(strict_json(response)["predictions"]) == 2
        return
    assert_error(response, 400, "lastmonth_activity")


@pytest.mark.parametrize("value", [-1, 2.5, True, "true", [1], {"a": 1}, 2**53 + 2, 10**400])
def test_json_values_that_are_not_counts_are_400(client, value):
    records = [dict(ROW, number_of_employees=value)]
    assert_error(client.post("/prediction", json={"records": records}), 400)
    split = {"columns": list(FEATURES), "data": [[1, 2, value]]}
    assert_error(client.post("/prediction", json={"dataframe_split": split}), 400)


def test_a_file_and_rows_in_one_request_is_400(client):
    body = {"records": [ROW], "filepath": "testdata/testdata.csv"}
    assert_error(client.post("/prediction", json=body), 400, "either a data file or rows")
    assert_error(client.post("/prediction?filename=x.csv", json={"records": [ROW]}), 400, "not both")


def test_counts_as_text_and_whole_floats_are_accepted_like_a_csv(client):
    rows = [ROW, {"lastmonth_activity": "10", "lastyear_activity": 200.0, "number_of_employees": " 30 "}]
    body = strict_json(client.post("/prediction?proba=1", json={"records": rows}))
    assert body["predictions"][0] == body["predictions"][1]
    assert body["probabilities"][0] == body["probabilities"][1]


# 4. 500s that were the caller's mistakes.
def test_long_or_undecodable_paths_are_4xx(client, deployed_workspace):
    assert_error(client.get("/prediction?filepath=testdata/" + "a" * 300 + ".csv"), 400, "File name too long")
    assert_error(client.get("/prediction?filepath=" + "a/" * 2700 + "x.csv"), 400, "characters long")
    assert_error(client.get("/prediction?filepath=testdata/" + "a" * 1000 + ".csv"), 400, "not a usable path")
    assert_error(post_json_text(client, '{"filepath": "\\ud800.csv"}'), 400, "lone surrogate")


def test_deeply_nested_json_is_400(client):
    assert_error(post_json_text(client, "[" * 100_000 + "]" * 100_000), 400, "JSON")
    assert_error(post_json_text(client, '{"a":' * 5_000 + "1" + "}" * 5_000), 400, "nested too deeply")


@pytest.mark.parametrize(
    "columns", [[{}], [["a"]], [None], ["lastmonth_activity"] * 2 + ["lastyear_activity"]]
)
def test_malformed_dataframe_split_columns_are_400(client, columns):
    body = {"dataframe_split": {"columns": columns, "data": [[1] * len(columns)]}}
    assert_error(client.post("/prediction", json=body), 400, "dataframe_split")


@pytest.mark.parametrize(
    "files", [None, [], "x", {"trainedmodel.pkl": None}, {"trainedmodel.pkl": {"sha256": 5}}, {"other": {}}]
)
def test_a_malformed_manifest_is_503_on_model_routes_and_harmless_elsewhere(
    client, deployed_workspace, files
):
    manifest_path = deployed_workspace.path("prod_deployment_path") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = files
    manifest_path.write_text(json.dumps(manifest))
    for path in ("/health", "/scoring", "/prediction?filepath=testdata/testdata.csv"):
        assert_error(client.get(path), 503, "manifest", workspace=deployed_workspace)
    assert client.get("/summarystats").status_code == 200
    assert client.get("/runs").status_code == 200


# 5. /health tells the truth.
def test_health_is_503_when_the_served_numbers_cannot_score(client, deployed_workspace):
    deploy_model_meta(
        deployed_workspace,
        lambda meta: {**meta, "linear_model": {**meta["linear_model"], "coefficients": [1, 2]}},
    )
    assert_error(
        client.get("/health"), 503, "'coefficients' must be 3 finite numbers", workspace=deployed_workspace
    )
    assert_error(client.post("/prediction", json={"records": [ROW]}), 503)


# 6. Extra fields are not shifted into an index.
@pytest.mark.slow
def test_csv_rows_with_extra_fields_are_400(client, deployed_workspace):
    assert_error(post_csv(client, f"{HEADER}\n1,2,3,4,5\n"), 400, "more fields than the header")
    assert_error(post_csv(client, f"{HEADER}\n1,2,3\n1,2,3,4,5\n"), 400, "Expected 3 fields")
    (deployed_workspace.path("test_data_path") / "shifted.csv").write_text(f"{HEADER}\n1,2,3,4,5\n")
    assert_error(client.get("/prediction?filepath=testdata/shifted.csv"), 400, "more fields than the header")


# 9. No silent flags, a strict contract.
@pytest.mark.parametrize(
    "path",
    [
        "/prediction?filepath=testdata/testdata.csv&proba=garbage",
        "/diagnostics?timing=garbage",
        "/diagnostics?timing=0&fresh=2",
        "/runs?limit=-1",
        "/runs?limit=0",
        "/runs?limit=1001",
        "/runs?limit=1.5",
        "/runs?limit=",
    ],
)
def test_garbage_options_are_400(client, path):
    assert_error(client.get(path), 400)


def test_flags_accept_the_documented_spellings(client):
    for value in ("1", "true", "YES", "on"):
        assert "probabilities" in strict_json(
            client.get(f"/prediction?filepath=testdata/testdata.csv&proba={value}")
        )
    for value in ("0", "false", "No", "off"):
        assert "probabilities" not in strict_json(
            client.get(f"/prediction?filepath=testdata/testdata.csv&proba={value}")
        )
    assert "probabilities" in strict_json(client.post("/prediction", json={"records": [ROW], "proba": True}))


def test_a_record_missing_a_feature_is_400_and_null_is_a_missing_value(client):
    assert_error(
        client.post("/prediction", json={"records": [{"lastmonth_activity": 1, "lastyear_activity": 2}]}),
        400,
        "row 1 has no number_of_employees",
    )
    body = strict_json(client.post("/prediction", json={"records": [dict(ROW, number_of_employees=None)]}))
    assert body["predictions"] in ([0], [1])


def test_options_and_405_answer_json_with_allow(client):
    response = client.options("/prediction")
    assert response.status_code == 200 and response.is_json
    assert set(strict_json(response)["allow"]) >= {"GET", "POST", "OPTIONS"}
    response = client.put("/prediction")
    assert_error(response, 405)
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


@pytest.mark.slow
def test_no_answer_names_an_absolute_server_path(client, deployed_workspace):
    root = str(deployed_workspace.root)
    answers = [
        client.get(path)
        for path in (
            "/scoring",
            "/summarystats",
            "/health",
            "/diagnostics?timing=0",
            "/prediction?filepath=testdata/nothere.csv",
        )
    ]
    (deployed_workspace.path("output_folder_path") / "finaldata.csv").write_text("")
    answers.append(client.get("/summarystats"))
    (deployed_workspace.path("prod_deployment_path") / "manifest.json").unlink()
    serving.clear()
    answers.append(client.get("/health"))
    for response in answers:
        assert root not in response.get_data(as_text=True), response.get_data(as_text=True)
    assert strict_json(answers[0])["data"] == "testdata/testdata.csv"


# 10. The server never unpickles.
class Exploit:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_no_route_unpickles_the_deployed_pickle(client, deployed_workspace, tmp_path, monkeypatch):
    """A malicious pickle whose manifest and trainedmodel.json both match it: the API serves the numbers."""
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Exploit(marker))
    deploy_bytes(deployed_workspace, blob)
    import hashlib

    deploy_model_meta(
        deployed_workspace, lambda meta: {**meta, "model_sha256": hashlib.sha256(blob).hexdigest()}
    )
    for name in ("loads", "load"):
        monkeypatch.setattr(pickle, name, lambda *a, **k: pytest.fail("the server unpickled"))
    serving.clear()
    for path in (
        "/health",
        "/scoring",
        "/summarystats",
        "/runs",
        "/diagnostics?timing=0",
        "/prediction?filepath=testdata/testdata.csv",
    ):
        assert client.get(path).status_code == 200, path
    assert client.post("/prediction", json={"records": [ROW]}).status_code == 200
    assert not marker.exists()
