"""The fast path to the live model and the data files: kept in memory per process, until they change.

The API's only: its workers (routes.py, the dashboard, metrics.py) read the live model and the
data files through it; batch steps read them once (model/riskmodel.load_live,
data/clientdata). A process keeps
    the deployed model as riskmodel.load_linear reads it (plain numbers from the live
        version's trainedmodel.json, checked against manifest.json: nothing is unpickled),
        loaded again only when manifest.json changes (every deploy and rollback replaces it);
        a version that cannot be loaded is remembered until manifest.json changes again, so a
        broken deployment is read and logged once, not on every request; meanwhile the last
        model that loaded, if any, stays in service and /health says so;
    the data files it read, and their feature matrices, until they change: at most
        MAX_CACHED_FILES of them, the least recently used forgotten first.
    server_data(path) is a data file the server itself relies on (finaldata.csv, testdata.csv,
        the call list): unusable, it is a DataUnavailable (503, exit 69), not the caller's fault.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attrition.core.errors import DeploymentUnavailable
from attrition.core.files import file_stamp
from attrition.core.names import ID_COLUMN, MANIFEST
from attrition.data.clientdata import feature_frame, read_data_file, read_own_file
from attrition.model import riskmodel

log = logging.getLogger("app")
MAX_CACHED_FILES = 8  # request files (each at most api_max_rows rows); the server's own are apart


@dataclass(frozen=True)
class ServedModel(riskmodel.LiveModel):
    """The deployed model as a worker serves it, and what it knows of the live version."""

    stamp: tuple = ()
    problem: str | None = None  # why the live version is not the one served, if it is not


_lock = threading.Lock()
_models: dict[Path, ServedModel] = {}
_failures: dict[Path, tuple[tuple, DeploymentUnavailable]] = {}
_own_paths: set[Path] = set()
_own_files: OrderedDict[tuple[str, Path], tuple[tuple, object]] = OrderedDict()
_request_files: OrderedDict[tuple[str, Path], tuple[tuple, object]] = OrderedDict()


def served_model(prod_folder: Path) -> ServedModel:
    """The deployed model of prod_folder, loaded once per process and again when manifest.json changes.

    While the live version cannot be loaded, the model loaded before (if any) stays in service,
    with .problem saying why; with none, DeploymentUnavailable.
    """
    stamp = file_stamp(prod_folder / MANIFEST)
    with _lock:
        current = _models.get(prod_folder)
        if current is not None and current.stamp == stamp:
            return current
        failed = _failures.get(prod_folder)
        if failed is None or failed[0] != stamp:
            try:
                scorer, manifest = riskmodel.load_linear(prod_folder)
            except DeploymentUnavailable as error:
                failed = _failures[prod_folder] = (stamp, error)
                if current is None:
                    log.error("%s", error)
                else:
                    current = _models[prod_folder] = ServedModel(
                        current.scorer,
                        current.manifest,
                        current.stamp,
                        f"{error}; still serving version {current.version}",
                    )
                    log.error("%s", current.problem)
            else:
                loaded = _models[prod_folder] = ServedModel(scorer, manifest, stamp)
                _failures.pop(prod_folder, None)
                if current is not None and current.version != loaded.version:
                    log.info("loaded deployed model version %s (was %s)", loaded.version, current.version)
                return loaded
        if current is not None:
            return current
        raise failed[1]


def current_model(prod_folder: Path) -> ServedModel | None:
    """The model this process serves for prod_folder now, without loading anything (None: none yet)."""
    return _models.get(prod_folder)


def own_files(*paths: Path) -> None:
    """Mark data files as the server's own (testdata.csv, finaldata.csv): cached apart from request
    files, which can then never evict them (app.create_app; server_data marks what it reads)."""
    new = [path for path in paths if path not in _own_paths]  # server_data calls it per request
    if new:
        resolved = [path.resolve() for path in new]
        with _lock:
            _own_paths.update(new, resolved)


def _cached(kind: str, path: Path, load):
    """load(path), kept per process and loaded again only when the file changes: the server's own
    files in one cache, request files in another that holds at most MAX_CACHED_FILES files."""
    stamp = file_stamp(path)
    key = (kind, path)
    own = path in _own_paths  # as given and resolved (own_files): no link resolved per request
    cache = _own_files if own else _request_files
    with _lock:
        cached = cache.get(key)
        if cached is not None and cached[0] == stamp:
            cache.move_to_end(key)
            return cached[1]
    value = load(path)
    with _lock:
        cache[key] = (stamp, value)
        cache.move_to_end(key)
        while not own and len(cache) > 3 * MAX_CACHED_FILES:  # a frame, a matrix and the IDs per file
            cache.popitem(last=False)
    return value


def read_csv_cached(path: Path) -> pd.DataFrame:
    """clientdata.read_data_file, once per process and again when the file changes. Do not modify it."""
    return _cached("frame", path, read_data_file)


def server_data(path: Path, labelled: bool = False) -> pd.DataFrame:
    """A data file the server itself relies on, cached: unusable, it is the server's problem (503),
    not the caller's (clientdata.read_own_file)."""
    own_files(path)
    return read_own_file(path, labelled, read_csv_cached)


def feature_matrix_cached(path: Path) -> np.ndarray:
    """The FEATURES columns of a data file as a read-only float matrix, cached like read_csv_cached."""

    def load(path: Path) -> np.ndarray:
        matrix = feature_frame(read_csv_cached(path), str(path)).to_numpy()
        matrix.flags.writeable = False
        return matrix

    return _cached("matrix", path, load)


def client_ids_cached(path: Path) -> list | None:
    """The corporation column of a data file as text (None where blank), or None without one."""

    def load(path: Path) -> list | None:
        frame = read_csv_cached(path)
        if ID_COLUMN not in frame.columns:
            return None
        return [None if value != value else str(value) for value in frame[ID_COLUMN].astype(object)]

    return _cached("ids", path, load)


def clear() -> None:
    """Forget every cached model and file (tests)."""
    with _lock:
        _models.clear()
        _failures.clear()
        _own_paths.clear()
        _own_files.clear()
        _request_files.clear()
