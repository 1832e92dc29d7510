"""Files other processes read: atomic writes, stamps, fsync, and odd entries moved aside."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import time
from pathlib import Path

from attrition.core.errors import disk_full

ODD_KINDS = {stat.S_IFLNK: "a symlink", stat.S_IFDIR: "a directory"}


def clear_odd_entry(path: Path) -> str | None:
    """A record, log, lock or output the pipeline writes must be a regular file of its own: a
    symlink (never written through: a lock linked to config.json truncated it), a directory or a
    special file in its place is moved aside (NAME.aside-<UTC time>) and named in a warning. A
    link to a character device (a log sent to /dev/null) is left as the operator made it.
    Returns the warning, or None when the entry is a regular file or absent."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode) and device_link(path):
        return None  # `ln -s /dev/null fullprocess.log`: an operator's deliberate routing, not damage
    kind = ODD_KINDS.get(stat.S_IFMT(mode), "a special file")
    aside = path.with_name(f"{path.name}.aside-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    os.rename(path, aside)
    message = f"{path} was {kind}, not the pipeline's file: moved aside to {aside}"
    logging.getLogger("repair").warning("%s", message)
    return message


def device_link(path: Path) -> bool:
    """Whether a symlink leads to a character device (/dev/null, /dev/full): written through."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def file_stamp(*paths: Path) -> tuple:
    """What changes when any of the files is replaced or rewritten."""
    stamp = []
    for path in paths:
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            stamp.append(None)
            continue
        stamp.append((stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size))  # ctime: an edit
        # whose mtime was set back
    return tuple(stamp)


@contextlib.contextmanager
def atomic_path(path: Path, sync_folder: bool = True):
    """Yield a temporary path in the target's folder; on success it replaces the target.

    Readers see the old file or the new one, never half of one. For libraries that
    write by file name (DataFrame.to_csv, savefig, PdfPages). sync_folder=False leaves the
    folder's fsync to a caller that replaces several files and syncs the folder once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield temp_path
        with open(temp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temp_path, 0o644)
        clear_odd_entry(path)  # a directory in the way would fail the replace on every run
        os.replace(temp_path, path)
        if sync_folder:
            fsync_folder(path.parent)
    except BaseException as error:
        temp_path.unlink(missing_ok=True)
        full = disk_full(error, path)
        if full is not None:
            raise full from None
        raise


def atomic_write_bytes(path: Path, data: bytes, sync_folder: bool = True) -> None:
    with atomic_path(path, sync_folder) as temp:
        temp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
