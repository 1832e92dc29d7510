"""Drills: kill the pipeline and fill its disk at random instants; production must stay whole.

`make drills` runs the full counts (RISK_DRILLS=full) and writes the figures the README's
Reliability section quotes to benchmarks/results/drills.json; `pytest -m drill` runs a few of
each (about 3 minutes). `make test` leaves them out (they are whole pipeline runs, killed).

After each event: every file of the live version matches its manifest, the model loads and
predicts, and then the next fullprocess.py run exits 0, leaves no debris, and the reports
describe the live version. A run that needed a person would fail the drill.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROJECT_DIR, Workspace, client_frame, copy_template, run_ok, wait_until

from attrition.api.server import free_port
from attrition.core.config import load_config
from attrition.core.names import FEATURES
from attrition.core.records import read_jsonl
from attrition.model import riskmodel
from attrition.production import repair, stamps, versions
from attrition.production.versions import read_manifest

pytestmark = [pytest.mark.slow, pytest.mark.drill]  # make drills (full counts), not make test

FULL = os.environ.get("RISK_DRILLS") == "full"
COUNTS = {
    "deploy_kills": 120 if FULL else 12,
    "fullprocess_kills": 50 if FULL else 2,
    "disk_full": 24 if FULL else 4,
    "diagnostics_kills": 20 if FULL else 2,
    "step_disk_full": 3 if FULL else 1,  # per folder in full: the ingested data's and the models'
}
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "drills.json"
FIGURES: dict[str, dict] = {}
ROW = pd.DataFrame([[10.0, 200.0, 30.0]], columns=list(FEATURES))


def live_version_problems(prod: Path) -> list[str]:
    """What a reader would find wrong right now: [] when the live version is whole and predicts."""
    try:
        manifest = read_manifest(prod)
        repair.check_live_version(prod, manifest, full=True)
        riskmodel.load_deployed(prod).predict(ROW)
    except Exception as error:  # any failure is a finding, whatever its class
        return [f"{type(error).__name__}: {error}"]
    return []


def debris(root: Path) -> list[str]:
    """Temporary files and folders a killed run could leave, anywhere in a workspace."""
    found = []
    for path in root.rglob("*"):
        name = path.name
        if name.endswith(".tmp") or name.startswith("timing-") or name == "pendingreport.json":
            found.append(str(path.relative_to(root)))
    return found


def stale_outputs(workspace: Workspace) -> list[str]:
    """Derived outputs whose stamp does not describe the live version and the ingested data."""
    config = load_config(workspace.config_path)
    state = versions.live(config)
    found = []
    for name, model in (("riskranking.json", True), ("drift.json", True), ("diagnostics.json", False)):
        value = versions.read_json(config.model_folder / name)
        if value is not None:
            problem = stamps.stamp_problem(
                value.get("stamp", value), state, stamps.data_fingerprint(config), model
            )
            if problem:
                found.append(f"{name}: {problem}")
    return found


def course_copies_match(prod: Path) -> bool:
    manifest = read_manifest(prod)
    folder = prod / manifest["folder"]
    return all((prod / name).read_bytes() == (folder / name).read_bytes() for name in manifest["files"])


def record(name: str, **figures) -> None:
    FIGURES[name] = figures
    if FULL:
        RESULTS.parent.mkdir(exist_ok=True)
        previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        RESULTS.write_text(json.dumps({**previous, name: figures}, indent=2))
    print(f"\ndrill {name}: {figures}")


def copy_workspace(source: Workspace, root: Path, **config) -> Workspace:
    workspace = copy_template(source.root, root)
    workspace.set_config(**config)
    return workspace


def run_until_not_locked(workspace: Workspace, timeout: float = 300) -> subprocess.CompletedProcess:
    """The next cron ticks: a tick that finds the lock still held (children dying) exits 75 and is retried."""
    deadline = time.monotonic() + timeout
    while True:
        result = workspace.run("fullprocess.py", timeout=timeout)
        if result.returncode != 75 or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_kills_inside_deployment_and_rollback_leave_one_whole_version_live(reported_workspace):
    """Reported (a call list): each rollback refreshes it, as in production."""
    workspace = reported_workspace
    prod = workspace.path("prod_deployment_path")
    run_ok(workspace, "deployment.py")
    started = time.perf_counter()
    run_ok(workspace, "deployment.py")
    duration = time.perf_counter() - started
    rng = random.Random(10)
    ever_live = {1, 2, 3}
    kills = {"deploy": 0, "rollback": 0}
    for _ in range(COUNTS["deploy_kills"]):
        manifest = read_manifest(prod)
        action = "rollback" if manifest["lineage"] and rng.random() < 0.4 else "deploy"
        newest = max(ever_live)
        rollback = ["--rollback"] if action == "rollback" else []
        process = workspace.start("deployment.py", *rollback, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration * 1.2))
        process.kill()
        process.wait()
        kills[action] += 1
        assert live_version_problems(prod) == [], (action, kills)
        live = read_manifest(prod)["version"]
        # a version that was live before, or (a deploy) a new number above every version ever live
        assert live in ever_live or (action == "deploy" and live > newest), (action, live, ever_live)
        ever_live.add(live)
    result = workspace.run("fullprocess.py")
    assert result.returncode == 0, result.stderr
    assert debris(workspace.root) == [] and course_copies_match(prod)
    archived = set(versions.archived_versions(prod))
    assert archived <= ever_live  # versions that never went live were removed
    record(
        "deployment kills",
        kills=kills,
        seconds_per_run=round(duration, 3),
        versions_live=len(ever_live),
        debris_left=0,
        runs_that_needed_a_person=0,
    )


def one_fullprocess_kill(template: Workspace, root: Path, seed: int, when: float | str, group: bool) -> dict:
    """A redeploying run killed when seconds have passed, or when its log first holds that text."""
    workspace = copy_workspace(template, root, drift_tolerance=-1.0, api_port=free_port())
    workspace.write_csv("input_folder_path", "dataset9.csv", client_frame(300, seed=seed))
    prod = workspace.path("prod_deployment_path")
    log = prod / "fullprocess.log"
    process = workspace.start(
        "fullprocess.py", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    if isinstance(when, str):
        wait_until(
            lambda: log.is_file() and when in log.read_text(errors="replace"),
            f"the run's log to say {when!r}",
        )
    else:
        time.sleep(when)
    if group:
        os.killpg(process.pid, signal.SIGKILL)  # the run and every step
    else:
        process.kill()  # the parent alone: its steps and temporary server must not outlive the run's lock
    process.wait()
    findings = live_version_problems(prod)
    result = run_until_not_locked(workspace)
    if result.returncode != 0:
        findings.append(f"the next run exited {result.returncode}: {result.stderr[-500:]}")
    live = read_manifest(prod)["version"]
    models = workspace.path("output_model_path")
    if live == 2:
        answers = (
            json.loads((models / "apireturns2.txt").read_text())
            if (models / "apireturns2.txt").is_file()
            else {}
        )
        if (
            answers.get("scoring", {}).get("model_version") != 2
            or not (models / "confusionmatrix2.png").is_file()
        ):
            findings.append("the reports do not describe live version 2")
        runs = read_jsonl(prod / "runhistory.jsonl")
        if not any(2 in (run.get("deployed_version"), run.get("reported_pending_version")) for run in runs):
            findings.append("no run record for the deployment of version 2")
    findings += [f"debris: {path}" for path in debris(workspace.root)]
    findings += stale_outputs(workspace)
    if not course_copies_match(prod):
        findings.append("course copies differ from the live version")
    shutil.rmtree(root, ignore_errors=True)
    return {
        "when": when if isinstance(when, str) else round(when, 2),
        "group": group,
        "live_after_kill": live,
        "findings": findings,
    }


# make test's two kills: the whole group before the switch, the parent alone during the reports after it
KILL_POINTS = ["step training.py done", "step deployment.py"]


def test_kills_inside_fullprocess_are_finished_by_the_next_run(deployed_workspace, tmp_path):
    template = deployed_workspace
    duration = None
    if FULL:  # kills at random moments of a whole run: how long one takes, measured first
        probe = copy_workspace(template, tmp_path / "probe", drift_tolerance=-1.0, api_port=free_port())
        probe.write_csv("input_folder_path", "dataset9.csv", client_frame(300, seed=99))
        started = time.perf_counter()
        result = probe.run("fullprocess.py", timeout=300)
        duration = time.perf_counter() - started
        assert result.returncode == 0, result.stderr
    outcomes: list[dict] = []
    seeds = iter(range(COUNTS["fullprocess_kills"]))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                seed = next(seeds, None)
            if seed is None:
                return
            when = random.Random(seed).uniform(0, duration) if FULL else KILL_POINTS[seed]
            outcome = one_fullprocess_kill(
                template, tmp_path / f"kill{seed}", seed, when, group=seed % 2 == 0
            )
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(2)]  # two workspaces at a time: 2 cores
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [outcome for outcome in outcomes if outcome["findings"]]
    assert len(outcomes) == COUNTS["fullprocess_kills"] and failed == [], failed
    record(
        "fullprocess kills",
        kills=len(outcomes),
        process_group=sum(o["group"] for o in outcomes),
        parent_alone=sum(not o["group"] for o in outcomes),
        seconds_per_run=round(duration, 1) if duration else None,
        killed_before_the_switch=sum(o["live_after_kill"] == 1 for o in outcomes),
        killed_after_the_switch=sum(o["live_after_kill"] == 2 for o in outcomes),
        debris_left=0,
        runs_that_needed_a_person=0,
    )


@pytest.fixture
def small_disk(reported_workspace):
    """The production folder on a 32 MiB tmpfs (root only); skipped where mounting is refused.

    Reported (a call list), so that each rollback refreshes the reports and keeps them with its
    version, as in production. Room for the dozens of versions the drill deploys with their
    reports: the filler, not the history, is what fills the disk."""
    deployed_workspace = reported_workspace
    prod = deployed_workspace.path("prod_deployment_path")
    saved = deployed_workspace.root / "prod-saved"
    shutil.copytree(prod, saved)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(prod)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the drill cannot fill a disk here")
    try:
        shutil.copytree(saved, prod, dirs_exist_ok=True)
        yield deployed_workspace
    finally:
        subprocess.run(["umount", "-l", str(prod)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A filler file taking all but about leave bytes of the file system."""
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as handle:
        try:
            handle.write(b"\0" * max(0, free - leave))
        except OSError:
            pass
    return filler


