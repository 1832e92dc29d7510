"""Deploy the trained model, its score and the ingestion record to production.

It creates no model: it copies files. Every version is written whole into its own immutable
folder first; one atomic replace of manifest.json then makes it live. So at any instant (a
kill, a full disk) every reader sees the old version or the new one, whole.

Reads
    output_model_path/trainedmodel.pkl, trainedmodel.json (the same model as the
    numbers the API serves: it must name the pickle's sha256), latestscore.txt,
    output_folder_path/ingestedfiles.txt (required), and beside them, when
    present, latestscore.json, referencedata.csv, ingestionrecord.json, and decision.json
    (why fullprocess.py deploys this model) when it names this model's sha256.
Writes (prod_deployment_path)
    archive/vNNNN/         the version's files and its manifest.json, read-only
    manifest.json          the live version: its number, folder, the sha256 of each file
                           and the versions live before it (what --rollback goes back to);
                           replaced atomically, it is the switch
    trainedmodel.pkl, trainedmodel.json, latestscore.txt, ingestedfiles.txt (and extras)
                           the course's copies of the live version's files, refreshed
                           after the switch (and repaired by the next run if a kill
                           caught them half-way); readers use the version folder
    deployments.jsonl      one line per deployment or rollback
Repairs (before every deploy and rollback, and at the start of every fullprocess.py run)
    the leftovers of a killed run: staging folders, temporary files of dead processes,
    versions that never went live, course copies that differ from the live version, a
    deployment missing from deployments.jsonl. A live version whose own files do not match
    its manifest is not repaired: the run stops and says how to recover.
Run
    python deployment.py               # deploy what training/scoring produced
    python deployment.py --rollback    # go back to the version that was live before, then
                                       # refresh the report and call list for it (reporting.py)
Exit status
    0 deployed or rolled back; 65 a required file is missing or inconsistent; 1 nothing to
    roll back to, a damaged archive or a broken live version; 74 a full disk: production
    unchanged in each case unless the line says otherwise; 78 bad config.json.
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

from common import (
    ARCHIVE_DIR,
    CONFIG_ENV,
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
    SCORE_METRICS,
    Config,
    DiskFull,
    InputError,
    PipelineError,
    atomic_write_bytes,
    atomic_write_json,
    command_line,
    fsync_folder,
    load_config,
    run_main,
    setup_logging,
)
from processes import die_with_parent, file_lock, process_alive, remove_leftovers
from production import (
    archived_versions,
    current_manifest,
    folder_name,
    lineage,
    live_folder,
    read_manifest,
    still_live,
)
from records import append_jsonl, read_ingested_files, read_jsonl, read_score, sha256_bytes, utc_now

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

    Refuses when a required file is missing or inconsistent.
    """
    required = {
        MODEL: config.model_folder / MODEL,
        MODEL_META: config.model_folder / MODEL_META,
        LATESTSCORE: config.model_folder / LATESTSCORE,
        INGESTEDFILES: config.output_folder / INGESTEDFILES,
    }
    missing = [str(path) for path in required.values() if not path.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: not found; run ingestion, training and scoring first")
    if required[MODEL].stat().st_size == 0:
        raise InputError(f"{required[MODEL]}: empty model file")
    optional = {
        name: folder / name
        for name, folder in [
            (SCORE_METRICS, config.model_folder),
            (REFERENCE_DATA, config.model_folder),
            (INGESTION_RECORD, config.output_folder),
        ]
        if (folder / name).is_file()
    }
    f1 = read_score(required[LATESTSCORE])  # both must parse before anything is published
    ingested = read_ingested_files(required[INGESTEDFILES])
    contents = {name: path.read_bytes() for name, path in {**required, **optional}.items()}
    model_sha = sha256_bytes(contents[MODEL])
    # The served numbers, the score and the reasons must be those of this model, not of an earlier one.
    try:
        meta = json.loads(contents[MODEL_META])
    except ValueError:
        raise InputError(f"{required[MODEL_META]}: not valid JSON; run training.py again") from None
    if not isinstance(meta, dict) or meta.get("model_sha256") != model_sha:
        raise InputError(f"{required[MODEL_META]}: describes another model than {required[MODEL]}; "
                         "run training.py again")  # fmt: skip
    if "linear_model" not in meta:
        raise InputError(f"{required[MODEL_META]}: has no linear_model (the numbers the API serves); "
                         "run training.py again")  # fmt: skip
    if SCORE_METRICS in contents:
        scored = json.loads(contents[SCORE_METRICS]).get("model_sha256")
        if scored and scored != model_sha:
            raise InputError(
                f"{required[LATESTSCORE]}: was computed for another model than {required[MODEL]}; "
                "run scoring.py first"
            )
    decision = _decision_for(config.model_folder / DECISION, model_sha)  # fullprocess.py's reasons
    if decision is not None:
        contents[DECISION] = decision
    return contents, f1, ingested


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
        key: manifest.get(key) for key in ("timestamp", "action", "version", "f1", "rolled_back_from")
    } | {"model_sha256": manifest["files"][MODEL]["sha256"]}


