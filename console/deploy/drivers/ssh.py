"""The SSH driver: releases on plain servers over SSH (paramiko), Capistrano-style.

On each host, under the app's ``deploy_to``::

    releases/<version>/     one directory per version (the artifact, unpacked, plus the steps' output)
    current -> releases/<version>   the live release, switched atomically

Before any host changes, a **pre-flight** checks every host (up to ``max_parallel`` at
once): the connection (reachable, host key pinned, authentication), the release
``current`` points to, and the free disk space under ``deploy_to`` (``df -Pk`` on its
nearest existing directory, at least ``min_free_disk_mb``). Any failure refuses the
whole deploy, naming each host and why; nothing was changed anywhere.

A deploy then goes through the hosts in **batches** (serial, fixed size or a percentage);
within a batch up to ``max_parallel`` hosts work at once, each over one SSH connection
that is opened once (by the pre-flight) and reused for every command, the SFTP session
and any rollback. Per host:

1. connect, with the host key checked against the pinned known_hosts (``RejectPolicy``:
   an unknown or changed key fails the host before authentication; nothing runs there);
2. upload the artifact over SFTP into ``releases/<version>/`` (and unpack it);
3. run ``steps`` in the release directory, each with a timeout (the remote ``timeout``
   command, plus a local deadline) and its stdout/stderr streamed into the deploy's log;
4. switch ``current``: a new symlink beside it, then ``rename(2)`` over the old one
   (SFTP ``posix-rename@openssh.com``), which is atomic;
5. run ``restart``; 6. health check (HTTP or TCP from the console, or a command on the
   host); 7. once every batch is done, keep the newest ``keep_releases`` releases.

A release that completed its steps gets a ``.fleetdeck-release`` marker; a later deploy
or rollback to that version only switches the symlink (rollback by symlink). A release
whose ``restart`` or health check failed on a host loses the marker there and gets a
``.fleetdeck-failed`` note (deploy id and reason), so the next deploy of that version
builds it again; ``force`` (``fleetdeck deploy --force``) builds any release again. When a
host fails, the deploy stops after that batch and, unless ``on_failure: stop``, every
host already switched goes back to its previous release and runs ``rollback_steps`` and
``restart``.

Timeouts, all in the target: ``connect_timeout`` (TCP, handshake, authentication, each
channel open), ``command_timeout`` (steps without their own), ``internal_timeout`` (the
driver's own ``mkdir``/``rm``/``tar``/``df``, the start of the SFTP session and each SFTP
operation), ``health_timeout`` (from restart to healthy). A **transient** failure of a
host (connection refused, reset or lost; a timeout of the driver's own commands or
transfers) is retried on that host (``retry.attempts`` tries in all, ``retry.backoff``
seconds doubling between them) with its connection opened again; a failing step or
health check is not transient.

Commands are argv lists; each element is quoted with ``shlex.quote`` and joined, so a
parameter holding shell metacharacters reaches the program as one literal argument.
Private keys and passphrases come from the console's encrypted secrets through
``reveal`` and are never logged. Every method blocks; the deploy service runs them on
its worker threads.
"""
from __future__ import annotations

import base64
import io
import logging
import posixpath
import select
import shlex
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paramiko

from console.deploy.apps import AppDefinition
from console.deploy.drivers.base import (CANCELLED, FAILED, ROLLED_BACK, SUCCEEDED, CancelToken, Cancelled,
                                         DeployOutcome, DeployRequest, DriverEvent, DriverUnavailable, Emit,
                                         GateFailed)
from console.deploy.drivers.probes import probe_http, probe_tcp
from console.deploy.inventory import HostEntry, Inventory
from console.deploy.known_hosts import fingerprint
from console.deploy.targets import PLACEHOLDER_RE, SshTarget, Step
from console.i18n import TextLines, list_separator, message_of, tx

log = logging.getLogger(__name__)

MARKER = ".fleetdeck-release"
FAILED_NOTE = ".fleetdeck-failed"  # a release that failed restart or its health check (why, which deploy)
MAX_LINES_PER_STEP = 2000  # further output lines are counted, not stored
KILL_GRACE_S = 5  # `timeout -k`: SIGKILL this long after SIGTERM
WAKE_S = 0.25  # longest sleep of a running command's reader between checks of cancel and deadline


TRANSIENT = ("connect", "timeout")  # HostFailed kinds retried on the same host


class HostFailed(Exception):
    """One host failed; ``kind``: connect | timeout (both transient: retried) | hostkey |
    auth | step | health | upload | disk | rollback | internal | canary (the canary
    analysis of the first batch failed)."""

    def __init__(self, host: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.host, self.kind = host, kind


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """A paramiko key from OpenSSH/PEM private key text (ed25519, ECDSA or RSA). Raises
    ValueError with a message that never contains key material."""
    last = ""
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase or None)
        except paramiko.PasswordRequiredException:
            raise ValueError("the private key is encrypted and no key_passphrase is configured") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
            last = type(exc).__name__
    raise ValueError(f"not a usable private key (ed25519, ECDSA or RSA; {last})")


@dataclass
class _HostState:
    host: HostEntry
    previous: str | None = None  # release name ``current`` pointed to before this deploy (pre-flight)
    switched: bool = False
    connect_ms: float | None = None