def test_a_full_disk_during_deploy_and_rollback_leaves_one_whole_version_live(small_disk):
    workspace = small_disk
    prod = workspace.path("prod_deployment_path")
    run_ok(workspace, "deployment.py")
    page = 4096  # what tmpfs allocates per file, at least: a version takes more room than its bytes
    version_size = sum(
        -(-path.stat().st_size // page) * page for path in (prod / "archive" / "v0002").iterdir()
    )
    rng = random.Random(7)
    events = {"deploy": {"failed": 0, "succeeded": 0}, "rollback": {"failed": 0, "succeeded": 0}}
    for event in range(COUNTS["disk_full"]):
        if not read_manifest(prod)["lineage"]:
            run_ok(workspace, "deployment.py")  # somewhere to roll back to
        action = ["deploy", "rollback"][event % 2] if event < 2 else rng.choice(["deploy", "rollback"])
        leave = (
            0 if event < 2 else rng.randrange(0, 3 * version_size)
        )  # from a full disk to room for a version
        filler = fill(prod, leave)
        result = workspace.run("deployment.py", *(["--rollback"] if action == "rollback" else []))
        assert "Traceback" not in result.stderr and result.returncode in (0, 74), result.stderr
        events[action]["succeeded" if result.returncode == 0 else "failed"] += 1
        if result.returncode:  # 74: a full disk, said so, with what is live
            assert "No space left" in result.stderr and (
                "still live" in result.stderr or "is live" in result.stderr or "as it was" in result.stderr
            )
        assert live_version_problems(prod) == [], result.stderr
        filler.unlink()
        result = workspace.run("fullprocess.py")  # disk space back: the next run repairs what is left
        assert result.returncode == 0, result.stderr
        assert debris(workspace.root) == [] and course_copies_match(prod)
    assert sum(event["failed"] for event in events.values()) > 0  # the disk did fill up
    record("disk full", events=events, debris_left=0, runs_that_needed_a_person=0)


def test_kills_inside_diagnostics_leave_nothing_the_next_run_does_not_sweep(deployed_workspace):
    """A SIGKILL inside diagnostics.py (a timing run, a history write): the next run, even one with
    nothing new, leaves no temporary file in any folder the pipeline writes."""
    workspace = deployed_workspace
    run_ok(workspace, "diagnostics.py")  # the timing cache is warm: a run is mostly its writes
    history = workspace.path("output_model_path") / "diagnostics_history"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    planted = history / f".diagnostics-x.json.{dead.pid}.0badc0de.tmp"  # a killed writer's, by name
    planted.write_text("{")
    rng = random.Random(17)
    for _ in range(COUNTS["diagnostics_kills"]):
        process = workspace.start("diagnostics.py", stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.5, 4.0))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    result = workspace.run("fullprocess.py")
    assert result.returncode == 0, result.stderr
    assert not planted.exists() and debris(workspace.root) == [], debris(workspace.root)
    record("diagnostics kills", kills=COUNTS["diagnostics_kills"], debris_left=0, runs_that_needed_a_person=0)


