"""Deploying a version and rolling back: the switch of production.

Every version is written whole into its own immutable folder first; one atomic replace of
manifest.json then makes it live. So at any instant (a kill, a full disk) every reader sees the
old version or the new one, whole. Repair (attrition/production/repair.py) runs under the same
lock before every deploy and rollback.

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
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from attrition.core.config import Config
from attrition.core.errors import EXIT_LOCKED, DeploymentUnavailable, InputError, PipelineError
from attrition.core.files import atomic_write_json, fsync_folder
from attrition.core.names import (
    DECISION,
    INGESTEDFILES,
    INGESTION_RECORD,
    LATESTSCORE,
    MANIFEST,
    MODEL,
    MODEL_META,
    REFERENCE_DATA,
    SCORE_METRICS,
)
from attrition.core.processes import file_lock
from attrition.core.records import read_ingested_files, read_score, sha256_bytes, utc_now
from attrition.production.repair import ever_live, repair
from attrition.production.switch import (
    LOCK,
    WRITE_ERRORS,
    read_archived_version,
    remove_tree,
    switch_to,
    write_failed,
)
from attrition.production.versions import (
    archived_versions,
    current_manifest,
    folder_name,
    lineage,
    manifest_digest,
    other_checkout,
    read_manifest,
    still_live,
)

NAME = "deployment"

log = logging.getLogger(NAME)


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
        manifest = new_manifest(config, version, before, f1, ingested, decision, forced)
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


def new_manifest(
    config: Config,
    version: int,
    before: dict | None,
    f1: float,
    ingested: list[str],
    decision: dict,
    forced: bool,
) -> dict:
    """The manifest of a new version (its files' digests are added as they are archived)."""
    prod = config.prod_folder
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
        gate = decision.get("gate") if isinstance(decision.get("gate"), dict) else {}
        manifest["forced"] = {
            "candidate_f1": gate.get("candidate_f1", f1),
            "deployed_f1": gate.get("deployed_f1"),
        }
    return manifest


def what_is_live(prod: Path) -> str:
    try:
        manifest = current_manifest(prod)
    except DeploymentUnavailable:
        return "an unreadable manifest"
    return f"version {manifest['version']} is live" if manifest else "production is empty"


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
