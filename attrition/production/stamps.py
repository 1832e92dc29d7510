"""Stamps: what a derived output (the call list, drift.json, diagnostics.json, the report)
describes: the live version, its model's sha256 and the data's fingerprint. A view checks the stamp
(stamp_problem) and labels what it shows; a run refreshes what is stale and restores what a person
edited or deleted (derived_problems).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from attrition.core.config import Config
from attrition.core.files import atomic_write_json
from attrition.core.names import (
    ARCHIVE_DIR,
    INGESTION_RECORD,
    LOST_CLIENTS,
    MODEL,
    QUERY_STORE,
    REPORT,
    REPORTS_DIR,
    RISK_RANKING,
)
from attrition.core.records import identity, same_identity, sha256_file
from attrition.production.versions import Live, folder_name, read_json


def data_fingerprint(config: Config) -> str | None:
    """The ingested data's fingerprint: finaldata.csv's sha256 as ingestion.py recorded it."""
    record = read_json(config.output_folder / INGESTION_RECORD)
    return record.get("finaldata_sha256") if isinstance(record, dict) else None


def stamp(config: Config, state: Live, data_sha256: str | None = None) -> dict:
    """What a derived output (drift figures, the call list, a report) was computed for."""
    return {
        "model_version": state.version,
        "model_sha256": state.model_sha256,
        "live_since": state.timestamp,
        "data": config.relative(config.finaldata_file),
        "data_sha256": data_sha256 or data_fingerprint(config),
    }


def stamp_of(value) -> dict | None:
    """The stamp of a derived JSON document (its "stamp", or the document itself: riskranking.json)."""
    return value.get("stamp", value) if isinstance(value, dict) else None


def read_stamp(path: Path) -> dict | None:
    """The stamp of a derived JSON file, or None when it is missing or unreadable."""
    return stamp_of(read_json(path))


def stamp_problem(
    stamped: dict | None, state: Live | None, data_sha256: str | None, model: bool = True
) -> str | None:
    """None when a derived output describes the live version (unless model is False: figures of the
    data alone) and the latest ingested data; otherwise what it does describe, in the words a view
    shows beside it."""
    if not isinstance(stamped, dict) or not stamped.get("data_sha256"):
        return "these figures do not say which version and data they describe; the next run refreshes them"
    if stamped.get("pending"):
        return "a run was stopped while writing these files; the next run writes them again"
    if model and state is None:
        return "nothing is live"
    if model and (stamped.get("model_sha256"), stamped.get("live_since", state.timestamp)) != (
        state.model_sha256,
        state.timestamp,
    ):
        return (
            f"these figures are version {stamped.get('model_version')}'s, "
            f"not those of version {state.version}, "
            "live now; the next run refreshes them"
        )
    if data_sha256 and stamped.get("data_sha256") and stamped["data_sha256"] != data_sha256:
        return "these figures describe earlier ingested data; the next run refreshes them"
    return None


DERIVED = (  # reporting.py's outputs whose sha256 riskranking.json records: (file, its key)
    (RISK_RANKING, "list_sha256"),
    (LOST_CLIENTS, "lost_sha256"),
    (QUERY_STORE, "store_sha256"),
)


VERIFIED = "verified.json"  # cache folder: the identity each derived file had when its sha256 was checked


def derived_problems(config: Config, basis: dict) -> list[str]:
    """The call list, the lost list and the query store that are not the bytes reporting.py wrote
    (riskranking.json's sha256 of each): edited by a person, damaged, deleted. Each file is hashed
    again only when its identity (size, mtime, ctime, inode) changed since it was last found whole,
    so the nothing-new run stays cheap."""
    cache = config.cache_folder / VERIFIED
    try:
        verified = json.loads(cache.read_text(encoding="utf-8"))
        verified = verified if isinstance(verified, dict) else {}
    except (OSError, ValueError):
        verified = {}
    problems, changed = [], False
    for name, key in DERIVED:
        expected = basis.get(key)
        if not isinstance(expected, str):
            continue  # written before this check, or a pending basis: the stamp speaks for it
        path = config.model_folder / name
        try:
            seen_now = os.lstat(path)
        except OSError:
            problems.append(f"{config.relative(path)} is missing")
            continue
        now, whole = identity(seen_now), stat.S_ISREG(seen_now.st_mode)
        seen = verified.get(str(path))
        if whole and isinstance(seen, dict) and seen.get("sha256") == expected and same_identity(seen, now):
            continue
        if whole and sha256_file(path) == expected:
            verified[str(path)] = {**now, "sha256": expected}
            changed = True
            continue
        problems.append(f"{config.relative(path)} is not the file reporting.py wrote (edited or damaged)")
    if changed:
        with contextlib.suppress(OSError):
            atomic_write_json(cache, verified)
    return problems


def serves_live_version(health: dict | None, manifest: dict) -> bool | None:
    """Whether an API's /health answer is this live version's (None: nothing answered)."""
    if health is None:
        return None
    return (health.get("model_sha256"), health.get("deployed_at")) == (
        manifest["files"][MODEL]["sha256"],
        manifest.get("timestamp"),
    )


def written_folders(config: Config) -> list[Path]:
    """Every folder a killed step can leave temporary files in: the configuration's, and each
    version's folder (its live.json) and reports folder (fullprocess.py sweeps them at the start
    of every run)."""
    archive = config.prod_folder / ARCHIVE_DIR
    return [
        *config.written_folders(),
        *sorted(archive.glob("v*/")),
        *sorted(archive.glob(f"v*/{REPORTS_DIR}")),
    ]


def report_files(config: Config, version: int) -> list[Path]:
    """A version's reports, oldest first: report.pdf (made at its deployment, never overwritten),
    then each later one, report-<UTC time>.pdf (new data, a rollback)."""
    folder = config.prod_folder / folder_name(version) / REPORTS_DIR
    if not folder.is_dir():
        return []
    later = sorted(path for path in folder.glob("report-*Z.pdf") if path.is_file())
    return ([folder / REPORT] if (folder / REPORT).is_file() else []) + later
