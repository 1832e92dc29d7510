"""The layout the design card names, held by the code's own imports (README: Architecture).

The top level holds the course's scripts, each a thin entry point; the code lives in one package,
attrition/, whose rooms import only rooms below them:

    pipeline -> api -> reports -> monitoring -> model -> production -> data -> core

No script imports another script (fullprocess.py chains them as subprocesses), and core is the
standard library only. Read from the source, not by importing it: a test that imported the modules
would pass for imports made lazily inside functions, which count here too.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_DIR

PACKAGE = PROJECT_DIR / "attrition"
ROOMS = ["core", "data", "production", "model", "monitoring", "reports", "api", "pipeline"]
COURSE_SCRIPTS = [
    "ingestion.py",
    "training.py",
    "scoring.py",
    "deployment.py",
    "diagnostics.py",
    "reporting.py",
    "app.py",
    "wsgi.py",
    "apicalls.py",
    "fullprocess.py",
]
# The design card's files, the package, and what a Python project of this kind carries.
TOP_LEVEL = {
    *COURSE_SCRIPTS,
    "config.json",
    "requirements.txt",
    "crontab.txt",
    "tests",
    *("practicedata", "sourcedata", "testdata", "ingesteddata", "practicemodels", "models"),
    "production_deployment",
    "attrition",
    *("Makefile", "README.md", "DEVELOPERS.md", "pyproject.toml", "requirements-dev.txt"),
    "gunicorn.conf.py",
    "generate_data.py",  # the bundled data's generator: a script people run (make data)
    "openapi.json",  # the API's contract (tests/test_contract.py holds it to the routes)
    *("docs", "benchmarks"),
}
LINES_PER_SCRIPT = 120  # a screen or two: docstring, argparse, main()
LINES_PER_MODULE = 400
LINES_PER_FUNCTION = 60


def imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function ("a.b" also as "a.b.name")."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("relative import")
    return names


def modules() -> list[Path]:
    return sorted(PACKAGE.glob("*/*.py"))


def scripts() -> list[Path]:
    return sorted(PROJECT_DIR.glob("*.py"))


def test_the_top_level_holds_the_design_cards_files_and_one_package():
    listed = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    top = {name.split("/")[0] for name in listed if not name.startswith(".")}
    assert top - TOP_LEVEL == set()
    rooms = {name.split("/")[1] for name in listed if name.startswith("attrition/") and name.count("/") > 1}
    assert rooms == set(ROOMS)


def test_no_script_imports_another_script():
    names = {path.stem for path in scripts()}
    found = {
        path.name: sorted(name for name in imported(path) if name.split(".")[0] in names - {path.stem})
        for path in [*scripts(), *modules()]
    }
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_rooms_import_only_rooms_below_them():
    upward = []
    for path in modules():
        room = path.parent.name
        for name in imported(path):
            parts = name.split(".")
            if name == "relative import" or parts[0] == "attrition" and len(parts) == 1:
                upward.append(f"{path.relative_to(PROJECT_DIR)}: {name} (import from a room by its name)")
            elif parts[0] == "attrition" and parts[1] in ROOMS and ROOMS.index(parts[1]) > ROOMS.index(room):
                upward.append(f"{path.relative_to(PROJECT_DIR)} -> {name}")
    assert upward == []


def test_core_is_the_standard_library_only():
    outside = {
        f"{path.name}: {name}"
        for path in PACKAGE.glob("core/*.py")
        for name in imported(path)
        if name.split(".")[0] not in sys.stdlib_module_names and not name.startswith("attrition.core")
    }
    assert outside == set()


def test_the_guards_see_what_they_forbid(tmp_path):
    """The checks above can fail: an upward import and a script import are found in a file."""
    path = tmp_path / "probe.py"
    path.write_text("import training\n\ndef f():\n    from attrition.api import app\n")
    assert {"training", "attrition.api", "attrition.api.app"} <= imported(path)


@pytest.mark.parametrize("script", COURSE_SCRIPTS)
def test_each_course_script_is_a_thin_entry_point(script):
    """Docstring, argparse, main(): what it does is in the package, so it fits on a screen or two."""
    path = PROJECT_DIR / script
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{script} has no docstring"
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= LINES_PER_SCRIPT, f"{script}: {lines} lines"
    if script != "wsgi.py":  # gunicorn's entry point: the app, no command line
        assert any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def test_no_module_or_function_is_longer_than_a_reader_holds():
    """About 400 lines a module, 60 a function (the issue's signal): past it, split by concern."""
    long = []
    for path in [*modules(), *scripts()]:
        text = path.read_text(encoding="utf-8")
        if path.parent == PACKAGE / path.parent.name and len(text.splitlines()) > LINES_PER_MODULE:
            long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > LINES_PER_FUNCTION:
                    long.append(f"{path.name}: {node.name} {size} lines")
    assert long == []


def test_the_courses_functions_are_importable_from_their_scripts():
    """As the course's tests and notebooks import them."""
    from diagnostics import (  # noqa: F401
        dataframe_summary,
        execution_time,
        missing_data,
        model_predictions,
        outdated_packages_list,
    )
    from training import read_training_data, train_model  # noqa: F401
