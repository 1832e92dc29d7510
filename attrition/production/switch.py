"""The writes that change production, shared by deploying, rolling back and repair: the lock's
name, the switch (one atomic replace of manifest.json), each version's live.json, the course's
top-level copies, the history line, and what a failed write says.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

from attrition.core.errors import DiskFull, PipelineError
from attrition.core.files import atomic_write_bytes, atomic_write_json, fsync_folder
from attrition.core.names import (
    DEPLOYMENT_HISTORY,
    INGESTION_RECORD,
    MANIFEST,
    MODEL,
    MODEL_META,
    REFERENCE_DATA,
    SCORE_METRICS,
)
from attrition.core.records import append_jsonl, sha256_bytes
from attrition.production.versions import LIVE_MARK, live_folder, still_live

LOCK = ".deploy.lock"


OPTIONAL_FILES = (MODEL_META, SCORE_METRICS, REFERENCE_DATA, INGESTION_RECORD)


STAGING = re.compile(r"\.v\d+\.(\d+)\.tmp")  # archive_version's staging folders: .vNNNN.PID.tmp


WRITE_ERRORS = (OSError, DiskFull)  # a failed write: atomic_path names a full disk DiskFull


def write_failed(error: Exception, message: str) -> PipelineError:
    """The error a failed write of production ends with: DiskFull (exit 74) for a full disk, else
    PipelineError; message says what is live now, and the cause follows it in brackets."""
    full = isinstance(error, DiskFull) or getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    cause = "No space left on device" if full else (getattr(error, "strerror", None) or error)
    return (DiskFull if full else PipelineError)(message.replace("{cause}", str(cause)))


class ProductionBroken(PipelineError):
    """The live version's own files do not match its manifest: a person must choose a version."""


def remove_tree(path: Path) -> None:
    import shutil

    for entry in [path, *path.rglob("*")]:  # archived files are read-only
        if not entry.is_symlink():
            entry.chmod(0o755 if entry.is_dir() else 0o644)
    shutil.rmtree(path, ignore_errors=True)


def refresh_course_copies(
    prod_folder: Path, manifest: dict, contents: dict[str, bytes] | None = None
) -> list[str]:
    """Make the plain files of the production folder copies of the live version's; the names changed.

    A copy carries its source's modification time, so that a copy already right is known by a
    stat (size and time), without reading it, on every run.
    """
    folder = live_folder(prod_folder, manifest)
    changed = []
    for name, entry in manifest["files"].items():
        target, source = prod_folder / name, folder / name
        try:
            if (target.stat().st_size, target.stat().st_mtime_ns) == (
                entry["size"],
                source.stat().st_mtime_ns,
            ):
                continue
        except OSError:
            pass
        data = contents[name] if contents is not None else source.read_bytes()
        atomic_write_bytes(target, data, sync_folder=False)
        if folder != prod_folder:
            os.utime(target, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
        changed.append(name)
    for name in OPTIONAL_FILES:
        if name not in manifest["files"] and (prod_folder / name).exists():
            (prod_folder / name).unlink()
            changed.append(name)
    if changed:
        fsync_folder(prod_folder)
    return changed


def deployment_record(manifest: dict) -> dict:
    return {
        key: manifest.get(key)
        for key in ("timestamp", "action", "version", "f1", "rolled_back_from", "run_start", "forced")
    } | {"model_sha256": manifest["files"][MODEL]["sha256"]}


def mark_live(prod_folder: Path, manifest: dict) -> None:
    """live.json in the version's own folder: the manifest that made it live (the proof repair keeps
    it by, and what a damaged or deleted manifest.json is restored from)."""
    atomic_write_json(live_folder(prod_folder, manifest) / LIVE_MARK, manifest)


def switch_to(prod_folder: Path, manifest: dict, contents: dict[str, bytes], before: dict | None) -> None:
    """Make the archived version named by manifest live: one atomic replace of manifest.json.

    What follows the switch (its live.json, the course copies, the history line) is repaired by
    the next run when it fails, and the error says that the new version is live.
    """
    manifest["switch"] = (
        int((before or {}).get("switch") or 0) + 1
    )  # the order of switches, whatever the clock
    try:
        atomic_write_json(prod_folder / MANIFEST, manifest)
    except WRITE_ERRORS as error:
        raise write_failed(
            error,
            f"{prod_folder / MANIFEST}: could not switch to version {manifest['version']} "
            f"({{cause}}); {still_live(before)}",
        ) from None
    try:
        mark_live(prod_folder, manifest)
        refresh_course_copies(prod_folder, manifest, contents)
        append_jsonl(prod_folder / DEPLOYMENT_HISTORY, deployment_record(manifest))
    except WRITE_ERRORS as error:
        raise write_failed(
            error,
            f"version {manifest['version']} is live, but refreshing the copies in {prod_folder} "
            "failed ({cause}); the next deployment.py or fullprocess.py run repairs them",
        ) from None


def read_archived_version(version_dir: Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, files by name) of an archived version, each file checked against the manifest."""
    try:
        manifest = json.loads((version_dir / MANIFEST).read_text(encoding="utf-8"))
        contents = {name: (version_dir / name).read_bytes() for name in manifest["files"]}
        damaged = [
            name
            for name, entry in manifest["files"].items()
            if sha256_bytes(contents[name]) != entry["sha256"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PipelineError(
            f"{version_dir}: archived version is unreadable ({error}); not rolled back"
        ) from None
    if damaged:
        raise PipelineError(f"{version_dir / damaged[0]}: archived file is damaged; not rolled back")
    return manifest, contents
