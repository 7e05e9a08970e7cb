"""``load_balancer:`` of a Docker app: the balancer Fleetdeck drives during its deploys
(pydantic models, validated like the rest of ``apps:``; options in config.yaml and
docs/deploys.md).

- ``type: haproxy``: HAProxy's runtime API (a ``stats socket ... level admin``); the
  app's containers are the servers ``PREFIX1`` … ``PREFIXn`` of ``backend`` (declare them
  with ``server-template PREFIX 1-n 127.0.0.1:1 disabled``), server ``PREFIXk`` holding the
  container of slot k-1.
- ``type: nginx``: an ``upstream`` block in a file of its own that Fleetdeck rewrites
  (``include`` it from nginx.conf), followed by a graceful reload.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from console.deploy.schema import Int, Seconds, Section, Strings, Text

HAPROXY_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # HAProxy proxy and server names
NGINX_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
HOST_RE = re.compile(r"[A-Za-z0-9.:\[\]-]{1,255}")


def _absolute(path: str) -> str:
    if not path.startswith("/") or "\n" in path:
        raise ValueError(f"expected an absolute path, got {path!r}")
    return path


class _Common(Section):
    port: Int | None = Field(None, ge=1, le=65535)  # container port traffic goes to; default health_check.port
    host: Text = ""  # address the balancer reaches published ports at; default the mapping's IP or 127.0.0.1
    drain_timeout: Seconds = Field(30.0, ge=0.0, le=3600.0)  # seconds to wait for open connections to end

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if host and not HOST_RE.fullmatch(host):
            raise ValueError(f"expected an IP address or host name, got {host!r}")
        return host


class HaproxyConfig(_Common):
    """HAProxy through its runtime API. ``socket``: the admin socket, a path (unix) or
    ``HOST:PORT`` (tcp). The servers of slot k-1 is ``BACKEND/PREFIXk``."""

    type: Literal["haproxy"]
    socket: Text
    backend: Text
    server_prefix: Text
    api_timeout: Seconds = Field(5.0, ge=0.1, le=300.0)  # seconds per runtime API command

    @field_validator("backend", "server_prefix")
    @classmethod
    def _name(cls, name: str) -> str:
        if not HAPROXY_NAME_RE.fullmatch(name):
            raise ValueError(f"expected an HAProxy name ({HAPROXY_NAME_RE.pattern}), got {name!r}")
        return name

    @field_validator("socket")
    @classmethod
    def _socket(cls, socket: str) -> str:
        if socket.startswith("/"):
            return socket
        host, _, port = socket.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected a unix socket path or HOST:PORT, got {socket!r}")
        return socket


class NginxConfig(_Common):
    """nginx: Fleetdeck owns ``upstream_file``, which holds ``upstream UPSTREAM { … }``;
    after each change it sends SIGHUP to the master process named by ``pid_file`` (or
    runs ``reload_command``) and waits for the old worker processes to exit."""

    type: Literal["nginx"]
    upstream_file: Text
    upstream: Text
    pid_file: Text = "/run/nginx.pid"
    reload_command: Strings = ()  # argv, e.g. [nginx, -s, reload]; default: SIGHUP to the master
    reload_timeout: Seconds = Field(10.0, ge=0.1, le=600.0)  # seconds for new workers to take over

    @field_validator("upstream_file", "pid_file")
    @classmethod
    def _path(cls, path: str) -> str:
        return _absolute(path)

    @field_validator("upstream")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NGINX_NAME_RE.fullmatch(name):
            raise ValueError(f"expected an upstream name ({NGINX_NAME_RE.pattern}), got {name!r}")
        return name


LoadBalancer = Annotated[HaproxyConfig | NginxConfig, Field(discriminator="type")]
