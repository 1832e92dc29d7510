"""An even share of the connections for each worker (CappedWorker's listener; workers.py).

gunicorn's gevent workers all wait on one listening socket and the first awake takes the
connection; a keep-alive connection then stays with that worker for good. A burst of new
connections (a client's pool opening, wrk starting) mostly went to whichever worker woke first:
4 connections split 4/0 or 3/1, 64 split 53/11, and one worker served most of them while the
other had nothing to do (p99 3.4 ms against 2.1 on an even split, docs/api.md: "Tail latency").

Here each worker publishes how many connections it holds (Shares: two arrays in shared memory,
made by gunicorn's master before it forks, a slot per worker), and a worker that holds more than
the least crowded other one leaves a waiting connection to it: it stops accepting for a
millisecond, then looks again, at most `MOST_WAITS` times in a row (a busy or stuck worker
cannot hold a connection up longer than that). A worker that holds no more than the others takes
every waiting connection it may. With one worker, or no slot left, it accepts as gevent does.

Kept connections outlive the moment they were shared: a worker that restarts (killed, or past
gunicorn's timeout) comes back to find its clients reconnected to the others, and a burst of new
connections arriving while as many others close is shared by counts that are still falling (a worker counts a
connection gone once it has read the close). So a worker that holds more than SLACK connections
over the least crowded other asks one client to go, at most once every SHED_SECONDS: its next
answer says `Connection: close` (an answer like any other: the client reads it whole, then
reconnects), and the accept leaves the new connection to the less crowded worker.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.sharedctypes import RawArray

from attrition.core.processes import process_alive

SLOTS = 64  # workers a server can have at once (gunicorn's TTIN can add some): one slot each
WAIT_SECONDS = 0.001  # how long a crowded worker leaves a waiting connection to the others
MOST_WAITS = 6  # then it takes the connection itself
SLACK = 2  # connections over the least crowded worker's a worker may hold for good
SHED_SECONDS = 1.0  # a crowded worker asks at most one client a second to reconnect
LOCK_SECONDS = 1.0  # the slot table's lock is held for microseconds: longer, its holder was killed


class Shares:
    """How many connections each worker holds, in memory every worker of the server shares.

    Made by the master (before it forks); a worker claims a slot when it starts, the master frees
    it when the worker exits (a slot whose process is gone is claimed again anyway)."""

    def __init__(self, slots: int = SLOTS):
        self.pids = RawArray("q", slots)
        self.held = RawArray("q", slots)
        self.lock = multiprocessing.Lock()  # only to claim a slot: counts are one word each

    def claim(self, pid: int) -> int | None:
        """A free slot for this worker (None: every slot taken, or the lock held by a process
        killed while it claimed: then this worker accepts as gevent does)."""
        if not self.lock.acquire(timeout=LOCK_SECONDS):
            return None
        try:
            for slot, owner in enumerate(self.pids):
                if owner == 0 or owner == pid or not process_alive(owner):
                    self.held[slot] = 0
                    self.pids[slot] = pid
                    return slot
            return None
        finally:
            self.lock.release()

    def release(self, pid: int) -> None:
        """The master, when a worker exits (a claim takes a gone worker's slot anyway: the master
        never waits long on a lock a killed worker may hold)."""
        if not self.lock.acquire(timeout=LOCK_SECONDS):
            return
        try:
            for slot, owner in enumerate(self.pids):
                if owner == pid:
                    self.pids[slot] = 0
                    self.held[slot] = 0
        finally:
            self.lock.release()

    def publish(self, slot: int, held: int) -> None:
        self.held[slot] = held

    def least_other(self, slot: int) -> int | None:
        """The fewest connections another live worker holds (None: no other worker)."""
        others = [self.held[other] for other, owner in enumerate(self.pids) if owner and other != slot]
        return min(others) if others else None


try:
    from gevent.server import StreamServer
except ImportError:  # gevent missing: gunicorn.conf.py names CappedWorker only with gevent
    StreamServer = object


class BalancedServer(StreamServer):
    """gevent's StreamServer (what gunicorn's gevent worker listens with), taking a waiting
    connection only when this worker holds no more than the least crowded other worker, or after
    it has left it to them MOST_WAITS times."""

    def __init__(self, *args, shares: Shares | None = None, slot: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.shares, self.slot, self.waits = shares, slot, 0
        self.looked_at = time.monotonic()  # when crowded() last compared the counts

    def crowded(self) -> bool:
        """Whether this request's connection should close after its answer: this worker holds
        more than SLACK connections over the least crowded other (looked at once a SHED_SECONDS
        at most, so a request costs one clock reading)."""
        now = time.monotonic()
        if now - self.looked_at < SHED_SECONDS or self.shares is None or self.slot is None:
            return False
        self.looked_at = now
        least = self.shares.least_other(self.slot)
        return least is not None and self.pool is not None and len(self.pool) > least + SLACK

    def _do_read(self):
        """Called by the event loop while connections wait on the listening socket."""
        if self.shares is None or self.slot is None or self.pool is None:
            return super()._do_read()
        while True:
            held = len(self.pool)
            self.shares.publish(self.slot, held)
            least = self.shares.least_other(self.slot)
            if least is not None and held > least and self.waits < MOST_WAITS:
                self.waits += 1
                self.stop_accepting()  # and look again in a moment
                self._timer = self.loop.timer(WAIT_SECONDS)
                self._timer.start(self._start_accepting_if_started)
                return None
            self.waits = 0
            super()._do_read()  # one connection (gunicorn sets max_accept = 1 with 2 workers or more)
            if len(self.pool) == held:  # nothing was waiting, or the pool is full
                return None

    def do_close(self, *args):
        """A connection ended (its greenlet, still in the pool, is about to leave it)."""
        super().do_close(*args)
        if self.shares is not None and self.slot is not None and self.pool is not None:
            self.shares.publish(self.slot, max(len(self.pool) - 1, 0))
