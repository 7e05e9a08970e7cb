"""Real console and agent processes on loopback for the delivery tests."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from agents.spool import FRAME, META2
from tests.conftest import need
from tests.harness import http, wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETDECK_") and "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli_in_process(env: dict[str, str], *args: str) -> str:
    """``fleetdeck ARGS`` run by the command's own code (``console.cli.main``) in this
    process, with the ``FLEETDECK_*`` variables of ``env`` in place of this process's for
    the call; its stdout. For setup (a token for a console process) where a new process
    would cost a Python start and the console's imports (~3 s of CPU a call) and test
    nothing more. Raises AssertionError naming the exit code and stderr when it fails."""
    from unittest import mock

    from console.cli import main

    ours = {k: v for k, v in env.items() if k.startswith("FLEETDECK_")}
    kept = {k: v for k, v in os.environ.items() if not k.startswith("FLEETDECK_")}
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, {**kept, **ours}, clear=True), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    if code:
        raise AssertionError(f"fleetdeck {' '.join(args)} exited {code}: {err.getvalue()}")
    return out.getvalue()


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real tmpfs of ``size`` (``512k``) mounted on ``path`` for the block;
    ``need("tmpfs")`` when mounting is not permitted (not root, no CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        need("tmpfs", f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


class ConsoleProcess:
    """``python -m console.cli serve`` with its own data dir, on a fixed loopback port."""

    def __init__(self, data_dir: Path, port: int | None = None, args: tuple[str, ...] = (), **env: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = child_env(FLEETDECK_DATA_DIR=str(data_dir), FLEETDECK_LISTEN=f"127.0.0.1:{self.port}", **env)
        self.args = args  # more `serve` arguments (--workers 2)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConsoleProcess":
        self.starts += 1
        log = open(self.data_dir / f"console-{self.starts}.log", "wb")  # noqa: SIM115 - owned by the child
        # With arguments (--workers 2), a session of its own: kill9_group reaches the workers too.
        self.proc = subprocess.Popen([sys.executable, "-m", "console.cli", "serve", *self.args], env=self.env,
                                     cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=bool(self.args))
        log.close()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"console exited {self.proc.returncode}: "
                                     f"{(self.data_dir / f'console-{self.starts}.log').read_text()[-2000:]}")
            try:
                return http("GET", self.url + "/healthz", timeout=2).status == 200
            except OSError:
                return False

        wait_for(ready, 60, "the console to answer /healthz")
        return self

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def kill9_group(self) -> None:
        """SIGKILL the console and every process of its session (the workers) at once;
        for a console started with ``args`` (a session of its own)."""
        if self.proc and self.proc.poll() is None and self.args:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def worker_pids(self) -> list[int]:
        """The pids of the child processes of the console (``serve --workers``'s workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return sorted(int(pid) for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children")
                      for pid in task.read_text().split())

    def _served(self) -> dict[str, int]:
        """Socket inode -> client port of the connections accepted on the console's port
        (/proc/net/tcp: local port, remote port, inode; established ones, state 01)."""
        out = {}
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == self.port and fields[3] == "01":
                out[fields[9]] = int(fields[2].split(":")[1], 16)
        return out

    def _socket_inodes(self, pid: int) -> set[str]:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        return inodes

    def worker_serving(self, client_port: int) -> int | None:
        """The pid of the worker holding the server side of the loopback connection from
        ``client_port`` (/proc/net/tcp names the socket's inode, /proc/PID/fd its owner)."""
        inodes = {inode for inode, port in self._served().items() if port == client_port}
        for pid in self.worker_pids():
            if inodes & self._socket_inodes(pid):
                return pid
        return None

    def connections_of(self, pid: int) -> int:
        """Connections to the console's port that worker ``pid`` has accepted and holds."""
        return len(set(self._served()) & self._socket_inodes(pid))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def agent_token(self, host: str) -> str:
        """A new agent token for ``host``: ``fleetdeck token create --agent HOST`` run in
        this process (:func:`cli_in_process`), as setup, not as what a test looks at."""
        return self._new_token("--agent", host)

    def api_token(self, name: str, role: str) -> str:
        """A new API token ``name`` with ``role``: ``fleetdeck token create --name NAME
        --role ROLE`` run in this process (:func:`cli_in_process`), as setup."""
        return self._new_token("--name", name, "--role", role)

    def _new_token(self, *args: str) -> str:
        """The token ``fleetdeck token create ARGS`` prints on its last line."""
        return cli_in_process(self.env, "token", "create", *args).strip().splitlines()[-1]

    def cli(self, *args: str) -> str:
        """Run ``fleetdeck ARGS`` against this console's data dir; its stdout."""
        out = subprocess.run([sys.executable, "-m", "console.cli", *args], env=self.env, cwd=REPO,
                             capture_output=True, text=True, timeout=120, check=True)
        return out.stdout

    def revoke_agent_tokens(self, host: str) -> int:
        """Revoke every active agent token of ``host``; how many were revoked."""
        tokens = json.loads(self.cli("token", "list", "--json"))
        ids = [t["id"] for t in tokens if t["kind"] == "agent" and t["host"] == host and not t["revoked_at"]]
        for token_id in ids:
            self.cli("token", "revoke", str(token_id))
        return len(ids)

    def line_counts(self, host: str, source: str) -> dict[str, int]:
        """line -> how many log records of ``host`` from ``source`` carry it."""
        rows = self.sql("SELECT l.line, COUNT(*) FROM log_records l JOIN hosts h ON h.id = l.host_id "
                        "WHERE h.name = ? AND l.source = ? GROUP BY l.line", host, source)
        return dict(rows)

    def sql(self, query: str, *args) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "fleetdeck.db", timeout=30) as conn:
            return conn.execute(query, args).fetchall()

    def seq_counts(self, host: str) -> dict[int, int]:
        """seq -> how many log records carry it, for ``host``."""
        rows = self.sql("SELECT l.line, COUNT(*) FROM log_records l JOIN hosts h ON h.id = l.host_id "
                        "WHERE h.name = ? AND l.source = 'seq' GROUP BY l.line", host)
        return {int(line.split("=", 1)[1]): n for line, n in rows}

    def seq_samples(self, host: str) -> list[int]:
        rows = self.sql("SELECT s.value FROM samples s JOIN series r ON r.id = s.series_id "
                        "JOIN hosts h ON h.id = r.host_id WHERE h.name = ? AND r.name = 'fleetdeck_test_seq'", host)
        return sorted(int(v) for (v,) in rows)

    def last_value(self, host: str, metric: str, **labels: str) -> float | None:
        rows = self.sql("SELECT r.labels, s.value FROM samples s JOIN series r ON r.id = s.series_id "
                        "JOIN hosts h ON h.id = r.host_id WHERE h.name = ? AND r.name = ? ORDER BY s.ts", host, metric)
        values = [v for lj, v in rows if all(f'"{k}":"{w}"' in lj for k, w in labels.items())]
        return values[-1] if values else None


