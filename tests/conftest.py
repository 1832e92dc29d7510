"""A tiny real world in a temp dir: folders, small CSVs, a config, the real scripts."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

import generate_data  # noqa: E402
from attrition.core.names import COLUMNS  # noqa: E402

SAME_SITE = {"Origin": "http://localhost"}  # a POST from the test client's own site (auth.same_origin)
SEED_DATA = PROJECT_DIR.parent / "shared" / "seed" / "data"

FOLDERS = {
    "input_folder_path": "practicedata",
    "output_folder_path": "ingesteddata",
    "test_data_path": "testdata",
    "output_model_path": "practicemodels",
    "prod_deployment_path": "production_deployment",
}


def client_frame(rows: int, seed: int, regime: str = "this_year") -> pd.DataFrame:
    """rows clients drawn from the project's generator (real, learnable data)."""
    rng = np.random.default_rng(seed)
    codes = generate_data.corporation_codes(rng, rows)
    return generate_data.snapshot(rng, codes, regime)


@dataclass
class Workspace:
    root: Path
    config_path: Path

    def path(self, key_or_folder: str) -> Path:
        config = json.loads(self.config_path.read_text())
        return self.root / config.get(key_or_folder, key_or_folder)

    @property
    def env(self) -> dict:
        """The scripts' environment: this workspace's config, and pip kept off the network
        (the dependency check then answers "unknown" at once, as on a machine without one)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RISK_", "PIP_"))}
        env.update(RISK_CONFIG=str(self.config_path), PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1")
        return env

    def set_config(self, **changes) -> None:
        config = json.loads(self.config_path.read_text())
        config.update(changes)
        self.config_path.write_text(json.dumps(config, indent=2))

    def run(self, script: str, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        """Run a project script as cron would: its own process, another working directory."""
        return subprocess.run(
            [sys.executable, str(PROJECT_DIR / script), *args],
            cwd=self.root,
            env=kwargs.pop("env", self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def start(self, script: str, *args: str, **kwargs) -> subprocess.Popen:
        """Start a project script as cron would and return at once (the caller waits or kills it)."""
        return subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / script), *args],
            cwd=self.root,
            env=kwargs.pop("env", self.env),
            **kwargs,
        )

    def runs(self) -> list[dict]:
        """fullprocess.py's run records (runhistory.jsonl), oldest first; [] before the first run."""
        path = self.path("prod_deployment_path") / "runhistory.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def manifest(self) -> dict:
        """The live manifest.json."""
        return json.loads((self.path("prod_deployment_path") / "manifest.json").read_text())

    def write_csv(self, folder: str, name: str, frame: pd.DataFrame) -> Path:
        path = self.path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return path


def make_workspace(root: Path, **config) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    settings = {**FOLDERS, **config}
    for key in FOLDERS:
        (root / settings[key]).mkdir(parents=True, exist_ok=True)
    config_path = root / "config.json"
    config_path.write_text(json.dumps(settings, indent=2))
    return Workspace(root, config_path)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    """An empty workspace with the five folders and a config."""
    return make_workspace(tmp_path / "ws")


def add_small_data(workspace: Workspace) -> Workspace:
    """Two small practice files (with an exact duplicate across them) and a test file."""
    first = client_frame(300, seed=1)
    second = pd.concat([client_frame(300, seed=2), first.head(5)], ignore_index=True)
    workspace.write_csv("input_folder_path", "dataset1.csv", first)
    workspace.write_csv("input_folder_path", "dataset2.csv", second)
    workspace.write_csv("test_data_path", "testdata.csv", client_frame(200, seed=3))
    return workspace


@pytest.fixture
def data_workspace(workspace) -> Workspace:
    return add_small_data(workspace)


