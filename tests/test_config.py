"""The shared module: config loading and its errors, atomic writes, the ingested-files reader."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_DIR, assert_one_line_error, client_frame

from attrition.core.config import OPTIONAL_DEFAULTS, load_config
from attrition.core.errors import ConfigError
from attrition.core.files import atomic_write_text
from attrition.core.records import append_jsonl, list_csv_files, read_ingested_files, read_jsonl


def test_repository_config_keeps_the_seed_keys_and_values():
    """The config.json the repository ships (git's copy: the working file is the operator's to edit,
    as the walkthrough's sed does, and the suite never reads it)."""
    shipped = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "show", "HEAD:config.json"], capture_output=True, text=True
    )
    if shipped.returncode:
        pytest.skip("not a git checkout")
    config = json.loads(shipped.stdout)
    assert config == {
        "input_folder_path": "practicedata",
        "output_folder_path": "ingesteddata",
        "test_data_path": "testdata",
        "output_model_path": "practicemodels",
        "prod_deployment_path": "production_deployment",
    }


def test_folders_resolve_against_the_config_file_not_the_working_directory(workspace, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    workspace.set_config(input_folder_path="/sourcedata/")  # the course's spelling
    config = load_config(workspace.config_path)
    assert config.input_folder == workspace.root / "sourcedata"
    assert config.model_folder == workspace.root / "practicemodels"
    assert config["drift_test"] == OPTIONAL_DEFAULTS["drift_test"]


def test_absolute_folders_are_used_as_written(workspace, tmp_path):
    """/srv/risk/production-style paths (a shared mount) are never re-rooted under the checkout."""
    elsewhere = tmp_path / "mount" / "production"
    workspace.set_config(prod_deployment_path=str(elsewhere), output_model_path=str(tmp_path / "models"))
    config = load_config(workspace.config_path)
    assert config.prod_folder == elsewhere
    assert config.model_folder == tmp_path / "models"
    assert config.input_folder == workspace.root / "practicedata"  # relative: beside the config
    workspace.set_config(input_folder_path="/practicedata")  # one name, absent at the root: the course's
    assert load_config(workspace.config_path).input_folder == workspace.root / "practicedata"
    workspace.set_config(input_folder_path="/tmp")  # one name that exists at the root: as written
    assert load_config(workspace.config_path).input_folder == Path("/tmp").resolve()


def test_risk_config_environment_variable_names_the_file(workspace, monkeypatch):
    monkeypatch.setenv("RISK_CONFIG", str(workspace.config_path))
    assert load_config().prod_folder == workspace.root / "production_deployment"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, "unknown config key 'surprise'"),
        ({"drift_test": "magic"}, "'drift_test' must be one of"),
        ({"api_port": "8000"}, "'api_port' must be int"),
        ({"promotion_gate": 1}, "'promotion_gate' must be bool"),
        ({"step_timeout_seconds": 0}, "'step_timeout_seconds' must be positive"),
        ({"api_port": 70000}, "'api_port' must be a port number"),
    ],
)
def test_bad_config_values_are_named(workspace, change, message):
    workspace.set_config(**change)
    with pytest.raises(ConfigError, match=message):
        load_config(workspace.config_path)


def test_missing_key_and_bad_json_are_named(workspace):
    config = json.loads(workspace.config_path.read_text())
    del config["test_data_path"]
    workspace.config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="missing required config key 'test_data_path'"):
        load_config(workspace.config_path)
    workspace.config_path.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_config(workspace.config_path)


@pytest.mark.slow
def test_a_script_with_a_bad_config_fails_in_one_line(workspace):
    workspace.set_config(colour="blue")
    result = workspace.run("ingestion.py")
    assert result.returncode == 78  # ConfigError
    assert_one_line_error(result, "unknown config key 'colour'", str(workspace.config_path))


@pytest.mark.slow
def test_importing_the_scripts_has_no_side_effects(tmp_path):
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); "
        "import ingestion, training, scoring, deployment, diagnostics, reporting, fullprocess, apicalls, "
        "app, generate_data; "
        "print(sorted(os.listdir('.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(PROJECT_DIR)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]" and result.stderr == ""


def test_ingested_files_reader_accepts_lines_and_the_legacy_list(tmp_path):
    path = tmp_path / "ingestedfiles.txt"
    path.write_text("a.csv\nb.csv\n")
    assert read_ingested_files(path) == ["a.csv", "b.csv"]
    path.write_text("['a.csv', 'b.csv']")
    assert read_ingested_files(path) == ["a.csv", "b.csv"]
    # real-world names are names, never a malformed list: a bracket first, spaces kept
    path.write_text("[2026-11] dataset3.csv\n dataset 4.csv\n")
    assert read_ingested_files(path) == ["[2026-11] dataset3.csv", " dataset 4.csv"]
    path.write_text("[2026-11] dataset3.csv\n")
    assert read_ingested_files(path) == ["[2026-11] dataset3.csv"]


