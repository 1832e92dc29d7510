"""deployment.py: copies, manifest, immutable archive, rollback, refusal."""

import hashlib
import json
import os

import pytest
from conftest import assert_one_line_error, run_ok

from attrition.model.riskmodel import read_deployed_bytes

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast

DEPLOYED = ("trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt")


def snapshot(folder):
    """Every file under folder, but the reports about a version (reporting.py refreshes those) and
    its live.json (the manifest that last made it live, rewritten at each switch to it); lock files
    name their last holder."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and "reports" not in p.relative_to(folder).parts
        and p.name != "live.json"
        and p.suffix != ".lock"
    }


def test_deploys_the_three_files_with_a_manifest(deployed_workspace):
    prod = deployed_workspace.path("prod_deployment_path")
    manifest = json.loads((prod / "manifest.json").read_text())
    assert manifest["version"] == 1
    sources = {
        "trainedmodel.pkl": deployed_workspace.path("output_model_path"),
        "latestscore.txt": deployed_workspace.path("output_model_path"),
        "ingestedfiles.txt": deployed_workspace.path("output_folder_path"),
    }
    for name, folder in sources.items():
        assert (prod / name).read_bytes() == (folder / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256((prod / name).read_bytes()).hexdigest()
        assert (prod / "archive" / "v0001" / name).read_bytes() == (prod / name).read_bytes()
    assert manifest["f1"] == float((prod / "latestscore.txt").read_text())
    blob, _ = read_deployed_bytes(prod)
    assert blob == (prod / "trainedmodel.pkl").read_bytes()


@pytest.mark.parametrize("missing", ["trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt"])
def test_refuses_and_changes_nothing_when_a_file_is_missing(deployed_workspace, missing):
    prod = deployed_workspace.path("prod_deployment_path")
    before = snapshot(prod)
    folder = "output_folder_path" if missing == "ingestedfiles.txt" else "output_model_path"
    (deployed_workspace.path(folder) / missing).unlink()
    result = deployed_workspace.run("deployment.py")
    assert result.returncode == 65  # InputError
    assert_one_line_error(result, missing)
    assert snapshot(prod) == before


def test_refuses_a_score_computed_for_another_model(deployed_workspace):
    prod = deployed_workspace.path("prod_deployment_path")
    before = snapshot(prod)
    model = deployed_workspace.path("output_model_path") / "trainedmodel.pkl"
    meta_path = model.with_name("trainedmodel.json")
    meta = json.loads(meta_path.read_text())
    model.write_bytes(
        model.read_bytes() + b"\n"
    )  # a different model than the one trained, exported and scored
    assert_one_line_error(
        deployed_workspace.run("deployment.py"), "trainedmodel.json: describes another model"
    )
    meta["model_sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    assert_one_line_error(deployed_workspace.run("deployment.py"), "computed for another model")
    del meta["linear_model"]
    meta_path.write_text(json.dumps(meta))
    assert_one_line_error(deployed_workspace.run("deployment.py"), "has no linear_model")
    assert snapshot(prod) == before


def test_versions_are_archived_and_rollback_restores_the_previous_one(retrained_workspace):
    prod = retrained_workspace.path("prod_deployment_path")
    first = {name: (prod / name).read_bytes() for name in DEPLOYED}
    run_ok(retrained_workspace, "deployment.py")  # the other candidate: version 2
    second = {name: (prod / name).read_bytes() for name in DEPLOYED}
    assert second != first
    assert json.loads((prod / "manifest.json").read_text())["version"] == 2
    archived_first = snapshot(prod / "archive" / "v0001")

    result = retrained_workspace.run("deployment.py", "--rollback")
    assert result.returncode == 0, result.stderr
    # never reported: no call list to refresh (the walkthrough's rollback refreshes one)
    assert "there is no call list or report to refresh yet" in result.stderr
    assert not (retrained_workspace.path("output_model_path") / "riskranking.json").exists()
    assert {name: (prod / name).read_bytes() for name in DEPLOYED} == first
    manifest = json.loads((prod / "manifest.json").read_text())
    assert (manifest["version"], manifest["action"], manifest["rolled_back_from"]) == (1, "rollback", 2)
    assert snapshot(prod / "archive" / "v0001") == archived_first
    assert (prod / "archive" / "v0001" / "live.json").read_bytes() == (prod / "manifest.json").read_bytes()
    assert_one_line_error(retrained_workspace.run("deployment.py", "--rollback"), "nothing to roll back to")
    history = [json.loads(line) for line in (prod / "deployments.jsonl").read_text().splitlines()]
    assert [(h["action"], h["version"]) for h in history] == [("deploy", 1), ("deploy", 2), ("rollback", 1)]


def test_rollback_refuses_a_damaged_archive_and_changes_nothing(retrained_workspace):
    prod = retrained_workspace.path("prod_deployment_path")
    run_ok(retrained_workspace, "deployment.py")  # the other candidate: version 2
    archived = prod / "archive" / "v0001" / "trainedmodel.pkl"
    archived.chmod(0o644)
    archived.write_bytes(archived.read_bytes()[:-3])  # bit rot in the archive
    before = snapshot(prod)
    result = retrained_workspace.run("deployment.py", "--rollback")
    assert result.returncode == 1
    assert_one_line_error(result, "v0001/trainedmodel.pkl: archived file is damaged; not rolled back")
    assert snapshot(prod) == before
    (prod / "archive" / "v0001" / "manifest.json").chmod(0o644)
    (prod / "archive" / "v0001" / "manifest.json").write_text("{")
    before = snapshot(prod)
    assert_one_line_error(
        retrained_workspace.run("deployment.py", "--rollback"), "archived version is unreadable"
    )
    assert snapshot(prod) == before


def test_a_damaged_rollback_target_is_named_before_it_is_needed(retrained_workspace):
    """One flipped byte in archive/v0001 (mtime kept), version 2 live: every run names it (issue 31);
    when version 2 is then damaged, the recovery offered is the one that works (--force), not
    --rollback."""
    workspace = retrained_workspace
    prod = workspace.path("prod_deployment_path")
    run_ok(workspace, "deployment.py")  # version 2 live; version 1 is the rollback target
    numbers = prod / "archive" / "v0001" / "trainedmodel.json"
    stat = numbers.stat()
    numbers.chmod(0o644)
    data = bytearray(numbers.read_bytes())
    data[len(data) // 2] ^= 0x01
    numbers.write_bytes(bytes(data))
    os.utime(numbers, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for _ in range(2):  # every run, not once
        result = workspace.run("fullprocess.py", timeout=300)
        assert result.returncode == 0, result.stderr
        assert "version 1 (the rollback target) is damaged" in result.stderr
        assert "v0001/trainedmodel.json: does not match its manifest" in result.stderr
    live = prod / "archive" / "v0002" / "latestscore.txt"
    live.chmod(0o644)
    live.write_text("0.1\n")
    result = workspace.run("fullprocess.py", timeout=300)
    assert_one_line_error(result, "production is broken", "version 1, the rollback target, is damaged too")
    assert "deployment.py --rollback` makes" not in result.stderr
    recovered = workspace.run("fullprocess.py", "--force", timeout=300)  # the command it recommends
    assert recovered.returncode == 0, recovered.stderr


@pytest.mark.parametrize("how", ["copy of manifest.json", "copy of live.json", "link"])
def test_an_archived_manifest_put_in_place_by_hand_is_a_rollback_by_hand(retrained_workspace, how):
    """A person rolls back by copying or linking an archived manifest over manifest.json (issue 31):
    the next run records it as the rollback it is, lineage kept, so --rollback still works after."""
    workspace = retrained_workspace
    prod = workspace.path("prod_deployment_path")
    run_ok(workspace, "deployment.py")  # version 2
    source = prod / "archive" / "v0001" / ("live.json" if how == "copy of live.json" else "manifest.json")
    (prod / "manifest.json").unlink()
    if how == "link":
        (prod / "manifest.json").symlink_to(source)
    else:
        (prod / "manifest.json").write_bytes(source.read_bytes())
    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "recorded as a rollback by hand from version 2 to version 1" in result.stderr
    manifest = json.loads((prod / "manifest.json").read_text())
    assert not (prod / "manifest.json").is_symlink()
    assert (manifest["version"], manifest["action"], manifest["rolled_back_from"]) == (1, "rollback", 2)
    history = [json.loads(line) for line in (prod / "deployments.jsonl").read_text().splitlines()]
    assert [(h["action"], h["version"]) for h in history][-1] == ("rollback", 1)
    # lineage kept: version 2 is not lost, and a deployment after it counts from 3
    assert workspace.run("fullprocess.py", timeout=300).returncode == 0
    assert json.loads((prod / "manifest.json").read_text())["version"] == 1  # stable: recorded once
    assert_one_line_error(workspace.run("deployment.py", "--rollback"), "nothing to roll back to")
    run_ok(workspace, "deployment.py")
    assert json.loads((prod / "manifest.json").read_text())["version"] == 3
    assert (prod / "archive" / "v0002").is_dir()


def test_the_manifest_is_replaced_whole_never_written_in_place(retrained_workspace):
    """The switch is one atomic replace of manifest.json (a new file, then rename): a reader holding
    the old one keeps reading it whole. Written in place, its inode would stay (issue 31: only the
    full drills caught that mutant)."""
    prod = retrained_workspace.path("prod_deployment_path")
    manifest = prod / "manifest.json"
    for args in ((), ("--rollback",)):
        before = manifest.stat().st_ino
        with open(manifest, "rb") as reader:  # a reader that opened it before the switch
            old = reader.read()
            run_ok_args = retrained_workspace.run("deployment.py", *args)
            assert run_ok_args.returncode == 0, run_ok_args.stderr
            reader.seek(0)
            assert reader.read() == old  # still the whole old manifest
        assert manifest.stat().st_ino != before
        assert not [path.name for path in prod.iterdir() if path.name.endswith(".tmp")]
