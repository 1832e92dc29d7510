"""The gevent worker's scheduling, in this process: each answer's turn for the worker's other
connections (deadlines.Turns) and the workers' shared counts of connections (balance.Shares).
A real gunicorn's even split of a burst of connections is in tests/test_crowd.py."""

import os
import subprocess
import sys

import pytest

from attrition.api import balance
from attrition.api.balance import Shares

gevent = pytest.importorskip("gevent")


def test_turns_resume_connections_in_the_order_they_finished():
    """Three connections whose next requests are always ready: served A B C A B C, never one of
    them twice in a row while another waits (gevent.idle, which wakes the last to wait first,
    served them A B C C B A A B C: the pairs were the p99)."""
    from attrition.api.deadlines import Turns

    turns, order = Turns(), []

    def connection(name):
        for _ in range(4):
            order.append(name)  # its answer is out
            turns.wait()

    gevent.joinall([gevent.spawn(connection, name) for name in "ABC"], timeout=10)
    assert "".join(order) == "ABC" * 4


def test_a_turn_alone_resumes_at_once():
    from attrition.api.deadlines import Turns

    turns = Turns()
    with gevent.Timeout(1):
        for _ in range(1000):
            turns.wait()


LIVE = (os.getpid(), os.getppid(), 1)  # processes that are there: a slot of a gone one is free


def test_shares_name_the_least_crowded_other_worker():
    shares = Shares(slots=4)
    first, second, third = (shares.claim(pid) for pid in LIVE)
    assert (first, second, third) == (0, 1, 2)
    shares.publish(first, 5)
    shares.publish(second, 2)
    shares.publish(third, 7)
    assert shares.least_other(first) == 2
    assert shares.least_other(second) == 5
    shares.release(LIVE[1])
    assert shares.least_other(first) == 7  # a worker gone counts no more
    assert shares.claim(LIVE[1]) == 1  # and its slot is taken by the next one, from zero
    assert shares.least_other(first) == 0


def test_a_lone_worker_has_no_other_and_a_full_table_leaves_a_worker_unbalanced():
    shares = Shares(slots=2)
    only = shares.claim(LIVE[0])
    assert shares.least_other(only) is None
    assert shares.claim(LIVE[1]) == 1
    assert shares.claim(LIVE[2]) is None  # no slot: that worker accepts as gevent does


def test_a_slot_whose_process_is_gone_is_claimed_again():
    """A worker killed before the master could free its slot does not hold it for good."""
    shares = Shares(slots=1)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    shares.claim(int(gone.stdout))
    assert shares.claim(LIVE[0]) == 0


def test_a_lock_left_held_by_a_killed_worker_costs_balance_not_service(monkeypatch):
    """A worker killed while it claimed its slot leaves the table's lock held: the next worker gets
    no slot after LOCK_SECONDS (it accepts as gevent does) and the master's release does not hang."""
    monkeypatch.setattr(balance, "LOCK_SECONDS", 0.05)
    shares = Shares(slots=2)
    shares.lock.acquire()  # as a process killed in claim() would leave it
    assert shares.claim(LIVE[0]) is None
    shares.release(LIVE[0])  # returns


def test_the_last_answer_of_a_large_peak_collects_cycles_then_trims(monkeypatch):
    """When the answers held after a peak over 32 MiB are all taken, the cyclic garbage (the
    abandoned answers' exceptions and their frames) is collected before malloc_trim hands the free
    heap back: without the collection one worker once stayed 51 MiB over its baseline after
    bench_crowd's slow readers (with it, at or under its baseline in three runs)."""
    from attrition.api import deadlines

    calls = []
    monkeypatch.setattr(deadlines.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(deadlines, "trim_memory", lambda: calls.append("trim"))
    budget = deadlines.AnswerBudget(limit=2**30)
    assert budget.take(20 * 2**20) and budget.take(20 * 2**20)
    budget.give_back(20 * 2**20)
    assert calls == []  # an answer is still held
    budget.give_back(20 * 2**20)
    assert calls == ["collect", "trim"]
    assert budget.take(2**20)
    budget.give_back(2**20)
    assert calls == ["collect", "trim"]  # a small peak costs no collection
