"""The start-up budget of the two light paths, guarded by what they import (never by a clock).

fullprocess.py with nothing new runs every 10 minutes and deployment.py runs in every redeploy;
both are benchmarked against `python -c pass` (make bench). What keeps them there is importing
nothing but this project's common.py and a few standard modules: a data library, or one of the
standard modules whose import costs a share of that budget, would show up here first.
"""

import subprocess
import sys

import pytest
from conftest import PROJECT_DIR

# Data and web libraries, and standard modules with a measured cost the light paths avoid
# (common.py's docstring: argparse, dataclasses, tempfile; subprocess/statistics/urllib are
# for fullprocess.py's other paths; shutil only for a failed deploy's clean-up).
HEAVY = {"pandas", "numpy", "sklearn", "scipy", "matplotlib", "seaborn", "flask", "werkzeug", "requests",
         "argparse", "dataclasses", "tempfile", "subprocess", "statistics", "urllib.request", "shutil",
         "riskmodel", "clientdata", "serving", "diagnostics"}  # fmt: skip


def imported_modules(*args, env=None) -> tuple[int, set[str]]:
    """(exit status, the modules a process imported), from python -X importtime."""
    result = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, capture_output=True, text=True,
                            cwd=PROJECT_DIR)  # fmt: skip
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    return result.returncode, names


@pytest.mark.parametrize(
    "args", [["fullprocess.py"], ["deployment.py"]], ids=["fullprocess nothing new", "deployment"]
)
def test_the_light_paths_import_nothing_heavy(deployed_workspace, args):
    _, interpreter = imported_modules("-c", "pass")
    code, names = imported_modules(str(PROJECT_DIR / args[0]), env=deployed_workspace.env)
    assert code == 0
    assert "common" in names
    assert not (names - interpreter) & HEAVY, sorted((names - interpreter) & HEAVY)
    if args[0] == "fullprocess.py":
        history = deployed_workspace.path("prod_deployment_path") / "runhistory.jsonl"
        assert '"decision": "nothing new"' in history.read_text()


def test_the_guard_sees_a_heavy_import(deployed_workspace):
    """The guard itself can fail: the same measurement on a script that needs pandas finds it."""
    _, names = imported_modules(str(PROJECT_DIR / "training.py"), env=deployed_workspace.env)
    assert {"pandas", "sklearn", "riskmodel"} <= names
