"""The database handle: engine, pragmas, migrations, and the executors that keep blocking
SQL off Tornado's IOLoop.

Writes go through one thread (SQLite has one writer; one writer thread also keeps a
PostgreSQL console's ingest ordered and cheap), reads through a small pool.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import CursorResult, Engine, Executable, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker


T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600  # the data directory and the files in it: owner only
log = logging.getLogger(__name__)
REPLICA_RETRY_S = 5.0  # how long queries skip a read replica that failed


def private_data_dir(path: Path) -> None:
    """Create the data directory with mode 0700, or narrow an existing one (an install made
    before, or under a loose umask) to 0700: it holds the database, the secret key and the
    cookie secret. A directory the console may not chmod (not its owner) is logged."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR:
        try:
            os.chmod(path, PRIVATE_DIR)
        except PermissionError as exc:
            log.warning("cannot make the data directory %s private (mode 0700): %s", path, exc)


def private_sqlite_files(path: Path) -> None:
    """Create the SQLite database file with mode 0600 before SQLite opens it, and narrow an
    existing one and its ``-wal``/``-shm``/``.leader`` files to 0600. SQLite creates the ``-wal`` and
    ``-shm`` files with the database file's mode (``findCreateFileMode`` in os_unix.c), so
    they follow it."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    # ``.leader``: the leadership lock file of console/cluster/leader.py, beside the database;
    # ``.writer``: the write turn of the console processes (:meth:`Database.on_writer`).
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.leader"), Path(f"{path}.writer")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(name.stat().st_mode) != PRIVATE_FILE:
                os.chmod(name, PRIVATE_FILE)


def sqlite_bloom_has(bloom: bytes | None, h1: int, h2: int, k: int) -> int | None:
    """SQLite's ``bloom_has(bloom, h1, h2, k)``: 1 when the Bloom filter ``bloom`` has
    every one of the ``k`` bits of a token with the hashes ``h1`` and ``h2``, else 0
    (NULL for a NULL filter). Bit ``i`` of the token is ``((h1 + i * h2) mod 2**32) * m >>
    32`` of the filter's ``m`` bits, bit ``n`` being bit ``n % 8`` (least significant
    first) of byte ``n // 8``: console/logs/groups.py ``bloom`` and ``may_hold``, which
    PostgreSQL tests with ``get_bit``. One call per group and token: SQLite hands a
    function its arguments as copies, and a call per bit copied the filter seven times."""
    if bloom is None:
        return None
    m = len(bloom) * 8
    for i in range(k):
        n = (((h1 + i * h2) & 0xFFFFFFFF) * m) >> 32
        if not (bloom[n >> 3] >> (n & 7)) & 1:
            return 0
    return 1


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    SQLite gets WAL journaling, ``synchronous=NORMAL`` (durable across process crashes,
    the WAL default trade-off), foreign keys, a 10 s busy timeout and reads through a
    memory map (up to 1 GiB) on every connection, and the function
    :func:`sqlite_bloom_has` that tests the log groups' Bloom filters in SQL
    (console/logs/groups.py).
    The parent folder of a SQLite file is created (0700), the file itself 0600 (see
    :func:`private_sqlite_files`).
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            private_sqlite_files(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DB-API objects
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            # Pages are read through a memory map (up to 1 GiB of the file) instead of read()
            # calls into SQLite's page cache (2 MB per connection). Ingest touches the newest
            # leaf page of every series it writes (samples are clustered by series, then
            # time): once the series outnumber that cache, each sample cost a read() of its
            # page, a cost that grew with the data stored (BENCHMARKS.md, "Ingest in the
            # agent's shape"). Writes still go through write() (SQLite maps for reading
            # unless built with SQLITE_MMAP_READWRITE): a full disk is still an error
            # SQLite reports. https://www.sqlite.org/mmap.html
            cur.execute("PRAGMA mmap_size=1073741824")
            cur.close()
            dbapi_conn.create_function("bloom_has", 4, sqlite_bloom_has, deterministic=True)

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def upgrade_schema(engine: Engine) -> None:
    """Apply every Alembic migration up to the head (one line of history since the merge
    revision ``0015_merge``; "heads" still brings a database from any earlier point, where
    capabilities had branches of their own, to it). Idempotent; raises on SQL errors."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


