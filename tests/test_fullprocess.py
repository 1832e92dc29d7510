"""fullprocess.py end to end: real subprocesses in temporary workspaces."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import (
    PROJECT_DIR,
    assert_one_line_error,
    client_for,
    client_frame,
    make_workspace,
    pdf_subject,
    run_ok,
    wait_until,
    watch,
)

from attrition.api.server import free_port
from attrition.core.errors import EXIT_LOCKED
from attrition.model.riskmodel import load_deployed

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast


def production(workspace):
    """The deployed files a reader uses (histories and logs excluded)."""
    prod = workspace.path("prod_deployment_path")
    skip = {
        "runhistory.jsonl",
        "fullprocess.log",
        "deployments.jsonl",
        "processedfiles.json",
        ".fullprocess.lock",
        ".deploy.lock",  # names its last holder
        "lastlist.json",  # where the list last given lives (reporting.py)
    }
    return {p.name: p.read_bytes() for p in prod.iterdir() if p.is_file() and p.name not in skip}


@pytest.fixture
def deployed(deployed_workspace):
    """The deployed small workspace, with its own API port (fullprocess starts a temporary API there)."""
    deployed_workspace.set_config(api_port=free_port())
    return deployed_workspace


def add_file(workspace, name, frame):
    workspace.write_csv("input_folder_path", name, frame)


def test_the_seed_walkthrough_on_the_bundled_data(tmp_path):
    workspace = make_workspace(tmp_path / "walk", api_port=free_port())
    for folder in ("practicedata", "sourcedata", "testdata"):
        shutil.copytree(PROJECT_DIR / folder, workspace.root / folder, dirs_exist_ok=True)

    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bootstrap" in result.stderr
    practice = workspace.root / "practicemodels"
    assert {"confusionmatrix.png", "apireturns.txt", "report.pdf", "riskranking.csv"} <= {
        p.name for p in practice.iterdir()
    }
    assert workspace.manifest()["version"] == 1
    first_report = (
        workspace.root / "production_deployment" / "archive" / "v0001" / "reports" / "report.pdf"
    ).read_bytes()
    summary = workspace.run("fullprocess.py", "--summary")
    assert summary.returncode == 0 and "Last run" in summary.stdout and "bootstrapped" in summary.stdout
    assert (
        "  practicemodels/riskranking.csv" in summary.stdout
        and "point config.json at sourcedata" in summary.stdout
    )
    assert str(workspace.root) not in summary.stdout

    workspace.set_config(input_folder_path="sourcedata", output_model_path="models")
    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    last = workspace.runs()[-1]
    assert last["decision"] == "redeployed"
    assert sorted(last["new_files"]) == ["dataset3.csv", "dataset4.csv"]
    assert last["drift"]["drift"] and last["drift"]["new_score"] < last["drift"]["deployed_score"]
    assert last["gate"]["passed"] and last["gate"]["candidate_f1"] > last["gate"]["deployed_f1"]
    models = workspace.root / "models"
    assert (models / "confusionmatrix2.png").read_bytes().startswith(b"\x89PNG")
    answers = json.loads((models / "apireturns2.txt").read_text())
    assert answers["scoring"]["model_version"] == 2 == workspace.manifest()["version"]
    assert (
        workspace.root / "production_deployment" / "ingestedfiles.txt"
    ).read_text() == "dataset3.csv\ndataset4.csv\n"
    # issue 12's walkthrough: the call list holds only clients still with us, each with a reason and a change
    calls = pd.read_csv(models / "riskranking.csv", dtype={"corporation": str})
    final = pd.read_csv(workspace.root / "ingesteddata" / "finaldata.csv", dtype={"corporation": str})
    latest = final.drop_duplicates("corporation", keep="last")
    assert not set(calls["corporation"]) & set(latest.loc[latest["exited"] == 1, "corporation"])
    assert calls["reason"].notna().all() and calls["change"].notna().all()
    version2 = workspace.root / "production_deployment" / "archive" / "v0002"
    decision = json.loads((version2 / "decision.json").read_text())
    assert decision["drift"]["new_score"] == last["drift"]["new_score"] and decision["gate"] == last["gate"]
    assert decision["summary"].startswith("Retrained because the model then live lost accuracy")
    assert (version2 / "reports" / "report.pdf").read_bytes().startswith(b"%PDF-")
    summary = workspace.run("fullprocess.py", "--summary")
    assert "  models/riskranking.csv" in summary.stdout and "make serve" in summary.stdout

    result = workspace.run("fullprocess.py")  # its speed is measured by make bench, not here
    assert result.returncode == 0 and "no new data" in result.stderr
    assert workspace.runs()[-1]["decision"] == "nothing new"

    # step 4 (issue 17): rolled back to version 1, every view says so and shows version 1's figures;
    # the call list is today's clients with version 1's risks (--force is tested on its own)
    result = workspace.run("deployment.py", "--rollback", timeout=300)
    assert result.returncode == 0 and "refreshed the report and the call list for version 1" in result.stderr
    basis = json.loads((models / "riskranking.json").read_text())
    assert basis["model_version"] == 1 == workspace.manifest()["version"]
    rolled = pd.read_csv(models / "riskranking.csv", dtype={"corporation": str})
    assert sorted(rolled["corporation"]) == sorted(calls["corporation"])
    assert not rolled["exit_probability"].equals(calls["exit_probability"])
    reports = workspace.root / "production_deployment" / "archive" / "v0001" / "reports"
    assert (reports / "report.pdf").read_bytes() == first_report  # the deployment-time report, untouched
    assert len(list(reports.glob("report-*Z.pdf"))) == 1  # the rollback's report, beside it
    figures = json.loads((models / "drift.json").read_text())
    assert figures["stamp"]["model_version"] == 1
    assert json.loads((models / "diagnostics.json").read_text())["stamp"]["model_version"] == 2  # says whose
    html = dashboard_html(workspace)
    assert "rolled back from version 2 (deployment.py --rollback)" in html
    assert "Drift since this version was trained: version 1&#39;s training data against the latest" in html
    assert "3 of 3 features drifted" in html  # version 1 against the latest data: all three features
    assert "these figures are version" not in html  # the drift figures are version 1's own
    assert pdf_subject(models / "report.pdf").startswith("model version 1,")


def dashboard_html(workspace) -> str:
    """The dashboard's main page as a browser gets it, from the real app on the workspace."""
    from attrition.api import app, serving

    serving.clear()
    client = app.create_app({"RISK_CONFIG": str(workspace.config_path)}).test_client()
    response = client.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_changed_content_is_new_data_but_a_touch_is_not(deployed):
    path = deployed.path("input_folder_path") / "dataset1.csv"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    assert "no new data" in deployed.run("fullprocess.py", "--dry-run").stderr
    frame = pd.read_csv(path)
    frame.loc[0, "lastyear_activity"] += 1
    frame.to_csv(path, index=False)
    result = deployed.run("fullprocess.py", "--dry-run")
    assert "new data in" in result.stderr and "dataset1.csv" in result.stderr


