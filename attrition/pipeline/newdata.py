"""Which input files are new: not yet trained on by the live version, nor decided on since.

Not a script; fullprocess.py's first step, every 10 minutes, so standard library only.
    find_new_files(config)   names of the input folder's *.csv entries that are new, or changed
                             (size, mtime, ctime and inode, then sha256, against the record of when
                             they were seen; a rejected entry too, so it is re-examined only when
                             it changes)
    mark_processed(config)   remember the latest ingestion's files as decided on (after the
                             run's decision: kept, refused by the gate, or deployed)
"""

from __future__ import annotations

import json

from attrition.core.config import Config
from attrition.core.errors import PipelineError
from attrition.core.files import atomic_write_json
from attrition.core.names import INGESTEDFILES, INGESTION_RECORD
from attrition.core.records import (
    IDENTITY,
    csv_entries,
    identity,
    read_ingested_files,
    same_identity,
    sha256_file,
    utc_now,
)
from attrition.production import versions

PROCESSED_FILES = "processedfiles.json"  # the input files already decided on (prod_deployment_path)


def known_files(config: Config) -> tuple[set[str], dict[str, dict]]:
    """(names the deployment was trained on, {name: size/mtime/sha256} of files decided on)."""
    prod = config.prod_folder
    live = versions.live_folder(prod, versions.read_manifest(prod))
    deployed = set(read_ingested_files(live / INGESTEDFILES)) if (live / INGESTEDFILES).is_file() else set()
    known: dict[str, dict] = {}
    for path in (live / INGESTION_RECORD, prod / PROCESSED_FILES):  # later sources win
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("input_folder_relative") == config.relative(config.input_folder):
            known.update({entry["name"]: entry for entry in record.get("files", []) if "name" in entry})
    return deployed, known


def find_new_files(config: Config) -> tuple[list[str], list[dict]]:
    """(names of new or changed input files, the current files' identity/sha256 entries).

    A file is known by its identity (size, mtime, ctime, inode: records.identity); one whose
    identity changed is read and compared by sha256, and when its content is the same (a chmod, a
    copy with the same bytes), its new identity is remembered so that it is not read again.
    """
    if not config.input_folder.is_dir():
        raise PipelineError(f"{config.input_folder}: input folder does not exist")
    deployed, known = known_files(config)
    new, current, confirmed = [], [], {}
    for path in csv_entries(config.input_folder):
        try:
            now = identity(path.stat())
        except OSError:  # a dangling link, gone meanwhile: known by the entry itself
            now = identity(path.lstat()) if path.is_symlink() else {}
        entry = {"name": path.name, **now}
        seen = known.get(path.name)
        if seen is None and path.name not in deployed:
            new.append(path.name)
        elif seen is not None and not same_identity(seen, now):
            entry["sha256"] = sha256_file(path) if path.is_file() else None
            if entry["sha256"] is None or entry["sha256"] != seen.get("sha256"):
                new.append(path.name)
            else:
                confirmed[path.name] = entry
        current.append(entry)
    if confirmed and not new:
        remember(config, known, confirmed)
    return new, current


def remember(config: Config, known: dict[str, dict], confirmed: dict[str, dict]) -> None:
    """Record the new identity of files whose content did not change (processedfiles.json)."""
    write_processed(config, {**known, **confirmed}.values())


def mark_processed(config: Config) -> None:
    """Remember the files of the latest ingestion as decided on (written only once decided)."""
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text(encoding="utf-8"))
    write_processed(config, record["files"])


def write_processed(config: Config, entries) -> None:
    """processedfiles.json: each file's name, identity, sha256 and status, for this input folder."""
    atomic_write_json(
        config.prod_folder / PROCESSED_FILES,
        {
            "timestamp": utc_now(),
            "input_folder": str(config.input_folder),
            "input_folder_relative": config.relative(config.input_folder),
            "files": [
                {key: entry.get(key) for key in ("name", *IDENTITY, "sha256", "status")} for entry in entries
            ],
        },
    )
