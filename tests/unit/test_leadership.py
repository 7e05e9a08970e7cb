"""Leadership among consoles sharing one database: one holder at a time, released when
the holder steps down or dies (a subprocess killed with SIGKILL)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from console.cluster.leader import Leadership
from tests.conftest import need
from tests.pg import postgres_problem, private_schema

HOLD = """
import sys, time
from console.cluster.leader import Leadership
leader = Leadership(sys.argv[1])
print(leader.try_acquire(), flush=True)
time.sleep(60)
"""


def contend(url: str) -> None:
    first, second = Leadership(url), Leadership(url)
    try:
        assert first.try_acquire() is True
        assert second.try_acquire() is False
        assert first.try_acquire() is True  # still ours
        first.close()
        assert second.try_acquire() is True
        # A holder killed with SIGKILL: the lock goes with the process.
        second.close()
        holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "True"
            third = Leadership(url)
            assert third.try_acquire() is False
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            deadline = time.monotonic() + 10
            while not third.try_acquire():
                assert time.monotonic() < deadline, "the lock of a killed holder was never released"
                time.sleep(0.2)
            third.close()
        finally:
            holder.kill()
            holder.wait()
    finally:
        first.close()
        second.close()


def test_sqlite_one_holder_released_on_close_and_on_death(tmp_path):
    contend(f"sqlite:///{tmp_path / 'fleetdeck.db'}")
    assert oct((tmp_path / "fleetdeck.db.leader").stat().st_mode & 0o777) == "0o600"


def test_postgres_one_holder_per_schema_released_on_close_and_on_death():
    import os

    base = os.environ.get("FLEETDECK_TEST_POSTGRES_URL")
    problem = postgres_problem(base)
    if problem:
        need("postgres", problem)
    with private_schema(base) as url, private_schema(base) as other:
        contend(url)
        # Consoles of another schema of the same database lead on their own.
        mine, theirs = Leadership(url), Leadership(other)
        try:
            assert mine.try_acquire() and theirs.try_acquire()
        finally:
            mine.close()
            theirs.close()


def test_memory_database_always_leads():
    leader = Leadership("sqlite:///:memory:")
    assert leader.try_acquire() is True
    leader.close()
    assert leader.is_leader is False


@pytest.mark.parametrize("url", ["postgresql+psycopg://nobody:x@127.0.0.1:1/none"])
def test_an_unreachable_database_means_not_leading(url):
    leader = Leadership(url)
    assert leader.try_acquire() is False
    leader.close()