def run_ok(workspace: Workspace, *scripts: str) -> None:
    for script in scripts:
        result = workspace.run(script)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def copy_template(template: Path, root: Path) -> Workspace:
    shutil.copytree(template, root, symlinks=True)
    return Workspace(root, root / "config.json")


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The workspace build(root) makes, built once per test run: under pytest-xdist by the first
    worker that needs it (the others wait on its lock and copy from the same one), else once per
    process. Tests copy a template (copy_template) and never change it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, shared by its workers
    root = base / f"template-{name}"
    with open(base / f"template-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "built").is_file():
            shutil.rmtree(root, ignore_errors=True)
            build(root / "ws")
            (root / "built").touch()
    return root / "ws"


@pytest.fixture(scope="session")
def deployed_template(tmp_path_factory) -> Path:
    """Built once per test run: the small data after ingestion, training, scoring and deployment,
    and the dependency check's offline answer in its cache (pip's two runs, paid once, not per test;
    tests of the check itself pass refresh=True)."""

    def build(root: Path) -> None:
        template = add_small_data(make_workspace(root))
        run_ok(template, "ingestion.py", "training.py", "scoring.py", "deployment.py")
        warm = subprocess.run(
            [sys.executable, "-c", "import diagnostics; diagnostics.outdated_packages_list()"],
            cwd=PROJECT_DIR,
            env=template.env,
            capture_output=True,
            text=True,
        )
        assert warm.returncode == 0 and (root / ".cache" / "dependencies.json").is_file(), warm.stderr

    return built_once(tmp_path_factory, "deployed", build)


@pytest.fixture
def deployed_workspace(deployed_template, tmp_path) -> Workspace:
    """A private copy of the deployed template (the scripts' own runs, copied)."""
    return copy_template(deployed_template, tmp_path / "deployed")


@pytest.fixture(scope="session")
def retrained_template(deployed_template, tmp_path_factory) -> Path:
    """Built once per test run: the deployed template with another candidate (trained on
    dataset1.csv alone, dataset2.csv removed) ingested, trained and scored, not deployed: deployment.py
    makes it version 2."""

    def build(root: Path) -> None:
        workspace = copy_template(deployed_template, root)
        (workspace.path("input_folder_path") / "dataset2.csv").unlink()
        forgotten = workspace.run("ingestion.py", "--forget", "dataset2.csv")  # its rows go too
        assert forgotten.returncode == 0, forgotten.stderr
        run_ok(workspace, "training.py", "scoring.py")

    return built_once(tmp_path_factory, "retrained", build)


@pytest.fixture
def retrained_workspace(retrained_template, tmp_path) -> Workspace:
    """A private copy of the retrained template: version 1 live, a different candidate ready."""
    return copy_template(retrained_template, tmp_path / "retrained")


@pytest.fixture(scope="session")
def reported_template(deployed_template, tmp_path_factory) -> Path:
    """Built once per test run: the deployed template after diagnostics.py and reporting.py, as a
    bootstrap leaves it (the call list, the report, diagnostics.json): every file a page reads."""

    def build(root: Path) -> None:
        run_ok(copy_template(deployed_template, root), "diagnostics.py", "reporting.py")

    return built_once(tmp_path_factory, "reported", build)


@pytest.fixture
def reported_workspace(reported_template, tmp_path) -> Workspace:
    """A private copy of the reported template."""
    return copy_template(reported_template, tmp_path / "reported")


def timed(workspace: Workspace, seconds=(0.5, 1.5)) -> Workspace:
    """A timing of the workspace's input files already kept, as after a fullprocess.py run: the API's
    /diagnostics answers from it instead of timing ingestion and training (seconds of CPU). Tests
    of the timing itself ask for ?fresh=1 or call diagnostics.execution_time."""
    from attrition.core.config import load_config
    from attrition.monitoring import timing

    timing.keep_timing(load_config(workspace.config_path), list(seconds))
    return workspace


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A failure a person can act on: non-zero exit, no traceback, the named problem."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert errors, result.stderr
    for fragment in fragments:
        assert any(fragment in line for line in errors), (fragment, result.stderr)


def imported_modules(*args, env=None) -> tuple[int, set[str]]:
    """(exit status, the modules a process imported), from python -X importtime."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args], env=env, capture_output=True, text=True, cwd=PROJECT_DIR
    )
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    return result.returncode, names


def wait_until(condition, what: str, timeout: float = 120.0, interval: float = 0.02) -> None:
    """Poll condition() until it holds; fail naming what was awaited. The timeout is a hang guard,
    far above any expected wait, never a speed assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(interval)


def live_model_path(workspace: Workspace) -> Path:
    """The live version's model file (in its archive folder; the top-level file is a copy)."""
    prod = workspace.path("prod_deployment_path")
    manifest = json.loads((prod / "manifest.json").read_text())
    return prod / manifest.get("folder", ".") / "trainedmodel.pkl"


def deploy_bytes(workspace: Workspace, blob: bytes) -> None:
    """Replace the live model's bytes and make manifest.json match them (a verified but bad model)."""
    prod = workspace.path("prod_deployment_path")
    path = live_model_path(workspace)
    path.chmod(0o644)
    path.write_bytes(blob)
    manifest = json.loads((prod / "manifest.json").read_text())
    manifest["files"]["trainedmodel.pkl"] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    (prod / "manifest.json").write_text(json.dumps(manifest))


def deploy_model_meta(workspace: Workspace, change) -> None:
    """Change the live version's trainedmodel.json (what the API serves) with change(meta) -> meta or
    bytes, and make manifest.json match it: a deployment that verifies but may not be usable."""
    prod = workspace.path("prod_deployment_path")
    path = live_model_path(workspace).with_name("trainedmodel.json")
    changed = change(json.loads(path.read_text()))
    blob = changed if isinstance(changed, bytes) else json.dumps(changed).encode()
    path.chmod(0o644)
    path.write_bytes(blob)
    manifest = json.loads((prod / "manifest.json").read_text())
    manifest["files"]["trainedmodel.json"] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    (prod / "manifest.json").write_text(json.dumps(manifest))


ROW = {"lastmonth_activity": 10, "lastyear_activity": 200, "number_of_employees": 30}  # one client's features


def deployed_pickle(prod_folder: Path):
    """The oracle: the deployed pickle itself, loaded with pickle, not with the code under test."""
    import pickle

    with open(Path(prod_folder) / "trainedmodel.pkl", "rb") as handle:
        return pickle.load(handle)


def client_for(workspace: Workspace, **config):
    """The real Flask app on a workspace (config: the app's test settings, e.g. API_TOKEN), through
    its test client, with the server's per-process caches emptied first."""
    from attrition.api import serving
    from attrition.api.app import create_app

    serving.clear()
    return create_app({"RISK_CONFIG": str(workspace.config_path), **config}).test_client()


@pytest.fixture
def api_client(deployed_workspace):
    """The real Flask app on the deployed workspace, through its test client."""
    return client_for(deployed_workspace)


def strict_json(response):
    """An answer's JSON, refusing NaN and Infinity as a strict parser does."""

    def refuse(name):
        raise AssertionError(f"answer holds {name}: {response.get_data(as_text=True)[:200]}")

    return json.loads(response.get_data(as_text=True), parse_constant=refuse)


def assert_error(response, status, fragment="", error=None, workspace=None):
    """A JSON error answer: the status, {"error", "message"} only, no traceback, and (given) the
    error code, a fragment of the message, and no absolute path of the workspace."""
    body = strict_json(response)
    assert response.status_code == status, body
    assert set(body) == {"error", "message"} and (fragment or "") in body["message"], body
    assert response.mimetype == "application/json" and "Traceback" not in body["message"]
    if error:
        assert body["error"] == error, body
    if workspace is not None:
        assert str(workspace.root) not in body["message"], body  # no absolute server path
    return body


__all__ = ["COLUMNS", "SEED_DATA", "Workspace", "client_frame", "copy_template", "make_workspace", "run_ok"]


def pdf_subject(path: Path) -> str:
    """The Subject of a report PDF's information dictionary: reporting.py's stamp, with the first 10
    clients of the call list page 1 shows (matplotlib writes it as plain text)."""
    match = re.search(rb"/Subject \(([^)]*)\)", path.read_bytes())
    assert match, f"{path}: no /Subject"
    return match.group(1).decode()


class Receiver:
    """A loopback HTTP server, standing for a chat service and a heartbeat monitor, that keeps every
    request: (method, path, JSON body or None)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(("POST", self.path, json.loads(body) if body else None))
                self.send_response(200)
                self.end_headers()

            def do_GET(self):
                received.append(("GET", self.path, None))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self):
        return [body for method, path, body in self.received if path == "/notify"]

    def pings(self):
        return [path for method, path, body in self.received if path.startswith("/ping")]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


def watch(workspace: Workspace, receiver: Receiver) -> Workspace:
    """fullprocess.py's notifications and heartbeat go to the receiver."""
    workspace.set_config(
        notify_urls=[f"json://127.0.0.1:{receiver.port}/notify"],
        heartbeat_url=f"http://127.0.0.1:{receiver.port}/ping",
    )
    return workspace


HEAVY_FIRST = ("test_fullprocess.py", "test_notify.py", "test_drills_damage.py", "test_serving.py")


def pytest_collection_modifyitems(items):
    """The slow tests first, the modules of whole pipeline runs before them: under pytest-xdist the
    last tests to run are then short ones, and neither core idles while the other finishes a
    minute-long walkthrough (the suite's wall time is about its CPU time over the cores)."""

    def weight(item) -> int:
        if item.get_closest_marker("slow") is None:
            return len(HEAVY_FIRST) + 1
        name = item.path.name
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=weight)  # stable: each module's own order is kept
