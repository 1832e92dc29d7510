"""Process plumbing: locks, children that die with their parent, and a killed run's debris.

One home for it; not a script. Standard library only (fullprocess.py's every-10-minutes path
imports it).
    file_lock(path)          an flock held for a block (a killed holder never blocks the next run);
                             the lock file names its holder: lock_holder(path)
    die_with_parent()        a child's preexec_fn: SIGTERM when the process that started it dies
    process_alive(pid)       whether a PID names a live process (a zombie is dead)
    remove_leftovers(folder) a dead process's temporary files (atomic_path's names) and timing
                             workspaces, in one folder
    sweep(folders)           remove_leftovers over every folder the pipeline writes
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from attrition.core.files import clear_odd_entry

TEMP_FILE = re.compile(r"\..+\.(\d+)\.[0-9a-f]+\.tmp")  # files.atomic_path's names: .NAME.PID.HEX.tmp
TIMING_FOLDER = re.compile(r"timing-(\d+)-.+")  # diagnostics' temporary workspaces, in .cache/


def process_alive(pid: int) -> bool:
    """Whether a process with this PID is running: a temporary file named with a dead PID is debris.

    A zombie (killed, not yet reaped: its parent was killed too, and init has not got to it) is dead.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def die_with_parent() -> None:
    """In a child, before exec: the kernel sends it SIGTERM when the process that started it dies
    (Linux's PR_SET_PDEATHSIG), so a killed run leaves no step, report or temporary server behind.
    If the parent died before the call took effect, the child ends itself at once."""
    import ctypes
    import signal

    parent = os.getppid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent was gone already: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files (and timing workspaces) of processes that no longer exist.

    Their names carry the PID of the process that made them, so a live writer's are left alone.
    """
    removed = []
    if not Path(folder).is_dir():
        return removed
    for entry in Path(folder).iterdir():
        match = TEMP_FILE.fullmatch(entry.name) or TIMING_FOLDER.fullmatch(entry.name)
        if match and not process_alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sweep(folders) -> list[Path]:
    """remove_leftovers over each folder (missing ones are skipped)."""
    return [path for folder in folders for path in remove_leftovers(folder)]


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True, poll: float = 0.0):
    """An flock on path, held for the block: yields the open lock file, or None when not
    blocking and another process holds it.

    With poll, waits by trying again every poll seconds rather than blocking in the kernel:
    time.sleep is what the API's gevent workers can serve other requests during.
    The kernel drops the lock when the last process holding the open file dies, so a killed
    run never blocks the next; a child that inherits the file keeps the lock while it lives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_odd_entry(path)  # a lock linked to config.json must not truncate it
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking and not poll else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if not blocking:
                    yield None
                    return
                time.sleep(poll)
        with contextlib.suppress(
            OSError
        ):  # who holds it, for a run that finds it held (a full disk: unnamed)
            handle.seek(0)
            handle.truncate()
            handle.write(
                json.dumps({"pid": os.getpid(), "since": time.time(), "command": " ".join(sys.argv)[:200]})
            )
            handle.flush()
        try:
            yield handle
        finally:
            with contextlib.suppress(OSError):  # released: no holder to name
                handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(path: Path) -> dict | None:
    """Who holds a lock ({pid, since (epoch seconds), command}), as file_lock wrote it; None when
    unknown: nothing written (an older holder, a process that took the lock another way) or a
    holder that is no longer alive (a child that inherited the lock may still hold it)."""
    try:
        holder = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("since"), int | float):
        return None
    return holder if isinstance(holder.get("pid"), int) and process_alive(holder["pid"]) else None
