"""Network health probes shared by the deploy drivers (run on the console, off the IOLoop)."""
from __future__ import annotations

import http.client
import socket


def probe_tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """(True, detail) when ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"tcp {host}:{port} accepts connections"
    except OSError as exc:
        return False, f"tcp {host}:{port}: {exc.strerror or exc}"


def probe_http(host: str, port: int, path: str, timeout: float,
               expect_status: tuple[int, int]) -> tuple[bool, str]:
    """``GET http://host:port/path`` directly (never through a proxy); healthy when the
    status is within ``expect_status`` (inclusive low, high). Returns (ok, detail)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "fleetdeck-health-check"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET http://{host}:{port}{path}: {getattr(exc, 'strerror', None) or exc}"
    finally:
        conn.close()
    low, high = expect_status
    return low <= status <= high, f"GET http://{host}:{port}{path} -> {status}"
