"""``load_balancer:`` of a Docker app: the balancer Fleetdeck drives during its deploys
(a pydantic model validated like the rest of ``apps:``; options in config.yaml and
docs/deploys.md).

- ``type: haproxy``: HAProxy's runtime API (a ``stats socket ... level admin``); the
  app's containers are the servers ``PREFIX1`` … ``PREFIXn`` of ``backend`` (declare them
  with ``server-template PREFIX 1-n 127.0.0.1:1 disabled``), server ``PREFIXk`` holding the
  container of slot k-1.
- ``type: nginx``: an ``upstream`` block in a file of its own that Fleetdeck rewrites
  (``include`` it from nginx.conf), followed by a graceful reload.

Keys of the other type are refused, as are unknown ones.
"""
from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import Field, ValidationInfo, field_validator, model_validator

from console.config import ConfigError
from console.i18n import tx
from console.deploy.schema import Int, Seconds, Section, Strings, Text

BalancerType = Literal["haproxy", "nginx"]
BALANCER_TYPES: tuple[str, ...] = get_args(BalancerType)
HAPROXY_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # HAProxy proxy and server names
NGINX_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
HOST_RE = re.compile(r"[A-Za-z0-9.:\[\]-]{1,255}")
NAMES = {"backend": (HAPROXY_NAME_RE, "an HAProxy name"), "server_prefix": (HAPROXY_NAME_RE, "an HAProxy name"),
         "upstream": (NGINX_NAME_RE, "an nginx upstream name")}
# Keys of one type only, and those it requires.
TYPE_KEYS = {"haproxy": ("socket", "backend", "server_prefix", "api_timeout"),
             "nginx": ("upstream_file", "upstream", "pid_file", "reload_command", "reload_timeout")}
REQUIRED = {"haproxy": ("socket", "backend", "server_prefix"), "nginx": ("upstream_file", "upstream")}


class LoadBalancer(Section):
    """The balancer of one app. Times in seconds."""

    type: BalancerType
    port: Int | None = Field(None, ge=1, le=65535)  # container port traffic goes to; default health_check.port
    host: Text = ""  # address the balancer reaches published ports at; default the mapping's IP or 127.0.0.1
    drain_timeout: Seconds = Field(30.0, ge=0.0, le=3600.0)  # to wait for open connections to end
    # haproxy: the admin socket, a unix path or HOST:PORT; the servers BACKEND/PREFIXk
    socket: Text = ""
    backend: Text = ""
    server_prefix: Text = ""
    api_timeout: Seconds = Field(5.0, ge=0.1, le=300.0)  # per runtime API command
    # nginx: the file Fleetdeck owns, its upstream's name, the master's pid file
    upstream_file: Text = ""
    upstream: Text = ""
    pid_file: Text = "/run/nginx.pid"
    reload_command: Strings = ()  # argv, e.g. [nginx, -s, reload]; default: SIGHUP to the master
    reload_timeout: Seconds = Field(10.0, ge=0.1, le=600.0)  # for new workers to take over

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if host and not HOST_RE.fullmatch(host):
            raise ValueError(tx("expected an IP address or host name, got {host}", host=repr(host)))
        return host

    @field_validator("backend", "server_prefix", "upstream")
    @classmethod
    def _name(cls, name: str, info: ValidationInfo) -> str:
        pattern, what = NAMES[info.field_name or ""]
        if name and not pattern.fullmatch(name):
            raise ValueError(tx("expected {what} ({pattern}), got {name}",
                                what=what, pattern=pattern.pattern, name=repr(name)))
        return name

    @field_validator("upstream_file", "pid_file")
    @classmethod
    def _path(cls, path: str) -> str:
        if path and (not path.startswith("/") or "\n" in path):
            raise ValueError(tx("expected an absolute path, got {path}", path=repr(path)))
        return path

    @field_validator("socket")
    @classmethod
    def _socket(cls, socket: str) -> str:
        if not socket or socket.startswith("/"):
            return socket
        host, _, port = socket.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(tx("expected a unix socket path or HOST:PORT, got {socket}", socket=repr(socket)))
        return socket

    def summary(self) -> dict:
        """The public view in ``GET /api/v1/apps``: where traffic is steered."""
        if self.type == "haproxy":
            return {"type": self.type, "socket": self.socket, "backend": self.backend,
                    "server_prefix": self.server_prefix}
        return {"type": self.type, "upstream_file": self.upstream_file, "upstream": self.upstream}

    @model_validator(mode="after")
    def _keys_of_its_type(self) -> "LoadBalancer":
        for other, keys in TYPE_KEYS.items():
            foreign = [k for k in keys if other != self.type and k in self.model_fields_set]
            if foreign:
                raise ConfigError(tx("applies to type {other} only, this balancer is {type}", other=other, type=self.type),
                                  (foreign[0],))
        for key in REQUIRED[self.type]:
            if not getattr(self, key):
                raise ConfigError(tx("required for type {type}", type=self.type), (key,))
        return self
