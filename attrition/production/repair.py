"""Repair of production: under the deploy lock, before every deploy and rollback, and at the start
of every fullprocess.py run.

It clears the leftovers of a killed run: staging folders, temporary files of dead processes, a
version written whole but never switched to (removed only when nothing proves it went live: no
live.json, no manifest's lineage, no history line; moved aside to archive/aside/ when the history
is damaged), course copies that differ from the live version, a deployment missing from
deployments.jsonl (damaged lines are named). A damaged or deleted manifest.json is restored from
the last live version's live.json (or the history), every file's sha256 verified; never taken for
an empty production. A manifest copied or linked from the archive by hand is recorded as a
rollback by hand. A live version whose own files do not match its manifest is not repaired: the
run stops and says how to recover (ProductionBroken). The archive's versions are checked too
(archive_problems: fullprocess.py checks the rollback target every run, all versions daily).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from attrition.core.errors import DeploymentUnavailable, PipelineError
from attrition.core.files import atomic_write_json
from attrition.core.names import ARCHIVE_DIR, DEPLOYMENT_HISTORY, MANIFEST, REFERENCE_DATA
from attrition.core.processes import process_alive, remove_leftovers
from attrition.core.records import append_jsonl, read_jsonl, sha256_bytes, utc_now
from attrition.production.switch import (
    STAGING,
    WRITE_ERRORS,
    ProductionBroken,
    deployment_record,
    mark_live,
    read_archived_version,
    refresh_course_copies,
    remove_tree,
    switch_to,
    write_failed,
)
from attrition.production.versions import (
    LIVE_MARK,
    archived_manifest,
    archived_versions,
    current_manifest,
    folder_name,
    lineage,
    live_folder,
    live_marks,
    read_json,
)

log = logging.getLogger("deployment")  # its lines are the deploy step's


def file_matches(path: Path, entry: dict, full: bool) -> bool:
    """A version's file as its manifest says: its size, and its sha256 (the reference data, which
    grows with the data, by its sha256 only when full)."""
    try:
        ok = path.stat().st_size == entry["size"]
        if ok and (full or path.name != REFERENCE_DATA):
            ok = sha256_bytes(path.read_bytes()) == entry["sha256"]
    except (OSError, KeyError, TypeError):
        ok = False
    return ok


def version_problem(prod_folder: Path, version: int, full: bool = False) -> str | None:
    """Why an archived version could not be made live again (its manifest or a file damaged), or None."""
    folder = Path(prod_folder) / folder_name(version)
    files = (archived_manifest(prod_folder, version) or {}).get("files")
    if not isinstance(files, dict):
        return f"{folder / MANIFEST}: unreadable"
    for name, entry in files.items():
        if not file_matches(folder / name, entry, full):
            return f"{folder / name}: does not match its manifest"
    return None


def check_live_version(prod_folder: Path, manifest: dict, full: bool = False) -> None:
    """The live version's files as its manifest says, or ProductionBroken saying how to recover.

    Every file a decision reads (model, numbers, score, ingested files and record: a few KB) is
    checked by its sha256 on every run; the reference data by its size (with full, by sha256 too).
    The recovery named is one that works: --rollback only when the version it would make live is whole.
    """
    folder = live_folder(prod_folder, manifest)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not file_matches(path, entry, full):
            earlier = lineage(prod_folder, manifest)
            target = version_problem(prod_folder, earlier[-1]) if earlier else "none"
            recover = (
                f"`python deployment.py --rollback` makes version {earlier[-1]} live again, or "
                if target is None
                else f"version {earlier[-1]}, the rollback target, is damaged too ({target}); "
                if earlier
                else ""
            )
            raise ProductionBroken(
                f"{path}: does not match the manifest of live version {manifest['version']}: production is "
                f"broken; {recover}`python fullprocess.py --force` retrains and deploys a new version"
            )


def archive_problems(prod_folder: Path, manifest: dict, every: bool = False) -> list[str]:
    """The damaged versions among those a rollback could make live: the rollback target (the version
    --rollback would make live) on every run; with every, each archived version, fully."""
    earlier = lineage(prod_folder, manifest)
    versions = sorted(set(archived_versions(prod_folder)) - {manifest["version"]}) if every else earlier[-1:]
    problems = []
    for version in versions:
        problem = version_problem(prod_folder, version, full=every)
        if problem:
            role = "the rollback target" if earlier and version == earlier[-1] else "an archived version"
            problems.append(f"version {version} ({role}) is damaged: {problem}; it cannot be made live again")
    return problems


def repair(prod_folder: Path, require_whole: bool = True) -> list[str]:
    """Finish or clear what a killed run left in the production folder; the repairs made.

    The caller holds the deploy lock, so no other deploy or rollback is half-way. A live version
    whose own files are damaged raises ProductionBroken, unless require_whole is False: a deploy
    or a rollback, which are the ways out of that state, go ahead.
    """
    try:
        return repair_files(prod_folder, require_whole)
    except WRITE_ERRORS as error:  # a full disk, most likely: nothing live was changed by a failed repair
        raise write_failed(
            error, f"{prod_folder}: repairing production failed ({{cause}}); the live version is as it was"
        ) from None


def ever_live(prod_folder: Path, manifest: dict | None = None) -> tuple[list[int], list[int]]:
    """(the versions that provably went live, oldest first; the damaged lines of deployments.jsonl).

    The proof: a version's own live.json (written at every switch), the live manifest (its version,
    lineage and the version it rolled back from), the lineage of every archived manifest, and each
    deployment or rollback in deployments.jsonl.
    """
    damaged: list[int] = []
    history = read_jsonl(prod_folder / DEPLOYMENT_HISTORY, damaged)
    marks = live_marks(prod_folder)
    manifests = [*marks.values(), *([manifest] if manifest else [])]
    manifests += [
        archived
        for version in archived_versions(prod_folder)
        if (archived := archived_manifest(prod_folder, version)) is not None
    ]
    proven = set(marks)
    for entry in manifests:
        proven.update(version for version in entry.get("lineage") or [] if isinstance(version, int))
        proven.update(entry[key] for key in ("rolled_back_from",) if isinstance(entry.get(key), int))
    if manifest:
        proven.add(manifest["version"])
    for entry in history:
        proven.update(
            entry[key] for key in ("version", "rolled_back_from") if isinstance(entry.get(key), int)
        )
    return sorted(proven), damaged


def restorable(prod_folder: Path) -> tuple[dict, str] | None:
    """(the manifest that made the last live version live, where it comes from), for a production
    folder whose manifest.json is missing or damaged; None when nothing ever went live."""
    marks = live_marks(prod_folder)
    if marks:  # the latest switch; the clock breaks no tie that the switch count settles
        mark = max(
            marks.values(), key=lambda entry: (int(entry.get("switch") or 0), str(entry.get("timestamp")))
        )
        return mark, f"{mark['folder']}/{LIVE_MARK}"
    history = [
        entry
        for entry in read_jsonl(prod_folder / DEPLOYMENT_HISTORY)
        if isinstance(entry.get("version"), int) and archived_manifest(prod_folder, entry["version"])
    ]
    versions = archived_versions(prod_folder)
    if history:
        last = history[-1]
        archived = archived_manifest(prod_folder, last["version"])
        keys = ("timestamp", "action", "rolled_back_from")
        return archived | {
            key: last.get(key) for key in keys if last.get(key) is not None
        }, DEPLOYMENT_HISTORY
    if versions:
        archived = archived_manifest(prod_folder, versions[-1])
        if archived is not None:
            return archived, f"{folder_name(versions[-1])}/{MANIFEST} (the newest archived version)"
    return None


def restore_manifest(prod_folder: Path, reason: str) -> str:
    """Put back the last live version's manifest, each of its files verified by sha256; the repair
    made. ProductionBroken when there is no whole version to put back."""
    found = restorable(prod_folder)
    if found is None:
        if read_jsonl(prod_folder / DEPLOYMENT_HISTORY):
            raise ProductionBroken(
                f"{prod_folder / MANIFEST}: {reason}, and {DEPLOYMENT_HISTORY} records deployments "
                "whose archive is gone: nothing to restore; `python fullprocess.py --force` "
                "deploys a new version"
            )
        return ""
    manifest, source = found
    try:
        read_archived_version(live_folder(prod_folder, manifest))
    except (PipelineError, DeploymentUnavailable) as error:
        raise ProductionBroken(
            f"{prod_folder / MANIFEST}: {reason}; the last live version cannot be restored "
            f"({error}); `python fullprocess.py --force` deploys a new version"
        ) from None
    atomic_write_json(prod_folder / MANIFEST, manifest)
    return (
        f"{MANIFEST} was {reason}: restored version {manifest['version']}, the last live one, from {source} "
        "(every file's sha256 verified)"
    )


def repair_files(prod_folder: Path, require_whole: bool) -> list[str]:
    """The repairs, in order: debris, the manifest, the switch by hand, versions never switched to,
    the live version's own files (ProductionBroken stops here), then what the switch left undone."""
    repairs = remove_debris(prod_folder)
    manifest = restore_lost_manifest(prod_folder, require_whole, repairs)
    if manifest is None:
        _log(repairs)
        return repairs
    by_hand = switched_by_hand(prod_folder, manifest)
    if by_hand:
        repairs.append(by_hand)
        manifest = current_manifest(prod_folder)
    repairs += clear_unswitched_versions(prod_folder, manifest)
    try:
        check_live_version(prod_folder, manifest)
    except ProductionBroken as error:
        if require_whole:
            raise
        log.warning("%s", error)
        _log(repairs)
        return repairs
    repairs += finish_the_switch(prod_folder, manifest)
    _log(repairs)
    return repairs


