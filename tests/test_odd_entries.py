"""A directory, a symlink or a special file where the pipeline keeps a record, a log, a lock or an
output (issue 31): moved aside and named, never written through, never an exit 70 on every run.
(A FIFO in such a place still blocks its reader: not handled; docs/reliability.md.)"""

import json
import os
import stat

import pytest
from conftest import client_for, client_frame

pytestmark = pytest.mark.slow

ENTRIES = [
    "production_deployment/.deploy.lock",
    "production_deployment/.fullprocess.lock",
    "production_deployment/fullprocess.log",
    "production_deployment/runhistory.jsonl",
    "production_deployment/deployments.jsonl",
    "production_deployment/processedfiles.json",
    "production_deployment/manifest.json",
    "ingesteddata/ingestionhistory.jsonl",
]


@pytest.mark.parametrize("kind", ["directory", "symlink"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_an_odd_entry_is_moved_aside_and_the_run_goes_on(reported_workspace, entry, kind):
    workspace = reported_workspace
    config_before = workspace.config_path.read_bytes()
    path = workspace.root / entry
    if path.exists():
        path.unlink()
    if kind == "directory":
        path.mkdir()
    else:  # a lock linked to config.json used to truncate it
        path.symlink_to(workspace.config_path)
    if entry.startswith("ingesteddata"):  # written when there is something to ingest
        workspace.write_csv("input_folder_path", "dataset3.csv", client_frame(40, seed=33))
    result = workspace.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert workspace.config_path.read_bytes() == config_before  # never written through
    assert f"{path}.aside-" in result.stderr or entry.endswith("manifest.json")  # named
    if path.exists():  # written again by the run: a regular file of its own
        assert stat.S_ISREG(os.lstat(path).st_mode)
    aside = list(path.parent.glob(path.name + ".aside-*"))
    assert len(aside) == 1
    client = client_for(workspace)
    for route in ("/runs", "/calllist", "/metrics"):
        assert client.get(route).status_code == 200, route
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 200
    json.loads(workspace.config_path.read_text())
