"""What every worker of every server of this checkout must agree on about credentials: failed
attempts per client address (one throttle for the Bearer header, the session cookie and the sign-in
form) and the sessions ended at sign-out. One SQLite file beside the config, .cache/auth.sqlite:
a worker's memory would give each worker its own count (5 guesses a worker) and forget a sign-out
that another worker served.

    throttled(address)           seconds until the address may present a credential again (0: now)
    record_failure(address)      one more failed credential from the address
    revoke(session_id, until)    the session ends now, whatever its cookie says
    revoked(session_id)          whether it has ended
Rows past their window are deleted as new ones are written, so the file stays small whatever the
crowd: at most MAX_ADDRESSES addresses are remembered (the oldest failure forgotten first).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from attrition.core.errors import Unavailable

MAX_FAILURES = 5  # failed credentials per client address and window, for the whole server
FAILURE_WINDOW = 60.0  # seconds
MAX_ADDRESSES = 10_000
log = logging.getLogger("app")
SCHEMA = (
    "PRAGMA journal_mode = WAL",
    "CREATE TABLE IF NOT EXISTS failures (address TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS failures_by_address ON failures (address, at)",
    "CREATE TABLE IF NOT EXISTS revoked (session TEXT PRIMARY KEY, until REAL NOT NULL)",
)


class Guard:
    """One connection per worker process, opened on first use (after the fork), used under a lock:
    each statement is one indexed lookup or insert, so a gevent worker waits microseconds."""

    TIMEOUT = 5.0  # seconds a statement waits for another process's write

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.connection: sqlite3.Connection | None = None
        self.pid = None

    def _db(self) -> sqlite3.Connection:
        if self.connection is None or self.pid != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = self._open(self.path)
            except (OSError, sqlite3.Error) as error:
                # an unwritable cache folder must not stop the API: each worker counts alone
                log.error(
                    "%s: cannot keep sign-in failures and sessions there (%s): each worker keeps its own",
                    self.path,
                    error,
                )
                connection = self._open(":memory:")
            self.connection, self.pid = connection, os.getpid()
        return self.connection

    def _open(self, path) -> sqlite3.Connection:
        connection = sqlite3.connect(
            path, timeout=self.TIMEOUT, isolation_level=None, check_same_thread=False
        )
        for statement in SCHEMA:
            connection.execute(statement)
        return connection

    def throttled(self, address: str) -> float:
        now = time.time()
        try:
            with self.lock:
                count, oldest = (
                    self._db()
                    .execute(
                        "SELECT count(*), min(at) FROM failures WHERE address = ? AND at > ?",
                        (address, now - FAILURE_WINDOW),
                    )
                    .fetchone()
                )
        except sqlite3.Error as error:  # locked past its timeout, damaged: the request goes on
            log.error("%s: the throttle could not be read (%s)", self.path, error)
            return 0.0
        if count < MAX_FAILURES:
            return 0.0
        return max(0.0, FAILURE_WINDOW - (now - oldest))

    def record_failure(self, address: str) -> None:
        try:
            self._record_failure(address)
        except sqlite3.Error as error:  # a full disk: the failure is still refused (401)
            log.error("%s: a failed credential could not be counted (%s)", self.path, error)

    def _record_failure(self, address: str) -> None:
        now = time.time()
        with self.lock:
            db = self._db()
            db.execute("INSERT INTO failures VALUES (?, ?)", (address, now))
            db.execute("DELETE FROM failures WHERE at <= ?", (now - FAILURE_WINDOW,))
            (addresses,) = db.execute("SELECT count(DISTINCT address) FROM failures").fetchone()
            if addresses > MAX_ADDRESSES:
                db.execute(
                    "DELETE FROM failures WHERE address IN (SELECT address FROM failures GROUP BY address "
                    "ORDER BY max(at) LIMIT ?)",
                    (addresses - MAX_ADDRESSES,),
                )

    def revoke(self, session: str, until: float) -> None:
        """Unavailable (503) when it cannot be recorded: the sign-out did not happen, and says so."""
        try:
            with self.lock:
                db = self._db()
                db.execute("INSERT OR REPLACE INTO revoked VALUES (?, ?)", (session, until))
                db.execute("DELETE FROM revoked WHERE until <= ?", (time.time(),))
        except sqlite3.Error as error:
            raise Unavailable(
                f"the sign-out could not be recorded ({error}); you are still signed in"
            ) from None

    def revoked(self, session: str) -> bool:
        """A session whose state cannot be read counts as ended: sign in again."""
        try:
            with self.lock:
                row = self._db().execute("SELECT 1 FROM revoked WHERE session = ?", (session,)).fetchone()
        except sqlite3.Error as error:
            log.error("%s: sessions could not be read (%s)", self.path, error)
            return True
        return row is not None
