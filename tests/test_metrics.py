"""GET /metrics: Prometheus' text format, parsed with prometheus_client's own parser (metrics.py)."""

import json
import re

import pytest
import requests
from conftest import ROW, SAME_SITE, client_for, run_ok
from prometheus_client.parser import text_string_to_metric_families

from attrition.api.server import free_port, start_api_server, stop_process
from attrition.core.names import PROJECT_DIR


def samples(text: str) -> dict:
    """{(sample name, frozenset of its labels but pid): value}, summed over pid (one per worker)."""
    found: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((key, value) for key, value in sample.labels.items() if key != "pid")
            found[(sample.name, labels)] = found.get((sample.name, labels), 0.0) + sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def labelled(found: dict, name: str) -> list[dict]:
    return [dict(labels) for sample, labels in found if sample == name]


def scrape(client) -> dict:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.content_type.startswith("text/plain; version=")
    return samples(answer.get_data(as_text=True))


def test_requests_rows_latency_and_refusals_are_counted_by_route(deployed_workspace):
    deployed_workspace.set_config(api_max_rows=500)
    api_client = client_for(deployed_workspace)
    before = scrape(api_client)
    testdata_rows = sum(1 for _ in open(deployed_workspace.path("test_data_path") / "testdata.csv")) - 1
    for _ in range(2):
        assert api_client.get("/prediction").status_code == 200
    assert api_client.post("/prediction", json={"records": [ROW, ROW, ROW]}).status_code == 200
    assert api_client.post("/prediction", data=b"{", content_type="application/json").status_code == 400
    too_many = "lastmonth_activity,lastyear_activity,number_of_employees\n" + "1,2,3\n" * 501
    assert api_client.post("/prediction", data=too_many, content_type="text/csv").status_code == 400
    assert api_client.get("/no/such/page", headers={"Accept": "application/json"}).status_code == 404
    assert api_client.get("/scoring").status_code == 200
    assert api_client.open("/prediction", method="FOOBAR").status_code == 405  # a method nobody names
    after = scrape(api_client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("risk_http_requests_total", route="/prediction", method="GET", status="200") == 2
    assert moved("risk_http_requests_total", route="/prediction", method="POST", status="200") == 1
    assert moved("risk_http_requests_total", route="/prediction", method="POST", status="400") == 2
    assert (
        moved("risk_http_requests_total", route="unmatched", method="GET", status="404") == 1
    )  # no raw path
    assert moved("risk_rows_scored_total", route="/prediction") == 2 * testdata_rows + 3
    assert moved("risk_rows_scored_total", route="/scoring") == testdata_rows
    # every label bounded: a method no one names is "other", never the client's word
    assert moved("risk_http_requests_total", route="unmatched", method="other", status="405") == 1
    assert not [
        labels for labels in labelled(after, "risk_http_requests_total") if labels["method"] == "FOOBAR"
    ]
    # every refusal counted, with its reason or "other": as many as the 4xx answers
    refusals = sum(
        value(after, "risk_http_refused_total", **labels) - value(before, "risk_http_refused_total", **labels)
        for labels in labelled(after, "risk_http_refused_total")
    )
    assert refusals == 4
    assert moved("risk_http_request_duration_seconds_count", route="/prediction") == 5
    assert moved("risk_http_request_duration_seconds_sum", route="/prediction") > 0
    assert moved("risk_http_request_duration_seconds_bucket", route="/prediction", le="+Inf") == 5
    assert moved("risk_http_refused_total", status="400", reason="malformed_json") == 1
    assert moved("risk_http_refused_total", status="400", reason="api_max_rows") == 1
    assert moved("risk_http_refused_total", status="404", reason="not_found") == 1
    assert moved("risk_http_request_bytes_total", route="/prediction") >= len(too_many)
    assert moved("risk_http_response_bytes_total", route="/prediction") > 0
    # the model this worker serves: the live version
    manifest = deployed_workspace.manifest()
    sha256 = manifest["files"]["trainedmodel.pkl"]["sha256"]
    assert value(after, "risk_served_model_info", version=str(manifest["version"]), sha256=sha256) == 1
    assert value(after, "risk_served_model_is_live") == 1
    assert value(after, "risk_served_model_live_since_timestamp_seconds") > 1.7e9
    assert value(after, "process_resident_memory_bytes") > 0  # the library's own


def test_metrics_are_behind_the_token_when_one_is_set(deployed_workspace):
    client = client_for(deployed_workspace, API_TOKEN="s3cret-token")
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.is_json
    answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert answer.status_code == 200
    assert (
        value(
            samples(answer.get_data(as_text=True)),
            "risk_http_refused_total",
            status="401",
            reason="unauthorized",
        )
        >= 1
    )
    # a refusal whose answer names no reason (a failed sign-in page) is still counted: "other"
    before = samples(answer.get_data(as_text=True))
    assert client.post("/login", data={"token": "wrong"}, headers=SAME_SITE).status_code == 401
    after = samples(
        client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).get_data(as_text=True)
    )
    moved = value(after, "risk_http_refused_total", status="401", reason="other") - value(
        before, "risk_http_refused_total", status="401", reason="other"
    )
    assert moved == 1


