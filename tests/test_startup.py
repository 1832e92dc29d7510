"""The two light paths import no data library, guarded by what they import (never by a clock).

fullprocess.py with nothing new runs every 10 minutes and deployment.py (a rollback) is a file
switch: neither needs pandas, NumPy, scikit-learn or a web framework, whose imports cost ten to a
hundred times the interpreter's start. Standard modules (argparse, subprocess, ...) are welcome:
clarity wins over milliseconds there. make bench measures both against `python -c pass`.
"""

import subprocess
import sys

import pytest
from conftest import PROJECT_DIR, imported_modules

# Data, web and notification libraries, and the project's modules that import them.
HEAVY = {
    "pandas",
    "numpy",
    "sklearn",
    "scipy",
    "matplotlib",
    "flask",
    "werkzeug",
    "requests",
    "apprise",
    "gevent",
    "attrition.model.riskmodel",
    "attrition.data.clientdata",
    "attrition.api.serving",
    "diagnostics",
    "attrition.monitoring.drift",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "args", [["fullprocess.py"], ["deployment.py"]], ids=["fullprocess nothing new", "deployment"]
)
def test_the_light_paths_import_nothing_heavy(deployed_workspace, args):
    _, interpreter = imported_modules("-c", "pass")
    code, names = imported_modules(str(PROJECT_DIR / args[0]), env=deployed_workspace.env)
    assert code == 0
    assert "attrition.core.config" in names
    assert not (names - interpreter) & HEAVY, sorted((names - interpreter) & HEAVY)
    if args[0] == "fullprocess.py":
        history = deployed_workspace.path("prod_deployment_path") / "runhistory.jsonl"
        assert '"decision": "nothing new"' in history.read_text()


@pytest.mark.slow
def test_the_guard_sees_a_heavy_import(deployed_workspace):
    """The guard itself can fail: the same measurement on a script that needs pandas finds it."""
    _, names = imported_modules(str(PROJECT_DIR / "training.py"), env=deployed_workspace.env)
    assert {"pandas", "sklearn", "attrition.model.riskmodel"} <= names


def test_the_api_loads_neither_scikit_learn_nor_scipy_stats():
    """The API scores with the closed form (riskmodel.LinearScorer) and computes drift only in
    /diagnostics: a worker that imports the app has not loaded scikit-learn or scipy.stats
    (1.3 s of start-up and about 50 MB per worker between them)."""
    code, names = imported_modules("-c", "import wsgi")
    assert (
        code == 0
        and {"attrition.api.app", "attrition.api.serving", "attrition.model.riskmodel", "scipy.special"}
        <= names
    )
    assert not {"sklearn", "scipy.stats"} & names, sorted({"sklearn", "scipy.stats"} & names)


@pytest.mark.slow
def test_measuring_the_live_model_loads_no_scikit_learn(deployed_workspace):
    """GET /scoring and the report measure with NumPy (riskmodel.classification_metrics, held to
    scikit-learn by tests/test_model.py): a worker's first /scoring does not pay its 1-2 s import."""
    code = (
        "import sys; from attrition.api import app; client = app.create_app().test_client(); "
        "answer = client.get('/scoring'); assert answer.status_code == 200, answer.get_data(); "
        "print(sorted(name for name in sys.modules if name.startswith(('sklearn', 'seaborn'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=deployed_workspace.env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip() == "[]", (result.stdout, result.stderr)


@pytest.mark.slow
def test_ingestion_on_arrows_path_never_loads_pandas(data_workspace):
    """Valid files take Arrow's path, which stays within Arrow and numpy (pyarrow's own conversions
    would load pandas: half a second of every run); a file with a problem takes pandas' path."""
    code, names = imported_modules(str(PROJECT_DIR / "ingestion.py"), env=data_workspace.env)
    assert code == 0 and {"pyarrow.csv", "attrition.data.csvtext"} <= names and "pandas" not in names
    (data_workspace.path("input_folder_path") / "zbroken.csv").write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\nab,lots,1,1,0\n"
    )
    code, names = imported_modules(str(PROJECT_DIR / "ingestion.py"), env=data_workspace.env)
    assert code == 3 and "pandas" in names  # the guard sees it when it happens


def test_nothing_imports_fullprocess():
    """fullprocess.py is the orchestration only: its helpers live in the package (attrition/),
    which scripts, tests and benchmarks import."""
    import ast

    importers = []
    for path in [
        *PROJECT_DIR.glob("*.py"),
        *PROJECT_DIR.glob("tests/*.py"),
        *PROJECT_DIR.glob("benchmarks/*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) else [])
            )
            if "fullprocess" in names:
                importers.append(path.name)
    assert importers == []
