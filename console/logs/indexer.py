"""LogIndexer: the thread that fills the log search index from committed ``log_records``
rows, and the contract it keeps with ingest and search.

Ingest commits log rows without indexing them, so its transaction holds the database's
write lock (SQLite) or the table (PostgreSQL) only for the rows; the indexing runs here,
beside decoding and committing the next batches. Each pass indexes up to
:attr:`PASS_LINES` rows above the watermark and moves the watermark in the same
transaction; after a crash the next start goes on from the watermark. Search scans the
rows above the watermark (console/logs/service.py), so the lag costs search time, never
results. The index itself is a Bloom filter per group of lines on both databases
(:class:`console.logs.groups.GroupIndexer`, which fills it); until migration
logsqlite_0001 SQLite kept an FTS5 index in a file of its own.

The lag is bounded: when the index is more than :attr:`MAX_BEHIND` lines behind, ingest
waits for the indexer (:meth:`wait_until_near`) before committing more lines, so a search
never scans more than about that many lines.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from console.storage.database import Database

log = logging.getLogger(__name__)


class LogIndexer:
    """Indexes committed log rows of ``db`` in the background; see the module docstring.
    :meth:`start` and :meth:`close` bracket its thread; a subclass gives :meth:`index_pass`."""

    PASS_LINES = 50_000  # rows per indexing transaction at most
    # A pass waits up to GATHER_S for GATHER_LINES lines: fewer, larger passes fill more
    # groups whole (a host's lines of one pass are grouped together).
    GATHER_LINES = 20_000
    GATHER_S = 0.1
    MAX_BEHIND = 100_000  # lines ingest may run ahead of the index before it waits
    WAIT_S = 30.0  # how long ingest waits for the index at most before committing anyway
    RETRY_S = 1.0  # after a failed pass (busy beyond the timeout, disk full)

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cond = threading.Condition()
        self._indexed = -1  # watermark as this indexer last read or wrote it; -1: not yet read
        self._newest = 0  # the newest log_records id this process committed (or saw)
        self._closing = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closing

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-indexer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def committed(self, newest_id: int) -> None:
        """Rows up to ``newest_id`` were committed: index them soon."""
        with self._cond:
            if newest_id > self._newest:
                self._newest = newest_id
                self._cond.notify_all()

    def wait_until_near(self) -> None:
        """Block (the ingest writer) while the index is more than :attr:`MAX_BEHIND` lines
        behind this process's newest committed line, :attr:`WAIT_S` at most."""
        with self._cond:
            if self._newest - max(self._indexed, 0) <= self.MAX_BEHIND or not self.running:
                return
            if not self._cond.wait_for(lambda: self._newest - self._indexed <= self.MAX_BEHIND or self._closing,
                                       self.WAIT_S):
                log.warning("log search index is %d lines behind after %gs; storing more lines anyway",
                            self._newest - self._indexed, self.WAIT_S)

    def _run(self) -> None:
        raw: Any = None  # a pooled connection: pragmas and (SQLite) the index file attached
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closing or self._newest > self._indexed, 1.0)
                    if self._indexed >= 0:
                        self._cond.wait_for(lambda: self._closing or self._newest - self._indexed >= self.GATHER_LINES,
                                            self.GATHER_S)
                    if self._closing:
                        return
                try:
                    if raw is None:
                        raw = self._db.engine.raw_connection()
                        conn = self._connection(raw)
                    while self.index_pass(conn) >= self.PASS_LINES and not self._closing:
                        pass
                except self._db.engine.dialect.loaded_dbapi.Error as exc:  # busy beyond the timeout, disk full
                    log.warning("log search indexing failed (%s); retrying in %gs", exc, self.RETRY_S)
                    if raw is not None and getattr(raw.driver_connection, "closed", False):
                        raw.invalidate()  # the server closed it: the next pass takes a new one
                        raw = None
                    time.sleep(self.RETRY_S)
                except Exception:  # noqa: BLE001 - the thread must outlive a bug in one pass
                    log.exception("log search indexing failed; retrying in %gs", self.RETRY_S)
                    time.sleep(self.RETRY_S)
        finally:
            if raw is not None:
                raw.close()

    def _connection(self, raw: Any) -> Any:
        """The driver connection of the pooled connection ``raw`` that passes use."""
        return raw.driver_connection

    def _indexed_to(self, watermark: int) -> None:
        """A pass left the watermark at ``watermark``: wake ingest waiting for it."""
        with self._cond:
            self._indexed = watermark
            self._newest = max(self._newest, self._indexed)
            self._cond.notify_all()

    def index_pass(self, conn: Any) -> int:
        """Index up to :attr:`PASS_LINES` rows above the watermark and call
        :meth:`_indexed_to` with the new watermark; returns how many rows it indexed."""
        raise NotImplementedError
