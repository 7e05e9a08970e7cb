"""The ``probes:`` section: blackbox probe modules and the jobs that run them.

The shape follows blackbox_exporter's ``blackbox.yml`` (``modules:`` with ``prober``,
``timeout`` and one settings block named after the prober, with blackbox_exporter's key
names) plus a Prometheus-like list of ``jobs:`` (``name``, ``module``, ``interval``,
``targets``), so a module can be copied from an existing blackbox.yml. Every key is
validated here (types, ranges, enumerations, regexes compiled with RE2); unknown keys
refuse to start, naming the key and its file and line (:func:`parse_probes`).

Reference: https://github.com/prometheus/blackbox_exporter/blob/master/CONFIGURATION.md
"""
from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Callable, Literal, get_args
from urllib.parse import urlsplit

import dns.rcode
import dns.rdatatype
from console.regex import RegexError, compile_re2
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from console.config import SECONDS_MAX, ConfigError, Float, Int, validation_messages
from console.i18n import TextLines, tx
from console.ingest.batch import HOST_NAME_RE

Prober = Literal["http", "tcp", "dns", "ssh", "icmp"]
PROBERS: tuple[str, ...] = get_args(Prober)
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
HTTP_METHODS: tuple[str, ...] = get_args(HttpMethod)


def _regex(value: str) -> str:
    try:
        compile_re2(value)
    except RegexError as exc:
        raise ValueError(tx("is not a valid RE2 regular expression ({reason}): {value}",
                            reason=exc.reason, value=repr(value))) from None
    return value


Regex = Annotated[str, Field(min_length=1), AfterValidator(_regex)]  # checked per item, so errors name it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class TLSConfig(_Strict):
    """blackbox_exporter's ``tls_config`` subset: trust, name checked, verification."""

    ca_file: str = ""  # PEM bundle trusted instead of the system's; empty: system CAs
    server_name: str = ""  # name sent (SNI) and checked; empty: the target's host
    insecure_skip_verify: bool = False  # accept any certificate (expiry is still reported)


class _IPSettings(_Strict):
    # Address family, as blackbox_exporter: the preferred one, else the other if allowed.
    preferred_ip_protocol: Literal["ip4", "ip6"] = "ip6"
    ip_protocol_fallback: bool = True


class HeaderMatch(_Strict):
    """A response header checked against an RE2 regex (any of its values)."""

    header: str = Field(min_length=1)
    regexp: Regex
    allow_missing: bool = False  # false: a missing header fails the probe


class HTTPModule(_IPSettings):
    valid_status_codes: list[Annotated[Int, Field(ge=100, le=599)]] = []  # empty: any 2xx
    method: HttpMethod = "GET"
    headers: dict[str, str] = {}
    body: str = ""  # request body
    follow_redirects: bool = True  # at most 10, as blackbox_exporter
    fail_if_ssl: bool = False
    fail_if_not_ssl: bool = False
    fail_if_body_matches_regexp: list[Regex] = []  # RE2
    fail_if_body_not_matches_regexp: list[Regex] = []  # RE2
    fail_if_header_matches: list[HeaderMatch] = []  # fail if a value of the header matches
    fail_if_header_not_matches: list[HeaderMatch] = []  # fail unless a value of the header matches
    body_size_limit: Int = Field(10 * 1024 * 1024, ge=1, le=1 << 30)  # bytes read; a longer body fails
    tls_config: TLSConfig = TLSConfig()

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or any(c in name for c in " :\r\n\t") or any(c in text for c in "\r\n"):
                raise ValueError(tx("header {name} has a name or value HTTP cannot carry", name=repr(name)))
        return value


class TCPModule(_IPSettings):
    tls: bool = False  # TLS handshake after connecting (certificate expiry reported)
    tls_config: TLSConfig = TLSConfig()


class DNSModule(_IPSettings):
    query_name: str = Field(min_length=1)
    query_type: str = "ANY"  # a record type: A, AAAA, MX, SOA, TXT, ...
    transport_protocol: Literal["udp", "tcp"] = "udp"
    recursion_desired: bool = True
    valid_rcodes: list[str] = ["NOERROR"]

    @field_validator("query_type")
    @classmethod
    def _type(cls, value: str) -> str:
        try:
            dns.rdatatype.from_text(value)
        except (dns.rdatatype.UnknownRdatatype, ValueError):
            raise ValueError(tx("is not a DNS record type, got {value}", value=repr(value))) from None
        return value.upper()

    @field_validator("valid_rcodes")
    @classmethod
    def _rcodes(cls, value: list[str]) -> list[str]:
        for rcode in value:
            try:
                dns.rcode.from_text(rcode)
            except dns.rcode.UnknownRcode:
                raise ValueError(tx("{rcode} is not a DNS rcode (NOERROR, NXDOMAIN, SERVFAIL, ...)",
                                    rcode=repr(rcode))) from None
        return [v.upper() for v in value]


class SSHModule(_IPSettings):
    """Connect and read the identification line (RFC 4253 section 4.2)."""


class ICMPModule(_IPSettings):
    payload_size: Int = Field(56, ge=0, le=65000)  # bytes of echo data


