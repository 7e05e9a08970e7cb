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
from typing import Annotated, Any, Mapping

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from console.i18n import tx
from console.deploy.schema import Int, Section, SourceOf, Text, parse_section

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
ADDRESS_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[?[0-9A-Fa-f:]+\]?)$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
HOST_KEYS = ("address", "port", "user", "key", "key_passphrase", "labels")


def _host_name(name: Any) -> str:
    if not isinstance(name, str) or not HOST_NAME_RE.fullmatch(name):
        raise ValueError(tx("{name} is not a host name", name=repr(name)))
    return name


def _labels(value: Any) -> Any:
    if isinstance(value, tuple):
        return value  # already pairs (a HostEntry built from another)
    if not isinstance(value, Mapping):
        raise ValueError(tx("expected a mapping, got {value}", value=repr(value)))
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


HostName = Annotated[str, AfterValidator(_host_name)]


class HostEntry(Section):
    """One SSH target. ``key``/``key_passphrase`` are secret names ('' = none); in the
    file, a host's unset fields come from ``inventory.defaults`` and its address is its
    name."""

    name: str = ""
    address: Text = ""
    port: Int = Field(22, ge=1, le=65535)
    user: Text = "root"
    key: Text = ""
    key_passphrase: Text = ""
    labels: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_labels)] = ()

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        if address and not ADDRESS_RE.fullmatch(address):
            raise ValueError(tx("{address} is not a host name or IP address", address=repr(address)))
        return address.strip("[]")

    @field_validator("user")
    @classmethod
    def _user(cls, user: str) -> str:
        if not USER_RE.fullmatch(user):
            raise ValueError(tx("{user} is not a user name", user=repr(user)))
        return user

    @field_validator("key", "key_passphrase")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and not SECRET_RE.fullmatch(value):
            raise ValueError(tx("{value} is not a secret name (the key itself is stored with `fleetdeck secrets`, "
                                "never in this file)", value=repr(value)))
        return value

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH's known_hosts uses: ``address`` on port 22, else ``[address]:port``."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


class Inventory(Section):
    """``hosts`` by name, ``groups`` of host names, and the ``defaults`` every host and
    every name outside the inventory takes."""

    defaults: HostEntry = HostEntry()
    hosts: dict[HostName, HostEntry] = {}
    groups: dict[HostName, tuple[HostName, ...]] = {}

    @field_validator("hosts", mode="before")
    @classmethod
    def _inherit(cls, hosts: Any, info: ValidationInfo) -> Any:
        """Each host's unset fields from the defaults; its name; its address = its name."""
        if not isinstance(hosts, Mapping):
            return hosts
        d = info.data.get("defaults") or HostEntry()
        base = {"port": d.port, "user": d.user, "key": d.key, "key_passphrase": d.key_passphrase,
                "labels": dict(d.labels)}
        out = {}
        for name, raw in hosts.items():
            raw = {} if raw is None else raw
            if isinstance(raw, Mapping):
                given = {k: v for k, v in raw.items() if v is not None}
                if "name" in given:
                    raise ValueError(tx("{name}.name: unknown key (a host's name is its key)", name=name))
                raw = {**base, **given, "name": name, "address": given.get("address") or name}
            out[name] = raw
        return out

    @field_validator("defaults", mode="before")
    @classmethod
    def _nameless(cls, defaults: Any) -> Any:
        if isinstance(defaults, Mapping) and "name" in defaults:
            raise ValueError(tx("name: unknown key (defaults apply to every host)"))
        return defaults

    @field_validator("groups")
    @classmethod
    def _not_hosts(cls, groups: dict[str, tuple[str, ...]], info: ValidationInfo) -> dict[str, tuple[str, ...]]:
        for name in groups:
            if name in (info.data.get("hosts") or {}):
                raise ValueError(tx("{name} is not a group name (or is also a host name)", name=repr(name)))
        return groups

    def resolve(self, names: tuple[str, ...] | list[str]) -> list[HostEntry]:
        """Hosts for ``names`` (host or group names, in order, without duplicates). A name
        that is neither is a host the agents know: address = name, with the defaults."""
        out: dict[str, HostEntry] = {}
        for name in names:
            for host in self.groups.get(name, (name,)):
                if host not in out:
                    d = self.defaults
                    # Not validated: any name the agents report is a valid target here.
                    out[host] = self.hosts.get(host) or HostEntry.model_construct(
                        name=host, address=host, port=d.port, user=d.user, key=d.key,
                        key_passphrase=d.key_passphrase, labels=d.labels)
        return list(out.values())

    def public(self) -> list[dict]:
        """The inventory for the API and CLI: no secret names' values (there are none here)."""
        return [{"name": h.name, "address": h.address, "port": h.port, "user": h.user, "key": h.key,
                 "labels": dict(h.labels),
                 "groups": sorted(g for g, members in self.groups.items() if h.name in members)}
                for h in sorted(self.hosts.values(), key=lambda h: h.name)]


def parse_inventory(raw: Any, source_of: SourceOf | None = None) -> Inventory:
    """The ``inventory:`` section; raises ConfigError naming the key path (and, given the
    loader's ``source_of``, the file and line)."""
    return parse_section(Inventory, raw, "inventory", source_of=source_of)
