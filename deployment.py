"""Deploy the trained model, its score and the ingestion record to production.

It creates no model: it copies files.

Reads
    output_model_path/trainedmodel.pkl, output_model_path/latestscore.txt,
    output_folder_path/ingestedfiles.txt (required), and beside them, when
    present, trainedmodel.json, latestscore.json, referencedata.csv,
    ingestionrecord.json.
Writes (prod_deployment_path)
    archive/vNNNN/         an immutable numbered copy of every deployed version
    trainedmodel.pkl, latestscore.txt, ingestedfiles.txt (and the extras),
                           each replaced atomically
    manifest.json          version, timestamp, sha256 of each file; written last,
                           so a reader checks the model it loads against it
    deployments.jsonl      one line per deployment or rollback
Run
    python deployment.py               # deploy what training/scoring produced
    python deployment.py --rollback    # restore the previous version
Exit status
    0 deployed or rolled back; 65 a required file is missing or inconsistent, 1 nothing to
    roll back to or a damaged archive: production unchanged in both; 78 bad config.json.
Start-up
    A light path with a budget (README: Benchmarks): it imports no data library, and shutil
    only when a failed deploy cleans up.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from common import (
    ARCHIVE_DIR,
    DEPLOYMENT_HISTORY,
    INGESTEDFILES,
    INGESTION_RECORD,
    LATESTSCORE,
    MANIFEST,
    MODEL,
    MODEL_META,
    REFERENCE_DATA,
    SCORE_METRICS,
    Config,
    InputError,
    PipelineError,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    file_lock,
    fsync_folder,
    load_config,
    parse_switches,
    read_ingested_files,
    read_manifest,
    read_score,
    run_main,
    setup_logging,
    sha256_bytes,
    utc_now,
)

NAME = "deployment"
LOCK = ".deploy.lock"
OPTIONAL_FILES = (MODEL_META, SCORE_METRICS, REFERENCE_DATA, INGESTION_RECORD)

log = logging.getLogger(NAME)


def read_sources(config: Config) -> tuple[dict[str, bytes], float, list[str]]:
    """(the files to deploy by name, the F1, the ingested file names), each file read once.

    Refuses when a required file is missing or inconsistent.
    """
    required = {
        MODEL: config.model_folder / MODEL,
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
            (MODEL_META, config.model_folder),
            (SCORE_METRICS, config.model_folder),
            (REFERENCE_DATA, config.model_folder),
            (INGESTION_RECORD, config.output_folder),
        ]
        if (folder / name).is_file()
    }
    f1 = read_score(required[LATESTSCORE])  # both must parse before anything is published
    ingested = read_ingested_files(required[INGESTEDFILES])
    contents = {name: path.read_bytes() for name, path in {**required, **optional}.items()}
    # The score must be the score of this model, not of an earlier one.
    if SCORE_METRICS in contents:
        scored = json.loads(contents[SCORE_METRICS]).get("model_sha256")
        if scored and scored != sha256_bytes(contents[MODEL]):
            raise InputError(
                f"{required[LATESTSCORE]}: was computed for another model than {required[MODEL]}; "
                "run scoring.py first"
            )
    return contents, f1, ingested


def archived_versions(prod_folder: Path) -> list[int]:
    archive = prod_folder / ARCHIVE_DIR
    if not archive.is_dir():
        return []
    return sorted(
        int(entry.name[1:])
        for entry in archive.iterdir()
        if entry.is_dir() and entry.name.startswith("v") and entry.name[1:].isdigit()
    )


def version_folder(prod_folder: Path, version: int) -> Path:
    return prod_folder / ARCHIVE_DIR / f"v{version:04d}"


def archive_version(contents: dict[str, bytes], prod_folder: Path, manifest: dict) -> Path:
    """Write the files into a new immutable archive folder; the folder appears whole or not at all."""
    target = version_folder(prod_folder, manifest["version"])
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.mkdir(parents=True)
    try:
        for name, data in contents.items():
            (staging / name).write_bytes(data)
            manifest["files"][name] = {"sha256": sha256_bytes(data), "size": len(data)}
        atomic_write_json(staging / MANIFEST, manifest)
        for entry in staging.iterdir():
            entry.chmod(0o444)
        os.replace(staging, target)
        fsync_folder(target.parent)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def promote(contents: dict[str, bytes], prod_folder: Path, manifest: dict) -> None:
    """Make a version the live one: each file atomically, the manifest last."""
    for name, data in contents.items():
        atomic_write_bytes(prod_folder / name, data, sync_folder=False)
    for name in OPTIONAL_FILES:
        if name not in contents:
            (prod_folder / name).unlink(missing_ok=True)
    fsync_folder(prod_folder)  # once for all the files, before the manifest names them
    atomic_write_json(prod_folder / MANIFEST, manifest)
    append_jsonl(
        prod_folder / DEPLOYMENT_HISTORY,
        {key: manifest.get(key) for key in ("timestamp", "action", "version", "f1", "rolled_back_from")}
        | {"model_sha256": manifest["files"][MODEL]["sha256"]},
    )


def deploy(config: Config) -> dict:
    """Archive and promote the current model, score and ingestion record; returns the manifest."""
    contents, f1, ingested = read_sources(config)
    prod = config.prod_folder
    prod.mkdir(parents=True, exist_ok=True)
    with file_lock(prod / LOCK):
        versions = archived_versions(prod)
        manifest = {
            "version": (versions[-1] if versions else 0) + 1,
            "timestamp": utc_now(),
            "action": "deploy",
            "f1": f1,
            "ingested_files": ingested,
            "source": {"model_folder": str(config.model_folder), "output_folder": str(config.output_folder)},
            "files": {},
        }
        archive_version(contents, prod, manifest)
        promote(contents, prod, manifest)
    return manifest


def read_archived_version(version_dir: Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, files by name) of an archived version, each file checked against the manifest."""
    try:
        manifest = json.loads((version_dir / MANIFEST).read_text(encoding="utf-8"))
        contents = {name: (version_dir / name).read_bytes() for name in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PipelineError(
            f"{version_dir}: archived version is unreadable ({error}); not rolled back"
        ) from None
    for name, entry in manifest["files"].items():
        if sha256_bytes(contents[name]) != entry.get("sha256"):
            raise PipelineError(f"{version_dir / name}: archived file is damaged; not rolled back")
    return manifest, contents


def rollback(config: Config) -> dict:
    """Restore the archived version before the live one; returns its manifest."""
    prod = config.prod_folder
    with file_lock(prod / LOCK):
        current = read_manifest(prod)["version"]
        earlier = [version for version in archived_versions(prod) if version < current]
        if not earlier:
            raise PipelineError(
                f"{prod}: version {current} is the oldest deployment; nothing to roll back to"
            )
        version_dir = version_folder(prod, earlier[-1])
        manifest, contents = read_archived_version(version_dir)
        manifest.update(timestamp=utc_now(), action="rollback", rolled_back_from=current)
        promote(contents, prod, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = parse_switches(__doc__, {"--rollback": "restore the previous deployed version"}, argv)
    setup_logging(NAME)
    config = load_config()
    if args.rollback:
        manifest = rollback(config)
        log.info("rolled back %s from version %d to version %d (F1 %s)", config.prod_folder,
                 manifest["rolled_back_from"], manifest["version"], manifest["f1"])  # fmt: skip
    else:
        manifest = deploy(config)
        log.info("deployed version %d (F1 %s) to %s", manifest["version"], manifest["f1"], config.prod_folder)
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
