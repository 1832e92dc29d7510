"""Deploy the trained model, its score and the ingestion record to production.

It creates no model: it copies files. Every version is written whole into its own immutable
folder first; one atomic replace of manifest.json then makes it live. So at any instant (a
kill, a full disk) every reader sees the old version or the new one, whole.

Reads
    output_model_path/trainedmodel.pkl, trainedmodel.json (the same model as the numbers the API
    serves: it must name the pickle's sha256), latestscore.txt and latestscore.json (the score
    of this model), output_folder_path/ingestedfiles.txt and ingestionrecord.json (the data it
    was trained on: trainedmodel.json's training data sha256 must be the record's), and beside
    them, when present, referencedata.csv and decision.json (why fullprocess.py deploys this
    model) when it names this model's sha256. Not one consistent triple: refused (exit 65).
Writes (prod_deployment_path)
    archive/vNNNN/         the version's files and its manifest.json, read-only; and live.json:
                           the manifest that last made it live, written at every switch to it
                           (the proof that it went live, and what a lost manifest is restored from)
    manifest.json          the live version: its number, folder, the sha256 of each file, the
                           versions live before it (what --rollback goes back to) and the
                           checkout that deployed it; replaced atomically, it is the switch
    trainedmodel.pkl, trainedmodel.json, latestscore.txt, ingestedfiles.txt (and extras)
                           the course's copies of the live version's files, refreshed
                           after the switch (and repaired by the next run if a kill
                           caught them half-way); readers use the version folder
    deployments.jsonl      one line per deployment or rollback
    .deploy.lock           held while production changes; it names its holder (PID, since)
Repairs (under the lock, before every deploy and rollback, and at the start of every
fullprocess.py run)
    the leftovers of a killed run: staging folders, temporary files of dead processes, a
    version written whole but never switched to (removed only when nothing proves it went live:
    no live.json, no manifest's lineage, no history line; moved aside to archive/aside/ when the
    history is damaged), course copies that differ from the live version, a deployment missing
    from deployments.jsonl (damaged lines are named). A damaged or deleted manifest.json is
    restored from the last live version's live.json (or the history), every file's sha256
    verified; never taken for an empty production. A live version whose own files do not match
    its manifest is not repaired: the run stops and says how to recover.
Run
    python deployment.py               # deploy what training/scoring produced
    python deployment.py --force       # also a model the last run's promotion gate refused
                                       # (decision.json says so): marked forced everywhere
    python deployment.py --expect-manifest SHA256
                                       # only if production is still the state a decision
                                       # compared against (fullprocess.py's compare and swap)
    python deployment.py --rollback    # go back to the version that was live before, then
                                       # refresh the report and call list for it (reporting.py),
                                       # when there is one
Exit status
    0 deployed or rolled back; 65 a required file is missing or inconsistent, or the promotion
    gate refused this model (--force deploys it); 75 production
    changed since the expected manifest (nothing deployed); 1 nothing to roll back to, a damaged
    archive, a broken live version, or another checkout's production folder; 74 a full disk:
    production unchanged in each case unless the line says otherwise; 78 bad config.json.
Start-up
    It imports no data library: a rollback is a file switch, and answers in tens of milliseconds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from pathlib import Path

from attrition.core.config import Config, load_config
from attrition.core.errors import EXIT_LOCKED, DeploymentUnavailable, DiskFull, InputError, PipelineError
from attrition.core.files import atomic_write_bytes, atomic_write_json, fsync_folder
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import (
    ARCHIVE_DIR,
    DECISION,
    DEPLOYMENT_HISTORY,
    INGESTEDFILES,
    INGESTION_RECORD,
    LATESTSCORE,
    MANIFEST,
    MODEL,
    MODEL_META,
    PROJECT_DIR,
    REFERENCE_DATA,
    RISK_RANKING_BASIS,
    SCORE_METRICS,
)
from attrition.core.processes import die_with_parent, file_lock, process_alive, remove_leftovers
from attrition.core.records import (
    append_jsonl,
    read_ingested_files,
    read_jsonl,
    read_score,
    sha256_bytes,
    utc_now,
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
    manifest_digest,
    other_checkout,
    read_json,
    read_manifest,
    read_stamp,
    still_live,
)

NAME = "deployment"
LOCK = ".deploy.lock"
OPTIONAL_FILES = (MODEL_META, SCORE_METRICS, REFERENCE_DATA, INGESTION_RECORD)
STAGING = re.compile(r"\.v\d+\.(\d+)\.tmp")  # archive_version's staging folders: .vNNNN.PID.tmp

log = logging.getLogger(NAME)


WRITE_ERRORS = (OSError, DiskFull)  # a failed write: atomic_path names a full disk DiskFull


def write_failed(error: Exception, message: str) -> PipelineError:
    """The error a failed write of production ends with: DiskFull (exit 74) for a full disk, else
    PipelineError; message says what is live now, and the cause follows it in brackets."""
    full = isinstance(error, DiskFull) or getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    cause = "No space left on device" if full else (getattr(error, "strerror", None) or error)
    return (DiskFull if full else PipelineError)(message.replace("{cause}", str(cause)))


class ProductionBroken(PipelineError):
    """The live version's own files do not match its manifest: a person must choose a version."""