class Database:
    """Engine, session factory and executors. ``await db.write(fn, *args)`` runs
    ``fn(session, *args)`` inside one transaction on the writer thread;
    ``await db.read(fn, *args)`` does the same on a reader thread."""

    def __init__(self, url: str, readers: int = 4, read_url: str = "", clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # The read replica of ``query``: a streaming replica lags the primary, so only reads
        # that need not see this console's latest writes go there (see ``query``).
        self.read_engine = create_engine(read_url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                                         connect_args={"connect_timeout": 3}) if read_url else None
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False) if self.read_engine else None
        self.replica_down_until = 0.0  # monotonic time before which queries skip the replica
        self._clock = clock
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="db-writer")
        # Why the last job on the writer thread failed for storage (disk full, server down),
        # until one succeeds again; /readyz answers 503 meanwhile.
        self.write_failure: str | None = None
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="db-reader")
        # SQLite file: the console processes of the database take turns at writing with an
        # flock on ``<database>.writer`` (see ``on_writer``); None otherwise.
        path = self.engine.url.database if self.dialect == "sqlite" else None
        self._turn_path = f"{path}.writer" if path and path != ":memory:" else None
        self._probe_path = f"{path}.probe" if path and path != ":memory:" else None  # write_probe's file
        self._turn_fd, self._turn_pid = -1, 0
        self.turn_held = False  # this process's writer holds the write turn now
        self.on_turn_released: Callable[[], None] | None = None  # called on the writer thread
        self._open_turn()  # now, beside the database being opened: not first on a disk that filled up

    def migrate(self) -> None:
        upgrade_schema(self.engine)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, *args)`` in one committed transaction, here and now (blocking)."""
        with self.sessions.begin() as session:
            return fn(session, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, *args)`` in one transaction on the writer thread."""
        return await self.on_writer(self.run, fn, *args)

    async def on_writer(self, fn: Callable[..., T], *args: Any, turn: bool = True) -> T:
        """Run the plain callable ``fn(*args)`` on the writer thread (it opens its own
        transactions); for work that must do more than one thing after a commit. With
        ``turn=False`` ``fn`` takes the write turn itself (``with db.turn():``) around its
        transactions, to do work that needs no database before it."""
        loop = asyncio.get_running_loop()
        job = functools.partial(fn, *args)
        if turn and self._turn_path is not None:
            job = functools.partial(self._in_turn, job)
        try:
            result = await loop.run_in_executor(self._writer, job)
        except sa_exc.OperationalError as exc:
            self.write_failure = str(exc.orig or exc).splitlines()[0][:200]
            raise
        if self.write_failure is not None and self._probe_path is not None:
            # On SQLite a small write (a background job's) can succeed on a full disk, into
            # WAL blocks the file already holds: the failure ends once the file system has
            # room again too, else /readyz would answer ready with the disk still full.
            try:
                await loop.run_in_executor(self._writer, self._probe_file)
            except OSError:
                return result
        self.write_failure = None
        return result

    def _in_turn(self, job: Callable[[], T]) -> T:
        """Run ``job`` holding the exclusive flock of ``<database>.writer`` (on the writer
        thread). SQLite lets one connection write at a time and makes the others poll for
        the lock (the busy handler sleeps 1 ms, then longer steps up to 100 ms), so
        console processes writing at once (``serve --workers N``, replicas on one file)
        would lose most of the time between one commit and the next poll, and a process
        unlucky at polling could wait past ``busy_timeout`` ("database is locked"). A
        process waiting for the flock is woken by the kernel the moment it is released,
        and each transaction then finds SQLite's lock free (other programs writing, such
        as the ``fleetdeck`` CLI, still meet the 10 s busy timeout). The lock is released
        with the process however it ends."""
        with self.turn():
            return job()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """The write turn of :meth:`_in_turn` for the block (on the writer thread); nothing
        for PostgreSQL or an in-memory database."""
        if self._turn_path is None:
            yield
            return
        if self._turn_pid != os.getpid():
            self._open_turn()
        fcntl.flock(self._turn_fd, fcntl.LOCK_EX)
        self.turn_held = True
        try:
            yield
        finally:
            self.turn_held = False
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)
            if self.on_turn_released is not None:
                self.on_turn_released()

    def _open_turn(self) -> None:
        # A forked process opens its own: an flock belongs to the open file, which a fork shares.
        if self._turn_fd >= 0:
            os.close(self._turn_fd)  # this process's copy of the parent's
        if self._turn_path is not None:
            self._turn_fd = os.open(self._turn_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
            self._turn_pid = os.getpid()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, *args)`` in one transaction on a reader thread."""
        return await self.on_reader(self.run, fn, *args)

    async def query(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, *args)`` in one read-only transaction on a reader thread, on the
        read replica (``database_read_url``) when there is one, else as ``read``. For
        queries of stored data (metrics, PromQL, logs) that may lag the primary by the
        replication delay; authentication, sessions, tokens and every read that follows a
        write of the same request use ``read``. A replica that cannot be reached (or
        breaks off a query, as a hot standby does on a recovery conflict) is skipped for
        ``REPLICA_RETRY_S`` and the query is answered by the primary."""
        replica = self.read_sessions
        if replica is None or self._clock() < self.replica_down_until:
            return await self.read(fn, *args)
        try:
            return await self.on_reader(self._run_on, replica, fn, *args)
        except sa_exc.OperationalError as exc:
            self.replica_down_until = self._clock() + REPLICA_RETRY_S
            log.warning("read replica unavailable (%s); queries go to the primary for %g s",
                        str(exc.orig or exc).splitlines()[0][:200], REPLICA_RETRY_S)
            return await self.read(fn, *args)

    @staticmethod
    def _run_on(sessions: sessionmaker, fn: Callable[..., T], *args: Any) -> T:
        with sessions.begin() as session:
            return fn(session, *args)

    async def on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the plain callable ``fn(*args)`` on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(fn, *args))

    def ping(self, session: Session) -> bool:
        return session.execute(text("SELECT 1")).scalar() == 1

    def write_probe(self, session: Session) -> None:
        """The cheapest write that must reach the disk: SQLite rewrites its header's
        ``user_version`` (0: the schema versions itself with Alembic), which appends a page
        to the WAL even when the value is unchanged; PostgreSQL assigns a transaction id,
        whose commit is written to the WAL. Raises OperationalError when storage cannot
        be written, OSError when the SQLite file's file system has no room.

        After a checkpoint SQLite writes the WAL again from its start, into blocks the file
        already holds, so that page can be written on a full disk; the file system is
        therefore probed too: a page written and synced to ``<database>.probe``, then freed."""
        if self.dialect == "sqlite":
            session.execute(text("PRAGMA user_version = 0"))
            self._probe_file()
        else:
            session.execute(text("SELECT pg_current_xact_id()"))

    def _probe_file(self) -> None:
        """SQLite: a page written and synced to ``<database>.probe``, then freed; raises
        OSError when the file system has no room. A no-op without a database file."""
        if self._probe_path is None:
            return
        fd = os.open(self._probe_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        try:
            os.write(fd, bytes(4096))
            os.fsync(fd)
        finally:
            os.ftruncate(fd, 0)  # the block back to the file system for the next probe
            os.close(fd)

    def insert_ignore(self, table: Any) -> Any:
        """An INSERT that skips rows whose key already exists (``ON CONFLICT DO NOTHING``)."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        if self._turn_fd >= 0:
            os.close(self._turn_fd)
            self._turn_fd = -1
        self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()


def driver_cursor(session: Session) -> Any:
    """A DB-API cursor on the driver connection under the session's transaction (for
    ``executemany`` and ``COPY`` paths that bypass SQLAlchemy's statement layer)."""
    connection = session.connection().connection.driver_connection
    if connection is None:  # only after the pool invalidated it
        raise sa_exc.ResourceClosedError("the database connection was invalidated")
    return connection.cursor()


def execute_dml(session: Session, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
    """``session.execute`` of an INSERT, UPDATE or DELETE, as the CursorResult it returns
    (whose ``rowcount`` counts the rows matched); SQLAlchemy types ``Session.execute`` as a
    plain Result for every statement. Raises TypeError for a statement that returns rows."""
    result = session.execute(statement, parameters)
    if not isinstance(result, CursorResult):
        raise TypeError(f"{type(statement).__name__} is not an INSERT, UPDATE or DELETE")
    return result


@contextlib.contextmanager
def driver_errors(session: Session, statement: str) -> Iterator[None]:
    """Re-raise errors of the raw DB-API cursor (used on hot paths) as SQLAlchemy's own
    (``OperationalError`` for a full disk or a lost server...), so callers and the HTTP
    error mapping see the same exceptions as from ``session.execute``."""
    dbapi = session.get_bind().dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance(statement, None, exc, dbapi.Error) from exc


def bound(db: Database | None, service: object) -> Database:
    """``db`` for the async methods of ``service``; RuntimeError when the service was built
    without one (tests build some to call their sync transaction functions, which take a
    session, through ``db.run``)."""
    if db is None:
        raise RuntimeError(f"{type(service).__name__} was built without a database")
    return db
