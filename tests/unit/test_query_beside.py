"""The range API's helper thread (console/query/service.py ``Beside``): a part of a query run
there reads on a connection of its own and gives the caller its answer or the very error it
raised; a helper busy with another query's part leaves the part to the caller; it ends with
its QueryService, and an in-memory SQLite database (one per connection) is never read there."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from console.config import ConsoleConfig
from console.errors import Unprocessable
from console.query.service import QueryService
from console.storage.database import Database


@pytest.fixture()
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'beside.db'}")
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (41)")
    yield database
    database.close()


@pytest.fixture()
def service():
    svc = QueryService(ConsoleConfig())
    yield svc
    svc.close()


def read(session: Session, plus: int) -> tuple[int, str, int]:
    value = session.execute(text("SELECT v FROM t")).scalar_one()
    return value + plus, threading.current_thread().name, id(session.connection().connection.driver_connection)


def test_a_part_reads_on_the_helper_thread_on_a_connection_of_its_own(db, service):
    with db.sessions.begin() as session:
        caller = id(session.connection().connection.driver_connection)
        later = service.beside.start(session, read, 1)
        assert later is not None
        value, thread, connection = later.result()
    assert value == 42
    assert thread.startswith("query-helper")
    assert connection != caller


def fails(session: Session) -> None:
    session.execute(text("SELECT 1"))
    raise Unprocessable("query returns more than 5 points", {"limit": 5}, code="too_many_points")


def test_an_error_in_the_helper_is_the_callers_error(db, service):
    with db.sessions.begin() as session:
        later = service.beside.start(session, fails)
        assert later is not None
        with pytest.raises(Unprocessable) as raised:
            later.result()
    assert raised.value.code == "too_many_points"
    assert raised.value.details == {"limit": 5}
    # the helper serves the next query as before
    with db.sessions.begin() as session:
        later = service.beside.start(session, read, 0)
        assert later is not None and later.result()[0] == 41


def test_a_busy_helper_leaves_the_part_to_the_caller(db, service):
    release, started = threading.Event(), threading.Event()

    def hold(_session: Session) -> str:
        started.set()
        release.wait(10)
        return "held"

    with db.sessions.begin() as session:
        busy = service.beside.start(session, hold)
        assert busy is not None and started.wait(10)
        later = service.beside.start(session, read, 2)
        assert later is not None
        value, thread, connection = later.result()  # not started: run here, in the caller's transaction
        assert value == 43
        assert thread == threading.current_thread().name
        assert connection == id(session.connection().connection.driver_connection)
        release.set()
        assert busy.result() == "held"


def test_a_discarded_part_is_waited_for_and_its_error_dropped(db, service):
    with db.sessions.begin() as session:
        later = service.beside.start(session, fails)
        assert later is not None
        later.discard()  # no exception here: the caller's own error is the one answered


def test_closed_or_in_memory_the_caller_reads_itself(db, tmp_path):
    svc = QueryService(ConsoleConfig())
    svc.close()
    with db.sessions.begin() as session:
        assert svc.beside.start(session, read, 0) is None
    memory = Database("sqlite:///:memory:")
    svc = QueryService(ConsoleConfig())
    try:
        with memory.sessions.begin() as session:
            assert svc.beside.start(session, read, 0) is None
    finally:
        svc.close()
        memory.close()
