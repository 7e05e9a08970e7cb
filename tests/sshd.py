"""A real OpenSSH ``sshd`` on a free loopback port, with keys generated for each run.

Reusable by any test that needs an SSH target (the Ansible playbook test, the SSH
deploy driver)::

    with SshServer(tmp_path) as server:
        server.host, server.port, server.user       # "127.0.0.1", 4xxxx, "root"
        server.client_key                           # path of the client's private key (ed25519)
        server.known_hosts_line                     # "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
        server.known_hosts                          # path of a known_hosts file with that line
        server.ssh_args()                           # argv prefix for ``ssh`` pinned to this server

The server runs in the foreground of its own process (``sshd -D -e``) with its own config
file: ``ListenAddress 127.0.0.1``, one fresh ed25519 host key, public-key authentication
only (``PasswordAuthentication no``, ``UsePAM no``), ``StrictModes no`` so the per-run
files under a temporary directory are accepted. It logs in as the user running the tests
(root in CI), whose login shell must work. With ``clean_home=True`` the sessions get
``HOME=<workdir>/home`` (sshd's ``SetEnv``), an empty directory, so the login shell reads
no startup files of the real user's home (a benchmark's hosts should not pay for this
machine's ``~/.bashrc``). ``sftp_server`` replaces sshd's built-in SFTP server by that
program (``Subsystem sftp PROGRAM``), e.g. a wrapper making a host slow to answer.
:func:`sshd_unavailable` says why a server cannot be started
here (no binary), for ``need("ssh", ...)``.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/bin/sshd")
START_TIMEOUT = 15.0  # seconds until the port accepts connections


def sshd_binary() -> str | None:
    """Path of the sshd binary, or None."""
    for candidate in SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("sshd")


def sshd_unavailable() -> str | None:
    """Why no sshd can be started (a sentence), or None when it can."""
    if sshd_binary() is None:
        return "no sshd binary (Debian package openssh-server)"
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"no {tool} binary (Debian package openssh-client)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


class SshServer:
    """One sshd process. ``start()``/``stop()`` or use as a context manager.

    ``workdir``: an empty directory for keys, config, pid file and log (the caller's
    ``tmp_path``). Raises ``RuntimeError`` when sshd exits or does not listen within
    :data:`START_TIMEOUT` seconds; the message carries its log.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, user: str | None = None, dev_log: Path | None = None,
                 clean_home: bool = False, sftp_server: str | None = None) -> None:
        self.workdir = Path(workdir)
        # With dev_log (a datagram socket's path), sshd logs through syslog(3) as an
        # installed one does: it runs in a private mount namespace whose /dev is an
        # overlay of the real one with /dev/log bound to that socket (needs root);
        # nothing outside the namespace sees the change.
        self.dev_log = dev_log
        self.user = user or getpass.getuser()
        self.clean_home = clean_home
        self.sftp_server = sftp_server
        self.port = 0
        self.client_key = self.workdir / "client_ed25519"
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts_line = ""
        self.log_path = self.workdir / "sshd.log"
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "SshServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "SshServer":
        binary = sshd_binary()
        if binary is None:
            raise RuntimeError("no sshd binary")
        self.workdir.mkdir(parents=True, exist_ok=True)
        _keygen(self.host_key, "fleetdeck-test-host")
        _keygen(self.client_key, "fleetdeck-test-client")
        authorized = self.workdir / "authorized_keys"
        authorized.write_text((self.workdir / "client_ed25519.pub").read_text())
        # sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.workdir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {authorized}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            f"AllowUsers {self.user}",
            f"Subsystem sftp {self.sftp_server or 'internal-sftp'}",
            "LogLevel VERBOSE",
            *([f"SetEnv HOME={self.workdir / 'home'}"] if self.clean_home else []),
            "",
        ]))
        if self.clean_home:
            (self.workdir / "home").mkdir(exist_ok=True)
        host_pub = (self.workdir / "ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts_line = f"[{self.host}]:{self.port} {host_pub[0]} {host_pub[1]}"
        self.known_hosts.write_text(self.known_hosts_line + "\n")
        argv = [binary, "-D", "-e", "-f", str(config)]
        if self.dev_log is not None:
            for name in ("dev-upper", "dev-work"):
                (self.workdir / name).mkdir(exist_ok=True)
            script = "\n".join([
                "set -e",
                f"mount -t overlay overlay -o lowerdir=/dev,upperdir={self.workdir / 'dev-upper'},"
                f"workdir={self.workdir / 'dev-work'} /dev",
                "touch /dev/log",
                f"mount --bind {self.dev_log} /dev/log",
                f"exec {binary} -D -f {config}",
            ])
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(argv, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self._proc.returncode}: {self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.host}:{self.port} within {START_TIMEOUT}s: {self.log()}")

    def log(self) -> str:
        """The server's log so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ssh_args(self) -> list[str]:
        """``ssh`` argv prefix pinned to this server's host key (no TOFU), without the command."""
        return ["ssh", "-p", str(self.port), "-i", str(self.client_key),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", f"{self.user}@{self.host}"]

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None