@pytest.fixture
def small_folders(deployed_workspace):
    """The ingested data and models folders each on a 4 MiB tmpfs (root only), contents kept."""
    mounted = []
    for key in ("output_folder_path", "output_model_path"):
        folder = deployed_workspace.path(key)
        saved = deployed_workspace.root / f"{folder.name}-saved"
        shutil.copytree(folder, saved)
        if (
            os.geteuid() != 0
            or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
            ).returncode
        ):
            for path in mounted:
                subprocess.run(["umount", "-l", str(path)], check=False)
            pytest.skip("mounting a small tmpfs needs root and mount(8); the drill cannot fill a disk here")
        mounted.append(folder)
        shutil.copytree(saved, folder, dirs_exist_ok=True)
    try:
        yield deployed_workspace
    finally:
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_in_any_step_is_named_exit_74_and_the_next_run_goes_on(small_folders):
    """A disk that fills while a step writes (ingestion, training, scoring, diagnostics, reporting):
    the run ends with exit 74 and a line naming the file, production stays whole, and with space
    back the next run finishes the work."""
    workspace = small_folders
    workspace.set_config(drift_tolerance=-1.0, api_port=free_port())  # every run retrains and redeploys
    rng = random.Random(23)
    events, named = {"ingesteddata": 0, "practicemodels": 0}, set()
    for event in range(COUNTS["step_disk_full"] * (2 if FULL else 1)):
        folder = workspace.path(["output_model_path", "output_folder_path"][event % 2])
        workspace.write_csv(
            "input_folder_path", f"dataset{20 + event}.csv", client_frame(400, seed=20 + event)
        )
        room = 400_000 if folder.name == "practicemodels" else 60_000  # a model and reports; the data
        filler = fill(folder, 0 if event < 2 else rng.randrange(0, room))  # each folder full at first
        result = workspace.run("fullprocess.py", timeout=300)
        assert "Traceback" not in result.stderr and result.returncode in (0, 74), result.stderr[-2000:]
        if result.returncode == 74:
            errors = [line for line in result.stderr.splitlines() if " ERROR fullprocess: " in line]
            assert errors and "disk full writing " in errors[-1] and "is as it was" in errors[-1], (
                result.stderr
            )
            assert "production left as it was" in errors[-1] or "is now live" in errors[-1], errors[-1]
            named.add(errors[-1].split("disk full writing ", 1)[1].split(" ", 1)[0])
            events[folder.name] += 1
        assert live_version_problems(workspace.path("prod_deployment_path")) == []
        filler.unlink()
        result = run_until_not_locked(workspace)
        assert result.returncode == 0, result.stderr[-2000:]
        assert debris(workspace.root) == [] and stale_outputs(workspace) == []
    assert sum(events.values()) > 0  # the disk did fill up
    record(
        "disk full in a step",
        events=events,
        files_named=sorted(named),
        debris_left=0,
        runs_that_needed_a_person=0,
    )
