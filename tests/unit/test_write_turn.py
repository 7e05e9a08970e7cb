"""The write turn of console processes on one SQLite file (console/storage/database.py):
two databases opened on one file take turns (an flock of ``<file>.writer``), PostgreSQL
and in-memory SQLite have none, and with ``workers`` above 1 the ingest service holds a
decode back while its own writer has the turn, and lets it go when the turn ends."""
from __future__ import annotations

import asyncio
import threading
import time

from console.config import ConsoleConfig
from console.ingest.service import IngestService
from console.storage.database import Database


def test_two_databases_on_one_file_take_turns(tmp_path):
    url = f"sqlite:///{tmp_path / 'fd.db'}"
    first, second = Database(url), Database(url)
    try:
        entered = threading.Event()

        def take_second() -> None:
            with second.turn():
                entered.set()

        with first.turn():
            assert first.turn_held and (tmp_path / "fd.db.writer").exists()
            waiter = threading.Thread(target=take_second)
            waiter.start()
            time.sleep(0.3)
            assert not entered.is_set()  # the second waits while the first holds the turn
        waiter.join(5)
        assert entered.is_set() and not first.turn_held
    finally:
        first.close()
        second.close()


def test_an_in_memory_database_has_no_turn():
    db = Database("sqlite:///:memory:")
    try:
        with db.turn():
            assert not db.turn_held
    finally:
        db.close()


def test_with_workers_a_decode_waits_for_its_own_writers_turn_to_end(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'fd.db'}")
    db.migrate()
    alone, pooled = IngestService(db, config=ConsoleConfig()), IngestService(db, config=ConsoleConfig(workers=2))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        held, release = threading.Event(), threading.Event()

        def writer() -> None:
            with db.turn():
                held.set()
                release.wait(5)

        thread = threading.Thread(target=writer)
        thread.start()
        await loop.run_in_executor(None, held.wait, 5)
        await asyncio.wait_for(alone.writer_quiet(), 1)  # one worker: never held back
        waiting = asyncio.ensure_future(pooled.writer_quiet())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        release.set()
        await asyncio.wait_for(waiting, 2)
        thread.join(5)
        await asyncio.wait_for(pooled.writer_quiet(), 1)  # the turn is free: at once

    try:
        asyncio.run(scenario())
    finally:
        db.close()