def remove_debris(prod_folder: Path) -> list[str]:
    """Temporary files and staging folders of processes that are gone."""
    repairs = [f"removed {path.name}, left by a killed run" for path in remove_leftovers(prod_folder)]
    archive = prod_folder / ARCHIVE_DIR
    if archive.is_dir():
        for entry in archive.iterdir():
            match = STAGING.fullmatch(entry.name)
            if match and not process_alive(int(match.group(1))):
                remove_tree(entry)
                repairs.append(f"removed {entry.relative_to(prod_folder)}, left by a killed run")
    return repairs


def restore_lost_manifest(prod_folder: Path, require_whole: bool, repairs: list[str]) -> dict | None:
    """manifest.json, restored from the archive when it is damaged, or missing while versions or a
    history exist (never taken for an empty production); None for an empty production."""
    try:
        manifest = current_manifest(prod_folder)
        problem = None if manifest is not None else "missing"
    except DeploymentUnavailable as error:
        manifest, problem = None, f"damaged ({str(error).split('(', 1)[-1].rstrip(')')})"
    history = (prod_folder / DEPLOYMENT_HISTORY).exists()
    if manifest is None and (problem != "missing" or archived_versions(prod_folder) or history):
        try:
            restored = restore_manifest(prod_folder, problem)
        except ProductionBroken:
            if require_whole:
                raise
            restored = ""
        if restored:
            repairs.append(restored)
            manifest = current_manifest(prod_folder)
    return manifest


