"""Log files: tail configured paths and globs, survive rotation, group multiline records.

:class:`LogCollector` does two jobs for the agent:

- as a log source, :meth:`LogCollector.take` returns the next log records
  ``{"ts": Unix ms, "source": path, "line": str, "labels": {...}}`` with a checkpoint;
  the agent puts the records in a batch and calls :meth:`acknowledge` with the
  checkpoint once the batch is handed off durably (today: the console answered 200),
  or :meth:`not_delivered` when it was not (reading then rewinds to the last
  acknowledged positions, so nothing is lost). Positions reach the state file only
  on acknowledgement;
- as a collector, :meth:`collect` yields its own counters
  (``fleetdeck_agent_log_*``).

Rotation (see docs/logs.md for the full rules):

- rename (logrotate's default ``create``): the old file keeps its inode and stays
  open; it is read to its end (its partial last line included), then closed once
  acknowledged, while the new file at the path is read from its start;
- copytruncate and truncation: a file whose size fell below the offset, or whose first
  bytes no longer match the fingerprint, is read again from offset 0;
- a file that appears later is read from its start; at the very first start (no state
  file, or a pattern the state file has not seen) existing files are read from their
  end unless ``from_start`` is set;
- a saved file that was renamed while the agent was stopped is found again by inode
  in its folder and finished.
"""
from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from collectors.base import Collector, Sample
from collectors.journal import JournalSource
from collectors.logtime import line_time
from collectors.logtail import (Position, RawLine, StateStore, fingerprint, fingerprint_matches, read_lines,
                                tail_fingerprint, tail_matches)

log = logging.getLogger(__name__)

MAX_LINE_CAP = 65536  # the console's limit on one line (console/ingest/batch.py), in characters
# Level words near the start of a line: syslog/Python/log4j spellings, ``level=...`` of
# logfmt (dockerd, Go programs) and PostgreSQL's ``ERROR:``-style prefixes.
_LEVEL_RE = re.compile(
    r"(?:\blevel=\"?|\[|\b)(TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERR(?:OR)?|CRIT(?:ICAL)?|FATAL|ALERT|EMERG|PANIC"
    r"|LOG(?=:)|trace|debug|info|notice|warn(?:ing)?|error|fatal|panic)\b")
_LEVEL_NAMES = {"trace": "trace", "debug": "debug", "info": "info", "notice": "info", "warn": "warn",
                "warning": "warn", "err": "error", "error": "error", "crit": "fatal", "critical": "fatal",
                "fatal": "fatal", "alert": "fatal", "emerg": "fatal", "panic": "fatal", "log": "info"}
LEVEL_SCAN_CHARS = 160


def parse_level(line: str) -> str | None:
    """The first level word in the first :data:`LEVEL_SCAN_CHARS` characters of ``line``,
    normalised to trace|debug|info|warn|error|fatal; None when there is none.
    Lower-case words count only as ``level=word``, ``[word]`` or ``word:`` (so "no error
    found" in a message is not a level); PostgreSQL's ``LOG:`` counts as info."""
    head = line[:LEVEL_SCAN_CHARS]
    for match in _LEVEL_RE.finditer(head):
        word = match.group(1)
        if word.islower() and not head[match.start():match.start(1)] and not head.startswith(":", match.end()):
            continue  # a plain lower-case word in prose
        return _LEVEL_NAMES[word.lower()]
    return None


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class LogOptionsError(ValueError):
    """Invalid ``logs:`` options; the message names the key."""


DEFAULT_EXCLUDE = ("*.gz", "*.xz", "*.bz2", "*.zst", "*.zip", "*.lz4")


