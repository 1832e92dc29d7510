"""Drills of damage, races and real-world names: nothing live lost, nothing decided on unverified
or mixed inputs, and the next run needs no person (issue 18).

Each drill damages or races a real workspace the way an operator's day can (a damaged or deleted
record, a rollback or a config edit during cron's run, a copier still writing, a kill between two
files, a stuck lock, a full disk), then checks an invariant computed independently of the code
under test: the files of every version that went live, the list the team last saw, the rows of
the input files. The races, kills and full disks are marked `drill`: `make drills` (RISK_DRILLS=full)
runs them at the counts the README quotes, `pytest -m drill` once each; `make test` runs the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROJECT_DIR, Workspace, built_once, client_frame, copy_template, run_ok, wait_until
from test_drills import FULL, debris, live_version_problems, record, stale_outputs

from attrition.api.server import free_port
from attrition.core.config import load_config
from attrition.core.processes import sweep
from attrition.pipeline import newdata
from attrition.production import stamps, switch

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast

ROUNDS = 3 if FULL else 1


def prod_of(workspace: Workspace) -> Path:
    return workspace.path("prod_deployment_path")


def version_files(prod: Path, version: int) -> dict[str, bytes]:
    """A version's archived files (what must never be lost), reports and live.json aside."""
    folder = prod / "archive" / f"v{version:04d}"
    return {
        path.name: path.read_bytes()
        for path in folder.iterdir()
        if path.is_file() and path.name != "live.json"
    }


@pytest.fixture(scope="session")
def two_versions_template(deployed_template, tmp_path_factory) -> Path:
    """Versions 1 and 2 went live (a second deployment by hand), then version 1 again (a rollback)."""

    def build(root: Path) -> None:
        workspace = copy_template(deployed_template, root)
        run_ok(workspace, "deployment.py")
        result = workspace.run("deployment.py", "--rollback")
        assert result.returncode == 0, result.stderr
        assert (workspace.manifest()["version"], workspace.manifest()["rolled_back_from"]) == (1, 2)

    return built_once(tmp_path_factory, "two-versions", build)


@pytest.fixture
def two_versions(two_versions_template, tmp_path) -> Workspace:
    workspace = copy_template(two_versions_template, tmp_path / "two")
    workspace.set_config(api_port=free_port())
    return workspace


def damage_history(prod: Path, how: str) -> None:
    path = prod / "deployments.jsonl"
    data = path.read_bytes()
    if how == "a bad byte":
        path.write_bytes(data[:5] + b"\xff" + data[6:])
    elif how == "deleted":
        path.unlink()
    else:  # cut to its first line
        path.write_bytes(data.splitlines(keepends=True)[0])


@pytest.mark.parametrize(
    ("how", "marks"),
    [
        ("a bad byte", "with live.json"),
        ("deleted", "without live.json"),
        ("cut to one line", "without live.json"),
    ]
    + (
        [
            ("a bad byte", "without live.json"),
            ("deleted", "with live.json"),
            ("cut to one line", "with live.json"),
        ]
        if FULL
        else []
    ),
)
def test_a_damaged_deployment_history_never_costs_a_version_that_went_live(two_versions, how, marks):
    workspace, prod = two_versions, prod_of(two_versions)
    kept = {version: version_files(prod, version) for version in (1, 2)}
    if marks == "without live.json":  # archives written before live.json: the manifests' word alone
        for folder in (prod / "archive").iterdir():
            (folder / "live.json").unlink()
    # a version written whole by a run killed before its switch: provably never live
    never = prod / "archive" / "v0003"
    shutil.copytree(prod / "archive" / "v0002", never)
    (never / "live.json").unlink(missing_ok=True)
    manifest = json.loads((never / "manifest.json").read_text()) | {
        "version": 3,
        "folder": "archive/v0003",
        "lineage": [1, 2],
    }
    (never / "manifest.json").chmod(0o644)
    (never / "manifest.json").write_text(json.dumps(manifest))
    damage_history(prod, how)

    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    for version, files in kept.items():  # the invariant: every version that went live, byte for byte
        assert version_files(prod, version) == files, f"version {version} changed or lost ({how}, {marks})"
    assert workspace.manifest()["version"] == 1
    assert not live_version_problems(prod)
    assert not (prod / "archive" / "v0003").exists()
    if how == "a bad byte":
        assert "deployments.jsonl: line 1 damaged" in result.stderr
    if how in ("a bad byte", "deleted"):  # no proof it never went live: moved aside, not deleted
        assert [path.name[:5] for path in (prod / "archive" / "aside").iterdir()] == ["v0003"]
    else:
        assert "removed archive/v0003, a version that never went live" in result.stderr
    # and version 2 is still a way forward: a person can redeploy or roll forward to it later
    assert switch.read_archived_version(prod / "archive" / "v0002")[0]["version"] == 2
    record(f"history_{how.replace(' ', '_')}_{marks.replace(' ', '_')}", versions_kept=2, versions_lost=0)