def switch_to(prod_folder: Path, manifest: dict, contents: dict[str, bytes], before: dict | None) -> None:
    """Make the archived version named by manifest live: one atomic replace of manifest.json.

    What follows the switch (the course copies, the history line) is repaired by the next run
    when it fails, and the error says that the new version is live.
    """
    try:
        atomic_write_json(prod_folder / MANIFEST, manifest)
    except WRITE_ERRORS as error:
        raise write_failed(error, f"{prod_folder / MANIFEST}: could not switch to version {manifest['version']} "
                                  f"({{cause}}); {still_live(before)}") from None  # fmt: skip
    try:
        refresh_course_copies(prod_folder, manifest, contents)
        append_jsonl(prod_folder / DEPLOYMENT_HISTORY, deployment_record(manifest))
    except WRITE_ERRORS as error:
        raise write_failed(
            error,
            f"version {manifest['version']} is live, but refreshing the copies in {prod_folder} "
            "failed ({cause}); the next deployment.py or fullprocess.py run repairs them",
        ) from None


def deploy(config: Config) -> dict:
    """Archive the current model, score and ingestion record, then make them live; returns the manifest."""
    contents, f1, ingested = read_sources(config)
    prod = config.prod_folder
    prod.mkdir(parents=True, exist_ok=True)
    with file_lock(prod / LOCK):
        repair(prod, require_whole=False)
        before = current_manifest(prod)
        version = max([0, *archived_versions(prod), *([before["version"]] if before else [])]) + 1
        manifest = {
            "version": version,
            "timestamp": utc_now(),
            "action": "deploy",
            "f1": f1,
            "ingested_files": ingested,
            "source": {"model_folder": str(config.model_folder), "output_folder": str(config.output_folder)},
            "folder": folder_name(version),
            "lineage": [*lineage(prod, before), before["version"]] if before else [],
            "files": {},
        }
        try:
            archive_version(contents, prod, manifest)
        except WRITE_ERRORS as error:
            raise write_failed(error, f"{prod / manifest['folder']}: could not write version {version} "
                                      f"({{cause}}); {still_live(before)}") from None  # fmt: skip
        switch_to(prod, manifest, contents, before)
    return manifest


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
        before = read_manifest(prod)
        earlier = lineage(prod, before)
        if not earlier:
            raise PipelineError(f"{prod}: version {before['version']} is the first live deployment; "
                                "nothing to roll back to")  # fmt: skip
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