class Module(_Strict):
    prober: Prober
    timeout: Float = Field(5.0, gt=0, le=300)  # seconds for the whole probe
    http: HTTPModule | None = None
    tcp: TCPModule | None = None
    dns: DNSModule | None = None
    ssh: SSHModule | None = None
    icmp: ICMPModule | None = None

    @model_validator(mode="after")
    def _settings_match_prober(self) -> "Module":
        for name in PROBERS:
            if name != self.prober and getattr(self, name) is not None:
                raise ConfigError(tx("belongs to prober {name}, but this module's prober is {prober}", name=repr(name),
                                     prober=repr(self.prober)), (name,))
        if self.prober == "dns" and self.dns is None:
            raise ConfigError(tx("a dns module needs dns.query_name"), ("dns",))
        return self

    def settings(self) -> Any:
        """The prober's settings block (defaults when the module gave none)."""
        value = getattr(self, self.prober)
        if value is None:
            value = {"http": HTTPModule, "tcp": TCPModule, "ssh": SSHModule, "icmp": ICMPModule}[self.prober]()
        return value


class Job(_Strict):
    name: str = Field(min_length=1)  # the `job` label of every series
    module: str = Field(min_length=1)  # a key of probes.modules
    interval: Float = Field(30.0, ge=1, le=SECONDS_MAX)  # seconds between runs of each target
    targets: list[Annotated[str, Field(min_length=1, max_length=2048)]] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if "\n" in value or len(value) > 256:
            raise ValueError(tx("must be one line of at most 256 characters, got {value}", value=repr(value)))
        return value


class ProbesConfig(_Strict):
    """The whole ``probes:`` section (see config.yaml)."""

    host: str = "fleetdeck-probes"  # host row the probe series are stored under
    workers: Int = Field(4, ge=1, le=64)  # threads running probes at once
    modules: dict[str, Module] = {}
    jobs: list[Job] = []

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not HOST_NAME_RE.fullmatch(value):
            raise ValueError(tx("must be a host name (letters, digits, '.', '_', '-'), got {value}", value=repr(value)))
        return value

    @model_validator(mode="after")
    def _jobs(self) -> "ProbesConfig":
        names: set[str] = set()
        for i, job in enumerate(self.jobs):
            if job.name in names:
                raise ConfigError(tx("job name {name} is used twice", name=repr(job.name)), (("jobs", i, "name"),))
            names.add(job.name)
            module = self.modules.get(job.module)
            if module is None:
                raise ConfigError(tx("names no module of probes.modules, got {value}", value=repr(job.module)),
                                  (("jobs", i, "module"),))
            if module.timeout > job.interval:
                raise ConfigError(tx("module {module} timeout ({timeout} s) is longer than the interval ({interval} s)",
                                     module=repr(job.module), timeout=f"{module.timeout:g}",
                                     interval=f"{job.interval:g}"), (("jobs", i, "interval"),))
            for k, target in enumerate(job.targets):
                if target in job.targets[:k]:
                    raise ConfigError(tx("target {target} is listed twice in this job", target=repr(target)),
                                      (("jobs", i, "targets", k),))
                problem = target_problem(module.prober, target)
                if problem:
                    raise ConfigError(tx("{problem}, got {value}", problem=problem, value=repr(target)),
                                      (("jobs", i, "targets", k),))
        return self


def split_host_port(target: str, default_port: int | None) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` or (with a default port) a bare host -> (host, port).
    Raises ValueError."""
    if target.startswith("["):
        host, sep, rest = target[1:].partition("]")
        if not sep:
            raise ValueError(tx("unclosed ["))
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else None)
        if port_text is None:
            raise ValueError(tx("junk after ]"))
    elif target.count(":") == 1:
        host, _, port_text = target.partition(":")
    else:
        host, port_text = target, ""  # a bare name, or a bare IPv6 address
    if not port_text:
        if default_port is None:
            raise ValueError(tx("no port"))
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(tx("bad port"))
    if not host:
        raise ValueError(tx("no host"))
    return host, int(port_text)


def target_problem(prober: str, target: str) -> str | None:
    """Why ``target`` cannot be probed by ``prober`` (a phrase), or None."""
    if any(c.isspace() for c in target):
        return "must not contain spaces"
    if prober == "http":
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "must be an http:// or https:// URL"
        try:
            parts.port
        except ValueError:
            return "has an invalid port"
        return None
    if prober == "icmp":
        return None if target and ":" not in target or _is_ip(target) else "must be a host name or address"
    try:
        split_host_port(target, 53 if prober == "dns" else (22 if prober == "ssh" else None))
    except ValueError:
        return "must be HOST:PORT ([ADDRESS]:PORT for IPv6)"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_probes(raw: dict[str, Any], source_of: Callable[[tuple], str | None] | None) -> ProbesConfig:
    """Validate the raw ``probes:`` mapping; raises ConfigError naming every bad key
    (``probes.jobs[0].module: ...``) and the file and line of its value."""
    try:
        return ProbesConfig.model_validate(raw or {})
    except ValidationError as exc:
        lines = validation_messages(exc, "probes", source_of or (lambda loc: None))
        raise ConfigError(TextLines(lines)) from None


__all__ = ["DNSModule", "HeaderMatch", "HTTPModule", "ICMPModule", "Job", "Module", "ProbesConfig", "SSHModule", "TCPModule",
           "TLSConfig", "parse_probes", "split_host_port", "target_problem"]
