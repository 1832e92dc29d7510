"""The kept copies of ingested extracts (output_folder_path/kept/<input folder>/): an extract
archived out of the input folder stays in finaldata.csv from its copy until it is forgotten.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from attrition.core.errors import InputError
from attrition.core.files import atomic_write_bytes, fsync_folder
from attrition.core.names import INGESTION_RECORD, KEPT_EXTRACTS
from attrition.core.records import csv_entries

log = logging.getLogger("ingestion")


def keep_copy(data: bytes, kept: Path) -> bool:
    """Write an ingested extract's bytes to kept/ unless the same bytes are there; True if written."""
    try:
        if (
            kept.is_file()
            and not kept.is_symlink()
            and kept.stat().st_size == len(data)
            and kept.read_bytes() == data
        ):
            return False
    except OSError:
        pass
    atomic_write_bytes(kept, data, sync_folder=False)
    return True


def archived_extracts(kept: Path | None, present: list[Path]) -> list[Path]:
    """The kept copies of extracts ingested before and no longer in the input folder."""
    if kept is None or not kept.is_dir():
        return []
    names = {path.name for path in present}
    return [path for path in csv_entries(kept) if path.name not in names and path.is_file()]


def newly_archived(output_folder: Path, record: dict) -> list[str]:
    """The extracts read from their kept copy this time that the previous ingestion read from the
    input folder: each is named once, when it leaves."""
    try:
        before = json.loads((output_folder / INGESTION_RECORD).read_text(encoding="utf-8"))
        archived_before = {entry["name"] for entry in before.get("files", []) if entry.get("archived")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        archived_before = set()
    return [
        entry["name"]
        for entry in record["files"]
        if entry.get("archived") and entry["name"] not in archived_before
    ]


def kept_folder(config) -> Path:
    """Where this input folder's ingested extracts are kept: kept/<the folder as config.json
    reaches it> ("kept/practicedata", "kept/data__2026"; an absolute folder: its path), so that the
    practice and production folders keep apart and a moved checkout still finds its copies."""
    relative = config.relative(config.input_folder)
    if relative.startswith(".."):  # outside the project: named by its absolute path
        relative = str(config.input_folder).lstrip("/")
    return config.output_folder / KEPT_EXTRACTS / relative.replace("/", "__")


def forget(config, name: str) -> None:
    """Remove an archived extract's kept copy, so that the ingestion that follows drops its rows."""
    kept = kept_folder(config) / name
    if "/" in name or name.startswith("."):
        raise InputError(f"--forget {name!r}: give a file name of {config.input_folder}, not a path")
    if os.path.lexists(config.input_folder / name):
        raise InputError(
            f"{config.input_folder / name}: still in the input folder; move it out first, then --forget it"
        )
    if not kept.is_file():
        raise InputError(f"{kept}: no kept copy of {name!r}: nothing to forget")
    kept.unlink()
    fsync_folder(kept.parent)
    log.warning("%s: forgotten: its rows leave finaldata.csv now", name)