def test_dry_run_changes_nothing(deployed):
    add_file(deployed, "dataset9.csv", client_frame(100, seed=9))
    before = {p: p.read_bytes() for p in deployed.root.rglob("*") if p.is_file()}
    result = deployed.run("fullprocess.py", "--dry-run")
    assert result.returncode == 0
    assert "would ingest" in result.stderr and "dataset9.csv" in result.stderr
    after = {p: p.read_bytes() for p in deployed.root.rglob("*") if p.is_file()}
    assert after == before


def test_no_drift_keeps_the_model_and_is_not_reconsidered(reported_workspace):
    """Also the lock: a second run while this one works exits 75."""
    deployed = reported_workspace  # version 1 with the report of its deployment
    # the parametric test with a history of one deployed score falls back to raw, where a drop of a
    # whole F1 point would be needed
    deployed.set_config(drift_test="parametric", drift_tolerance=1.0, api_port=free_port())
    kept = deployed.path("prod_deployment_path") / "archive" / "v0001" / "reports"
    at_deployment = (kept / "report.pdf").read_bytes()
    before = production(deployed)
    add_file(deployed, "dataset9.csv", client_frame(100, seed=9))
    log = deployed.path("prod_deployment_path") / "fullprocess.log"
    run = deployed.start("fullprocess.py", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:  # while it works, a second run (the next cron tick) exits with the lock code, in one line
        wait_until(lambda: log.is_file() and "new data in" in log.read_text(), "the run to find new data")
        second = deployed.run("fullprocess.py")
        assert second.returncode == EXIT_LOCKED
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "holds" in lines[0] and "Traceback" not in second.stderr
    finally:
        _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert "parametric test needs 2 deployed scores, history has 1: raw test used" in stderr
    assert deployed.runs()[-1]["decision"] == "no drift: kept the deployed model"
    assert deployed.runs()[-1]["drift"]["test_used"] == "raw"
    assert production(deployed) == before
    ranking = pd.read_csv(deployed.path("output_model_path") / "riskranking.csv")  # the new clients ranked
    new = client_frame(100, seed=9)
    assert set(new.loc[new["exited"] == 0, "corporation"]) <= set(ranking["corporation"])
    assert not set(new.loc[new["exited"] == 1, "corporation"]) & set(ranking["corporation"])
    # the report follows the call list: page 1's first 10 are the new list's, in its archive beside
    # the report made at deployment, which stays as it was
    first10 = " ".join(ranking["corporation"].astype(str).head(10))
    models = deployed.path("output_model_path")
    assert pdf_subject(models / "report.pdf").endswith(f"first 10 to call: {first10}")
    assert (kept / "report.pdf").read_bytes() == at_deployment
    later = sorted(kept.glob("report-*Z.pdf"))
    assert len(later) == 1 and pdf_subject(later[0]).endswith(first10)
    record = json.loads((deployed.path("output_folder_path") / "ingestionrecord.json").read_text())
    for stamped in ("riskranking.json", "diagnostics.json", "drift.json"):
        stamp = json.loads((models / stamped).read_text())
        stamp = stamp.get("stamp", stamp)
        assert (stamp["model_version"], stamp["data_sha256"]) == (1, record["finaldata_sha256"]), stamped
    assert deployed.run("fullprocess.py").returncode == 0
    assert deployed.runs()[-1]["decision"] == "nothing new"
    assert deployed.runs()[-1]["steps"] == []  # every stamp describes the live state: nothing to refresh


def test_the_gate_refuses_a_worse_candidate(deployed):
    deployed.set_config(drift_tolerance=-1.0)  # always drift
    before = production(deployed)
    noise = client_frame(2000, seed=20).assign(exited=lambda f: 1 - f["exited"])  # labels flipped
    add_file(deployed, "dataset9.csv", noise)
    result = deployed.run("fullprocess.py")
    assert result.returncode == 0, result.stderr
    last = deployed.runs()[-1]
    assert last["decision"] == "gate refused: kept the deployed model"
    assert last["gate"]["candidate_f1"] < last["gate"]["deployed_f1"] and not last["gate"]["passed"]
    assert production(deployed) == before
    # a person's `make deploy` afterwards: the refused candidate is refused again (issue 31) ...
    by_hand = deployed.run("deployment.py")
    assert_one_line_error(by_hand, "promotion gate refused this model", "deployment.py --force")
    assert by_hand.returncode == 65 and production(deployed) == before
    # ... unless forced, and then it is marked forced: manifest, history, /metrics, dashboard, report
    forced = deployed.run("deployment.py", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "past the promotion gate's refusal" in forced.stderr
    manifest = deployed.manifest()
    assert manifest["version"] == 2
    assert manifest["forced"]["candidate_f1"] == pytest.approx(last["gate"]["candidate_f1"])
    prod = deployed.path("prod_deployment_path")
    history = [json.loads(line) for line in (prod / "deployments.jsonl").read_text().splitlines()]
    assert history[-1]["forced"] == manifest["forced"]
    client = client_for(deployed)
    assert b"risk_live_model_forced 1.0" in client.get("/metrics").data
    page = client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "forced" in page and "deployed past the promotion gate" in page


def test_with_the_gate_off_a_worse_candidate_is_deployed(deployed, receiver):
    """Also: cd elsewhere && RISK_CONFIG=relative/config.json. The steps start in the project folder
    and must still read the same file (they used to resolve it there and deploy into another folder).
    And the redeploy's one notification (test_notify.py has the others)."""
    watch(deployed, receiver).set_config(drift_tolerance=-1.0, promotion_gate=False)
    noise = client_frame(2000, seed=20).assign(exited=lambda f: 1 - f["exited"])  # labels flipped
    add_file(deployed, "dataset9.csv", noise)
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "fullprocess.py")],
        cwd=deployed.root.parent,
        env={**deployed.env, "RISK_CONFIG": f"{deployed.root.name}/config.json"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert not (PROJECT_DIR / deployed.root.name).exists()
    last = deployed.runs()[-1]
    assert last["gate"] == {
        "candidate_f1": last["gate"]["candidate_f1"],
        "deployed_f1": last["gate"]["deployed_f1"],
        "enabled": False,
        "passed": False,
        "deploy": True,
        "forced": False,
    }
    assert "promotion_gate is off: deploying anyway" in last["reasons"]
    assert last["decision"] == "redeployed" and deployed.manifest()["version"] == 2
    [message] = receiver.messages()
    assert message["title"] == "risk model: redeployed" and message["type"] == "success"
    assert "version 2 is live" in message["message"] and "Drift (raw)" in message["message"]
    assert receiver.pings() == ["/ping"]
    assert deployed.manifest()["f1"] == pytest.approx(last["gate"]["candidate_f1"])
    # diagnostics.py reports the seconds the run's own steps took, not a second timing of the same work
    seconds = {step["step"]: step["seconds"] for step in last["steps"]}
    timing = json.loads((deployed.path("output_model_path") / "diagnostics.json").read_text())
    assert timing["execution_time_seconds"] == {
        "ingestion": seconds["ingestion.py"],
        "training": seconds["training.py"],
    }


def test_a_failing_step_leaves_production_unchanged(deployed):
    deployed.set_config(drift_tolerance=-1.0)
    before = production(deployed)
    folder = deployed.path("input_folder_path")
    for path in folder.iterdir():
        path.unlink()
    add_file(deployed, "stayers.csv", client_frame(50, seed=30).assign(exited=0))  # one class: training fails
    forgotten = deployed.run("ingestion.py", "--forget", "dataset1.csv", "--forget", "dataset2.csv")
    assert forgotten.returncode == 0, forgotten.stderr  # the removed extracts' rows go deliberately
    result = deployed.run("fullprocess.py")
    assert result.returncode == 1
    assert_one_line_error(
        result, "step training.py failed (exit 65)", "single class", "production left as it was"
    )
    assert production(deployed) == before
    assert deployed.runs()[-1]["exit_status"] == 1


def test_a_lock_left_by_a_killed_holder_does_not_block(deployed):
    lock = deployed.path("prod_deployment_path") / ".fullprocess.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert deployed.run("fullprocess.py").returncode == EXIT_LOCKED
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock.exists()
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    assert deployed.run("fullprocess.py").returncode == 0


@pytest.mark.drill  # a kill mid-training; the kill drills (test_drills.py) kill at every moment
def test_a_run_killed_mid_way_leaves_production_consistent(deployed):
    deployed.set_config(drift_tolerance=-1.0)
    add_file(deployed, "dataset9.csv", client_frame(3000, seed=9))
    log = deployed.path("prod_deployment_path") / "fullprocess.log"
    run = deployed.start(
        "fullprocess.py", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_until(lambda: log.is_file() and "drift check" in log.read_text(), "the run to pass its drift check")
    os.killpg(run.pid, signal.SIGKILL)  # the run and its step, mid-training
    run.wait()
    prod = deployed.path("prod_deployment_path")
    load_deployed(prod)  # still verifies and loads
    assert deployed.manifest()["version"] == 1
    result = deployed.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "dataset9.csv" in result.stderr  # not forgotten: decided on again
    assert deployed.runs()[-1]["decision"] == "redeployed"
    assert deployed.manifest()["version"] == 2


def test_a_hanging_step_is_stopped_and_the_next_run_finishes_the_reports(deployed):
    run_ok(deployed, "deployment.py")  # version 2 live, as a run killed before its reports leaves it:
    prod = deployed.path("prod_deployment_path")
    (prod / "pendingreport.json").write_text(json.dumps({"after_version": 1, "second": True}))
    deployed.set_config(step_timeout_seconds=8)  # only the report steps run: no real work races the bound
    timing_lock = deployed.root / ".cache" / "timing.lock"
    timing_lock.parent.mkdir(exist_ok=True)
    with open(timing_lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # diagnostics.py waits for this lock: a step that hangs
        result = deployed.run("fullprocess.py", timeout=120)
    assert result.returncode == 1
    assert_one_line_error(result, "step diagnostics.py timed out after 8 s", "version 2 live")
    last = deployed.runs()[-1]
    assert last["steps"][-1]["step"] == "diagnostics.py" and last["steps"][-1]["exit"] is None
    assert deployed.manifest()["version"] == 2
    models = deployed.path("output_model_path")
    assert not (models / "apireturns2.txt").exists()

    deployed.set_config(step_timeout_seconds=900)  # the steps' real work must not race the short bound
    result = deployed.run("fullprocess.py", timeout=300)  # what the killed run started, this one finishes
    assert result.returncode == 0, result.stderr
    assert "version 2 went live in an earlier run that stopped before its reports" in result.stderr
    last = deployed.runs()[-1]
    assert last["decision"] == "nothing new" and last["reported_pending_version"] == 2
    assert json.loads((models / "apireturns2.txt").read_text())["scoring"]["model_version"] == 2
    assert (models / "confusionmatrix2.png").is_file()
    assert deployed.run("fullprocess.py").returncode == 0
    assert "reported_pending_version" not in deployed.runs()[-1]  # reported once, not again


def test_a_deployment_in_progress_makes_the_run_wait_for_the_next_tick(deployed):
    lock = deployed.path("prod_deployment_path") / ".deploy.lock"
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as deployment.py run by hand, half-way
        result = deployed.run("fullprocess.py", timeout=120)
    assert result.returncode == EXIT_LOCKED
    assert "a deployment.py run is in progress" in result.stderr and "Traceback" not in result.stderr
    assert deployed.runs()[-1]["exit_status"] == EXIT_LOCKED


def test_a_broken_live_version_stops_the_run_and_each_way_out_works(deployed):
    """Damaged files of the live version: never "nothing new"; a rollback, a deploy or --force recover."""
    prod = deployed.path("prod_deployment_path")
    run_ok(deployed, "deployment.py")  # version 2, so that version 1 can be rolled back to

    def damage(name):
        path = prod / deployed.manifest()["folder"] / name
        path.chmod(0o644)
        path.write_text("damaged\n")

    damage("referencedata.csv")
    result = deployed.run("fullprocess.py")
    assert result.returncode == 1
    assert_one_line_error(
        result,
        "v0002/referencedata.csv: does not match the manifest of live version 2",
        "`python deployment.py --rollback` makes version 1 live again",
    )
    assert deployed.runs()[-1]["exit_status"] == 1 and "nothing new" not in result.stderr
    for way_out, version in ((["deployment.py", "--rollback"], 1), (["deployment.py"], 3)):
        result = deployed.run(*way_out)
        assert result.returncode == 0, result.stderr
        assert deployed.manifest()["version"] == version and deployed.run("fullprocess.py").returncode == 0
        damage("latestscore.txt")
        assert deployed.run("fullprocess.py").returncode == 1
    result = deployed.run("fullprocess.py", "--force", timeout=300)
    assert result.returncode == 0, result.stderr
    assert (
        deployed.runs()[-1]["decision"] == "redeployed over a broken version"
        and deployed.manifest()["version"] == 4
    )
    assert deployed.run("fullprocess.py").returncode == 0


def test_a_missing_finaldata_is_rebuilt_by_the_next_run_and_a_rollback_reports(deployed):
    """finaldata.csv deleted between runs (issue 31): the next run rebuilds it from the extracts it
    was made from, before anything reads it; a rollback's report refresh then works."""
    output = deployed.path("output_folder_path")
    before = (output / "finaldata.csv").read_bytes()
    (output / "finaldata.csv").unlink()
    result = deployed.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "finaldata.csv is missing: rebuilding it" in result.stderr
    assert (output / "finaldata.csv").read_bytes() == before
    assert deployed.runs()[-1]["decision"] == "nothing new"