def check_live_version(prod_folder: Path, manifest: dict, full: bool = False) -> None:
    """The live version's files as its manifest says, or ProductionBroken saying how to recover.

    Every run checks that each file is there with its size: cheap enough for the nothing-new path
    (a sha256 would import hashlib, a tenth of its budget), and every reader checks the model's
    sha256 before loading it anyway. With full, every file's sha256 too (the drills)."""
    folder = live_folder(prod_folder, manifest)
    for name, entry in manifest["files"].items():
        path = folder / name
        try:
            ok = path.stat().st_size == entry["size"]
            if ok and full:
                ok = sha256_bytes(path.read_bytes()) == entry["sha256"]
        except OSError:
            ok = False
        if not ok:
            earlier = lineage(prod_folder, manifest)
            recover = (
                f"`python deployment.py --rollback` makes version {earlier[-1]} live again, or "
                if earlier else ""
            )  # fmt: skip
            raise ProductionBroken(
                f"{path}: does not match the manifest of live version {manifest['version']}: production is "
                f"broken; {recover}`python fullprocess.py --force` retrains and deploys a new version"
            )


def repair(prod_folder: Path, require_whole: bool = True) -> list[str]:
    """Finish or clear what a killed run left in the production folder; the repairs made.

    The caller holds the deploy lock, so no other deploy or rollback is half-way. A live version
    whose own files are damaged raises ProductionBroken, unless require_whole is False: a deploy
    or a rollback, which are the ways out of that state, go ahead.
    """
    try:
        return repair_files(prod_folder, require_whole)
    except WRITE_ERRORS as error:  # a full disk, most likely: nothing live was changed by a failed repair
        raise write_failed(error, f"{prod_folder}: repairing production failed ({{cause}}); "
                            "the live version is as it was") from None  # fmt: skip


def repair_files(prod_folder: Path, require_whole: bool) -> list[str]:
    repairs = [f"removed {path.name}, left by a killed run" for path in remove_leftovers(prod_folder)]
    archive = prod_folder / ARCHIVE_DIR
    if archive.is_dir():
        for entry in archive.iterdir():
            match = STAGING.fullmatch(entry.name)
            if match and not process_alive(int(match.group(1))):
                remove_tree(entry)
                repairs.append(f"removed {entry.relative_to(prod_folder)}, left by a killed run")
    manifest = current_manifest(prod_folder)
    if manifest is None:
        return repairs
    history = read_jsonl(prod_folder / DEPLOYMENT_HISTORY)
    ever_live = {manifest["version"], *lineage(prod_folder, manifest)} | {
        entry.get("version") for entry in history if entry.get("action") == "deploy"
    }
    for version in archived_versions(prod_folder):
        if version > max(ever_live):  # written whole, but killed before it went live
            remove_tree(prod_folder / folder_name(version))
            repairs.append(f"removed {folder_name(version)}, a version that never went live")
    try:
        check_live_version(prod_folder, manifest)
    except ProductionBroken as error:
        if require_whole:
            raise
        log.warning("%s", error)
        return repairs
    changed = refresh_course_copies(prod_folder, manifest)
    if changed:
        repairs.append(f"refreshed {', '.join(changed)} from live version {manifest['version']}")
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
    for message in repairs:
        log.warning("repair: %s", message)
    return repairs


def refresh_reports(config: Config, version: int) -> None:
    """After a rollback, the report and the call list describe the version live again (reporting.py
    in its own process). A failure leaves the rollback done and says so; the next fullprocess.py
    run refreshes them."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(PROJECT_DIR / "reporting.py")], capture_output=True, text=True,
                            env={**os.environ, CONFIG_ENV: str(config.path)}, preexec_fn=die_with_parent)  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning("version %d is live; its reports were not refreshed (%s); the next fullprocess.py run "
                    "refreshes them", version, last)  # fmt: skip
    else:
        log.info("refreshed the report and the call list for version %d", version)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--rollback", action="store_true", help="go back to the version that was live before")
    args = parser.parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    if args.rollback:
        manifest = rollback(config)
        log.info("rolled back %s from version %d to version %d (F1 %s)", config.prod_folder,
                 manifest["rolled_back_from"], manifest["version"], manifest["f1"])  # fmt: skip
        refresh_reports(config, manifest["version"])
    else:
        manifest = deploy(config)
        log.info("deployed version %d (F1 %s) to %s", manifest["version"], manifest["f1"], config.prod_folder)
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
