"""crontab.txt rendered by the Makefile: the line runs under cron's bare shell, installs idempotently."""

import json
import subprocess
import sys

import pytest
from conftest import PROJECT_DIR

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast


def make(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
    )


def cron_line(config, log) -> str:
    result = make("cron-line", f"CONFIG={config}", f"CRON_PYTHON={sys.executable}", f"CRON_LOG={log}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_the_repository_line_is_the_seeds_schedule_with_this_checkouts_paths():
    line = make("cron-line").stdout.strip()
    assert line.startswith("*/10 * * * * ")
    assert f"cd '{PROJECT_DIR}'" in line and f"'{PROJECT_DIR}/.venv/bin/python' fullprocess.py" in line
    assert f">> '{PROJECT_DIR}/cron.log' 2>&1" in line and "@" not in line


def test_the_rendered_line_runs_under_a_minimal_cron_environment(deployed_workspace, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    log = deployed_workspace.root / "cron.log"
    line = cron_line(deployed_workspace.config_path, log)
    command = line.split(None, 5)[5]  # what cron hands to /bin/sh -c
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=home,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, log.read_text()
    assert "decision: nothing new" in log.read_text()
    history = deployed_workspace.path("prod_deployment_path") / "runhistory.jsonl"
    assert json.loads(history.read_text().splitlines()[-1])["decision"] == "nothing new"
    assert list(home.iterdir()) == []  # nothing written where cron starts


SHIM = """#!/bin/sh
# A stand-in for crontab(1) backed by a file, so that tests never touch the user's real crontab.
store="$CRONTAB_STORE"
if [ "$1" = "-l" ]; then
    [ -f "$store" ] || { echo "no crontab for user" >&2; exit 1; }
    cat "$store"
elif [ "$1" = "-" ]; then
    cat > "$store"
else
    exit 2
fi
"""


def test_cron_install_is_idempotent_and_remove_leaves_other_lines(tmp_path):
    shim = tmp_path / "crontab"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    store = tmp_path / "store"
    other = "0 3 * * * /usr/bin/backup # someone else's job\n"
    store.write_text(other)
    for _ in range(2):
        result = make("cron-install", f"CRONTAB={shim}", CRONTAB_STORE=str(store))
        assert result.returncode == 0, result.stderr
    lines = store.read_text().splitlines()
    ours = [line for line in lines if f"# risk-assessment:{PROJECT_DIR}" in line]
    assert len(ours) == 1 and ours[0] == make("cron-line").stdout.strip()
    assert other.strip() in lines
    result = make("cron-remove", f"CRONTAB={shim}", CRONTAB_STORE=str(store))
    assert result.returncode == 0, result.stderr
    assert store.read_text() == other


def test_cron_install_into_an_empty_crontab(tmp_path):
    shim = tmp_path / "crontab"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    store = tmp_path / "store"
    assert make("cron-install", f"CRONTAB={shim}", CRONTAB_STORE=str(store)).returncode == 0
    assert store.read_text().strip() == make("cron-line").stdout.strip()
