"""The pipeline's small record files and what they record with: histories, names, scores, fingerprints.

One home for reading and appending them; not a script. Standard library only.
    utc_now() / sha256_bytes(data) / sha256_file(path)   a record's time and a content's fingerprint
    read_jsonl(path) / append_jsonl(path, record)   runhistory, deployments, scores, ingestions
    tail_jsonl(path)                                a history's last records, without reading it all
    identity(stat) / same_identity(seen, now)       whether a file changed, by its stat alone
    read_ingested_files(path)                       ingestedfiles.txt (one per line, or a list)
    natural_key(name)                               extract order: dataset2.csv before dataset10.csv
    read_score(path)                                the single F1 number of a latestscore.txt
    csv_entries(folder) / list_csv_files(folder)    the visible *.csv entries / files of a folder
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path

from attrition.core.errors import InputError
from attrition.core.files import clear_odd_entry


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1_000_000):06d}Z"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_jsonl(path: Path, damaged: list[int] | None = None) -> list[dict]:
    """Records of a JSON-lines history; a missing file is an empty history.

    A line that is not one JSON object (cut short by a killed writer, even inside a multi-byte
    character, or damaged on disk) is skipped; its number (from 1) is added to damaged when given,
    so that a reader that decides on the history can name it.
    """
    try:
        lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    except OSError:  # a directory or an unreadable file in its place: damaged, read as empty
        if damaged is not None:
            damaged.append(0)
        return []
    return _records(lines, damaged)


def tail_jsonl(path: Path, size: int = 64 * 1024) -> list[dict]:
    """The last records of a JSON-lines history (in its last size bytes): what a run needs of a year
    of runs."""
    try:
        with open(path, "rb") as handle:
            start = max(0, handle.seek(0, os.SEEK_END) - size)
            handle.seek(start)
            lines = handle.read().splitlines()
    except OSError:  # missing; or a directory or an unreadable file in its place: read as empty
        return []
    return _records(lines[1:] if start else lines)  # the first line read may be the end of one


def last_records(path: Path, count: int, block: int = 16 * 1024) -> list[dict]:
    """The last count records of a JSON-lines history, oldest first, read from its end in growing
    blocks: the cost of the answer, not of the history (a year of 10-minute runs is 52,560 lines).
    Damaged lines are skipped, as read_jsonl skips them."""
    try:
        handle = open(path, "rb")
        start = handle.seek(0, os.SEEK_END)
    except OSError:  # missing; or a directory or an unreadable file in its place: read as empty
        return []
    with handle:
        data = b""
        while True:
            step = min(block, start)
            start -= step
            handle.seek(start)
            data = handle.read(step) + data
            lines = data.splitlines()
            records = _records(lines[1:] if start else lines)  # the first line read may be the end of one
            if len(records) >= count or start == 0:
                return records[-count:]
            block *= 2


def _records(lines: list[bytes], damaged: list[int] | None = None) -> list[dict]:
    records = []
    for number, line in enumerate(lines, 1):
        record = None
        with contextlib.suppress(ValueError):  # JSONDecodeError and UnicodeDecodeError both
            record = json.loads(line)
        if isinstance(record, dict):
            records.append(record)
        elif damaged is not None and line.strip():
            damaged.append(number)
    return records


IDENTITY = ("size", "mtime_ns", "ctime_ns", "inode")  # what a file's stat says about its content


def identity(stat: os.stat_result) -> dict:
    """What tells a file changed without reading it: size, mtime, ctime and inode. ctime catches a
    same-length edit whose mtime was set back (cp -p, rsync -t, tar x); the inode a replaced file."""
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }


def same_identity(seen: dict, now: dict) -> bool:
    """Whether a recorded identity still holds. Only the fields recorded are compared (a record
    made before ctime and inode were kept has size and mtime only); none recorded: not the same."""
    fields = [key for key in IDENTITY if seen.get(key) is not None]
    return {"size", "mtime_ns"} <= set(fields) and all(seen[key] == now.get(key) for key in fields)


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record as one line, in a single O_APPEND write.

    A history only grows, so rewriting it would cost more each run; a single appended write
    is never interleaved with another, and readers (read_jsonl) skip a line cut short by a
    crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode("utf-8")
    clear_odd_entry(path)  # never appended through a symlink, nor failed on a directory
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size:
            # a previous writer killed mid-line leaves no newline: start on a fresh line
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def read_ingested_files(path: Path) -> list[str]:
    """File names in ingestedfiles.txt, exactly as written: one per line (what ingestion.py writes).

    The course's Python-list form is read only where it cannot be a name: a single line that is a
    list of strings (an ingested name ends in .csv, never in "]"). A name such as
    "[2026-11] dataset3.csv" is a name, never a malformed list.
    """
    names = [
        line.removesuffix("\r") for line in Path(path).read_text(encoding="utf-8").split("\n") if line.strip()
    ]
    if len(names) == 1 and names[0].strip().startswith("[") and names[0].strip().endswith("]"):
        try:
            listed = ast.literal_eval(names[0].strip())
        except (ValueError, SyntaxError, RecursionError):
            raise InputError(f"{path}: not a list of file names") from None
        if not isinstance(listed, list | tuple) or not all(isinstance(name, str) for name in listed):
            raise InputError(f"{path}: not a list of file names")
        return [str(name) for name in listed]
    return names


def natural_key(name: str) -> list:
    """Extract order: digits compare as numbers, so dataset2.csv comes before dataset10.csv."""
    return [int(part) if index % 2 else part for index, part in enumerate(re.split(r"(\d+)", name))]


def csv_entries(folder: Path) -> list[Path]:
    """Every visible entry named *.csv (any case) of a folder, in extract order (natural_key):
    regular files, and anything else so named (ingestion rejects it with a reason, not in silence)."""
    entries = (
        entry
        for entry in Path(folder).iterdir()
        if entry.name.lower().endswith(".csv") and not entry.name.startswith(".")
    )
    return in_extract_order(entries)


def in_extract_order(paths) -> list[Path]:
    """Paths sorted as extracts are ingested: by name, digits as numbers (natural_key), then plain name."""
    return sorted(paths, key=lambda entry: (natural_key(entry.name), entry.name))


def ambiguous_order(names: list[str]) -> list[tuple[str, str]]:
    """Pairs of names whose extract order the numbers in them do not decide (dataset1.csv and
    dataset01.csv): they are taken in plain name order, and ingestion warns."""
    keys: dict[tuple, str] = {}
    pairs = []
    for name in names:
        key = tuple(natural_key(name))
        if key in keys:
            pairs.append((keys[key], name))
        keys.setdefault(key, name)
    return pairs


def list_csv_files(folder: Path) -> list[Path]:
    """The regular files among csv_entries(folder), in extract order."""
    return [entry for entry in csv_entries(folder) if entry.is_file()]


def read_score(path: Path) -> float:
    """The single F1 number of a latestscore.txt."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"{path}: score file not found") from None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}: not a number: {text[:40]!r}") from None
