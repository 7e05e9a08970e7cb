"""The systemd journal as a log source, read through ``journalctl -o json --follow``.

journalctl is the journal's own reader (it knows every journal file format and follows
rotation and vacuuming); the agent reads its JSON output (one entry per line, fields as
documented in systemd.journal-fields(7)) on a thread and hands entries out with
:meth:`JournalSource.take`, as :class:`collectors.logs.LogCollector` does with file lines:

- a record is ``{"ts": __REALTIME_TIMESTAMP in ms, "source": "journal:" + SYSLOG_IDENTIFIER
  (else _SYSTEMD_UNIT, _COMM), "line": MESSAGE, "labels": {"level": from PRIORITY}}``
  (PRIORITY 0-2 fatal, 3 error, 4 warn, 5-6 info, 7 debug; RFC 5424 severities);
- the cursor (``__CURSOR``) of the last entry of a batch is saved to the state file once
  the batch is handed off (:meth:`acknowledge`); the next start resumes after it
  (``--after-cursor``); the very first start reads from now (``--lines 0``);
- entries of a batch that was not handed off (:meth:`not_delivered`) are handed out
  again first; a crash between hand-off and the cursor's save reads those entries again
  (at least once, never lost);
- when journalctl exits (no journal files yet, a journal directory removed), it is
  started again after :data:`RESTART_DELAY` seconds, after the last entry read.

Standard library only (the agent's import closure).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger(__name__)

RESTART_DELAY = 30.0  # seconds between starts of a journalctl that keeps exiting
QUEUE_ENTRIES = 20000  # entries read ahead of take(); journalctl waits beyond it
_LEVELS = {0: "fatal", 1: "fatal", 2: "fatal", 3: "error", 4: "warn", 5: "info", 6: "info", 7: "debug"}


def journal_record(entry: dict[str, Any], max_line_bytes: int, parse_level: bool) -> dict[str, Any] | None:
    """One journal entry (journalctl's JSON) as a log record; None without a MESSAGE."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # binary or invalid UTF-8: an array of byte values
        try:
            message = bytes(message).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    if not isinstance(message, str):
        return None
    try:
        ts = int(entry["__REALTIME_TIMESTAMP"]) // 1000
    except (KeyError, TypeError, ValueError):
        ts = int(time.time() * 1000)
    name = entry.get("SYSLOG_IDENTIFIER") or entry.get("_SYSTEMD_UNIT") or entry.get("_COMM") or "unknown"
    labels: dict[str, str] = {}
    raw = message.encode("utf-8")
    if len(raw) > max_line_bytes:
        message = raw[:max_line_bytes].decode("utf-8", "ignore")
        labels["cut"] = "true"
    if parse_level:
        try:
            labels["level"] = _LEVELS[int(entry.get("PRIORITY", 6))]
        except (TypeError, ValueError, KeyError):
            pass  # an entry without a valid PRIORITY has no level, as a file line without one
    return {"ts": ts, "source": f"journal:{name}"[:1024], "line": message, "labels": labels}


class JournalSource:
    """Follows the journal (``directory``: journalctl ``--directory``, empty: the system
    journal) with the cursor kept in ``state_path``. ``command`` is the journalctl binary."""

    def __init__(self, state_path: str, directory: str = "", max_line_bytes: int = 16384, parse_level: bool = True,
                 command: str = "journalctl", monotonic: Callable[[], float] = time.monotonic) -> None:
        self.state_path = state_path
        self.directory = directory
        self.max_line_bytes = max_line_bytes
        self.parse_level = parse_level
        self.command = command
        self.monotonic = monotonic
        self.counters = {"entries": 0, "restarts": 0, "state_write_errors": 0}
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(QUEUE_ENTRIES)
        self._redeliver: list[tuple[str, dict[str, Any]]] = []
        self._inflight: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self._seq = 0
        self._saved = self._load()
        self._read_cursor = self._saved  # where a restarted journalctl continues
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = -RESTART_DELAY
        self._backlog = False
        self._start()

    # -- the journalctl process ---------------------------------------------------------
    def _argv(self) -> list[str]:
        argv = [self.command, "--output=json", "--follow", "--no-pager", "--quiet"]
        argv += [f"--after-cursor={self._read_cursor}"] if self._read_cursor else ["--lines=0"]
        if self.directory:
            argv.append(f"--directory={self.directory}")
        return argv

    def _start(self) -> None:
        self._started_at = self.monotonic()
        try:
            proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            log.warning("cannot start %s: %s; the journal is not read", self.command, exc.strerror or exc)
            return
        self._proc = proc
        if proc.stdout is None or proc.stderr is None:  # both are pipes (typing only)
            return
        threading.Thread(target=self._read, args=(proc.stdout,), name="journal-reader", daemon=True).start()
        threading.Thread(target=self._complain, args=(proc.stderr,), name="journal-stderr", daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            record = journal_record(entry, self.max_line_bytes, self.parse_level) if isinstance(entry, dict) else None
            cursor = entry.get("__CURSOR") if isinstance(entry, dict) else None
            if record is not None and isinstance(cursor, str):
                self._queue.put((cursor, record))  # blocks (and so does journalctl) while full
        stream.close()

    def _complain(self, stream: IO[bytes]) -> None:
        for raw in stream:
            log.warning("journalctl: %s", raw.decode("utf-8", "replace").strip())
        stream.close()

    def _check_process(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if self.monotonic() - self._started_at < RESTART_DELAY or not self._queue.empty():
            return
        if self._proc is not None:
            log.info("journalctl exited with status %s; starting it again", self._proc.returncode)
            self.counters["restarts"] += 1
        self._start()

    # -- the log source -----------------------------------------------------------------
    def take(self, max_records: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``max_records`` records (entries not handed off before come first) and
        the checkpoint to pass to :meth:`acknowledge` or :meth:`not_delivered`."""
        self._check_process()
        taken = self._redeliver[:max_records]
        self._redeliver = self._redeliver[len(taken):]
        while len(taken) < max_records:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                break
            self._read_cursor = taken[-1][0]  # the newest entry out of journalctl
        self._backlog = bool(self._redeliver) or not self._queue.empty()
        self._seq += 1
        self._inflight[self._seq] = taken
        self.counters["entries"] += len(taken)
        return [dict(record, labels=dict(record["labels"])) for _, record in taken], self._seq

    @property
    def has_backlog(self) -> bool:
        return self._backlog

    def acknowledge(self, checkpoint: int) -> None:
        """Every batch up to ``checkpoint`` is handed off: save the newest cursor."""
        cursor = None
        for seq in sorted(s for s in self._inflight if s <= checkpoint):
            entries = self._inflight.pop(seq)
            if entries:
                cursor = entries[-1][0]
        if cursor is None or cursor == self._saved:
            return
        try:
            tmp = self.state_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(cursor + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)
            self._saved = cursor
        except OSError as exc:
            self.counters["state_write_errors"] += 1
            log.error("cannot save the journal cursor to %s: %s", self.state_path, exc)

    def not_delivered(self, checkpoint: int) -> None:
        """Batches from the last acknowledged one on were not handed off: their entries
        are handed out again, in order, before anything newer."""
        again = [e for seq in sorted(self._inflight) for e in self._inflight[seq]]
        self._inflight.clear()
        self._redeliver = again + self._redeliver

    def _load(self) -> str | None:
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot read the journal cursor in %s: %s; reading from now", self.state_path, exc)
            return None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
