"""Several console processes on one listening port: ``fleetdeck serve --workers N``.

Python runs one thread at a time per process (the GIL), so one console decodes, validates
and writes with one core at most. With ``workers: N`` the ``serve`` process becomes a
supervisor: it checks the database (and applies migrations) once, binds the listening
port, then forks N workers, each a full console on the shared database, exactly like
replicas on one host (docs/scaling.md): the run-once jobs go to the leader
(console/cluster/leader.py), live frames cross processes (console/cluster/relay.py),
sessions and token revocations are in the database.

Sockets: the supervisor binds one listening socket per worker slot, each with
``SO_REUSEPORT`` on the same address (https://man7.org/linux/man-pages/man7/socket.7.html),
so the kernel spreads new connections evenly over the slots by a hash of their addresses
(one shared socket would let whichever worker woke first accept a whole burst of them).
The supervisor keeps every slot's socket open and never accepts: a worker that dies is
replaced on the same socket, and connections that arrived meanwhile wait in its backlog
instead of being refused.

Supervision: ``SIGTERM``/``SIGINT`` to the supervisor stop every worker (``SIGTERM``,
then ``SIGKILL`` after ``stop_timeout``) and it exits 0; ``SIGHUP`` is passed on to every
worker (the rule files and notifications are re-read). A worker that exits without being
asked is started again after a second; a worker exiting with status 2 (bad configuration:
every new one would too), or more than ``max_restarts`` restarts within
``restart_window`` seconds, stop them all and the supervisor exits 1 (or 2). Each worker
asks the kernel for ``SIGTERM`` when the supervisor dies (``PR_SET_PDEATHSIG``), so a
``kill -9`` of the supervisor leaves no orphan serving.

Metrics: :func:`metrics_dir` gives the run a private directory for prometheus_client's
multiprocess mode (console/telemetry.py), so ``/metrics`` on any worker answers for all of
them; the supervisor forgets the ``live*`` gauges of each worker that exits
(``mark_process_dead``) and removes the directory when it stops.

Threading: the supervisor has no thread and no event loop when it forks (a fork copies
only the calling thread, so a lock held by another thread would stay locked in the
child); the workers build their services, database pools and threads after the fork.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import tornado.netutil

log = logging.getLogger("fleetdeck.workers")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_CONFIG = 2  # the CLI's status for bad usage or configuration
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess switch


@contextlib.contextmanager
def metrics_dir() -> Iterator[Path]:
    """A private directory (mode 0700, in the temporary directory: not the data disk, which
    may fill) for the metric files of one run, named in ``PROMETHEUS_MULTIPROC_DIR`` for
    this process and the workers forked from it; removed, and the variable unset, on exit.
    Must be entered before prometheus_client is imported, as the library picks between one
    process and several when it is imported
    (https://prometheus.github.io/client_python/multiprocess/). Raises RuntimeError when it
    was imported already."""
    path = Path(tempfile.mkdtemp(prefix="fleetdeck-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        from prometheus_client import values

        if not getattr(values.ValueClass, "_multiprocess", False):
            raise RuntimeError("prometheus_client was imported before the workers' metrics directory was set")
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def clear_metrics(path: Path) -> None:
    """Remove the metric files in ``path`` (the supervisor's own, from checking the
    database), so the workers count from zero: the library wants the directory empty at
    start."""
    for entry in path.glob("*.db"):
        entry.unlink(missing_ok=True)


def bind_slots(host: str, port: int, count: int) -> tuple[list[list[socket.socket]], int]:
    """``count`` sets of listening sockets on ``host:port`` (port 0 picks one free port for
    all), each set bound with ``SO_REUSEPORT``; -> (sets, the bound port). Raises OSError
    when the address is taken (by a process that did not set ``SO_REUSEPORT``) or invalid."""
    slots: list[list[socket.socket]] = []
    try:
        for _ in range(count):
            sockets = tornado.netutil.bind_sockets(port, host or None, reuse_port=True)
            port = sockets[0].getsockname()[1]
            slots.append(sockets)
    except OSError:
        for sockets in slots:
            for sock in sockets:
                sock.close()
        raise
    return slots, port


def die_with_parent() -> None:
    """Ask Linux to send this process ``SIGTERM`` when its parent exits (prctl(2)); a no-op
    elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Supervisor:
    """Forks and watches the workers. ``run_worker(slot, sockets) -> exit status`` runs in
    each forked worker (on its slot's sockets, with default signal handlers) and must not
    return before the worker is done; :meth:`run` blocks until the pool stops and returns
    the supervisor's exit status. ``metrics``: the run's :func:`metrics_dir`, where the
    ``live*`` gauges of a worker that exited are forgotten."""

    def __init__(self, slots: list[list[socket.socket]], run_worker: Callable[[int, list[socket.socket]], int],
                 max_restarts: int = 5, restart_window: float = 60.0, stop_timeout: float = 30.0,
                 restart_delay: float = 1.0, metrics: Path | None = None) -> None:
        self.slots = slots
        self.run_worker = run_worker
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.pids: dict[int, int] = {}  # pid -> slot
        self.restarts: list[float] = []  # monotonic times of unasked-for exits
        self._pending: dict[int, float] = {}  # slot -> monotonic time to start it again
        self._stop = False
        self._hup = False
        self._supervisor = os.getpid()
        self.metrics = metrics

    def _spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            self.pids[pid] = slot
            log.info("worker %d started (pid %d)", slot, pid)
            return
        status = 1
        try:  # the worker: never returns into the supervisor's code
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            die_with_parent()
            if os.getppid() != self._supervisor:  # it died before the request took effect
                os._exit(1)
            for other, sockets in enumerate(self.slots):
                if other != slot:
                    for sock in sockets:
                        sock.close()
            status = self.run_worker(slot, self.slots[slot])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported here, the worker's status says it failed
            log.exception("worker %d failed", slot)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self._hup = True
        else:
            self._stop = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            for slot in range(len(self.slots)):
                self._spawn(slot)
            status = self._watch()
            self._stop_all()
            return status
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sockets in self.slots:
                for sock in sockets:
                    sock.close()

    def _watch(self) -> int:
        """Until asked to stop (-> 0) or giving up on the workers (-> 1 or 2)."""
        while not self._stop:
            if self._hup:
                self._hup = False
                self._signal_all(signal.SIGHUP)
            for pid, status in self._reap():
                slot = self.pids.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                log.warning("worker %d (pid %d) exited with status %d", slot, pid, code)
                if self._stop:
                    break
                if code == EXIT_CONFIG:
                    return EXIT_CONFIG
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < self.restart_window] + [now]
                if len(self.restarts) > self.max_restarts:
                    log.error("%d worker restarts within %g s; stopping", len(self.restarts), self.restart_window)
                    return 1
                self._pending[slot] = now + self.restart_delay
            now = time.monotonic()
            for slot, due in list(self._pending.items()):
                if due <= now and not self._stop:
                    del self._pending[slot]
                    self._spawn(slot)
            time.sleep(0.1)
        return 0

    def _reap(self) -> list[tuple[int, int]]:
        """(pid, wait status) of the workers that exited; only ours are waited for."""
        done = []
        for pid in list(self.pids):
            try:
                waited, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                waited, status = pid, 0
            if waited:
                done.append((pid, status))
                self._forget(pid)
        return done

    def _forget(self, pid: int) -> None:
        """Drop the gauges of an exited worker that only hold while it runs (its sockets,
        its leadership); its counters stay in the sums."""
        if self.metrics is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(pid, str(self.metrics))

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait for them (SIGKILL after ``stop_timeout``)."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.pids and time.monotonic() < deadline:
            for pid, _ in self._reap():
                self.pids.pop(pid, None)
            time.sleep(0.05)
        if self.pids:
            log.warning("workers %s did not stop within %g s; killing them", sorted(self.pids), self.stop_timeout)
            self._signal_all(signal.SIGKILL)
            for pid in list(self.pids):
                os.waitpid(pid, 0)
                self._forget(pid)
            self.pids.clear()