def read_sources(config: Config) -> tuple[dict[str, bytes], float, list[str]]:
    """(the files to deploy by name, the F1, the ingested file names), each file read once.

    Refuses when a required file is missing or when they are not one consistent triple: the
    model, its score (latestscore.json names the model's sha256) and the ingestion record of the
    data it was trained on (trainedmodel.json's training data sha256 is the record's finaldata's).
    """
    required = {
        MODEL: config.model_folder / MODEL,
        MODEL_META: config.model_folder / MODEL_META,
        LATESTSCORE: config.model_folder / LATESTSCORE,
        SCORE_METRICS: config.model_folder / SCORE_METRICS,
        INGESTEDFILES: config.output_folder / INGESTEDFILES,
        INGESTION_RECORD: config.output_folder / INGESTION_RECORD,
    }
    missing = [str(path) for path in required.values() if not path.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: not found; run ingestion, training and scoring first")
    if required[MODEL].stat().st_size == 0:
        raise InputError(f"{required[MODEL]}: empty model file")
    optional = {REFERENCE_DATA: config.model_folder / REFERENCE_DATA}
    optional = {name: path for name, path in optional.items() if path.is_file()}
    f1 = read_score(required[LATESTSCORE])  # both must parse before anything is published
    ingested = read_ingested_files(required[INGESTEDFILES])
    contents = {name: path.read_bytes() for name, path in {**required, **optional}.items()}
    model_sha = sha256_bytes(contents[MODEL])
    meta, scored, record = (
        _json_of(required[name], contents[name]) for name in (MODEL_META, SCORE_METRICS, INGESTION_RECORD)
    )
    # The served numbers, the score and the reasons must be those of this model, not of an earlier one.
    if meta.get("model_sha256") != model_sha:
        raise InputError(
            f"{required[MODEL_META]}: describes another model than {required[MODEL]}; run training.py again"
        )
    if "linear_model" not in meta:
        raise InputError(
            f"{required[MODEL_META]}: has no linear_model (the numbers the API serves); run training.py again"
        )
    if scored.get("model_sha256") != model_sha or scored.get("f1") != f1:
        raise InputError(
            f"{required[LATESTSCORE]}: was computed for another model than {required[MODEL]} "
            f"(or {required[SCORE_METRICS]} says another score); run scoring.py first"
        )
    if meta.get("training_data_sha256") != record.get("finaldata_sha256"):
        raise InputError(
            f"{required[MODEL]}: was not trained on the data {required[INGESTION_RECORD]} "
            "describes (ingestion ran since); run training.py and scoring.py first"
        )
    decision = _decision_for(config.model_folder / DECISION, model_sha)  # fullprocess.py's reasons
    if decision is not None:
        contents[DECISION] = decision
    return contents, f1, ingested


def _json_of(path: Path, data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InputError(f"{path}: not a JSON object; run the step that writes it again")
    return value


def _decision_for(path: Path, model_sha: str) -> bytes | None:
    """decision.json's bytes when it was written for this very model (not left by an earlier run)."""
    try:
        blob = path.read_bytes()
        return blob if json.loads(blob).get("model_sha256") == model_sha else None
    except (OSError, ValueError, AttributeError):
        return None


def remove_tree(path: Path) -> None:
    import shutil

    for entry in [path, *path.rglob("*")]:  # archived files are read-only
        if not entry.is_symlink():
            entry.chmod(0o755 if entry.is_dir() else 0o644)
    shutil.rmtree(path, ignore_errors=True)


def archive_version(contents: dict[str, bytes], prod_folder: Path, manifest: dict) -> Path:
    """Write the files into a new immutable archive folder; the folder appears whole or not at all."""
    target = prod_folder / manifest["folder"]
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.mkdir(parents=True)
    try:
        for name, data in contents.items():
            (staging / name).write_bytes(data)
            manifest["files"][name] = {"sha256": sha256_bytes(data), "size": len(data)}
        atomic_write_json(staging / MANIFEST, manifest)
        for entry in staging.iterdir():
            entry.chmod(0o444)
        fsync_folder(staging)
        os.replace(staging, target)
        fsync_folder(target.parent)
    except BaseException:
        remove_tree(staging)
        raise
    return target


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


class ProductionChanged(PipelineError):
    """Production is not the state the caller compared against (a person deployed or rolled back
    meanwhile): nothing deployed; the caller decides afresh."""

    exit_code = EXIT_LOCKED


class GateRefused(InputError):
    """The last decision's promotion gate refused this very model: deployed only with --force."""


def gate_refusal(decision: dict) -> str | None:
    """Why the run that wrote decision.json refused its model, or None when it did not."""
    gate = decision.get("gate")
    if not isinstance(gate, dict) or gate.get("deploy") is not False:
        return None
    return (
        f"the promotion gate refused this model (F1 {gate.get('candidate_f1')} below the deployed "
        f"{gate.get('deployed_f1')}, run of {decision.get('run_start')})"
    )


def deploy(config: Config, expect: str | None = None, force: bool = False) -> dict:
    """Archive the current model, score and ingestion record, then make them live; returns the manifest.

    expect: the manifest digest (production.manifest_digest) the caller's drift test and gate
    compared against; production changed since (a person's rollback or deployment) is refused.
    force: deploy a model the last decision's promotion gate refused (marked "forced").
    """
    contents, f1, ingested = read_sources(config)
    decision = _json_of(config.model_folder / DECISION, contents[DECISION]) if DECISION in contents else {}
    refusal = gate_refusal(decision)
    if refusal and not force:
        raise GateRefused(
            f"{config.model_folder / MODEL}: {refusal}; nothing deployed. "
            "`python deployment.py --force` deploys it anyway (marked forced)"
        )
    gate = decision.get("gate") if isinstance(decision.get("gate"), dict) else {}
    forced = bool(refusal or gate.get("forced"))
    prod = config.prod_folder
    prod.mkdir(parents=True, exist_ok=True)
    with file_lock(prod / LOCK):
        repair(prod, require_whole=False)
        other = other_checkout(config)
        if other:
            raise PipelineError(other)
        if expect is not None and manifest_digest(prod) != expect:
            raise ProductionChanged(
                f"{prod / MANIFEST}: production changed since the drift test and the gate read "
                f"it ({what_is_live(prod)} now); not deployed"
            )
        try:
            before = current_manifest(prod)
        except DeploymentUnavailable:  # damaged beyond repair: --force deploys over it
            before = None
        version = max([0, *archived_versions(prod), *([before["version"]] if before else [])]) + 1
        manifest = {
            "version": version,
            "timestamp": utc_now(),
            "action": "deploy",
            "f1": f1,
            "ingested_files": ingested,
            "source": {
                "checkout": str(config.path.parent),
                "prod_folder": str(prod),
                "model_folder": str(config.model_folder),
                "output_folder": str(config.output_folder),
                "input_folder": str(config.input_folder),
            },
            "folder": folder_name(version),
            "lineage": [*lineage(prod, before), before["version"]] if before else ever_live(prod)[0],
            "files": {},
        }
        if decision.get("run_start"):
            manifest["run_start"] = decision["run_start"]  # the fullprocess.py run that deployed it
        if forced:  # past the gate's refusal: the dashboard, the report, /metrics and the history say so
            manifest["forced"] = {
                "candidate_f1": gate.get("candidate_f1", f1),
                "deployed_f1": gate.get("deployed_f1"),
            }
        try:
            archive_version(contents, prod, manifest)
        except WRITE_ERRORS as error:
            raise write_failed(
                error,
                f"{prod / manifest['folder']}: could not write version {version} "
                f"({{cause}}); {still_live(before)}",
            ) from None
        switch_to(prod, manifest, contents, before)
    return manifest


def what_is_live(prod: Path) -> str:
    try:
        manifest = current_manifest(prod)
    except DeploymentUnavailable:
        return "an unreadable manifest"
    return f"version {manifest['version']} is live" if manifest else "production is empty"


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


def rollback(config: Config) -> dict:
    """Make the version that was live before the current one live again; returns its manifest."""
    prod = config.prod_folder
    with file_lock(prod / LOCK):
        repair(prod, require_whole=False)
        other = other_checkout(config)
        if other:
            raise PipelineError(other)
        before = read_manifest(prod)
        earlier = lineage(prod, before)
        if not earlier:
            raise PipelineError(
                f"{prod}: version {before['version']} is the first live deployment; nothing to roll back to"
            )
        target = earlier[-1]
        archived, contents = read_archived_version(prod / folder_name(target))
        manifest = {
            **archived,
            "timestamp": utc_now(),
            "action": "rollback",
            "rolled_back_from": before["version"],
            "folder": folder_name(target),
            "lineage": earlier[:-1],
        }
        switch_to(prod, manifest, contents, before)
    return manifest


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
    repairs = [f"removed {path.name}, left by a killed run" for path in remove_leftovers(prod_folder)]
    archive = prod_folder / ARCHIVE_DIR
    if archive.is_dir():
        for entry in archive.iterdir():
            match = STAGING.fullmatch(entry.name)
            if match and not process_alive(int(match.group(1))):
                remove_tree(entry)
                repairs.append(f"removed {entry.relative_to(prod_folder)}, left by a killed run")
    try:
        manifest = current_manifest(prod_folder)
        problem = None if manifest is not None else "missing"
    except DeploymentUnavailable as error:
        manifest, problem = None, f"damaged ({str(error).split('(', 1)[-1].rstrip(')')})"
    if manifest is None and (
        problem != "missing" or archived_versions(prod_folder) or (prod_folder / DEPLOYMENT_HISTORY).exists()
    ):
        try:
            restored = restore_manifest(prod_folder, problem)
        except ProductionBroken:
            if require_whole:
                raise
            restored = ""
        if restored:
            repairs.append(restored)
            manifest = current_manifest(prod_folder)
    if manifest is None:
        _log(repairs)
        return repairs
    by_hand = switched_by_hand(prod_folder, manifest)
    if by_hand:
        repairs.append(by_hand)
        manifest = current_manifest(prod_folder)
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
        # Above every version that went live, with no proof it did: written whole, killed before the switch.
        if damaged or not (prod_folder / DEPLOYMENT_HISTORY).exists():
            aside = archive / "aside" / f"v{version:04d}-{utc_now()[:19].replace(':', '')}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(prod_folder / folder_name(version), aside)
            repairs.append(
                f"moved {folder_name(version)} aside to {aside.relative_to(prod_folder)}: no proof it "
                f"went live, and {DEPLOYMENT_HISTORY} is damaged or missing"
            )
        else:
            remove_tree(prod_folder / folder_name(version))
            repairs.append(f"removed {folder_name(version)}, a version that never went live")
    try:
        check_live_version(prod_folder, manifest)
    except ProductionBroken as error:
        if require_whole:
            raise
        log.warning("%s", error)
        _log(repairs)
        return repairs
    mark = read_json(live_folder(prod_folder, manifest) / LIVE_MARK)
    if mark != manifest and manifest.get("folder"):  # a run killed right after its switch
        mark_live(prod_folder, manifest)
    changed = refresh_course_copies(prod_folder, manifest)
    if changed:
        repairs.append(f"refreshed {', '.join(changed)} from live version {manifest['version']}")
    history = read_jsonl(prod_folder / DEPLOYMENT_HISTORY)
    if not history or (history[-1].get("timestamp"), history[-1].get("version")) != (
        manifest.get("timestamp"),
        manifest["version"],
    ):
        append_jsonl(
            prod_folder / DEPLOYMENT_HISTORY, deployment_record(manifest) | {"recorded_by": "repair"}
        )
        repairs.append(
            f"recorded the {manifest.get('action')} of version {manifest['version']} in {DEPLOYMENT_HISTORY}"
        )
    _log(repairs)
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


def refresh_reports(config: Config, version: int) -> None:
    """After a rollback, the report and the call list describe the version live again (reporting.py
    in its own process). A failure leaves the rollback done and says so; the next fullprocess.py
    run refreshes them. Without a call list yet (deployed by hand, never reported) there is
    nothing to refresh: fullprocess.py's rule too (refresh_stale_reports); reporting.py writes
    the first."""
    import subprocess
    import sys

    if read_stamp(config.model_folder / RISK_RANKING_BASIS) is None:
        log.info(
            "version %d is live; there is no call list or report to refresh yet (reporting.py writes them)",
            version,
        )
        return

    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "reporting.py")],
        capture_output=True,
        text=True,
        env={**os.environ, **config.frozen()},
        preexec_fn=die_with_parent,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning(
            "version %d is live; its reports were not refreshed (%s); the next fullprocess.py run "
            "refreshes them",
            version,
            last,
        )
    else:
        log.info("refreshed the report and the call list for version %d", version)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--rollback", action="store_true", help="go back to the version that was live before")
    parser.add_argument(
        "--force", action="store_true", help="deploy a model the promotion gate refused (marked forced)"
    )
    parser.add_argument(
        "--expect-manifest",
        metavar="SHA256",
        help="deploy only if manifest.json still has this "
        "sha256 ('none': production empty); exit 75 otherwise (fullprocess.py's compare and swap)",
    )
    args = parser.parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    if args.rollback:
        manifest = rollback(config)
        log.info(
            "rolled back %s from version %d to version %d (F1 %s)",
            config.prod_folder,
            manifest["rolled_back_from"],
            manifest["version"],
            manifest["f1"],
        )
        refresh_reports(config, manifest["version"])
    else:
        manifest = deploy(config, args.expect_manifest, args.force)
        forced = " past the promotion gate's refusal (--force)" if manifest.get("forced") else ""
        log.info(
            "deployed version %d (F1 %s) to %s%s",
            manifest["version"],
            manifest["f1"],
            config.prod_folder,
            forced,
        )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
