"""What is live: the one record of production's state, read by every view.

One home for it; not a script. Standard library only (fullprocess.py's every-10-minutes path
imports it). deployment.py is the only writer of production; everything that reads production (the
scripts, the API, the dashboard, the reports, apicalls.py) asks this module.

    read_manifest(prod) / current_manifest(prod)   manifest.json: the switch that says what is live
    manifest_digest(prod)          its sha256: what a run compared against (deployment.py refuses
                                   to deploy when production changed meanwhile)
    live_marks(prod)               each version's live.json: the manifest that last made it live
    live_folder(prod, manifest)    the live version's folder (archive/vNNNN); read its files there
    folder_name(version), archived_versions(prod), lineage(prod, manifest)
    live(config)                   a Live: the version, its files, how it went live (deployment,
                                   rollback, by hand) and the decision that made it live
What a derived output describes (its stamp) is stamps.py's; writing production is deploy.py's,
switch.py's and repair.py's, beside this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from attrition.core.config import Config
from attrition.core.errors import DeploymentUnavailable, PipelineError
from attrition.core.names import (
    ARCHIVE_DIR,
    DECISION,
    DEPLOYMENT_HISTORY,
    MANIFEST,
    MODEL,
    REPORTS_DIR,
)
from attrition.core.records import read_jsonl

VERSION_FOLDER = re.compile(r"v(\d{4,})")
LIVE_MARK = "live.json"  # in a version's folder: the manifest that last made it live (deployment.py)


def read_manifest(prod_folder: Path) -> dict:
    """The live deployment's manifest.json: version, timestamp, sha256 of each deployed file."""
    path = Path(prod_folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeploymentUnavailable(
            f"{path}: no deployment yet; run deployment.py (or fullprocess.py)"
        ) from None
    except (OSError, ValueError) as error:
        raise DeploymentUnavailable(f"{path}: unreadable deployment manifest ({error})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    entry = files.get(MODEL) if isinstance(files, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise DeploymentUnavailable(f"{path}: deployment manifest lists no {MODEL} with its sha256")
    return manifest


def current_manifest(prod_folder: Path) -> dict | None:
    """The live manifest, or None for an empty production folder."""
    return read_manifest(prod_folder) if (Path(prod_folder) / MANIFEST).exists() else None


def manifest_digest(prod_folder: Path) -> str:
    """manifest.json's sha256 ("none" when production is empty): what a run compared against, so
    that deployment.py can refuse when production changed meanwhile (compare and swap)."""
    import hashlib

    try:
        return hashlib.sha256((Path(prod_folder) / MANIFEST).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "none"


def live_marks(prod_folder: Path) -> dict[int, dict]:
    """{version: the manifest that last made it live}, from each archived version's live.json:
    the proof, inside the version's own folder, that it went live (written at every switch)."""
    marks = {}
    for version in archived_versions(prod_folder):
        mark = read_json(Path(prod_folder) / folder_name(version) / LIVE_MARK)
        if isinstance(mark, dict) and mark.get("version") == version and isinstance(mark.get("files"), dict):
            marks[version] = mark
    return marks


def folder_name(version: int) -> str:
    """A version's folder, relative to the production folder: what manifest.json names."""
    return f"{ARCHIVE_DIR}/v{version:04d}"


def version_of_folder(name: str) -> int | None:
    """The version a folder name (vNNNN) holds, or None for any other name."""
    match = VERSION_FOLDER.fullmatch(name)
    return int(match.group(1)) if match else None


def archived_versions(prod_folder: Path) -> list[int]:
    archive = Path(prod_folder) / ARCHIVE_DIR
    if not archive.is_dir():
        return []
    versions = (version_of_folder(entry.name) for entry in archive.iterdir() if entry.is_dir())
    return sorted(version for version in versions if version is not None)


def live_folder(prod_folder: Path, manifest: dict) -> Path:
    """The folder holding the live version's files: its archive folder, named by the manifest.

    A deployment made before versions were switched by the manifest has no "folder": its files
    are the production folder's own.
    """
    folder = manifest.get("folder")
    if folder is None:
        return Path(prod_folder)
    if (
        not isinstance(folder, str)
        or folder.count("/") != 1
        or folder.split("/")[0] != ARCHIVE_DIR
        or version_of_folder(folder.split("/")[1]) is None
    ):
        raise DeploymentUnavailable(f"{Path(prod_folder) / MANIFEST}: names no version folder ({folder!r})")
    return Path(prod_folder) / folder


def lineage(prod_folder: Path, manifest: dict) -> list[int]:
    """The versions live before this one, oldest first (for a deployment made before manifests
    carried it: the earlier archived versions)."""
    if isinstance(manifest.get("lineage"), list):
        return [int(version) for version in manifest["lineage"]]
    return [version for version in archived_versions(prod_folder) if version < manifest["version"]]


def read_json(path: Path):
    """A small JSON file, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def archived_manifest(prod_folder: Path, version: int) -> dict | None:
    """The manifest an archived version was deployed with, or None."""
    manifest = read_json(Path(prod_folder) / folder_name(version) / MANIFEST)
    return manifest if isinstance(manifest, dict) else None


@dataclass(frozen=True)
class Live:
    """The live version, as manifest.json and its version folder say."""

    manifest: dict
    folder: Path
    decision: dict | None  # why fullprocess.py deployed it (decision.json, deployed with it)

    @property
    def version(self) -> int:
        return self.manifest["version"]

    @property
    def model_sha256(self) -> str:
        return self.manifest["files"][MODEL]["sha256"]

    @property
    def timestamp(self) -> str | None:
        return self.manifest.get("timestamp")

    @property
    def rolled_back_from(self) -> int | None:
        return self.manifest.get("rolled_back_from") if self.manifest.get("action") == "rollback" else None

    def how(self) -> str:
        """How this version came to be live, in a sentence: a rollback, fullprocess.py's reason, or by
        hand."""
        first = (self.decision or {}).get("summary") or "Deployed by hand with deployment.py"
        if self.rolled_back_from is not None:
            return (
                f"Live again since {str(self.timestamp)[:19].replace('T', ' ')} UTC: "
                "rolled back from version "
                f"{self.rolled_back_from} (deployment.py --rollback). When first deployed: {first}."
            )
        return f"{first}."

    def reports_folder(self) -> Path:
        return self.folder / REPORTS_DIR


def verified_score(state: Live) -> float:
    """The live version's F1 (latestscore.txt), its bytes checked against the manifest's sha256:
    a decision never reads an unverified score."""
    import hashlib

    from attrition.core.errors import ModelIntegrityError
    from attrition.core.names import LATESTSCORE

    path = state.folder / LATESTSCORE
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != state.manifest["files"].get(LATESTSCORE, {}).get("sha256"):
        raise ModelIntegrityError(f"{path}: does not match the manifest of live version {state.version}")
    return float(data.decode("utf-8").strip())


def other_checkout(config: Config) -> str | None:
    """Why this checkout must not use its production folder, or None: the live version was deployed
    into this very folder by another checkout that still exists (one production folder, one checkout).
    A production folder copied or moved with its project is not another checkout's."""
    try:
        manifest = current_manifest(config.prod_folder)
    except PipelineError:
        return None
    source = (manifest or {}).get("source") or {}
    checkout, prod = source.get("checkout"), source.get("prod_folder")
    ours = str(config.path.parent)
    if not checkout or checkout == ours or prod != str(config.prod_folder) or not Path(checkout).is_dir():
        return None
    return (
        f"{config.prod_folder}: its live version {manifest['version']} was deployed by the checkout "
        f"in {checkout}; "
        f"this one is {ours}: one production folder serves one checkout (each would take the other's files "
        "for new data and replace its model); give this checkout its own prod_deployment_path"
    )


def live(config: Config) -> Live | None:
    """The live version, or None when production is empty; DeploymentUnavailable when unreadable."""
    manifest = current_manifest(config.prod_folder)
    if manifest is None:
        return None
    folder = live_folder(config.prod_folder, manifest)
    decision = read_json(folder / DECISION)
    if not isinstance(decision, dict) or decision.get("model_sha256") not in (
        None,
        manifest["files"][MODEL]["sha256"],
    ):
        decision = None
    return Live(manifest, folder, decision)


def live_version(config: Config) -> int | None:
    """The live version's number; None when production is empty or unreadable."""
    try:
        state = live(config)
    except PipelineError:
        return None
    return state.version if state else None


def still_live(before: dict | None) -> str:
    """What a failed switch leaves live, said truthfully."""
    return f"version {before['version']} is still live" if before else "production is still empty"


def what_is_live_now(config: Config, before: int | None) -> str:
    """What is live now, said truthfully at the end of a failed run that began with before live."""
    now = live_version(config)
    if now is None:
        return "production is empty" if before is None else "no usable version is live"
    if now == before:
        return f"production left as it was (version {now} live)"
    return f"version {now} is now live"


def deployments(config: Config) -> list[dict]:
    """deployments.jsonl: one record per deployment or rollback, oldest first."""
    return read_jsonl(config.prod_folder / DEPLOYMENT_HISTORY)