@pytest.mark.slow
def test_extracts_are_ordered_with_digits_as_numbers(workspace):
    names = ["dataset10.csv", "dataset2.csv", "dataset1.csv", "month_2026-2.csv", "month_2026-11.csv"]
    for name in names:
        workspace.write_csv("input_folder_path", name, client_frame(5, seed=len(name)))
    assert [path.name for path in list_csv_files(workspace.path("input_folder_path"))] == [
        "dataset1.csv",
        "dataset2.csv",
        "dataset10.csv",
        "month_2026-2.csv",
        "month_2026-11.csv",
    ]
    result = workspace.run("ingestion.py")
    assert result.returncode == 0, result.stderr
    assert (workspace.path("output_folder_path") / "ingestedfiles.txt").read_text().split("\n")[:3] == [
        "dataset1.csv",
        "dataset2.csv",
        "dataset10.csv",
    ]


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    target = tmp_path / "out" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    append_jsonl(tmp_path / "out" / "h.jsonl", {"n": 1})
    append_jsonl(tmp_path / "out" / "h.jsonl", {"n": 2})
    assert target.read_text() == "two"
    assert read_jsonl(tmp_path / "out" / "h.jsonl") == [{"n": 1}, {"n": 2}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["file.txt", "h.jsonl"]


SCRIPTS = [
    "ingestion.py",
    "training.py",
    "scoring.py",
    "deployment.py",
    "diagnostics.py",
    "reporting.py",
    "app.py",
    "apicalls.py",
    "fullprocess.py",
]


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_usage_page_and_touches_nothing(deployed_workspace, script):
    before = tree(deployed_workspace.root)
    result = deployed_workspace.run(script, "--help")
    assert result.returncode == 0, result.stderr
    first_line = (PROJECT_DIR / script).read_text().split('"""')[1].splitlines()[0]
    assert result.stdout.startswith(f"usage: {script}") and first_line in result.stdout
    assert result.stderr == ""
    assert tree(deployed_workspace.root) == before
    result = deployed_workspace.run(script, "--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments: --no-such-flag" in result.stderr
    assert tree(deployed_workspace.root) == before


@pytest.mark.slow
def test_unexpected_errors_are_one_line_unless_risk_debug_is_set(tmp_path):
    """A bug (here a ZeroDivisionError in main) is one log line and exit 70; RISK_DEBUG=1 shows its
    traceback."""
    code = "from attrition.core import logs; logs.setup_logging('demo'); logs.run_main(lambda: 1 / 0, 'demo')"
    env = {key: value for key, value in os.environ.items() if key != "RISK_DEBUG"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode == 70
    assert_one_line_error(result, "unexpected ZeroDivisionError: division by zero (run with RISK_DEBUG=1")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env={**env, "RISK_DEBUG": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "ZeroDivisionError" in result.stderr


def test_torn_history_lines_are_skipped(tmp_path):
    """A writer killed mid-line leaves a torn line: readers skip it, the next append starts a new line."""
    history = tmp_path / "runhistory.jsonl"
    history.write_bytes(b'{"run": 1}\n{"run": 2, "deci')
    assert read_jsonl(history) == [{"run": 1}]
    append_jsonl(history, {"run": 3})
    assert read_jsonl(history) == [{"run": 1}, {"run": 3}]
    history.write_bytes(b'{"run": 1}\n[1, 2]\n\xff\xfe\n{"run": 4}\n')
    assert read_jsonl(history) == [{"run": 1}, {"run": 4}]


def test_an_odd_entry_is_moved_aside_but_a_link_to_a_device_is_the_operators(tmp_path):
    from attrition.core.files import clear_odd_entry

    target = tmp_path / "config.json"
    target.write_text("{}")
    linked, folder, device, plain = (tmp_path / name for name in ("a.lock", "b.jsonl", "c.log", "d.json"))
    linked.symlink_to(target)
    folder.mkdir()
    device.symlink_to("/dev/null")  # `ln -s /dev/null fullprocess.log`: deliberate
    plain.write_text("x")
    for path in (linked, folder):
        message = clear_odd_entry(path)
        assert message and "moved aside" in message and not os.path.lexists(path)
    assert clear_odd_entry(device) is None and device.is_symlink()
    assert clear_odd_entry(plain) is None and plain.read_text() == "x"
    assert target.read_text() == "{}"
    assert len(list(tmp_path.glob("*.aside-*"))) == 2