@dataclass
class LogOptions:
    """The agent's ``logs:`` settings.

    - ``paths``: files and globs to tail (``/var/log/*.log``); empty: no log tailing.
    - ``exclude``: globs of names never read (compressed rotations by default).
    - ``from_start``: read files first seen at the agent's first start from their
      beginning instead of their end: true for every file, or a list of globs naming
      the files that are (``fleetdeck run`` lists the console's own log).
    - ``journal``: also read the systemd journal (:class:`collectors.journal.JournalSource`,
      through ``journalctl``); ``journal_directory``: the journal files of this absolute
      directory instead of the system journal (journalctl ``--directory``).
    - ``max_line_bytes``: longer lines are cut to this many bytes (and counted).
    - ``multiline_start``: regular expression matching the first line of a record;
      other lines join the record before them. Empty: every line is a record.
    - ``multiline_max_lines``, ``multiline_max_wait`` (seconds): flush a record at
      this many lines, or when its first line waited this long.
    - ``parse_level``: put a ``level`` label (trace..fatal) on lines that name one.
    - ``parse_time``: a record's ``ts`` is the time its first line starts with
      (:func:`collectors.logtime.line_time`: RFC 3339, syslog, access logs, Python
      logging), else the time it was read.
    - ``max_lines_per_batch``, ``max_bytes_per_batch``: bound one batch's log part.
    - ``state_file``: positions file; empty: ``<state_dir>/log-positions.json``.
    """

    paths: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    from_start: bool | list[str] = False
    max_line_bytes: int = 16384
    multiline_start: str = ""
    multiline_max_lines: int = 500
    multiline_max_wait: float = 2.0
    parse_level: bool = True
    parse_time: bool = True
    max_lines_per_batch: int = 20000
    max_bytes_per_batch: int = 4 * 1024 * 1024
    state_file: str = ""
    journal: bool = False
    journal_directory: str = ""

    @property
    def enabled(self) -> bool:
        """Whether anything is read: paths, or the journal."""
        return bool(self.paths) or self.journal

    @classmethod
    def from_mapping(cls, value: Any, source: str = "config") -> "LogOptions":
        """Validate a mapping (the YAML ``logs:`` section); raises :class:`LogOptionsError`."""
        if value is None:
            return cls()
        if isinstance(value, LogOptions):
            return value
        if not isinstance(value, Mapping):
            raise LogOptionsError(f"logs (from {source}) must be a mapping")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise LogOptionsError(f"logs.{unknown[0]} (from {source}) is not a known option; "
                                  f"known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, item in value.items():
            where = f"logs.{key} (from {source})"
            if key in ("paths", "exclude"):
                if isinstance(item, str):
                    item = [item]
                if not isinstance(item, list) or not all(isinstance(p, str) and p for p in item):
                    raise LogOptionsError(f"{where} must be a list of paths or globs")
                values[key] = list(item)
            elif key == "from_start" and isinstance(item, list):
                if not all(isinstance(p, str) and os.path.isabs(p) for p in item):
                    raise LogOptionsError(f"{where} must be true, false or a list of absolute paths or globs")
                values[key] = list(item)
            elif key in ("from_start", "parse_level", "parse_time", "journal"):
                if not isinstance(item, bool):
                    raise LogOptionsError(f"{where} must be true or false")
                values[key] = item
            elif key in ("max_line_bytes", "multiline_max_lines", "max_lines_per_batch", "max_bytes_per_batch"):
                if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                    raise LogOptionsError(f"{where} must be a positive integer")
                values[key] = item
            elif key == "multiline_max_wait":
                if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 <= item <= 3600:
                    raise LogOptionsError(f"{where} must be seconds from 0 to 3600")
                values[key] = float(item)
            else:  # multiline_start, state_file, journal_directory
                if not isinstance(item, str):
                    raise LogOptionsError(f"{where} must be a string")
                values[key] = item
        options = cls(**values)
        if options.max_line_bytes > MAX_LINE_CAP:
            raise LogOptionsError(f"logs.max_line_bytes (from {source}) must be at most {MAX_LINE_CAP}")
        if options.multiline_start:
            try:
                re.compile(options.multiline_start)
            except re.error as exc:
                raise LogOptionsError(f"logs.multiline_start (from {source}) is not a valid regex: {exc}") from None
        for path in options.paths:
            if not os.path.isabs(path):
                raise LogOptionsError(f"logs.paths (from {source}): {path!r} must be an absolute path")
        if options.journal_directory and not os.path.isabs(options.journal_directory):
            raise LogOptionsError(f"logs.journal_directory (from {source}) must be an absolute path")
        if options.journal_directory and not options.journal:
            raise LogOptionsError(f"logs.journal_directory (from {source}) is set but logs.journal is false")
        if options.journal and shutil.which("journalctl") is None:
            raise LogOptionsError(f"logs.journal (from {source}) is true but there is no journalctl on PATH "
                                  "(Debian package systemd)")
        return options


@dataclass
class _Pending:
    """A multiline record being grouped."""

    lines: list[str]
    start: int  # byte offset of its first line
    since: float  # monotonic seconds when its first line was read
    cut: bool = False


@dataclass
class _File:
    """One open file being tailed."""

    fd: int
    pos: Position
    start_offset: int  # where reading began (rewind target when nothing was acknowledged)
    pending: _Pending | None = None
    rotated: bool = False  # no longer at a watched path: read to its end, then close
    finished: bool = False  # rotated and fully read (pending flushed)
    continues: bool = False  # a rotated copy whose unread tail precedes the live file's lines


@dataclass(frozen=True)
class Checkpoint:
    """Positions to save once a batch is handed off: file key -> Position."""

    seq: int
    positions: dict[tuple[int, int], Position]
    journal: int | None = None  # the journal source's checkpoint, when it is read


class LogCollector(Collector):
    """Tails ``options.paths``; see the module docstring. ``state_dir`` holds the
    positions file unless ``options.state_file`` names one. ``clock`` gives Unix seconds
    (record timestamps); ``monotonic`` measures multiline waits.

    ``recovered``: ``(spool seq, extension)`` of the newest spool record carrying
    positions (:meth:`agents.spool.Spool.last_extension`). When it is newer than the
    positions file (a crash between the spool write and the file's save, or a save
    that failed), reading resumes from it, so the lines of that record are neither
    lost nor read twice. ``spool_seq`` is the record the positions in use came from."""

    name = "logs"

    def __init__(self, options: LogOptions, state_dir: str, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 recovered: tuple[int, bytes] | None = None) -> None:
        self.options = options
        self.clock = clock
        self.monotonic = monotonic
        self.store = StateStore(options.state_file or os.path.join(state_dir, "log-positions.json"))
        self._start_re = re.compile(options.multiline_start) if options.multiline_start else None
        self._files: dict[tuple[int, int], _File] = {}
        self._committed: dict[tuple[int, int], Position] = {}
        self._seq = 0
        self._backlog = False
        self.counters = {"lines": 0, "bytes": 0, "cut": 0, "records": 0, "rotations": 0, "truncations": 0,
                         "state_write_errors": 0, "read_errors": 0}
        saved = self.store.load()
        if recovered is not None and (saved is None or saved[2] is None or recovered[0] > saved[2]):
            try:
                saved = StateStore.decode(recovered[1])
                saved = (saved[0], saved[1], recovered[0])
                log.info("log positions taken from spool record %d (newer than %s)", recovered[0], self.store.path)
            except ValueError as exc:
                log.error("spool record %d holds unreadable log positions (%s); using %s",
                          recovered[0], exc, self.store.path)
        self.spool_seq: int | None = saved[2] if saved else None
        # Saved positions of files found truncated or rewritten at start: a watched copy
        # of the old content (copytruncate while the agent was stopped) continues from them.
        self._before_restart: list[Position] = []
        self._known_patterns: set[str] = set(saved[1]) if saved else set()
        self._restore(saved[0] if saved else [])
        self.journal: JournalSource | None = None
        if options.journal:
            self.journal = JournalSource(os.path.join(os.path.dirname(self.store.path) or ".", "journal-cursor"),
                                         options.journal_directory, options.max_line_bytes, options.parse_level)

    # -- discovery ----------------------------------------------------------------------
    def _watched(self) -> dict[tuple[int, int], tuple[str, os.stat_result, str]]:
        """Regular files matching the patterns now: key -> (path, stat, pattern)."""
        found: dict[tuple[int, int], tuple[str, os.stat_result, str]] = {}
        for pattern in self.options.paths:
            for path in sorted(glob.glob(pattern)) if _has_magic(pattern) else [pattern]:
                if any(fnmatch.fnmatch(os.path.basename(path), ex) for ex in self.options.exclude):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # absent now; may appear later
                if not os.path.isfile(path):
                    continue
                found.setdefault((st.st_dev, st.st_ino), (path, st, pattern))
        return found

    def _open(self, path: str, st: os.stat_result) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self.counters["read_errors"] += 1
            log.warning("cannot open log file %s: %s", path, exc.strerror or exc)
            return None
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):  # replaced between stat and open
            os.close(fd)
            return None
        return fd

    def _restore(self, saved: list[Position]) -> None:
        """Reopen saved files: at their path, or renamed within their folder while the
        agent was stopped (found by inode). Truncation is checked on the first read."""
        if not saved:
            return
        watched = self._watched()
        for pos in saved:
            path = watched[pos.key][0] if pos.key in watched else self._find_renamed(pos)
            if path is None:
                log.info("log file %s (inode %d) is gone; %s", pos.path, pos.inode, "its unread lines are lost")
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            fd = self._open(path, st)
            if fd is None:
                continue
            if not fingerprint_matches(fd, pos.fingerprint, pos.fp_len) or not tail_matches(fd, pos):
                if pos.key not in watched:  # a different file reusing the inode: not ours
                    os.close(fd)
                    continue
                # Truncated, rewritten, or a new file on a recycled inode (its first bytes may
                # match, the bytes before the offset do not): all of it is unread.
                log.info("log file %s is not the one last read (truncated, rewritten or a reused inode); "
                         "reading it from the start", path)
                self._before_restart.append(pos)
                pos = replace(pos, offset=0, discard=False, tail_fp="", tail_len=0)
                self.counters["truncations"] += 1
            pos = replace(pos, path=path)
            self._files[pos.key] = _File(fd, pos, pos.offset, rotated=pos.key not in watched)
            self._committed[pos.key] = replace(pos)

    def _find_renamed(self, pos: Position) -> str | None:
        folder, base = os.path.split(pos.path)
        try:
            names = os.listdir(folder)
        except OSError:
            return None
        for name in names:
            if not name.startswith(base) or name == base:
                continue
            candidate = os.path.join(folder, name)
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == pos.key:
                return candidate
        return None

    def _scan(self) -> None:
        watched = self._watched()
        fresh_patterns = {p for p in self.options.paths if p not in self._known_patterns}
        # Files that left the watched paths (renamed away, deleted) are finished, not dropped.
        for key, f in self._files.items():
            if key in watched:
                f.pos.path = watched[key][0]
                f.rotated = False
            elif not f.rotated:
                f.rotated = True
                self.counters["rotations"] += 1
        for key, (path, st, pattern) in watched.items():
            if key in self._files:
                continue
            fd = self._open(path, st)
            if fd is None:
                continue
            fp, fp_len = fingerprint(fd, st.st_size)
            offset, source = 0, path
            copy_of = self._copy_of(fp, fp_len)
            earlier = None
            if copy_of is not None and st.st_size >= copy_of.pos.offset:
                # A copy of a file we read (copytruncate's rotated copy): continue where we were.
                offset, source = copy_of.pos.offset, copy_of.pos.source
            elif (earlier := self._copy_of_saved(fd, fp, fp_len, st.st_size)) is not None:
                # The same, for a copy made while the agent was stopped.
                offset, source = earlier.offset, earlier.source
            elif pattern in fresh_patterns and not self._from_start(path):
                offset = st.st_size  # a file there before we ever looked: from its end
            pos = Position(st.st_dev, st.st_ino, fp, fp_len, offset, path, source)
            continues = (copy_of is not None or earlier is not None) and offset > 0
            self._files[key] = _File(fd, pos, offset, continues=continues)
        self._known_patterns |= set(self.options.paths)
        self._before_restart.clear()  # copies made while stopped are there at the first scan

    def _from_start(self, path: str) -> bool:
        if isinstance(self.options.from_start, list):
            return any(fnmatch.fnmatch(path, pattern) for pattern in self.options.from_start)
        return self.options.from_start

    def _copy_of_saved(self, fd: int, fp: str, fp_len: int, size: int) -> Position | None:
        """A saved position (of a file truncated while the agent was stopped) whose old
        content this new file holds: same first bytes and same bytes before the offset."""
        for pos in self._before_restart:
            if pos.offset > 0 and pos.fp_len == fp_len and pos.fingerprint == fp and size >= pos.offset \
                    and tail_matches(fd, pos):
                self._before_restart.remove(pos)
                return pos
        return None

    def _copy_of(self, fp: str, fp_len: int) -> _File | None:
        for f in self._files.values():
            if f.pos.fp_len == fp_len and f.pos.fingerprint == fp and f.pos.offset > 0:
                return f
        return None

    def _check_truncation(self, f: _File) -> None:
        try:
            size = os.fstat(f.fd).st_size
        except OSError as exc:
            self.counters["read_errors"] += 1
            log.warning("cannot stat log file %s: %s", f.pos.path, exc)
            return
        if size < f.pos.offset or not fingerprint_matches(f.fd, f.pos.fingerprint, f.pos.fp_len):
            log.info("log file %s was truncated or rewritten; reading it from the start", f.pos.path)
            self.counters["truncations"] += 1
            f.pos.offset, f.pos.discard, f.pending = 0, False, None
            f.pos.fingerprint, f.pos.fp_len = fingerprint(f.fd, size)
        elif f.pos.fp_len < size and f.pos.fp_len < 256:
            f.pos.fingerprint, f.pos.fp_len = fingerprint(f.fd, size)

    # -- reading ------------------------------------------------------------------------
    def take(self) -> tuple[list[dict[str, Any]], Checkpoint]:
        """Read what is new, up to the batch bounds: ``(records, checkpoint)``.

        Records are ``{"ts": Unix ms, "source": str, "line": str, "labels": {}}``
        (``ts``: the time the line says, else when it was read)
        (``labels`` may hold ``level`` and ``cut: "true"``). Hand the checkpoint to
        :meth:`acknowledge` or :meth:`not_delivered`. Never raises for I/O problems
        of single files (they are logged and counted)."""
        self._scan()
        ts = int(round(self.clock() * 1000))
        now = self.monotonic()
        records: list[dict[str, Any]] = []
        budget = [self.options.max_lines_per_batch, self.options.max_bytes_per_batch]
        self._backlog = False
        # Old content first: rotated files and copies, then the live files.
        for f in sorted(self._files.values(), key=lambda f: not (f.rotated or f.continues)):
            if f.finished:
                continue
            if budget[0] <= 0 or budget[1] <= 0:
                self._backlog = True
                break
            if not f.rotated:
                self._check_truncation(f)
            try:
                self._read_file(f, ts, now, records, budget)
                f.continues = f.continues and self._backlog
            except OSError as exc:
                self.counters["read_errors"] += 1
                log.warning("cannot read log file %s: %s", f.pos.path, exc)
        journal_checkpoint = None
        if self.journal is not None:
            entries, journal_checkpoint = self.journal.take(max(0, budget[0]))
            records += entries
            self._backlog = self._backlog or self.journal.has_backlog
        self._seq += 1
        positions = {}
        for key, f in self._files.items():
            offset = f.pending.start if f.pending else f.pos.offset
            try:
                tail_fp, tail_len = tail_fingerprint(f.fd, offset)
            except OSError:
                tail_fp, tail_len = "", 0
            positions[key] = replace(f.pos, offset=offset, discard=f.pos.discard if not f.pending else False,
                                     tail_fp=tail_fp, tail_len=tail_len)
        checkpoint = Checkpoint(self._seq, positions, journal_checkpoint)
        self.counters["records"] += len(records)
        return records, checkpoint

    def _read_file(self, f: _File, ts: int, now: float, records: list, budget: list[int]) -> None:
        cap = self.options.max_line_bytes
        reached_end = True
        for raw, offset, discard in read_lines(f.fd, f.pos.offset, f.pos.discard, cap, budget[1],
                                               final=f.rotated):
            f.pos.offset, f.pos.discard = offset, discard
            if raw is None:
                continue
            self._line(f, raw, ts, now, records)
            budget[0] -= 1
            budget[1] -= len(raw.data) + 1
            if budget[0] <= 0 or budget[1] <= 0:
                reached_end = False
                self._backlog = True
                break
        if f.pending and (f.rotated and reached_end or now - f.pending.since >= self.options.multiline_max_wait):
            self._flush(f, ts, records)
        if f.rotated and reached_end and os.fstat(f.fd).st_size <= f.pos.offset:
            f.finished = True

    def _line(self, f: _File, raw: RawLine, ts: int, now: float, records: list) -> None:
        self.counters["lines"] += 1
        self.counters["bytes"] += raw.end - raw.start
        if raw.cut:
            self.counters["cut"] += 1
        text = raw.data.decode("utf-8", "replace")
        if self._start_re is None:
            records.append(self._record(ts, f.pos.source, text, raw.cut))
            return
        if f.pending is not None and not self._start_re.match(text):
            f.pending.lines.append(text)
            f.pending.cut = f.pending.cut or raw.cut
            if len(f.pending.lines) >= self.options.multiline_max_lines:
                self._flush(f, ts, records)
            return
        self._flush(f, ts, records)
        f.pending = _Pending([text], raw.start, now, raw.cut)

    def _flush(self, f: _File, ts: int, records: list) -> None:
        if f.pending is None:
            return
        line = "\n".join(f.pending.lines)
        if len(line.encode("utf-8")) > MAX_LINE_CAP:  # the console's per-record limit
            line = line.encode("utf-8")[:MAX_LINE_CAP - 4].decode("utf-8", "ignore")
            f.pending.cut = True
            self.counters["cut"] += 1
        records.append(self._record(ts, f.pos.source, line, f.pending.cut))
        f.pending = None

    def _record(self, ts: int, source: str, line: str, cut: bool) -> dict[str, Any]:
        labels: dict[str, str] = {}
        if self.options.parse_time:
            written = line_time(line, ts / 1000)
            if written is not None:
                ts = int(round(written * 1000))
        if self.options.parse_level:
            level = parse_level(line)
            if level:
                labels["level"] = level
        if cut:
            labels["cut"] = "true"
        return {"ts": ts, "source": source, "line": line, "labels": labels}

    @property
    def has_backlog(self) -> bool:
        """True when the last :meth:`take` stopped at a batch bound with lines left."""
        return self._backlog

    # -- acknowledgement ----------------------------------------------------------------
    def encode_checkpoint(self, checkpoint: Checkpoint) -> bytes:
        """The positions of ``checkpoint`` as bytes for a spool record's extension (the
        positions file's document, :meth:`collectors.logtail.StateStore.encode`)."""
        return StateStore.encode(list(checkpoint.positions.values()), sorted(self._known_patterns))

    def acknowledge(self, checkpoint: Checkpoint, spool_seq: int | None = None) -> None:
        """The batch with ``checkpoint`` is handed off durably (``spool_seq``: the spool
        record that carries the same positions): save its positions (atomically) and
        close finished rotated files. A failed write is logged and counted; the positions
        are saved with the next acknowledgement (and are in the spool record meanwhile)."""
        if spool_seq is not None:
            self.spool_seq = spool_seq
        if self.journal is not None and checkpoint.journal is not None:
            self.journal.acknowledge(checkpoint.journal)
        self._committed = {k: replace(p) for k, p in checkpoint.positions.items()}
        for key, f in list(self._files.items()):
            saved = self._committed.get(key)
            if f.finished and saved is not None and saved.offset >= f.pos.offset:
                os.close(f.fd)
                del self._files[key]
                self._committed.pop(key, None)
        try:
            self.store.save(list(self._committed.values()), sorted(self._known_patterns), self.spool_seq)
        except OSError as exc:
            self.counters["state_write_errors"] += 1
            log.error("cannot save log positions to %s: %s", self.store.path, exc)

    def not_delivered(self, checkpoint: Checkpoint) -> None:
        """The batch with ``checkpoint`` was not handed off: rewind every file to its
        last acknowledged position so its lines are read and sent again."""
        if self.journal is not None and checkpoint.journal is not None:
            self.journal.not_delivered(checkpoint.journal)
        for key, f in self._files.items():
            saved = self._committed.get(key)
            if saved is not None and fingerprint_matches(f.fd, saved.fingerprint, saved.fp_len):
                f.pos.offset, f.pos.discard = saved.offset, saved.discard
            elif saved is not None:  # truncated since: all of its new content is unsent
                f.pos.offset, f.pos.discard = 0, False
            else:
                f.pos.offset, f.pos.discard = f.start_offset, False
            f.pending, f.finished = None, False

    # -- collector ----------------------------------------------------------------------
    def collect(self) -> Iterable[Sample]:
        """The tailer's own counters, as ``fleetdeck_agent_log_*`` series."""
        c = self.counters
        return [
            Sample("fleetdeck_agent_log_lines_total", {}, c["lines"], "counter"),
            Sample("fleetdeck_agent_log_read_bytes_total", {}, c["bytes"], "counter"),
            Sample("fleetdeck_agent_log_records_total", {}, c["records"], "counter"),
            Sample("fleetdeck_agent_log_lines_cut_total", {}, c["cut"], "counter"),
            Sample("fleetdeck_agent_log_rotations_total", {}, c["rotations"], "counter"),
            Sample("fleetdeck_agent_log_truncations_total", {}, c["truncations"], "counter"),
            Sample("fleetdeck_agent_log_read_errors_total", {}, c["read_errors"], "counter"),
            Sample("fleetdeck_agent_log_state_write_errors_total", {}, c["state_write_errors"], "counter"),
            Sample("fleetdeck_agent_log_files", {}, len(self._files), "gauge"),
        ]

    def close(self) -> None:
        """Close every open file and stop journalctl (positions are not saved here: only
        acknowledgements save)."""
        if self.journal is not None:
            self.journal.close()
        for f in self._files.values():
            os.close(f.fd)
        self._files.clear()
