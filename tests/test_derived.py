"""Derived files a person or the disk may change between runs (issue 31): the call list, the lost list
and the query store are checked against the sha256 reporting.py recorded, restored by the next run
from what they were made from, and never taken for "the list the team last saw"."""

import json
import os

import pandas as pd
import pytest
from conftest import client_for, client_frame

pytestmark = pytest.mark.slow


def flip_a_byte_keeping_mtime(path, where=None):
    stat = path.stat()
    data = bytearray(path.read_bytes())
    where = len(data) // 2 if where is None else where
    data[where] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("edit", ["drop the called rows", "spreadsheet", "delete", "directory"])
def test_an_edited_call_list_is_restored_and_never_the_list_last_given(reported_workspace, edit):
    workspace = reported_workspace
    models = workspace.path("output_model_path")
    path = models / "riskranking.csv"
    given = path.read_bytes()
    calls = pd.read_csv(path, dtype={"corporation": str})
    if edit == "drop the called rows":
        calls.iloc[20:].to_csv(path, index=False)
    elif edit == "spreadsheet":
        calls.to_csv(path, index=False, lineterminator="\r\n", float_format="%.6f")
    elif edit == "delete":
        path.unlink()
    else:
        path.unlink()
        path.mkdir()
    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "riskranking.csv is not the file reporting.py wrote" in result.stderr or (
        "riskranking.csv is missing" in result.stderr
    )
    assert path.read_bytes() == given  # restored: the same model and data give the same list
    # new data: the clients the team was given are compared with the list given, not the edit
    workspace.write_csv("input_folder_path", "dataset3.csv", client_frame(30, seed=31))
    assert workspace.run("fullprocess.py", timeout=300).returncode == 0
    after = pd.read_csv(path, dtype={"corporation": str})
    was_given = after["corporation"].isin(calls["corporation"])
    assert was_given.sum() > 20 and not (after.loc[was_given, "change"] == "new client").any()


def test_a_damaged_store_is_never_served_and_the_next_run_rebuilds_it(reported_workspace):
    workspace = reported_workspace
    models = workspace.path("output_model_path")
    store = models / "riskdata.sqlite"
    client = client_for(workspace)
    first = client.get("/calllist?limit=1").get_json()["rows"][0]
    flip_a_byte_keeping_mtime(store, where=store.stat().st_size - 100)
    answer = client.get("/calllist?limit=1")
    assert answer.status_code == 503 and "not the file reporting.py wrote" in answer.get_json()["message"]
    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "riskdata.sqlite is not the file reporting.py wrote" in result.stderr
    assert client.get("/calllist?limit=1").get_json()["rows"][0] == first
    basis = json.loads((models / "riskranking.json").read_text())
    import hashlib

    assert hashlib.sha256(store.read_bytes()).hexdigest() == basis["store_sha256"]
