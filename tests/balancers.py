"""Real HAProxy and nginx (Debian's /usr/sbin binaries) on loopback with per-run config
directories, and a client that sends requests through them without pause, counting what
failed. Retries are off in both (``retries 0``, ``proxy_next_upstream off``) so that a
request sent to a container that is stopped or not serving yet fails instead of being
quietly retried on another one: a count of 0 failed requests then means the balancer
never sent one there."""
from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import need

HAPROXY, NGINX = "/usr/sbin/haproxy", "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}: {log.read_text()[-2000:]}")


class Haproxy:
    """``haproxy -db`` with backend ``app`` of ``slots`` template servers ``srv1..srvN``
    (all in maintenance until Fleetdeck sets them ready), its admin socket at ``socket``."""

    def __init__(self, root: Path, slots: int) -> None:
        if not Path(HAPROXY).exists():
            need("haproxy", f"no {HAPROXY}")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.socket = str(root / "admin.sock")
        self.log = root / "haproxy.log"
        (root / "haproxy.cfg").write_text(f"""global
    stats socket {self.socket} mode 600 level admin
    nbthread 1
defaults
    mode http
    retries 0
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend app
backend app
    balance roundrobin
    server-template srv 1-{slots} 127.0.0.1:1 disabled
""")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(root / "haproxy.cfg")], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_port(self.port, self.proc, self.log, "haproxy")
        except RuntimeError as exc:
            self.close()
            need("haproxy", str(exc))

    def config(self, **extra) -> dict:
        return {"type": "haproxy", "socket": self.socket, "backend": "app", "server_prefix": "srv", **extra}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Nginx:
    """``nginx -g 'daemon off;'`` proxying to upstream ``app``, included from ``upstream_file``
    (a placeholder until Fleetdeck writes it)."""

    def __init__(self, root: Path) -> None:
        if not Path(NGINX).exists():
            need("nginx", f"no {NGINX}")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.upstream_file = root / "upstream.conf"
        self.pid_file = root / "nginx.pid"
        self.log = root / "error.log"
        self.upstream_file.write_text("upstream app {\n    server 127.0.0.1:1 down;\n}\n")
        temp = "\n".join(f"    {kind}_temp_path {root}/{kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (root / "nginx.conf").write_text(f"""worker_processes 1;
pid {self.pid_file};
error_log {self.log} notice;
events {{ worker_connections 512; }}
http {{
    access_log off;
{temp}
    include {self.upstream_file};
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://app;
            proxy_next_upstream off;
            proxy_connect_timeout 2s;
        }}
    }}
}}
""")
        with open(root / "stderr.log", "wb") as out:
            self.proc = subprocess.Popen([NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(self.log),
                                          "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            _wait_port(self.port, self.proc, root / "stderr.log", "nginx")
        except RuntimeError as exc:
            self.close()
            need("nginx", str(exc))

    def config(self, **extra) -> dict:
        return {"type": "nginx", "upstream_file": str(self.upstream_file), "upstream": "app",
                "pid_file": str(self.pid_file), **extra}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.root / "proxy", ignore_errors=True)


def get(port: int, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of ``GET /`` on a new connection; status 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace").strip()
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


class Client(threading.Thread):
    """Sends ``GET /`` through the balancer on ``port`` back to back until stopped;
    ``failures`` holds (time, status, body) of every answer that was not a 200."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failures: list[tuple[float, int, str]] = []
        self.bodies: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            status, body = get(self.port)
            if status == 200:
                self.ok += 1
                self.bodies[body] = self.bodies.get(body, 0) + 1
            else:
                self.failures.append((time.time(), status, body[:200]))

    def stop(self) -> "Client":
        self._halt.set()
        self.join(10)
        return self
