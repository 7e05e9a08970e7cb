"""``database_read_url`` against a real streaming replica of the test PostgreSQL (a second
cluster made with ``pg_basebackup -R`` in a per-test directory on a free port): queries
are served by the replica, authentication reads the primary, and while the replica is
down queries fall back to the primary and return to the replica after it is back."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from tests.conftest import need
from tests.harness import ConsoleHarness, wait_for
from tests.integration.procs import free_port

PRIMARY_SOCKET = "/var/run/postgresql"


def pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        need("postgres", f"no PostgreSQL server binaries ({name}) under /usr/lib/postgresql")
    return str(found[-1])


def as_postgres(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{args[0]} failed: {done.stderr.strip()[-1000:]}")
    return done.stdout


class Replica:
    """A hot standby of the local primary (reached over its unix socket as ``postgres``)."""

    def __init__(self, primary_url: str) -> None:
        # The primary is the suite's own server on this machine, reached as the postgres
        # superuser over its unix socket (peer authentication, replication allowed).
        self.primary_port = str(urllib.parse.urlsplit(primary_url).port or 5432)
        if not Path(PRIMARY_SOCKET, f".s.PGSQL.{self.primary_port}").exists():
            need("postgres", f"the test PostgreSQL has no local socket in {PRIMARY_SOCKET} to copy a replica from")
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            need("postgres", "no postgres system user to run a replica cluster as")
        if os.geteuid() != 0:
            need("postgres", "starting a replica cluster needs root (to run it as the postgres user)")
        self.dir = Path(tempfile.mkdtemp(prefix="fleetdeck-replica-"))
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.data, self.port = self.dir / "data", free_port()
        try:
            as_postgres(pg_bin("pg_basebackup"), "-h", PRIMARY_SOCKET, "-p", self.primary_port, "-U", "postgres",
                        "-D", str(self.data), "-R", "-X", "stream", "-c", "fast")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        # Debian keeps the primary's configuration in /etc: the copy gets its own, with the
        # primary's max_connections (a hot standby refuses to run with fewer).
        connections = as_postgres("psql", "-h", PRIMARY_SOCKET, "-p", self.primary_port, "-Atc", "SHOW max_connections").strip()
        for name, body in (("postgresql.conf", f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                            f"unix_socket_directories = '{self.dir}'\nhot_standby = on\nmax_connections = {connections}\n"
                            "shared_buffers = 16MB\n"),
                           ("pg_hba.conf", "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n"),
                           ("pg_ident.conf", "")):
            (self.data / name).write_text(body)
            os.chown(self.data / name, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        try:
            as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "start")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(self.dir / 'server.log').read_text()[-2000:]}") from None

    def stop(self) -> None:
        as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def sql(self, statement: str) -> str:
        return as_postgres("psql", "-h", str(self.dir), "-p", str(self.port), "-Atc", statement, "postgres").strip()

    def url(self, primary_url: str) -> str:
        parts = urllib.parse.urlsplit(primary_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    def remove(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", pg_bin("pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def replica(postgres_url):
    standby = Replica(postgres_url)
    try:
        standby.start()
        yield standby
    finally:
        standby.remove()


def test_queries_use_the_replica_and_fall_back_to_the_primary_while_it_is_down(tmp_path, postgres_url, replica):
    console = ConsoleHarness(tmp_path / "console", database_url=postgres_url,
                             database_read_url=replica.url(postgres_url)).start()
    try:
        host = "replica-" + uuid.uuid4().hex[:8]
        agent = console.agent_token(host)
        base = int(time.time() * 1000)

        def push(value: float) -> None:
            status, body = console.push(host, agent, [{"name": "replica_probe", "labels": {},
                                                       "points": [[base + int(value), value]]}])
            assert status == 200, body

        def latest(token: str) -> float | None:
            resp = console.request("GET", "/prometheus/api/v1/query?" + urllib.parse.urlencode(
                {"query": "replica_probe", "time": (base + 1000) / 1000}), token=token)
            assert resp.status == 200, resp.body[:300]
            result = json.loads(resp.body)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        viewer = console.api_token("viewer")
        push(1)
        wait_for(lambda: latest(viewer) == 1.0, 10, "the replica to replay the first sample")

        replica.sql("SELECT pg_wal_replay_pause()")
        push(2)
        # A token made after the pause: authentication reads the primary, the query the replica.
        fresh = console.api_token("viewer", "after-pause")
        assert latest(fresh) == 1.0
        replica.sql("SELECT pg_wal_replay_resume()")
        wait_for(lambda: latest(fresh) == 2.0, 10, "the replica to replay the second sample")

        replica.stop()
        push(3)
        assert latest(fresh) == 3.0  # answered by the primary at once

        replica.start()
        replica.sql("SELECT pg_wal_replay_pause()")
        push(4)
        assert latest(fresh) == 4.0  # still on the primary until the retry delay passes
        wait_for(lambda: latest(fresh) in (2.0, 3.0), 15, "queries to go back to the replica")
    finally:
        console.close()