def clear_unswitched_versions(prod_folder: Path, manifest: dict) -> list[str]:
    """Versions above every version that went live, with no proof they did: written whole, killed
    before the switch. Removed; moved aside when the history that would prove it is damaged."""
    repairs = []
    proven, damaged = ever_live(prod_folder, manifest)
    if damaged:
        log.warning(
            "%s: line %s damaged (not one JSON object): skipped; versions are kept by their own "
            "live.json and the manifests",
            prod_folder / DEPLOYMENT_HISTORY,
            ", ".join(map(str, damaged[:5])),
        )
    for version in archived_versions(prod_folder):
        if version in proven or version < max(proven):
            continue
        if damaged or not (prod_folder / DEPLOYMENT_HISTORY).exists():
            aside = prod_folder / ARCHIVE_DIR / "aside" / f"v{version:04d}-{utc_now()[:19].replace(':', '')}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(prod_folder / folder_name(version), aside)
            repairs.append(
                f"moved {folder_name(version)} aside to {aside.relative_to(prod_folder)}: no proof it "
                f"went live, and {DEPLOYMENT_HISTORY} is damaged or missing"
            )
        else:
            remove_tree(prod_folder / folder_name(version))
            repairs.append(f"removed {folder_name(version)}, a version that never went live")
    return repairs


def finish_the_switch(prod_folder: Path, manifest: dict) -> list[str]:
    """What a run killed right after its switch left undone: the version's live.json, the course's
    copies, the history line."""
    repairs = []
    mark = read_json(live_folder(prod_folder, manifest) / LIVE_MARK)
    if mark != manifest and manifest.get("folder"):
        mark_live(prod_folder, manifest)
    changed = refresh_course_copies(prod_folder, manifest)
    if changed:
        repairs.append(f"refreshed {', '.join(changed)} from live version {manifest['version']}")
    history = read_jsonl(prod_folder / DEPLOYMENT_HISTORY)
    last = (history[-1].get("timestamp"), history[-1].get("version")) if history else None
    if last != (manifest.get("timestamp"), manifest["version"]):
        append_jsonl(
            prod_folder / DEPLOYMENT_HISTORY, deployment_record(manifest) | {"recorded_by": "repair"}
        )
        repairs.append(
            f"recorded the {manifest.get('action')} of version {manifest['version']} in {DEPLOYMENT_HISTORY}"
        )
    return repairs


def switched_by_hand(prod_folder: Path, manifest: dict) -> str | None:
    """A manifest.json that is not the last switch's own (a person copied or linked an archived
    version's manifest.json or live.json over it: a rollback by hand) is recorded as the rollback it
    is: the version it names made live by the switch, rolled back from the version that was live,
    with the lineage --rollback keeps. Returns the repair made, or None."""
    marks = live_marks(prod_folder)
    newest = max(marks.values(), key=lambda mark: mark.get("switch") or 0, default=None)
    linked = (prod_folder / MANIFEST).is_symlink()
    if newest is None or not (linked or (manifest.get("switch") or 0) < (newest.get("switch") or 0)):
        return None
    target, before = manifest["version"], newest
    if target == before["version"]:  # the live version's own, copied back: the switch's manifest again
        atomic_write_json(prod_folder / MANIFEST, newest)
        return f"{MANIFEST} was a copy of version {target}'s manifest: the switch's own restored"
    archived, contents = read_archived_version(prod_folder / folder_name(target))
    earlier = lineage(prod_folder, before)
    rolled = {
        **archived,
        "timestamp": utc_now(),
        "action": "rollback",
        "by_hand": True,
        "rolled_back_from": before["version"],
        "folder": folder_name(target),
        "lineage": earlier[: earlier.index(target)] if target in earlier else earlier,
    }
    switch_to(prod_folder, rolled, contents, before)
    how = "a link to" if linked else "a copy of"
    return (
        f"{MANIFEST} was {how} version {target}'s manifest, not the last switch's: recorded as a "
        f"rollback by hand from version {before['version']} to version {target} (lineage kept)"
    )


def _log(repairs: list[str]) -> None:
    for message in repairs:
        log.warning("repair: %s", message)
