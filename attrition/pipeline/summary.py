"""fullprocess.py --summary: what the last run decided, the files it wrote, and what to do next."""

from __future__ import annotations

import time

from attrition.core.config import Config
from attrition.core.errors import PipelineError
from attrition.core.names import (
    REPORT,
    RISK_RANKING,
    RUN_HISTORY,
)
from attrition.core.records import read_jsonl
from attrition.production.versions import live


def summary(config: Config) -> str:
    """The last run, for a person at a terminal (make run): its decision, the files it wrote (by
    modification time, in the folders of the configuration in force), and the next step."""
    runs = read_jsonl(config.prod_folder / RUN_HISTORY)
    if not runs:
        return f"No fullprocess.py run recorded in {config.relative(config.prod_folder)} yet."
    last = runs[-1]
    import calendar

    started = calendar.timegm(time.strptime(last["start"][:19], "%Y-%m-%dT%H:%M:%S")) - 1
    folders = [config.output_folder, config.model_folder, config.prod_folder]
    try:
        state = live(config)
    except PipelineError:
        state = None
    if state is not None:
        folders += [state.folder, state.reports_folder()]
    written = sorted(
        {
            config.relative(path)
            for folder in folders
            if folder.is_dir()
            for path in folder.iterdir()
            if path.is_file() and not path.name.startswith(".") and path.stat().st_mtime >= started
        }
    )
    lines = [
        f"Last run ({last['start'][:19]} UTC): {last['decision']} (exit {last['exit_status']}); "
        + (f"version {state.version} is live." if state else "nothing is live."),
        "Files it wrote:" if written else "It wrote no file.",
    ]
    lines += [f"  {name}" for name in written]
    if config.relative(config.input_folder) == "practicedata":
        lines.append(
            "Next: `make serve` for the API, or point config.json at sourcedata and models and "
            "`make run` again (README: walkthrough)."
        )
    else:
        lines.append(
            f"Next: `make serve` for the API; the call list is {config.relative(config.model_folder)}/"
            f"{RISK_RANKING}, the report {config.relative(config.model_folder)}/{REPORT}."
        )
    return "\n".join(lines)