@pytest.mark.parametrize("damage", ["truncated", "deleted", "garbage", "deleted with live.json and history"])
def test_a_damaged_or_deleted_manifest_is_restored_from_the_archive_by_the_next_run(
    deployed_workspace, damage
):
    workspace, prod = deployed_workspace, prod_of(deployed_workspace)
    workspace.set_config(api_port=free_port())
    run_ok(workspace, "deployment.py")  # version 2 live, lineage [1]
    live = (prod / "manifest.json").read_bytes()
    path = prod / "manifest.json"
    if damage == "truncated":
        path.write_bytes(live[: len(live) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * len(live))
    else:
        path.unlink()
    if damage == "deleted with live.json and history":
        for folder in (prod / "archive").iterdir():
            (folder / "live.json").unlink()
        (prod / "deployments.jsonl").unlink()

    dry = workspace.run("fullprocess.py", "--dry-run")
    assert dry.returncode == 0 and "a run would restore the last live version" in dry.stderr, dry.stderr
    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bootstrap" not in result.stderr  # never a silent bootstrap over history
    restored = workspace.manifest()
    assert (restored["version"], restored["lineage"]) == (2, [1])
    if "live.json" not in damage:
        assert path.read_bytes() == live  # exactly the manifest that was live
    assert "restored version 2, the last live one" in result.stderr
    assert workspace.runs()[-1]["repairs"] and workspace.runs()[-1]["decision"] == "nothing new"
    assert not live_version_problems(prod)
    result = workspace.run("deployment.py", "--rollback")  # versions before it are still reachable
    assert result.returncode == 0, result.stderr
    assert workspace.manifest()["version"] == 1
    record(f"manifest_{damage.replace(' ', '_')}", restored=1, versions_lost=0)


@pytest.mark.parametrize("way_out", [["deployment.py", "--rollback"], ["deployment.py"]])
def test_the_scripts_by_hand_restore_a_truncated_manifest_first(deployed_workspace, way_out):
    workspace, prod = deployed_workspace, prod_of(deployed_workspace)
    run_ok(workspace, "deployment.py")
    path = prod / "manifest.json"
    path.write_bytes(path.read_bytes()[:100])
    result = workspace.run(*way_out)
    assert result.returncode == 0, result.stderr
    assert "restored version 2" in result.stderr
    assert workspace.manifest()["version"] == (1 if "--rollback" in way_out else 3)


def start_run(workspace: Workspace, *args: str) -> subprocess.Popen:
    return workspace.start("fullprocess.py", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def log_says(workspace: Workspace, text: str) -> bool:
    path = prod_of(workspace) / "fullprocess.log"
    return path.exists() and text in path.read_text(errors="replace")


@pytest.mark.drill
def test_a_rollback_during_a_run_wins_and_the_next_run_decides_afresh(deployed_workspace):
    workspace, prod = deployed_workspace, prod_of(deployed_workspace)
    workspace.set_config(api_port=free_port())
    run_ok(workspace, "deployment.py")  # version 2 live
    workspace.write_csv("input_folder_path", "dataset3.csv", client_frame(300, seed=31, regime="last_year"))
    (prod / "fullprocess.log").unlink(missing_ok=True)
    run = start_run(workspace, "--force")  # it will retrain and deploy whatever drift and gate say
    wait_until(lambda: log_says(workspace, "step ingestion.py done"), "the run's ingestion")
    result = workspace.run("deployment.py", "--rollback")  # a person, meanwhile
    assert result.returncode == 0, result.stderr
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    last = workspace.runs()[-1]
    assert last["decision"].startswith("superseded: production changed during"), last["decision"]
    assert workspace.manifest()["version"] == 1  # the person's rollback stands
    assert not (prod / "archive" / "v0003").exists()
    assert not live_version_problems(prod)

    result = workspace.run("fullprocess.py", "--force", timeout=300)  # the next run: the same file, afresh
    assert result.returncode == 0, result.stderr
    assert "dataset3.csv" in workspace.runs()[-1]["new_files"]
    assert workspace.runs()[-1]["decision"] == "redeployed"
    assert workspace.manifest()["lineage"] == [1]  # decided against version 1, live then
    record("rollback_during_a_run", superseded=1, deployed_over_the_rollback=0)


@pytest.mark.drill
def test_a_config_edit_during_a_run_takes_effect_from_the_next_run(deployed_workspace):
    workspace = deployed_workspace
    workspace.set_config(api_port=free_port())
    workspace.write_csv("input_folder_path", "dataset3.csv", client_frame(300, seed=32, regime="last_year"))
    before = workspace.config_path.read_text()
    run = start_run(workspace, "--force")
    wait_until(lambda: log_says(workspace, "step ingestion.py done"), "the run's ingestion")
    workspace.set_config(output_model_path="models")  # the walkthrough's own edit, mid-run
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert workspace.runs()[-1]["decision"] == "redeployed"
    models = workspace.root / "models"
    assert not models.exists() or not any(models.iterdir()), "a step used the edited configuration"
    decision = json.loads((workspace.root / "practicemodels" / "decision.json").read_text())
    assert decision["model_sha256"] == workspace.manifest()["files"]["trainedmodel.pkl"]["sha256"]
    gate = workspace.runs()[-1]["gate"]  # the gate compared the old folder's candidate with the live score
    assert gate["candidate_f1"] == float((workspace.root / "practicemodels" / "latestscore.txt").read_text())
    assert json.loads(before)["output_model_path"] == "practicemodels"
    assert load_config(workspace.config_path).model_folder == models  # the next run's configuration


@pytest.mark.drill
def test_rows_written_while_ingestion_reads_are_never_lost(deployed_workspace):
    workspace = deployed_workspace
    workspace.set_config(api_port=free_port())
    frame = client_frame(4000, seed=33, regime="last_year")
    text = frame.to_csv(index=False)
    lines = text.splitlines(keepends=True)
    path = workspace.path("input_folder_path") / "dataset3.csv"
    path.write_text("".join(lines[: len(lines) // 4]))
    chunks = [lines[start : start + 300] for start in range(len(lines) // 4, len(lines), 300)]

    def copier():  # a slow copier, still writing while the run ingests
        for chunk in chunks:
            with open(path, "a") as handle:
                handle.write("".join(chunk))
            time.sleep(0.6)

    writer = threading.Thread(target=copier)
    writer.start()
    for _ in range(ROUNDS):
        workspace.run("fullprocess.py", timeout=300)
    writer.join()
    for _ in range(3):  # the next runs, with the file complete: until nothing is new
        result = workspace.run("fullprocess.py", timeout=300)
        assert result.returncode in (0, 3), result.stderr
        if workspace.runs()[-1]["decision"] == "nothing new":
            break
    assert workspace.runs()[-1]["decision"] == "nothing new"
    record_ = json.loads((workspace.path("output_folder_path") / "ingestionrecord.json").read_text())
    entry = next(entry for entry in record_["files"] if entry["name"] == "dataset3.csv")
    assert (
        entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    )  # what was ingested is the whole file
    final = pd.read_csv(workspace.path("output_folder_path") / "finaldata.csv", dtype={"corporation": str})
    assert set(frame["corporation"].astype(str)) <= set(final["corporation"])
    record("writer_during_ingestion", rows=len(frame), rows_lost=0)


REPLACE_KILLER = """
import os, runpy, sys
sys.path.insert(0, os.path.dirname(sys.argv[2]))
count, target = [0], int(sys.argv[1])
real = os.replace
def replace(*args, **kwargs):
    count[0] += 1
    if count[0] == target:
        os._exit(137)  # as a SIGKILL: no cleanup, the temporary file left behind
    return real(*args, **kwargs)
os.replace = replace
sys.argv = [sys.argv[2]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def replaces_in_reporting(workspace: Workspace) -> int:
    counter = REPLACE_KILLER.replace("os._exit(137)", "pass").replace(
        "runpy.run_path", "import atexit; atexit.register(lambda: print(count[0])); runpy.run_path"
    )
    result = subprocess.run(
        [sys.executable, "-c", counter, "0", str(PROJECT_DIR / "reporting.py")],
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.drill
def test_a_kill_at_each_replace_of_reporting_keeps_the_list_the_team_last_saw(deployed_workspace, tmp_path):
    template = deployed_workspace
    template.set_config(api_port=free_port())
    run_ok(template, "reporting.py")  # the list the team saw (no diagnostics.json: reporting is the subject)
    seen = pd.read_csv(template.path("practicemodels") / "riskranking.csv", dtype={"corporation": str})
    seen = dict(zip(seen["corporation"], seen["exit_probability"], strict=True))  # the list the team saw
    template.write_csv("input_folder_path", "dataset3.csv", client_frame(300, seed=34))
    run_ok(template, "ingestion.py")  # new data: the next list differs
    # make drills: every replace (counted); make test: the pending basis and each list (2, 3, 4)
    points = (
        range(1, replaces_in_reporting(copy_template(template.root, tmp_path / "count")) + 1)
        if FULL
        else [2, 3, 4]
    )
    for point in points:
        workspace = copy_template(template.root, tmp_path / f"kill{point}")
        killed = subprocess.run(
            [sys.executable, "-c", REPLACE_KILLER, str(point), str(PROJECT_DIR / "reporting.py")],
            env=workspace.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert killed.returncode == 137, killed.stderr
        basis = json.loads((workspace.path("practicemodels") / "riskranking.json").read_text())
        on_disk = hashlib.sha256(
            (workspace.path("practicemodels") / "riskranking.csv").read_bytes()
        ).hexdigest()
        assert stale_outputs(workspace) or (not basis.get("pending") and basis["list_sha256"] == on_disk), (
            f"a kill at replace {point}: a list its basis does not describe, and no stale stamp to refresh it"
        )
        result = workspace.run("reporting.py", timeout=300)  # what the next cron run does with a stale stamp
        assert result.returncode == 0, result.stderr
        now = pd.read_csv(workspace.path("practicemodels") / "riskranking.csv", dtype={"corporation": str})
        compared = now[now["corporation"].isin(list(seen))]
        expected = compared["corporation"].map(seen)
        assert len(compared) and (compared["previous_probability"] - expected).abs().max() < 1e-12, (
            f"after a kill at replace {point}, the list was compared with another list than the last seen"
        )
        assert not stale_outputs(workspace)
        sweep(
            stamps.written_folders(load_config(workspace.config_path))
        )  # as the next fullprocess.py run does
        assert not debris(workspace.root)
    record("reporting_replace_kills", kills=len(points), at_replaces=list(points), change_lost=0)


HOLDER = """
import fcntl, json, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.truncate(0)
since = time.time() - float(sys.argv[2])
handle.write(json.dumps({"pid": os.getpid(), "since": since, "command": "deployment.py"}))
handle.flush()
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("held_for", [60, 3600])
def test_a_deploy_lock_held_by_a_live_process_is_busy_then_a_failure_naming_it(deployed_workspace, held_for):
    workspace, prod = deployed_workspace, prod_of(deployed_workspace)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(prod / ".deploy.lock"), str(held_for)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = workspace.run("fullprocess.py")
    finally:
        holder.kill()
        holder.wait()
    last = workspace.runs()[-1]
    if held_for < 1200:
        assert result.returncode == 75 and last["decision"].startswith("busy"), result.stderr
    else:  # a stuck deployment: a failure (heartbeat /fail, an alert), naming the holder
        assert result.returncode == 1, result.stderr
        assert f"held by PID {holder.pid} (deployment.py) for 60 minutes" in last["decision"]
    assert workspace.run("fullprocess.py").returncode == 0  # the holder gone: the next run goes on


@pytest.mark.drill
@pytest.mark.parametrize("target", ["runhistory.jsonl", "fullprocess.log"])
def test_a_full_disk_on_the_run_history_or_the_log_is_exit_74_and_the_deployment_is_recorded(
    deployed_workspace, target
):
    workspace, prod = deployed_workspace, prod_of(deployed_workspace)
    workspace.set_config(api_port=free_port())
    workspace.write_csv("input_folder_path", "dataset3.csv", client_frame(300, seed=35, regime="last_year"))
    history = prod / "runhistory.jsonl"
    saved = history.read_bytes() if history.exists() else b""
    (prod / target).unlink(missing_ok=True)
    (prod / target).symlink_to("/dev/full")  # every write: ENOSPC
    result = workspace.run("fullprocess.py", "--force", timeout=300)
    assert result.returncode == 74, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("cannot write the log file") <= 1
    assert "version 2 is now live" in result.stderr  # says what is live
    (prod / target).unlink()
    if target == "runhistory.jsonl":
        history.write_bytes(saved)
    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    deployed = [entry for entry in workspace.runs() if entry.get("deployed_version") == 2]
    assert len(deployed) == 1, workspace.runs()  # the redeploy that happened is in the run history
    assert not live_version_problems(prod)


# The cases of issue 18 that need no race: each as it was found, and what holds now.


def test_a_file_redropped_with_the_same_size_and_mtime_is_new(deployed_workspace):
    workspace = deployed_workspace
    path = workspace.path("input_folder_path") / "dataset2.csv"
    data, stat = path.read_bytes(), path.stat()
    run_ok(workspace, "fullprocess.py")  # nothing new, identities recorded
    changed = data.replace(b",0\n", b",1\n", 1)  # a same-length edit
    assert len(changed) == len(data) and changed != data
    path.write_bytes(changed)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # cp -p, rsync -t, tar x
    config = load_config(workspace.config_path)
    assert newdata.find_new_files(config)[0] == ["dataset2.csv"]
    path.write_bytes(data)  # the same bytes again: its new identity is remembered, not re-read next time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert newdata.find_new_files(config)[0] == []
    processed = json.loads((prod_of(workspace) / "processedfiles.json").read_text())
    entry = next(entry for entry in processed["files"] if entry["name"] == "dataset2.csv")
    assert entry["ctime_ns"] == path.stat().st_ctime_ns


def test_entries_rejected_by_name_are_remembered_and_not_reprocessed_every_run(deployed_workspace, tmp_path):
    workspace = deployed_workspace
    workspace.set_config(api_port=free_port(), drift_tolerance=1.0)  # no drift: no retraining to wait for
    folder = workspace.path("input_folder_path")
    outside = tmp_path / "elsewhere.csv"
    outside.write_text((folder / "dataset1.csv").read_text())
    (folder / "linked.csv").symlink_to(outside)
    (folder / "two\nlines.csv").write_text((folder / "dataset1.csv").read_text())
    first = workspace.run("fullprocess.py", timeout=300)
    assert first.returncode == 3, first.stderr  # rejected, named, said once
    assert len(workspace.runs()[-1]["rejected_files"]) == 2
    second = workspace.run("fullprocess.py", timeout=300)
    assert second.returncode == 0 and workspace.runs()[-1]["decision"] == "nothing new", second.stderr
    outside.write_text(outside.read_text() + "zzzz9,1,2,3,0\n")  # changed: examined again
    assert newdata.find_new_files(load_config(workspace.config_path))[0] == ["linked.csv"]


@pytest.mark.parametrize("name", ["latestscore.txt", "trainedmodel.pkl"])
def test_a_live_file_changed_without_changing_its_size_stops_the_run(deployed_workspace, name):
    workspace, prod = deployed_workspace, prod_of(deployed_workspace)
    path = prod / workspace.manifest()["folder"] / name
    data, stat = bytearray(path.read_bytes()), path.stat()
    data[2] ^= (
        0x01 if name.endswith(".pkl") else ord("8") ^ ord("9")
    )  # 0.86 -> 0.96, or one bit of the pickle
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = workspace.run("fullprocess.py")
    assert result.returncode == 1, result.stderr
    assert f"{name}: does not match the manifest of live version 1" in workspace.runs()[-1]["decision"]


def test_ingestion_then_deployment_by_hand_is_refused_until_retrained(deployed_workspace):
    workspace = deployed_workspace
    workspace.write_csv("input_folder_path", "dataset3.csv", client_frame(300, seed=36))
    assert workspace.run("ingestion.py").returncode == 0
    result = workspace.run("deployment.py")
    assert result.returncode == 65, result.stderr
    assert (
        "was not trained on the data" in result.stderr and "run training.py and scoring.py" in result.stderr
    )
    assert workspace.manifest()["version"] == 1
    run_ok(workspace, "training.py", "scoring.py", "deployment.py")
    assert workspace.manifest()["version"] == 2


def test_two_checkouts_with_one_production_folder_are_refused(deployed_workspace, tmp_path):
    first = deployed_workspace
    shutil.move(prod_of(first), tmp_path / "shared")  # beside both checkouts: ../shared
    first.set_config(prod_deployment_path="../shared")
    run_ok(first, "deployment.py")  # version 2, deployed by the first checkout into the shared folder
    second = copy_template(first.root, tmp_path / "second")  # another checkout, the same folder
    result = second.run("fullprocess.py")
    assert result.returncode == 1, result.stderr
    assert "one production folder serves one checkout" in result.stderr
    assert second.run("deployment.py").returncode == 1
    assert second.run("deployment.py", "--rollback").returncode == 1
    assert first.manifest()["version"] == 2
    assert first.run("fullprocess.py").returncode == 0  # its own checkout goes on


def test_ambiguous_extract_names_are_warned_about_and_a_vanished_file_named_as_such(workspace, tmp_path):
    from attrition.data import ingest

    workspace.write_csv("input_folder_path", "dataset1.csv", client_frame(20, seed=1))
    workspace.write_csv("input_folder_path", "dataset01.csv", client_frame(20, seed=2))
    result = workspace.run("ingestion.py")
    assert result.returncode == 0, result.stderr
    assert "'dataset01.csv' and 'dataset1.csv': their numbers do not decide" in result.stderr
    folder = workspace.path("input_folder_path")
    assert ingest.name_problem(folder / "gone.csv", folder) == "deleted before it could be read"