class ConnectionPool:
    """One SSH connection (and SFTP session) per host, opened on first use and reused
    until ``close()``. ``known_hosts``: ``[(hostname, key_type, key_base64)]``;
    ``reveal(secret_name) -> text``; ``timeout``: seconds for the connection's setup and
    each channel open (the target's ``connect_timeout``); ``io_timeout``: seconds for the
    SFTP handshake and each SFTP operation (``internal_timeout``)."""

    def __init__(self, known_hosts: list[tuple[str, str, str]], reveal: Callable[[str], str],
                 timeout: float, io_timeout: float) -> None:
        self._known = known_hosts
        self._reveal = reveal
        self._timeout = timeout
        self._io_timeout = io_timeout  # seconds an SFTP operation may wait on the host
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._sftp: dict[str, paramiko.SFTPClient] = {}
        self._keys: dict[tuple[str, str], paramiko.PKey] = {}
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}

    def _key(self, host: HostEntry) -> paramiko.PKey:
        if not host.key:
            raise HostFailed(host.name, "auth", tx("{host}: no SSH key configured (inventory key: SECRET_NAME)",
                                                    host=host.name))
        with self._lock:
            cached = self._keys.get((host.key, host.key_passphrase))
        if cached is not None:
            return cached
        try:
            text = self._reveal(host.key)
            passphrase = self._reveal(host.key_passphrase) if host.key_passphrase else None
            key = load_private_key(text, passphrase)
        except (ValueError, LookupError) as exc:  # SecretError is a ValueError
            raise HostFailed(host.name, "auth", tx("{host}: SSH key {key}: {error}", host=host.name,
                                                    key=repr(host.key), error=str(exc))) from None
        with self._lock:
            self._keys[(host.key, host.key_passphrase)] = key
        return key

    def client(self, host: HostEntry) -> tuple[paramiko.SSHClient, float | None]:
        """The host's open client and, when it was opened by this call, the setup time
        (TCP + key exchange + host key check + authentication) in ms. Raises HostFailed."""
        with self._lock:
            lock = self._host_locks.setdefault(host.name, threading.Lock())
        with lock:
            existing = self._clients.get(host.name)
            transport = existing.get_transport() if existing is not None else None
            if existing is not None and transport is not None and transport.is_active():
                return existing, None
            pkey = self._key(host)
            client = paramiko.SSHClient()
            keys = client.get_host_keys()
            for hostname, key_type, key_b64 in self._known:
                if hostname == host.known_hosts_name:  # only this host's pins: parsing every key per host is waste
                    keys.add(hostname, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            started = time.perf_counter()
            try:
                client.connect(host.address, port=host.port, username=host.user, pkey=pkey,
                               timeout=self._timeout, banner_timeout=self._timeout, auth_timeout=self._timeout,
                               allow_agent=False, look_for_keys=False)
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise HostFailed(host.name, "hostkey", tx(
                    "{host}: host key CHANGED for {name}: pinned {pinned}, offered {offered}. Refused; nothing was "
                    "run. If the change is expected: {command}", host=host.name, name=host.known_hosts_name,
                    pinned=fingerprint(exc.expected_key.get_base64()), offered=fingerprint(exc.key.get_base64()),
                    command=f"fleetdeck hosts trust {host.name} --replace")) from None
            except paramiko.AuthenticationException as exc:
                client.close()
                raise HostFailed(host.name, "auth", tx("{host}: authentication as {user} failed: {error}", host=host.name,
                                                         user=host.user, error=str(exc))) from None
            except paramiko.SSHException as exc:
                offered = self._offered(client)
                client.close()
                if "known_hosts" in str(exc):
                    raise HostFailed(host.name, "hostkey", tx(
                        "{host}: UNKNOWN host key for {name}{offered}. Refused; nothing was run. Pin it after "
                        "checking it: {command}", host=host.name, name=host.known_hosts_name, offered=offered,
                        command=f"fleetdeck hosts trust {host.name}")) from None
                raise HostFailed(host.name, "connect", tx("{host}: SSH error: {error}", host=host.name,
                                                            error=str(exc))) from None
            except (OSError, EOFError) as exc:
                client.close()
                raise HostFailed(host.name, "connect", tx("{host}: cannot connect to {address}: {error}", host=host.name,
                                                          address=f"{host.address}:{host.port}",
                                                          error=str(exc))) from None
            took = (time.perf_counter() - started) * 1000
            transport = client.get_transport()
            if transport is not None:  # connected above
                transport.set_keepalive(15)
            self._clients[host.name] = client
            self._sftp.pop(host.name, None)
            return client, took

    @staticmethod
    def _offered(client: paramiko.SSHClient) -> str:
        transport = client.get_transport()
        try:
            key = transport.get_remote_server_key() if transport is not None else None
        except paramiko.SSHException:
            key = None
        return f" (offered {key.get_name()} {fingerprint(key.get_base64())})" if key is not None else ""

    def sftp(self, host: HostEntry) -> paramiko.SFTPClient:
        """The host's SFTP session, opened on first use. The channel open is bounded by the
        connect timeout and the SFTP handshake and every later operation by ``io_timeout``
        (``client.open_sftp()`` waits on both without limit: paramiko's channel open
        defaults to an hour and its version exchange has no timeout, so a host whose SFTP
        server hung held the deploy until its own timeout). Raises HostFailed: ``timeout``
        (transient) when the host did not answer in time, ``connect`` for a lost connection."""
        client, _ = self.client(host)
        sftp = self._sftp.get(host.name)
        if sftp is None:
            transport = client.get_transport()
            try:
                if transport is None:  # closed since the pool handed it out
                    raise EOFError("the SSH connection is closed")
                channel = transport.open_session(timeout=self._timeout)
                channel.settimeout(self._io_timeout)
                channel.invoke_subsystem("sftp")
                sftp = self._sftp[host.name] = paramiko.SFTPClient(channel)
            except TimeoutError:
                raise HostFailed(host.name, "timeout", tx("{host}: the SFTP session did not start within {seconds} s "
                                                          "(internal_timeout)", host=host.name,
                                                          seconds=f"{self._io_timeout:g}")) from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise HostFailed(host.name, "connect", tx("{host}: cannot open SFTP: {error}", host=host.name,
                                                            error=str(exc))) from None
        return sftp

    def drop(self, host: HostEntry) -> None:
        """Close the host's connection (before a retry opens a new one)."""
        with self._lock:
            lock = self._host_locks.setdefault(host.name, threading.Lock())
        with lock:
            sftp, client = self._sftp.pop(host.name, None), self._clients.pop(host.name, None)
            for closable in (sftp, client):
                if closable is not None:
                    try:
                        closable.close()
                    except (OSError, EOFError, paramiko.SSHException) as exc:
                        log.debug("closing the connection to %s: %s", host.name, exc)

    def close(self) -> None:
        for sftp in self._sftp.values():
            sftp.close()
        for client in self._clients.values():
            client.close()
        self._sftp.clear()
        self._clients.clear()


def substitute(text: str, params: dict[str, str]) -> str:
    """``{name}`` placeholders replaced by ``params`` (validated at config time)."""
    return PLACEHOLDER_RE.sub(lambda m: params.get(m.group(1), m.group(0)), text)


def command_line(argv: list[str], cwd: str, timeout: float) -> str:
    """The one string SSH sends: ``cd CWD && exec timeout -k 5 SECONDS ARGV...``, every
    part quoted with ``shlex.quote`` (POSIX sh), so each argv element is one literal word."""
    limit = ["timeout", "-k", str(KILL_GRACE_S), f"{timeout:g}"]
    return f"cd {shlex.quote(cwd)} && exec {shlex.join(limit + list(argv))}"


class SshDriver:
    """Deploys one app to the hosts its target names (see the module docstring).

    ``inventory`` resolves host and group names; ``known_hosts()`` returns the pinned
    keys and ``reveal(secret_name)`` a secret's plaintext (both read the database on the
    caller's thread; the driver itself never touches it)."""

    def __init__(self, app: AppDefinition, inventory: Inventory,
                 known_hosts: Callable[[], list[tuple[str, str, str]]], reveal: Callable[[str], str]) -> None:
        self.app = app
        self.target = app.target_of(SshTarget)
        self.inventory = inventory
        self._known_hosts = known_hosts
        self._reveal = reveal

    def hosts(self) -> list[HostEntry]:
        return self.inventory.resolve(self.target.hosts)

    def pool(self) -> ConnectionPool:
        return ConnectionPool(self._known_hosts(), self._reveal, self.target.connect_timeout,
                              self.target.internal_timeout)

    # -- paths -------------------------------------------------------------------------------
    def base(self, host: HostEntry) -> str:
        """``deploy_to`` for ``host`` (it may hold ``{host}``)."""
        return substitute(self.target.deploy_to, {"host": host.name})

    def releases_dir(self, host: HostEntry) -> str:
        return posixpath.join(self.base(host), "releases")

    def current_link(self, host: HostEntry) -> str:
        return posixpath.join(self.base(host), "current")

    def release_dir(self, host: HostEntry, version: str) -> str:
        return posixpath.join(self.releases_dir(host), version)

    def params(self, host: HostEntry, version: str, previous: str | None) -> dict[str, str]:
        out = dict(self.target.vars)
        out.update(version=version, release_dir=self.release_dir(host, version), deploy_to=self.base(host),
                   previous_release=self.release_dir(host, previous) if previous else "", host=host.name,
                   current=self.current_link(host))
        return out

    # -- remote commands -----------------------------------------------------------------------
    def run(self, pool: ConnectionPool, host: HostEntry, argv: list[str], cwd: str, timeout: float,
            emit_line: Callable[[str, str], None], cancel: CancelToken | None = None) -> int:
        """Run ``argv`` in ``cwd`` on ``host``; stream its output lines to ``emit_line(stream,
        line)`` (stream ``stdout``/``stderr``); return the exit status (124 on timeout, as
        ``timeout`` reports it). Raises HostFailed when the connection breaks or the local
        deadline (``timeout`` + 10 s) passes, Cancelled when cancelled."""
        client, _ = pool.client(host)
        try:
            transport = client.get_transport()
            if transport is None:  # closed since the pool handed it out
                raise EOFError("the SSH connection is closed")
            chan = transport.open_session(timeout=self.target.connect_timeout)
            chan.exec_command(command_line(argv, cwd, timeout))
            chan.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostFailed(host.name, "connect", tx("{host}: {error}", host=host.name, error=str(exc))) from None
        deadline = time.monotonic() + timeout + KILL_GRACE_S + 5
        buffers = {"stdout": b"", "stderr": b""}
        counted = [0]

        def flush(stream: str, final: bool = False) -> None:
            *lines, rest = buffers[stream].split(b"\n")
            if final and rest:
                lines, rest = lines + [rest], b""
            buffers[stream] = rest
            for raw in lines:
                counted[0] += 1
                if counted[0] <= MAX_LINES_PER_STEP:
                    emit_line(stream, raw.decode("utf-8", "replace").rstrip("\r")[:2000])

        try:
            while True:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled(cancel.reason)
                if time.monotonic() > deadline:
                    raise HostFailed(host.name, "timeout", tx("{host}: no exit status within {seconds} s ({command})",
                                                              host=host.name, seconds=f"{timeout:g}",
                                                              command=shlex.join(argv)[:200]))
                # Wakes on output and on the channel's close (which follows the exit status); the
                # timeout only bounds how late a cancel or the deadline is noticed. A short one
                # made every host's thread spin 20 times a second during long commands.
                select.select([chan], [], [], WAKE_S)
                got = False
                while chan.recv_ready():
                    buffers["stdout"] += chan.recv(65536)
                    got = True
                while chan.recv_stderr_ready():
                    buffers["stderr"] += chan.recv_stderr(65536)
                    got = True
                if got:
                    flush("stdout")
                    flush("stderr")
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
            flush("stdout", True)
            flush("stderr", True)
            if counted[0] > MAX_LINES_PER_STEP:
                emit_line("stderr", f"({counted[0] - MAX_LINES_PER_STEP} more output lines not stored)")
            return chan.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostFailed(host.name, "connect", tx("{host}: connection lost: {error}", host=host.name,
                                                      error=str(exc))) from None
        finally:
            chan.close()

    # -- deploy ----------------------------------------------------------------------------------
    def deploy(self, request: DeployRequest, emit: Emit, cancel: CancelToken) -> DeployOutcome:
        hosts = self.hosts()
        batches = self.target.batches.split(hosts)
        if request.gate is not None:  # the canary hosts form the first batch, analysed before the rest
            canary = request.gate.size(len(hosts))
            batches = [hosts[:canary]] + self.target.batches.split(hosts[canary:])
        states = {h.name: _HostState(h) for h in hosts}
        pool = self.pool()
        failure: HostFailed | None = None
        cancelled: Cancelled | None = None
        try:
            emit(DriverEvent("log", tx("{hosts} host(s) in {batches} batch(es) ({type}), at most {parallel} at once",
                                       hosts=len(hosts), batches=len(batches), type=self.target.batches.type,
                                       parallel=self.target.max_parallel),
                             data={"hosts": [h.name for h in hosts], "batches": [[h.name for h in b] for b in batches]}))
            refused = self._preflight(pool, states, emit, cancel)
            if refused is not None:
                return refused
            for index, batch in enumerate(batches, 1):
                step = f"batch {index}/{len(batches)}"
                emit(DriverEvent("step", tx("{step}: {hosts}", step=step, hosts=", ".join(h.name for h in batch)),
                                 step=step, state="running",
                                 data={"hosts": [h.name for h in batch]}))
                errors = self._run_batch(batch, lambda h: self._retrying(
                    pool, h, emit, cancel, lambda: self._deploy_host(pool, states[h.name], request, emit, cancel)))
                cancelled = next((e for e in errors if isinstance(e, Cancelled)), None)
                failures = [e for e in errors if isinstance(e, HostFailed)]
                if cancelled or failures:
                    failure = failures[0] if failures else None
                    message = (TextLines([message_of(e) for e in failures], list_separator()) if failures
                               else message_of(cancelled) if cancelled else "")
                    emit(DriverEvent("step", tx("{step} failed: {error}", step=step, error=message), step=step,
                                     state="failed", level="error"))
                    break
                emit(DriverEvent("step", tx("{step}: done", step=step), step=step, state="succeeded"))
                if index == 1 and request.gate is not None:
                    try:
                        request.gate(emit, cancel, [h.name for h in hosts])
                    except GateFailed as exc:
                        failure = HostFailed(", ".join(h.name for h in batch), "canary", message_of(exc))
                        break
                    except Cancelled as exc:
                        cancelled = exc
                        break
                if cancel.cancelled:
                    cancelled = Cancelled(cancel.reason)
                    break
            if failure is None and cancelled is None:
                self._cleanup(pool, hosts, request, emit)
                return DeployOutcome(SUCCEEDED)
            return self._finish_failed(pool, states, request, emit, cancel, failure, cancelled)
        finally:
            pool.close()

    def _retrying(self, pool: ConnectionPool, host: HostEntry, emit: Emit, cancel: CancelToken,
                  work: Callable[[], Any]) -> Any:
        """``work()``, tried again on a transient HostFailed (kinds in TRANSIENT) over a new
        connection, up to ``retry.attempts`` tries with ``retry.backoff`` doubling."""
        retry = self.target.retry
        for attempt in range(1, retry.attempts + 1):
            try:
                return work()
            except HostFailed as exc:
                if exc.kind not in TRANSIENT or attempt == retry.attempts:
                    if exc.kind in TRANSIENT and attempt > 1:
                        raise HostFailed(exc.host, exc.kind, tx("{error} (after {tries} tries)", error=message_of(exc),
                                                                tries=attempt)) from None
                    raise
                delay = retry.backoff * 2 ** (attempt - 1)
                self._log(emit, host, tx("transient failure: {error}; trying again in {delay} s ({attempt}/{attempts})",
                                         error=message_of(exc), delay=f"{delay:g}", attempt=attempt + 1,
                                         attempts=retry.attempts), level="warning", attempt=attempt + 1)
                pool.drop(host)
                if cancel.wait(delay):
                    raise Cancelled(cancel.reason) from None
        raise AssertionError("unreachable")

    def _preflight(self, pool: ConnectionPool, states: dict[str, _HostState], emit: Emit,
                   cancel: CancelToken) -> DeployOutcome | None:
        """Check every host before any changes (see the module docstring); the outcome
        refusing the deploy, or None when all hosts passed."""
        hosts = [s.host for s in states.values()]
        need = self.target.min_free_disk_mb
        emit(DriverEvent("step", tx("pre-flight of {hosts} host(s): connection, host key, free disk >= {need} MiB",
                                    hosts=len(hosts), need=need), step="pre-flight", state="running"))
        errors = self._run_batch(hosts, lambda h: self._retrying(
            pool, h, emit, cancel, lambda: self._check_host(pool, states[h.name], emit)))
        cancelled = next((e for e in errors if isinstance(e, Cancelled)), None)
        if cancelled is not None:
            emit(DriverEvent("step", message_of(cancelled), step="pre-flight", state="failed", level="error"))
            return DeployOutcome(FAILED if cancel.kind == "timeout" else CANCELLED, str(cancelled))
        if errors:
            reasons = TextLines([message_of(e) for e in errors], list_separator())
            message = tx("pre-flight refused the deploy ({failed} of {hosts} host(s) failed); nothing was changed "
                         "on any host: {reasons}", failed=len(errors), hosts=len(hosts), reasons=reasons)
            emit(DriverEvent("step", message, step="pre-flight", state="failed", level="error",
                             data={"hosts": {e.host: str(e) for e in errors if isinstance(e, HostFailed)}}))
            return DeployOutcome(FAILED, message)
        emit(DriverEvent("step", tx("pre-flight: every host ready"), step="pre-flight", state="succeeded"))
        return None

    def _check_host(self, pool: ConnectionPool, state: _HostState, emit: Emit) -> None:
        host = state.host
        self._connect(pool, state, emit)
        state.previous = self._current(pool, host)
        if self.target.min_free_disk_mb <= 0:
            self._log(emit, host, tx("ready: current {release} (no disk check)", release=state.previous or "(none)"))
            return
        sftp = pool.sftp(host)
        path = self.base(host)
        while True:  # df needs an existing directory: deploy_to or its nearest existing parent
            try:
                sftp.stat(path)
                break
            except FileNotFoundError:
                if path == "/":
                    break
                path = posixpath.dirname(path)
            except (OSError, paramiko.SSHException) as exc:
                raise self._io_failure(host, tx("cannot stat {path}", path=path), exc) from None
        free_mb = self._free_mb(pool, host, path)
        if free_mb < self.target.min_free_disk_mb:
            raise HostFailed(host.name, "disk", tx("{host}: {free} MiB free on {path}, min_free_disk_mb is {need}",
                                                   host=host.name, free=free_mb, path=path,
                                                   need=self.target.min_free_disk_mb))
        self._log(emit, host, tx("ready: current {release}, {free} MiB free on {path}", release=state.previous or "(none)",
                                 free=free_mb, path=path),
                  free_mb=free_mb)

    def _free_mb(self, pool: ConnectionPool, host: HostEntry, path: str) -> int:
        """MiB available to the login user on ``path``'s filesystem: the SFTP extension
        ``statvfs@openssh.com`` (OpenSSH's PROTOCOL file, section 4.4: no remote process,
        paramiko sends it as it sends ``posix-rename@openssh.com``), else ``df -Pk``."""
        # paramiko's typing stubs leave out the request method its own posix_rename uses.
        request: Callable[..., tuple[int, Any]] | None = getattr(pool.sftp(host), "_request", None)
        try:
            kind, msg = request(paramiko.sftp.CMD_EXTENDED, "statvfs@openssh.com", path) if request else (0, None)
            if kind == paramiko.sftp.CMD_EXTENDED_REPLY and msg is not None:
                _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
                return frsize * bavail // (1024 * 1024)
        except TimeoutError as exc:
            raise self._io_failure(host, tx("reading the free space of {path}", path=path), exc) from None
        except (OSError, paramiko.SSHException) as exc:  # a server without the extension
            log.debug("%s: statvfs@openssh.com: %s; running df", host.name, exc)
        lines: list[str] = []
        code = self.run(pool, host, ["df", "-Pk", "--", path], "/", self.target.internal_timeout,
                        lambda stream, line: lines.append(line))
        fields = lines[-1].split() if code == 0 and len(lines) >= 2 else []
        if len(fields) < 4 or not fields[3].isdigit():
            raise HostFailed(host.name, "disk", tx("{host}: cannot read the free space of {path} (df exited with "
                                                   "{code}: {output})", host=host.name, path=path, code=code,
                                                   output=" | ".join(lines)[:200]))
        return int(fields[3]) // 1024

    @staticmethod
    def _io_failure(host: HostEntry, what: str, exc: BaseException) -> HostFailed:
        """A HostFailed for an SFTP error: ``timeout`` (transient) when the host did not
        answer within ``internal_timeout``, else ``upload``."""
        if isinstance(exc, TimeoutError):
            return HostFailed(host.name, "timeout", tx("{host}: {what}: no answer in time ({error})", host=host.name,
                                                       what=what, error=str(exc)))
        return HostFailed(host.name, "upload", tx("{host}: {what}: {error}", host=host.name, what=what, error=str(exc)))

    def _run_batch(self, batch: list[HostEntry], work: Callable[[HostEntry], None]) -> list[BaseException]:
        """Run ``work`` for every host of the batch, at most ``max_parallel`` at once; the
        exceptions raised (HostFailed, Cancelled), in host order."""
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max(1, min(self.target.max_parallel, len(batch))),
                                thread_name_prefix="ssh") as ex:
            futures = [ex.submit(work, h) for h in batch]
            for f in futures:
                exc = f.exception()
                if exc is not None:
                    if not isinstance(exc, (HostFailed, Cancelled)):
                        log.error("ssh deploy: unexpected error", exc_info=exc)
                        exc = HostFailed("?", "internal", f"internal error: {type(exc).__name__}: {exc}")
                    errors.append(exc)
        return errors

    def _log(self, emit: Emit, host: HostEntry, message: str, level: str = "info", **data: Any) -> None:
        emit(DriverEvent("log", tx("[{host}] {message}", host=host.name, message=message), level=level,
                         data=dict(data, host=host.name)))

    def _connect(self, pool: ConnectionPool, state: _HostState, emit: Emit) -> None:
        _, took = pool.client(state.host)
        if took is not None:
            state.connect_ms = took
            self._log(emit, state.host, tx("connected to {address} in {took} ms (host key pinned)",
                                           address=f"{state.host.user}@{state.host.address}:{state.host.port}",
                                           took=f"{took:.0f}"), connect_ms=round(took, 1))

    def _current(self, pool: ConnectionPool, host: HostEntry) -> str | None:
        """The release name ``current`` points to, or None."""
        try:
            target = pool.sftp(host).readlink(self.current_link(host))
        except TimeoutError as exc:
            raise self._io_failure(host, "reading current", exc) from None
        except (OSError, paramiko.SSHException):  # no link yet
            return None
        return posixpath.basename(target.rstrip("/")) if target else None

    def _is_complete(self, pool: ConnectionPool, host: HostEntry, version: str) -> bool:
        try:
            pool.sftp(host).stat(posixpath.join(self.release_dir(host, version), MARKER))
            return True
        except TimeoutError as exc:
            raise self._io_failure(host, "reading the release marker", exc) from None
        except OSError:
            return False

    def _failed_note(self, pool: ConnectionPool, host: HostEntry, version: str) -> str | None:
        """The ``.fleetdeck-failed`` note of a release (why an earlier deploy marked it
        failed), or None."""
        try:
            with pool.sftp(host).open(posixpath.join(self.release_dir(host, version), FAILED_NOTE)) as fh:
                return fh.read(2000).decode("utf-8", "replace").strip()
        except TimeoutError as exc:
            raise self._io_failure(host, "reading the failed note", exc) from None
        except OSError:
            return None

    def _mark_failed(self, pool: ConnectionPool, host: HostEntry, request: DeployRequest, why: str,
                     emit: Emit) -> None:
        """Take the release's completion marker away (the next deploy of this version builds
        it again) and leave a note saying why. Best effort: the host may be gone."""
        release = self.release_dir(host, request.version)
        try:
            sftp = pool.sftp(host)
            with sftp.open(posixpath.join(release, FAILED_NOTE), "w") as fh:
                fh.write(f"deploy {request.deploy_id}: {why}\n"[:2000])
            sftp.remove(posixpath.join(release, MARKER))
        except (HostFailed, OSError, paramiko.SSHException) as exc:
            self._log(emit, host, tx("cannot mark release {version} failed: {error}", version=request.version,
                                     error=message_of(exc)), level="warning")
            return
        self._log(emit, host, tx("release {version} marked failed; the next deploy of it builds it again",
                                 version=request.version),
                  level="warning")

    def _steps(self, pool: ConnectionPool, host: HostEntry, steps: tuple[Step, ...], params: dict[str, str],
               cwd: str, emit: Emit, cancel: CancelToken, what: str) -> None:
        for step in steps:
            if cancel.cancelled:
                raise Cancelled(cancel.reason)
            argv = [substitute(a, params) for a in step.argv]
            if step.script:
                argv = ["sh", self._upload_script(pool, host, step.script)] + [substitute(a, params) for a in step.args]
            self._log(emit, host, tx("{what} {step}: {command}", what=what, step=step.name, command=shlex.join(argv)),
                      step=step.name)
            started = time.monotonic()
            limit = step.timeout if step.timeout is not None else self.target.command_timeout
            code = self.run(pool, host, argv, cwd, limit,
                            lambda stream, line: self._log(emit, host, line, level="info" if stream == "stdout"
                                                           else "warning", stream=stream, step=step.name),
                            cancel)
            took = time.monotonic() - started
            if code != 0:
                if code in (124, 137):
                    raise HostFailed(host.name, "step", tx("{host}: {what} {step} timed out after {seconds} s",
                                                           host=host.name, what=what, step=repr(step.name),
                                                           seconds=f"{limit:g}"))
                raise HostFailed(host.name, "step", tx("{host}: {what} {step} exited with {code}", host=host.name,
                                                       what=what, step=repr(step.name), code=code))
            self._log(emit, host, tx("{what} {step} ok ({took} s)", what=what, step=step.name, took=f"{took:.1f}"),
                      step=step.name)

    def _upload_script(self, pool: ConnectionPool, host: HostEntry, script: str) -> str:
        remote_dir = posixpath.join(self.base(host), ".fleetdeck", "scripts")
        self._mkdir(pool, host, remote_dir)
        remote = posixpath.join(remote_dir, Path(script).name)
        try:
            pool.sftp(host).put(script, remote)
        except (OSError, paramiko.SSHException) as exc:
            raise self._io_failure(host, tx("cannot upload script {script}", script=script), exc) from None
        return remote

    def _internal(self, pool: ConnectionPool, host: HostEntry, argv: list[str],
                  emit_line: Callable[[str, str], None] | None = None) -> None:
        """One of the driver's own commands, limited by ``internal_timeout``: HostFailed
        ``timeout`` (transient) when it ran out of time, ``upload`` for another failure."""
        limit = self.target.internal_timeout
        code = self.run(pool, host, argv, "/", limit, emit_line or (lambda stream, line: None))
        if code in (124, 137):
            raise HostFailed(host.name, "timeout", tx("{host}: {command} timed out after {seconds} s (internal_timeout)",
                                                      host=host.name, command=argv[0], seconds=f"{limit:g}"))
        if code != 0:
            raise HostFailed(host.name, "upload", tx("{host}: {command} exited with {code}", host=host.name,
                                                     command=shlex.join(argv)[:200], code=code))

    def _mkdir(self, pool: ConnectionPool, host: HostEntry, path: str) -> None:
        """``mkdir -p`` over SFTP: no remote process (each costs a shell and a fork on the
        host, the larger part of a host's time when many deploy at once)."""
        sftp = pool.sftp(host)
        missing: list[str] = []
        probe = path
        while probe not in ("/", ""):
            try:
                if not stat.S_ISDIR(sftp.stat(probe).st_mode or 0):
                    raise HostFailed(host.name, "upload", tx("{host}: cannot create {path}: {probe} is not a directory",
                                                             host=host.name, path=path, probe=probe))
                break
            except FileNotFoundError:
                missing.append(probe)
                probe = posixpath.dirname(probe)
            except (OSError, paramiko.SSHException) as exc:
                raise self._io_failure(host, tx("cannot create {path}", path=path), exc) from None
        for directory in reversed(missing):
            try:
                sftp.mkdir(directory)
            except (OSError, paramiko.SSHException) as exc:
                if not self._is_dir(sftp, directory):  # else made meanwhile by a host sharing the path
                    raise self._io_failure(host, tx("cannot create {path}", path=directory), exc) from None

    @staticmethod
    def _is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
        try:
            return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
        except (OSError, paramiko.SSHException):
            return False

    def _exists(self, pool: ConnectionPool, host: HostEntry, path: str) -> bool:
        try:
            pool.sftp(host).lstat(path)
            return True
        except FileNotFoundError:
            return False
        except (OSError, paramiko.SSHException) as exc:
            raise self._io_failure(host, tx("cannot stat {path}", path=path), exc) from None

    def _deploy_host(self, pool: ConnectionPool, state: _HostState, request: DeployRequest, emit: Emit,
                     cancel: CancelToken) -> None:
        host, version = state.host, request.version
        if cancel.cancelled:
            raise Cancelled(cancel.reason)
        self._connect(pool, state, emit)
        live = self._current(pool, host)  # == version again when a retry follows a switch
        params = self.params(host, version, state.previous)
        if request.force:
            if live == version:
                self._log(emit, host, tx("force: rebuilding {version}, the live release, in place", version=version),
                          level="warning")
            else:
                self._log(emit, host, tx("force: building release {version} again", version=version))
            self._build_release(pool, state, request, params, emit, cancel)
        elif self._is_complete(pool, host, version):
            if live == version:
                self._log(emit, host, tx("{version} is already the current release; restarting it", version=version))
            else:
                self._log(emit, host, tx("release {version} is on the host already; switching to it", version=version))
        else:
            note = self._failed_note(pool, host, version)
            if note:
                self._log(emit, host, tx("release {version} was marked failed ({note}); building it again", version=version,
                                     note=note),
                          level="warning")
            self._build_release(pool, state, request, params, emit, cancel)
        if live != version:
            self._switch(pool, host, version, emit)
            state.switched = True
        try:
            if request.kind == "rollback":
                self._steps(pool, host, self.target.rollback_steps, params, self.current_link(host), emit, cancel,
                            "rollback step")
            self._steps(pool, host, self.target.restart, params, self.current_link(host), emit, cancel, "restart")
            self._health(pool, host, params, emit, cancel)
        except HostFailed as exc:
            if exc.kind in ("step", "health"):
                self._mark_failed(pool, host, request, str(exc), emit)
            raise

    def _build_release(self, pool: ConnectionPool, state: _HostState, request: DeployRequest,
                       params: dict[str, str], emit: Emit, cancel: CancelToken) -> None:
        host = state.host
        release = self.release_dir(host, request.version)
        # A directory without the marker is what an interrupted or failed deploy left: start over.
        if self._exists(pool, host, release):
            self._internal(pool, host, ["rm", "-rf", "--", release])
        self._mkdir(pool, host, release)
        if self.target.artifact:
            local = Path(substitute(self.target.artifact, {"version": request.version}))
            if not local.is_file():
                raise HostFailed(host.name, "upload", tx("artifact {file} not found on the console", file=str(local)))
            remote = posixpath.join(release, local.name)
            started = time.monotonic()
            try:
                pool.sftp(host).put(str(local), remote)
            except (OSError, paramiko.SSHException) as exc:
                raise self._io_failure(host, tx("upload of {file} failed", file=local.name), exc) from None
            size = local.stat().st_size
            self._log(emit, host, tx("uploaded {file} ({size} bytes) to {release}/ in {took} s", file=local.name,
                                     size=size, release=release, took=f"{time.monotonic() - started:.2f}"), bytes=size)
            if self.target.extract:
                self._internal(pool, host, ["tar", "-xf", remote, "-C", release],
                               lambda stream, line: self._log(emit, host, line, level="warning", stream=stream))
                try:
                    pool.sftp(host).remove(remote)
                except (OSError, paramiko.SSHException) as exc:
                    raise self._io_failure(host, tx("removing {file}", file=local.name), exc) from None
        self._steps(pool, host, self.target.steps, params, release, emit, cancel, "step")
        try:
            with pool.sftp(host).open(posixpath.join(release, MARKER), "w") as fh:
                fh.write(f"deploy {request.deploy_id} {request.version}\n")
        except (OSError, paramiko.SSHException) as exc:
            raise self._io_failure(host, "writing the release marker", exc) from None

    def _switch(self, pool: ConnectionPool, host: HostEntry, version: str, emit: Emit) -> None:
        """Point ``current`` at ``releases/<version>`` atomically: symlink beside, rename over."""
        sftp = pool.sftp(host)
        tmp = posixpath.join(self.base(host), f".current-{version}-{threading.get_ident()}")
        try:
            try:
                sftp.remove(tmp)
            except OSError:
                pass  # the usual case: no leftover
            sftp.symlink(posixpath.join("releases", version), tmp)
            sftp.posix_rename(tmp, self.current_link(host))
        except (OSError, paramiko.SSHException) as exc:
            raise HostFailed(host.name, "upload", tx("{host}: switching current to {version} failed: {error}",
                                                     host=host.name, version=version, error=str(exc))) from None
        self._log(emit, host, tx("current -> releases/{version}", version=version))

    # -- health ----------------------------------------------------------------------------------
    def _health(self, pool: ConnectionPool, host: HostEntry, params: dict[str, str], emit: Emit,
                cancel: CancelToken) -> None:
        hc = self.app.health_check
        if hc.type == "none":
            return
        started = time.monotonic()
        failures = 0
        while True:
            ok, detail = self._probe(pool, host, params)
            if ok:
                self._log(emit, host, tx("healthy ({detail})", detail=detail))
                return
            if time.monotonic() - started >= hc.start_period:
                failures += 1
                if failures >= hc.retries:
                    raise HostFailed(host.name, "health", tx("{host}: health check failed: {detail}", host=host.name,
                                                             detail=detail))
            if time.monotonic() - started >= self.target.health_timeout:
                raise HostFailed(host.name, "health", tx("{host}: not healthy within {seconds} s (health_timeout): "
                                                         "{detail}", host=host.name, detail=detail,
                                                         seconds=f"{self.target.health_timeout:g}"))
            if cancel.wait(hc.interval):
                raise Cancelled(cancel.reason)

    def _probe(self, pool: ConnectionPool, host: HostEntry, params: dict[str, str]) -> tuple[bool, str]:
        hc = self.app.health_check
        if hc.type == "command":
            argv = [substitute(a, params) for a in hc.command]
            lines: list[str] = []
            code = self.run(pool, host, argv, self.current_link(host), hc.timeout, lambda s, line: lines.append(line))
            tail = " | ".join(lines[-3:])[:300]
            return code == 0, f"{shlex.join(argv)} exited with {code}" + (f": {tail}" if tail else "")
        if hc.type == "tcp":
            return probe_tcp(host.address, hc.probe_port, hc.timeout)
        return probe_http(host.address, hc.probe_port, hc.path, hc.timeout, hc.expect_status)

    # -- failure, rollback, cleanup --------------------------------------------------------------
    def _finish_failed(self, pool: ConnectionPool, states: dict[str, _HostState], request: DeployRequest,
                       emit: Emit, cancel: CancelToken, failure: HostFailed | None,
                       cancelled: Cancelled | None) -> DeployOutcome:
        error = message_of(failure) if failure else message_of(cancelled) if cancelled else ""
        changed = [s for s in states.values() if s.switched]
        if self.target.batches.on_failure == "stop" and cancelled is None and failure is not None \
                and failure.kind != "canary":  # a failed canary is always undone
            emit(DriverEvent("log", tx("stopping: on_failure is stop, {count} host(s) left on {version}: {hosts}",
                                       count=len(changed), version=request.version,
                                       hosts=", ".join(s.host.name for s in changed) or "none"),
                             level="warning"))
            return DeployOutcome(FAILED, error)
        emit(DriverEvent("step", tx("rolling back {count} host(s) already switched", count=len(changed)), step="rollback",
                         state="running", data={"hosts": [s.host.name for s in changed]}))
        undo_errors = self._run_batch([s.host for s in changed],
                                      lambda h: self._rollback_host(pool, states[h.name], request, emit))
        if undo_errors:
            message = TextLines([message_of(e) for e in undo_errors], list_separator())
            emit(DriverEvent("step", tx("rollback incomplete: {error}", error=message), step="rollback", state="failed",
                             level="error"))
            return DeployOutcome(FAILED, tx("{reason}; rollback incomplete: {error}", reason=error, error=message))
        emit(DriverEvent("step", tx("previous releases serve again"), step="rollback", state="succeeded"))
        if cancelled is not None:
            return DeployOutcome(FAILED if cancel.kind == "timeout" else CANCELLED, error)
        if failure is not None and failure.kind in ("step", "health", "canary"):
            return DeployOutcome(ROLLED_BACK, error)
        return DeployOutcome(FAILED, error)

    def _rollback_host(self, pool: ConnectionPool, state: _HostState, request: DeployRequest, emit: Emit) -> None:
        host = state.host
        never = CancelToken()  # a rollback runs to its end even when the deploy was cancelled
        if state.previous is None:
            try:
                pool.sftp(host).remove(self.current_link(host))
            except OSError as exc:
                raise HostFailed(host.name, "rollback", tx("{host}: cannot remove current: {error}", host=host.name,
                                                              error=str(exc))) from None
            self._log(emit, host, tx("no previous release: current removed"), level="warning")
            return
        self._switch(pool, host, state.previous, emit)
        params = self.params(host, state.previous, request.version)
        self._steps(pool, host, self.target.rollback_steps, params, self.current_link(host), emit, never, "rollback step")
        self._steps(pool, host, self.target.restart, params, self.current_link(host), emit, never, "restart")
        self._log(emit, host, tx("rolled back to {release}", release=state.previous))

    def _cleanup(self, pool: ConnectionPool, hosts: list[HostEntry], request: DeployRequest, emit: Emit) -> None:
        keep = self.target.keep_releases
        emit(DriverEvent("step", tx("keeping the newest {keep} releases", keep=keep), step="cleanup", state="running"))
        errors = self._run_batch(hosts, lambda h: self._prune(pool, h, keep, emit))
        for exc in errors:
            emit(DriverEvent("log", tx("cleanup: {error}", error=message_of(exc)), level="warning"))
        emit(DriverEvent("step", tx("old releases removed"), step="cleanup", state="succeeded"))

    def _prune(self, pool: ConnectionPool, host: HostEntry, keep: int, emit: Emit) -> None:
        sftp = pool.sftp(host)
        entries = [e for e in sftp.listdir_attr(self.releases_dir(host)) if stat.S_ISDIR(e.st_mode or 0)]
        current = self._current(pool, host)
        entries.sort(key=lambda e: e.st_mtime or 0, reverse=True)
        kept = [e.filename for e in entries[:keep]]
        for e in entries[keep:]:
            if e.filename == current:
                continue
            self._internal(pool, host, ["rm", "-rf", "--", posixpath.join(self.releases_dir(host), e.filename)])
            self._log(emit, host, tx("removed old release {release}", release=e.filename))
        if current and current not in kept:
            self._log(emit, host, tx("kept the current release {release}", release=current))

    # -- the protocol's other methods --------------------------------------------------------------
    def recover(self, app: str, deploy_id: int, current_deploy_id: int | None, emit: Emit) -> int:
        """Nothing is left behind for a later cleanup: a failed deploy rolls back in place."""
        return 0

    def instances(self, app: str) -> list[dict]:
        """Per host: ``{"id", "name", "version" (current release), "deploy", "state", "health"}``;
        state ``up`` or ``unreachable: <why>``. Raises DriverUnavailable when no host answers."""
        hosts = self.hosts()
        pool = self.pool()
        out: list[dict] = []
        try:
            def look(host: HostEntry) -> dict:
                try:
                    version = self._current(pool, host)
                    return {"id": host.name, "name": host.name, "version": version, "deploy": None,
                            "state": "up", "health": None}
                except HostFailed as exc:
                    return {"id": host.name, "name": host.name, "version": None, "deploy": None,
                            "state": f"unreachable: {exc}", "health": None}

            with ThreadPoolExecutor(max(1, min(self.target.max_parallel, len(hosts) or 1))) as ex:
                out = list(ex.map(look, hosts))
        finally:
            pool.close()
        if out and all(i["state"] != "up" for i in out):
            raise DriverUnavailable("no host reachable: " + "; ".join(i["state"] for i in out)[:500])
        return out
