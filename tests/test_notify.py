"""fullprocess.py's notifications (notify.py), received by a local HTTP server through apprise's json:// URL,
and its heartbeat ping: one message per run that matters, none for a quiet run, never a failed run."""

import pytest
from conftest import client_frame, watch

from attrition.api.server import free_port

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast


@pytest.fixture
def watched(reported_workspace, receiver):
    reported_workspace.set_config(api_port=free_port())
    return watch(reported_workspace, receiver)


def test_a_rejected_file_sends_one_warning_and_a_quiet_run_none(watched, receiver):
    """The redeploy's message: test_fullprocess.py's gate-off run, which redeploys anyway."""
    assert watched.run("fullprocess.py").returncode == 0  # nothing new: no message, one ping
    assert receiver.messages() == [] and receiver.pings() == ["/ping"]

    # a rejected file beside a good one, no drift: named in the log, the decision, the run record, the
    # exit status (3) and one warning message; decided on, it is not reported again until it changes
    watched.set_config(drift_tolerance=1.0)
    (watched.path("input_folder_path") / "broken.csv").write_text("corporation,exited\nab,1\n")
    watched.write_csv("input_folder_path", "dataset10.csv", client_frame(100, seed=10))
    result = watched.run("fullprocess.py", timeout=300)
    assert result.returncode == 3, result.stderr
    assert (
        "1 input file(s) rejected, the others ingested: 'broken.csv' (missing required columns"
        in result.stderr
    )
    last = watched.runs()[-1]
    assert last["decision"] == "no drift: kept the deployed model; 1 input file(s) rejected"
    assert last["exit_status"] == 3 and [entry["name"] for entry in last["rejected_files"]] == ["broken.csv"]
    assert len(receiver.messages()) == 1
    assert "Rejected broken.csv: missing required column" in receiver.messages()[0]["message"]
    assert receiver.messages()[0]["type"] == "warning"  # coloured as a warning in Slack or Teams
    assert receiver.pings() == ["/ping"] * 2  # a partial run is not a failed one
    assert watched.run("fullprocess.py").returncode == 0 and len(receiver.messages()) == 1


def test_a_failed_run_pings_fail_and_a_dead_receiver_never_fails_a_run(watched, receiver):
    """A run that fails at once (a damaged file of the live version): what fails matters not here."""
    live = watched.path("prod_deployment_path") / watched.manifest()["folder"] / "latestscore.txt"
    live.chmod(0o644)
    live.write_text("damaged\n")
    result = watched.run("fullprocess.py", timeout=300)
    assert result.returncode == 1 and "does not match the manifest" in result.stderr
    assert receiver.messages()[0]["title"].startswith("risk model: failed")
    assert receiver.messages()[0]["type"] == "failure"
    assert receiver.pings() == ["/ping/fail"]

    dead = free_port()
    watched.set_config(
        notify_urls=[f"json://127.0.0.1:{dead}/notify"],
        heartbeat_url=f"http://127.0.0.1:{dead}/ping",
        notify_timeout_seconds=5.0,
    )
    result = watched.run("fullprocess.py", timeout=300)
    assert result.returncode == 1  # still failing: the notification failure adds nothing
    assert "notification: not sent" in result.stderr and "heartbeat: not sent" in result.stderr
    assert "Traceback" not in result.stderr


def test_notify_urls_must_be_a_list_of_strings(deployed_workspace):
    deployed_workspace.set_config(notify_urls="json://x")
    result = deployed_workspace.run("fullprocess.py")
    assert result.returncode == 78 and "'notify_urls' must be list" in result.stderr
