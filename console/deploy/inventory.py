"""The host inventory: the ``inventory:`` section of config.yaml, SSH hosts and groups.

```yaml
inventory:
  defaults: {user: deploy, port: 22, key: deploy-key}     # any host field
  hosts:
    web-1: {address: 10.0.0.11, labels: {role: web}}
    web-2: {address: 10.0.0.12, port: 2222, key: web-2-key, key_passphrase: web-2-pass}
  groups:
    web: [web-1, web-2]
```

``key`` and ``key_passphrase`` name secrets stored encrypted by the console
(``console/secrets.py``, kind ``ssh_key`` / ``generic``), never key material. A name an
app lists that is neither a host nor a group here is taken as a host the agents know by
that name: its address is the name itself, with the defaults applied. Parsing raises
ConfigError naming the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from console.config import ConfigError

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
ADDRESS_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[?[0-9A-Fa-f:]+\]?)$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
HOST_KEYS = ("address", "port", "user", "key", "key_passphrase", "labels")


@dataclass(frozen=True)
class HostEntry:
    """One SSH target. ``key``/``key_passphrase`` are secret names ('' = none)."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key: str = ""
    key_passphrase: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH's known_hosts uses: ``address`` on port 22, else ``[address]:port``."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class Inventory:
    hosts: dict[str, HostEntry]
    groups: dict[str, tuple[str, ...]]
    defaults: HostEntry

    def resolve(self, names: tuple[str, ...] | list[str]) -> list[HostEntry]:
        """Hosts for ``names`` (host or group names, in order, without duplicates). A name
        that is neither is a host the agents know: address = name, with the defaults."""
        out: dict[str, HostEntry] = {}
        for name in names:
            for host in self.groups.get(name, (name,)):
                if host not in out:
                    d = self.defaults
                    out[host] = self.hosts.get(host) or HostEntry(
                        name=host, address=host, port=d.port, user=d.user, key=d.key,
                        key_passphrase=d.key_passphrase, labels=d.labels)
        return list(out.values())

    def public(self) -> list[dict]:
        """The inventory for the API and CLI: no secret names' values (there are none here)."""
        return [{"name": h.name, "address": h.address, "port": h.port, "user": h.user, "key": h.key,
                 "labels": dict(h.labels),
                 "groups": sorted(g for g, members in self.groups.items() if h.name in members)}
                for h in sorted(self.hosts.values(), key=lambda h: h.name)]


def _host(path: str, name: str, raw: Any, base: HostEntry) -> HostEntry:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of {', '.join(HOST_KEYS)}")
    unknown = sorted(set(raw) - set(HOST_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(map(str, unknown))}")
    address = str(raw.get("address") or (name if name else base.address))
    if address and not ADDRESS_RE.fullmatch(address):
        raise ConfigError(f"{path}.address: {address!r} is not a host name or IP address")
    port = raw.get("port", base.port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{path}.port: expected 1-65535, got {port!r}")
    user = str(raw.get("user", base.user))
    if not USER_RE.fullmatch(user):
        raise ConfigError(f"{path}.user: {user!r} is not a user name")
    secrets = {}
    for key in ("key", "key_passphrase"):
        value = str(raw.get(key, getattr(base, key)) or "")
        if value and not SECRET_RE.fullmatch(value):
            raise ConfigError(f"{path}.{key}: {value!r} is not a secret name (the key itself is stored with "
                              "`fleetdeck secrets`, never in this file)")
        secrets[key] = value
    labels = raw.get("labels", dict(base.labels))
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{path}.labels: expected a mapping")
    return HostEntry(name=name, address=address.strip("[]"), port=port, user=user, key=secrets["key"],
                     key_passphrase=secrets["key_passphrase"],
                     labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())))


def parse_inventory(raw: Any) -> Inventory:
    """The ``inventory:`` section; raises ConfigError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("inventory: expected a mapping with hosts, groups and defaults")
    unknown = sorted(set(raw) - {"hosts", "groups", "defaults"})
    if unknown:
        raise ConfigError(f"inventory: unknown key(s) {', '.join(map(str, unknown))}")
    defaults = _host("inventory.defaults", "", raw.get("defaults"), HostEntry(name="", address=""))
    hosts_raw = raw.get("hosts") or {}
    if not isinstance(hosts_raw, Mapping):
        raise ConfigError("inventory.hosts: expected a mapping of host name to settings")
    hosts = {}
    for name, value in hosts_raw.items():
        if not isinstance(name, str) or not HOST_NAME_RE.fullmatch(name):
            raise ConfigError(f"inventory.hosts: {name!r} is not a host name")
        hosts[name] = _host(f"inventory.hosts.{name}", name, value, defaults)
    groups_raw = raw.get("groups") or {}
    if not isinstance(groups_raw, Mapping):
        raise ConfigError("inventory.groups: expected a mapping of group name to a list of host names")
    groups = {}
    for name, members in groups_raw.items():
        if not isinstance(name, str) or not HOST_NAME_RE.fullmatch(name) or name in hosts:
            raise ConfigError(f"inventory.groups: {name!r} is not a group name (or is also a host name)")
        if not isinstance(members, list) or not all(isinstance(m, str) and HOST_NAME_RE.fullmatch(m)
                                                    for m in members):
            raise ConfigError(f"inventory.groups.{name}: expected a list of host names")
        groups[name] = tuple(members)
    return Inventory(hosts=hosts, groups=groups, defaults=defaults)
