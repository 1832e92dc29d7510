"""Which input files are new: not yet trained on by the live version, nor decided on since.

Not a script; fullprocess.py's first step, every 10 minutes, so standard library only.
    find_new_files(config)   names of the input folder's *.csv files that are new, or changed
                             (size and mtime, then sha256, against the record of when they were seen)
    mark_processed(config)   remember the latest ingestion's files as decided on (after the
                             run's decision: kept, refused by the gate, or deployed)
"""

from __future__ import annotations

import json

import production
from common import (
    INGESTEDFILES,
    INGESTION_RECORD,
    Config,
    PipelineError,
    atomic_write_json,
)
from records import list_csv_files, read_ingested_files, sha256_file, utc_now

PROCESSED_FILES = "processedfiles.json"  # the input files already decided on (prod_deployment_path)


def known_files(config: Config) -> tuple[set[str], dict[str, dict]]:
    """(names the deployment was trained on, {name: size/mtime/sha256} of files decided on)."""
    prod = config.prod_folder
    live = production.live_folder(prod, production.read_manifest(prod))
    deployed = set(read_ingested_files(live / INGESTEDFILES)) if (live / INGESTEDFILES).is_file() else set()
    known: dict[str, dict] = {}
    for path in (live / INGESTION_RECORD, prod / PROCESSED_FILES):  # later sources win
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            continue
        if record.get("input_folder_relative") == config.relative(config.input_folder):
            known.update({entry["name"]: entry for entry in record.get("files", []) if "name" in entry})
    return deployed, known


def find_new_files(config: Config) -> tuple[list[str], list[dict]]:
    """(names of new or changed input files, the current files' size/mtime/sha256 entries)."""
    if not config.input_folder.is_dir():
        raise PipelineError(f"{config.input_folder}: input folder does not exist")
    deployed, known = known_files(config)
    new, current = [], []
    for path in list_csv_files(config.input_folder):
        stat = path.stat()
        entry = {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        seen = known.get(path.name)
        if seen is None and path.name not in deployed:
            new.append(path.name)
        elif seen is not None and (seen.get("size"), seen.get("mtime_ns")) != (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            entry["sha256"] = sha256_file(path)
            if entry["sha256"] != seen.get("sha256"):
                new.append(path.name)
        current.append(entry)
    return new, current


def mark_processed(config: Config) -> None:
    """Remember the files of the latest ingestion as decided on (written only once decided)."""
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text(encoding="utf-8"))
    atomic_write_json(
        config.prod_folder / PROCESSED_FILES,
        {"timestamp": utc_now(), "input_folder": record["input_folder"],
         "input_folder_relative": record["input_folder_relative"],
         "files": [{key: entry.get(key) for key in ("name", "size", "mtime_ns", "sha256", "status")}
                   for entry in record["files"]]},
    )  # fmt: skip