class AgentProcess:
    """``python -m tests.integration.seq_agent`` with its own state dir."""

    def __init__(self, state_dir: Path, console_url: str, token: str, host: str, **settings) -> None:
        self.state_dir = state_dir
        self.host = host
        state_dir.mkdir(parents=True, exist_ok=True)
        self.config = state_dir / "agent.yaml"
        self.config.write_text(yaml.safe_dump({"agent": {
            "console_url": console_url, "token": token, "host": host, "state_dir": str(state_dir),
            "interval": 0.2, "timeout": 5, "retry_min_backoff": 0.05, "retry_max_backoff": 0.5,
            "drain_rate": 50, "collectors": ["host"], **settings}}))
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> "AgentProcess":
        self.runs += 1
        self.log_path = self.state_dir / f"agent-{self.runs}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.seq_agent", str(self.config)],
                                     env=child_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: "spool torn=" in self.output(), 60, "the agent to open its spool")
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def startup_stats(self) -> dict[str, int]:
        line = next(l for l in self.output().splitlines() if l.startswith("spool torn="))
        return {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> str:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        assert self.proc.returncode in (0, -signal.SIGKILL), self.output()[-3000:]
        return self.output()

    def pause(self, paused: bool = True) -> None:
        flag = self.state_dir / "pause"
        if paused:
            flag.touch()
        elif flag.exists():
            flag.unlink()

    def durable(self) -> dict[int, int]:
        """seq -> samples of every batch the agent reported durably spooled."""
        path = self.state_dir / "durable.log"
        out = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            parts = line.split()
            if len(parts) == 2:  # a line cut by kill -9 is incomplete, never wrong
                out[int(parts[0])] = int(parts[1])
        return out

    def reserved(self) -> int:
        path = self.state_dir / "seq_next"
        return int(path.read_text() or 1) - 1 if path.exists() else 0

    def tear_last_record(self, cut: int = 5) -> int | None:
        """Cut ``cut`` bytes off the spool's newest record, as a power loss mid-write would;
        returns the test sequence number of its batch (None when the spool is empty)."""
        spool = self.state_dir / "spool"
        segments = sorted(p for p in spool.iterdir() if p.suffix == ".seg2")
        for path in reversed(segments):
            data = path.read_bytes()
            offset, last = 0, None
            while offset + FRAME.size <= len(data):
                length, _ = FRAME.unpack_from(data, offset)
                if offset + FRAME.size + length > len(data):
                    break
                last = (offset, FRAME.size + length)
                offset += FRAME.size + length
            if last is not None:
                ext_len = META2.unpack_from(data, last[0] + FRAME.size)[4]
                payload = data[last[0] + FRAME.size + META2.size + ext_len:last[0] + last[1]]
                os.truncate(path, last[0] + last[1] - cut)
                return json.loads(gzip.decompress(payload))["_seq"]
        return None


__all__ = ["AgentProcess", "ConsoleProcess", "META2", "free_port", "wait_for"]