@pytest.mark.slow
def test_pipeline_gauges_follow_the_run_records_and_the_manifest(reported_workspace):
    """From what the pipeline wrote; a failed run moves the last run's gauges, not the last success."""
    workspace = reported_workspace
    run_ok(workspace, "fullprocess.py")  # nothing new: a successful run, recorded
    client = client_for(workspace)
    found = scrape(client)
    last = workspace.runs()[-1]
    manifest = workspace.manifest()
    assert value(found, "risk_last_run_exit_status") == last["exit_status"] == 0
    assert value(found, "risk_last_run_decision", decision="nothing_new") == 1
    assert (
        sum(
            value(found, "risk_last_run_decision", **labels)
            for labels in labelled(found, "risk_last_run_decision")
        )
        == 1
    )
    assert value(found, "risk_last_successful_run_timestamp_seconds") == pytest.approx(
        metrics_time(last["end"])
    )
    assert value(found, "risk_live_model_version") == manifest["version"]
    live = workspace.path("prod_deployment_path") / manifest["folder"] / "latestscore.json"
    scores = json.loads(live.read_text())
    for metric in ("f1", "precision", "recall", "accuracy", "roc_auc"):
        assert value(found, "risk_live_model_score", metric=metric) == pytest.approx(scores[metric])
    drift = json.loads((workspace.path("output_model_path") / "drift.json").read_text())
    for feature in drift["since_training"]["features"]:
        name = feature["feature"]
        assert value(found, "risk_feature_drift_statistic", feature=name, statistic="ks") == pytest.approx(
            feature["ks_statistic"]
        )
        assert value(found, "risk_feature_drift", feature=name) == int(feature["drift"])
    documented = (PROJECT_DIR / "docs" / "api.md").read_text()
    rules = documented[documented.index("# risk-alerts.yml") :]
    rules = rules[: rules.index("```")]
    for name in set(re.findall(r"risk_\w+", rules)):  # docs/api.md's alert rules name real series
        assert any(sample == name for sample, _ in found), name
    listed = sum(1 for _ in open(workspace.path("output_model_path") / "riskranking.csv")) - 1
    assert value(found, "risk_call_list_clients") == listed

    live_score = workspace.path("prod_deployment_path") / manifest["folder"] / "latestscore.txt"
    live_score.chmod(0o644)
    live_score.write_text("damaged\n")
    assert workspace.run("fullprocess.py").returncode == 1
    failed = scrape(client)  # the same worker: its cache sees the history change
    assert value(failed, "risk_last_run_exit_status") == 1
    assert value(failed, "risk_last_run_decision", decision="failed") == 1
    assert value(failed, "risk_last_run_decision", decision="nothing_new") == 0
    assert value(failed, "risk_last_successful_run_timestamp_seconds") == value(
        found, "risk_last_successful_run_timestamp_seconds"
    )


def metrics_time(text: str) -> float:
    from attrition.api import metrics

    return metrics.timestamp(text)


@pytest.mark.slow
def test_gunicorn_workers_add_up_in_a_folder_of_their_servers_own(deployed_workspace, tmp_path):
    """Each server counts in server-<PID> beneath PROMETHEUS_MULTIPROC_DIR: a dead server's folder
    goes at start, and a second server with the same setting (the pipeline's temporary API) leaves
    a running server's counters and served-model gauges alone (issue 31)."""
    folder = tmp_path / "metrics"
    (folder / "server-999999").mkdir(parents=True)  # a previous server's, gone: removed at start
    (folder / "server-999999" / "counter_99999.db").write_bytes(b"stale")
    env = {**deployed_workspace.env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    port, second_port = free_port(), free_port()
    process = start_api_server("127.0.0.1", port, tmp_path / "gunicorn.log", workers=2, env=env)
    second = None
    base = f"http://127.0.0.1:{port}"
    route = {"route": "/prediction", "method": "GET", "status": "200"}
    try:
        assert not (folder / "server-999999").exists()
        before = samples(requests.get(f"{base}/metrics", timeout=30).text)
        for _ in range(2):  # a new connection each: either worker may answer
            assert requests.get(f"{base}/prediction", timeout=30).status_code == 200
        for _ in range(4):  # whichever worker answers the scrape, the sum is the same
            after = samples(requests.get(f"{base}/metrics", timeout=30).text)
            moved = value(after, "risk_http_requests_total", **route) - value(
                before, "risk_http_requests_total", **route
            )
            assert moved == 2
        served = [labels for labels in labelled(after, "risk_served_model_info")]
        assert {labels["version"] for labels in served} == {str(deployed_workspace.manifest()["version"])}
        [own] = [path for path in folder.iterdir() if path.name == f"server-{process.pid}"]
        assert any(path.name.startswith("counter_") for path in own.iterdir())
        second = start_api_server("127.0.0.1", second_port, tmp_path / "second.log", workers=1, env=env)
        requests.get(f"http://127.0.0.1:{second_port}/health", timeout=30)
        for _ in range(4):
            still = samples(requests.get(f"{base}/metrics", timeout=30).text)
            assert (
                value(still, "risk_http_requests_total", **route)
                - value(before, "risk_http_requests_total", **route)
                == 2
            )
            assert labelled(still, "risk_served_model_info")
    finally:
        stop_process(process)
        if second is not None:
            stop_process(second)
    assert not (folder / f"server-{process.pid}").exists()  # removed when the server stops


def test_a_scrape_reads_the_pipelines_files_again_only_when_one_changes(deployed_workspace, monkeypatch):
    from attrition.api import metrics
    from attrition.core.config import load_config

    collector = metrics.PipelineCollector(load_config(deployed_workspace.config_path))
    reads = []
    original = collector.read
    monkeypatch.setattr(collector, "read", lambda: reads.append(1) or original())
    first = collector.collect()
    assert collector.collect() == first and len(reads) == 1  # nothing changed: nothing read
    history = deployed_workspace.path("prod_deployment_path") / "runhistory.jsonl"
    record = {"start": "2026-11-29T10:00:00Z", "end": "2026-11-29T10:00:01Z", "decision": "nothing new"}
    history.write_text(json.dumps({**record, "exit_status": 0}) + "\n")
    names = {family.name for family in collector.collect()}
    assert len(reads) == 2 and "risk_last_run_exit_status" in names
