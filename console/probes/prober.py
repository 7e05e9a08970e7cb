"""The probes themselves: blocking functions run on the probe service's worker threads.

Each returns a :class:`ProbeResult`: success and the samples blackbox_exporter writes for
the same prober, with its metric names, label names and meanings (prober/http.go,
tcp.go, dns.go, icmp.go, utils.go and tls.go of prometheus/blackbox_exporter):

* every prober: ``probe_success`` and ``probe_duration_seconds`` (:func:`run_probe`),
  ``probe_dns_lookup_time_seconds`` (resolving the target's host, seconds),
  ``probe_ip_protocol`` (4 or 6; the preferred family first, the other as fallback) and
  ``probe_ip_addr_hash`` (FNV-1a of the address).
* http: ``probe_http_status_code`` (0 without a response), ``probe_http_content_length``
  (the Content-Length header, -1 when absent), ``probe_http_uncompressed_body_length``
  (bytes read), ``probe_http_redirects`` (redirects seen; 1 when one is not followed),
  ``probe_http_ssl`` (1 when the final response came over TLS), ``probe_http_version``,
  ``probe_http_duration_seconds{phase}`` (resolve, connect, tls, processing, transfer,
  summed over redirects), ``probe_failed_due_to_regex`` (1 when a header or body regex
  failed the probe).
* TLS (http over https, tcp with ``tls``): ``probe_ssl_earliest_cert_expiry`` (Unix
  seconds of the earliest ``notAfter`` among the certificates the peer sent) and
  ``probe_tls_version_info{version="TLS 1.3"}`` = 1.
* ssh: as a tcp probe expecting ``^SSH-2.0-``: ``probe_failed_due_to_regex``.
* dns: ``probe_dns_duration_seconds{phase}`` (resolve, connect, request),
  ``probe_dns_answer_rrs``, ``probe_dns_authority_rrs``, ``probe_dns_additional_rrs``,
  ``probe_dns_query_succeeded``, ``probe_dns_serial`` (an SOA answer).
* icmp: ``probe_icmp_duration_seconds{phase}`` (resolve, setup, rtt).

User regexes are RE2 (google-re2), matched against the raw body bytes as Go's regexp.
"""
from __future__ import annotations

import _ssl  # the C module's certificate encodings (ssl does not re-export ENCODING_DER)
import http.client
import ipaddress
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import icmplib
import re2
from cryptography import x509

from console.probes.config import Module, split_host_port

REDIRECT_CODES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10  # Go's net/http default, kept by blackbox_exporter
USER_AGENT = "Fleetdeck-Probe/1.0"
TLS_VERSIONS = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}
SSH_EXPECT = b"^SSH-2.0-"  # what blackbox_exporter's example ssh_banner module expects
MAX_SSH_LINE = 8192


@dataclass
class ProbeResult:
    success: bool = False
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    error: str = ""  # why it failed, for the console's log

    def add(self, name: str, value: float, **labels: str) -> None:
        self.samples.append((name, labels, float(value)))


class ProbeFailed(Exception):
    """The probe failed for the reason given (the samples gathered so far are kept)."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise ProbeFailed("timeout")
        return left


def resolve(host: str, module: Module, result: ProbeResult, deadline: Deadline) -> tuple[str, int, float]:
    """The address to probe for ``host``: (address, family, seconds spent). Records
    ``probe_ip_protocol`` and ``probe_dns_lookup_time_seconds`` as utils.go does."""
    start = time.monotonic()
    host = host.strip("[]")
    deadline.left()
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        result.add("probe_dns_lookup_time_seconds", time.monotonic() - start)
        raise ProbeFailed(f"resolving {host}: {exc}") from None
    settings = module.settings()
    preferred = socket.AF_INET6 if settings.preferred_ip_protocol == "ip6" else socket.AF_INET
    chosen = next((i for i in infos if i[0] == preferred), None)
    if chosen is None and settings.ip_protocol_fallback:
        chosen = next((i for i in infos if i[0] in (socket.AF_INET, socket.AF_INET6)), None)
    spent = time.monotonic() - start
    result.add("probe_dns_lookup_time_seconds", spent)
    if chosen is None:
        raise ProbeFailed(f"{host} has no {settings.preferred_ip_protocol} address")
    result.add("probe_ip_protocol", 6 if chosen[0] == socket.AF_INET6 else 4)
    address = str(chosen[4][0])  # an IP address: str for AF_INET and AF_INET6
    result.add("probe_ip_addr_hash", ip_hash(address))
    return address, chosen[0], spent


def ip_hash(address: str) -> int:
    """``probe_ip_addr_hash``: 32-bit FNV-1a of the address bytes (4 for IPv4, 16 for
    IPv6), as utils.go, so a change of address shows as a change of value."""
    value = 0x811C9DC5
    for byte in ipaddress.ip_address(address.split("%")[0]).packed:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _tls_context(tls_config: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls_config.ca_file or None)
    if tls_config.insecure_skip_verify:
        # Asked for in the module (blackbox_exporter's tls_config key of the same name), for
        # services whose certificate cannot be verified but whose expiry is still watched.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _tls_samples(sock: ssl.SSLSocket, result: ProbeResult) -> None:
    """probe_ssl_earliest_cert_expiry over the certificates the peer sent (tls.go's
    getEarliestCertExpiry), and probe_tls_version_info."""
    # The chain as sent: SSLSocket.get_unverified_chain() (DER) from Python 3.13, the
    # C object's method (certificate objects) before; the leaf alone as a last resort.
    public = getattr(sock, "get_unverified_chain", None)
    private = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    raw = (public or private or (lambda: None))() or []
    chain = [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in raw]
    if not chain:
        leaf = sock.getpeercert(binary_form=True)
        chain = [leaf] if leaf else []
    if chain:
        earliest = min(x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp() for der in chain)
        result.add("probe_ssl_earliest_cert_expiry", int(earliest))
    result.add("probe_tls_version_info", 1, version=TLS_VERSIONS.get(sock.version() or "", "unknown"))


def _connect(address: str, family: int, port: int, deadline: Deadline) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.left())
        sock.connect((address, port))
    except OSError as exc:
        sock.close()
        raise ProbeFailed(f"connecting to {address} port {port}: {exc}") from None
    return sock


def probe_http(target: str, module: Module, deadline: Deadline) -> ProbeResult:
    """An HTTP(S) request to the URL ``target``, following redirects as configured."""
    settings = module.settings()
    result = ProbeResult()
    phases = dict.fromkeys(("resolve", "connect", "tls", "processing", "transfer"), 0.0)
    status, content_length, body_length, redirects, tls_used, version = 0, 0, 0, 0, False, 0.0
    tls_samples: list[tuple[str, dict[str, str], float]] = []  # of the connection of the last response
    url, method, body = target, settings.method, settings.body.encode() or None
    regex_checked = bool(settings.fail_if_body_matches_regexp or settings.fail_if_body_not_matches_regexp)
    headers_checked = bool(settings.fail_if_header_matches or settings.fail_if_header_not_matches)
    try:
        while True:
            # Values of the response of this hop: a hop that fails has none (Go's client
            # returns no response then, only the redirect count stays).
            status, content_length, version, tls_samples = 0, 0, 0.0, []
            parts = urlsplit(url)
            https = parts.scheme == "https"
            port = parts.port or (443 if https else 80)
            if redirects == 0:
                address, family, spent = resolve(parts.hostname or "", module, result, deadline)
            else:  # utils.go records only the first lookup; the phase sums them all
                start = time.monotonic()
                try:
                    info = socket.getaddrinfo(parts.hostname, port, family, socket.SOCK_STREAM)
                except socket.gaierror as exc:
                    raise ProbeFailed(f"resolving {parts.hostname}: {exc}") from None
                address, spent = str(info[0][4][0]), time.monotonic() - start
            phases["resolve"] += spent
            start = time.monotonic()
            sock = _connect(address, family, port, deadline)
            phases["connect"] += time.monotonic() - start
            try:
                tls_used = https
                if https:
                    start = time.monotonic()
                    server_name = settings.tls_config.server_name or parts.hostname
                    try:
                        sock = _tls_context(settings.tls_config).wrap_socket(sock, server_hostname=server_name)
                    except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                        raise ProbeFailed(f"TLS handshake with {parts.hostname}: {exc}") from None
                    phases["tls"] += time.monotonic() - start
                    tls_result = ProbeResult()
                    _tls_samples(sock, tls_result)
                    tls_samples = tls_result.samples
                conn = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
                    parts.hostname or "", port, timeout=deadline.left())
                conn.sock = sock
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                headers = {"User-Agent": USER_AGENT, **settings.headers}
                start = time.monotonic()
                try:
                    sock.settimeout(deadline.left())
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    raise ProbeFailed(f"HTTP request to {url}: {exc}") from None
                phases["processing"] += time.monotonic() - start
                status = response.status
                version = response.version / 10
                header_length = response.getheader("Content-Length")
                content_length = int(header_length) if header_length and header_length.isdigit() else -1
                location = response.getheader("Location")
                if status in REDIRECT_CODES and location:
                    redirects += 1
                    if not settings.follow_redirects or redirects > MAX_REDIRECTS:
                        # Go's client hands back the redirect itself, body unread (http.go).
                        break
                    url = urljoin(url, location)
                    if status in (301, 302, 303) and method != "HEAD":
                        method, body = "GET", None
                    continue
                start = time.monotonic()
                try:
                    sock.settimeout(deadline.left())
                    data = response.read(settings.body_size_limit + 1)
                except (OSError, http.client.HTTPException) as exc:
                    raise ProbeFailed(f"reading the body of {url}: {exc}") from None
                phases["transfer"] += time.monotonic() - start
                body_length = len(data)
                if body_length > settings.body_size_limit:
                    raise ProbeFailed(f"body longer than body_size_limit ({settings.body_size_limit} bytes)")
                result.success = (status in settings.valid_status_codes if settings.valid_status_codes
                                  else 200 <= status < 300)
                if result.success and headers_checked:
                    result.success = _headers_pass(response.headers, settings)
                    result.add("probe_failed_due_to_regex", 0 if result.success else 1)
                if result.success and regex_checked:
                    failed = (any(re2.search(p.encode(), data) for p in settings.fail_if_body_matches_regexp)
                              or not all(re2.search(p.encode(), data)
                                         for p in settings.fail_if_body_not_matches_regexp))
                    result.add("probe_failed_due_to_regex", 1 if failed else 0)
                    result.success = not failed
                break
            finally:
                sock.close()
        if status in REDIRECT_CODES and location:  # a redirect not followed is the final response
            result.success = status in settings.valid_status_codes
        if tls_used and settings.fail_if_ssl or not tls_used and settings.fail_if_not_ssl:
            result.success = False
    except ProbeFailed as exc:
        result.success, result.error = False, str(exc)
    if status:  # TLS series describe the connection of the final response, when there is one
        result.samples.extend(tls_samples)
    if not any(s[0] == "probe_failed_due_to_regex" for s in result.samples):  # always, as http.go
        result.add("probe_failed_due_to_regex", 0)
    for phase, seconds in phases.items():
        result.add("probe_http_duration_seconds", seconds, phase=phase)
    result.add("probe_http_status_code", status)
    result.add("probe_http_content_length", content_length)
    result.add("probe_http_uncompressed_body_length", body_length)
    result.add("probe_http_redirects", redirects)
    result.add("probe_http_ssl", 1 if tls_used and status else 0)
    result.add("probe_http_version", version)
    return result


def _headers_pass(headers: Any, settings: Any) -> bool:
    """http.go's header checks: a missing header fails unless ``allow_missing``; any value
    matching a fail_if_header_matches regex fails; no value matching a
    fail_if_header_not_matches regex fails."""
    for specs, fail_on_match in ((settings.fail_if_header_matches, True),
                                 (settings.fail_if_header_not_matches, False)):
        for spec in specs:
            values = headers.get_all(spec.header) or []
            if not values:
                if not spec.allow_missing:
                    return False
                continue
            if any(re2.search(spec.regexp, value) for value in values) == fail_on_match:
                return False
    return True


def probe_tcp(target: str, module: Module, deadline: Deadline, expect: bytes | None = None,
              default_port: int | None = None) -> ProbeResult:
    """Connect to ``host:port`` (then TLS when the module says so); with ``expect``, read
    lines until one matches it (query_response.go's expect)."""
    settings = module.settings() if module.prober == "tcp" else None
    result = ProbeResult()
    try:
        host, port = split_host_port(target, default_port)
        address, family, _ = resolve(host, module, result, deadline)
        sock = _connect(address, family, port, deadline)
        try:
            if settings is not None and settings.tls:
                server_name = settings.tls_config.server_name or host
                try:
                    sock.settimeout(deadline.left())
                    sock = _tls_context(settings.tls_config).wrap_socket(sock, server_hostname=server_name)
                except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                    raise ProbeFailed(f"TLS handshake with {host}: {exc}") from None
                _tls_samples(sock, result)
            if expect is not None:
                matched = _read_until_match(sock, expect, deadline)
                if not matched:
                    result.add("probe_failed_due_to_regex", 1)
                    raise ProbeFailed(f"no line matched {expect.decode()!r}")
            result.success = True
        finally:
            sock.close()
    except ProbeFailed as exc:
        result.error = str(exc)
    if expect is not None and not any(s[0] == "probe_failed_due_to_regex" for s in result.samples):
        result.add("probe_failed_due_to_regex", 0)  # registered whenever there is an expect (query_response.go)
    return result


def _read_until_match(sock: socket.socket, pattern: bytes, deadline: Deadline) -> bool:
    """Read lines (RFC 4253 lets a server send other lines before its version line) until
    one matches ``pattern``; False at end of stream, True on a match."""
    buffer = b""
    regex = re2.compile(pattern)
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if regex.search(line.rstrip(b"\r")):
                return True
        if len(buffer) > MAX_SSH_LINE:
            return False
        try:
            sock.settimeout(deadline.left())
            chunk = sock.recv(4096)
        except OSError as exc:
            raise ProbeFailed(f"reading: {exc}") from None
        if not chunk:
            return bool(buffer) and bool(regex.search(buffer.rstrip(b"\r")))
        buffer += chunk


def probe_ssh(target: str, module: Module, deadline: Deadline) -> ProbeResult:
    """TCP connect (port 22 unless given) and read the ``SSH-2.0-`` identification line."""
    return probe_tcp(target, module, deadline, expect=SSH_EXPECT, default_port=22)


def probe_dns(target: str, module: Module, deadline: Deadline) -> ProbeResult:
    """Ask the resolver ``target`` (``host[:port]``, port 53) for query_name/query_type."""
    settings = module.dns
    if settings is None:  # the module's validator requires dns settings of a dns prober
        raise ValueError(f"probe module of prober {module.prober!r} has no dns settings")
    result = ProbeResult()
    phases = dict.fromkeys(("resolve", "connect", "request"), 0.0)
    try:
        host, port = split_host_port(target, 53)
        address, _, phases["resolve"] = resolve(host, module, result, deadline)
        query = dns.message.make_query(settings.query_name, dns.rdatatype.from_text(settings.query_type))
        if not settings.recursion_desired:
            query.flags &= ~dns.flags.RD
        start = time.monotonic()
        send = dns.query.udp if settings.transport_protocol == "udp" else dns.query.tcp
        try:
            response = send(query, address, port=port, timeout=deadline.left())
        except (dns.exception.DNSException, OSError) as exc:
            raise ProbeFailed(f"DNS query to {target}: {exc}") from None
        phases["request"] = time.monotonic() - start
        answer = sum(len(rrset) for rrset in response.answer)
        result.add("probe_dns_answer_rrs", answer)
        result.add("probe_dns_authority_rrs", sum(len(rrset) for rrset in response.authority))
        result.add("probe_dns_additional_rrs", sum(len(rrset) for rrset in response.additional)
                   + (1 if response.opt is not None else 0))
        result.add("probe_dns_query_succeeded", 1)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA and settings.query_type == "SOA":
                result.add("probe_dns_serial", rrset[0].serial)
                break
        rcode = dns.rcode.to_text(response.rcode())
        if rcode not in settings.valid_rcodes:
            raise ProbeFailed(f"rcode {rcode} is not one of {', '.join(settings.valid_rcodes)}")
        result.success = True
    except ProbeFailed as exc:
        result.error = str(exc)
    if not any(s[0] == "probe_dns_query_succeeded" for s in result.samples):
        result.add("probe_dns_query_succeeded", 0)
    for phase, seconds in phases.items():
        result.add("probe_dns_duration_seconds", seconds, phase=phase)
    return result


def probe_icmp(target: str, module: Module, deadline: Deadline) -> ProbeResult:
    """One ICMP echo to ``target``: unprivileged (datagram socket) where the kernel's
    ``net.ipv4.ping_group_range`` admits our group, raw sockets when running as root."""
    settings = module.settings()
    result = ProbeResult()
    phases = dict.fromkeys(("resolve", "setup", "rtt"), 0.0)
    try:
        address, _, phases["resolve"] = resolve(target, module, result, deadline)
        start = time.monotonic()
        try:
            reply = icmplib.ping(address, count=1, timeout=deadline.left(), privileged=os.geteuid() == 0,
                                 payload_size=settings.payload_size)
        except icmplib.ICMPLibError as exc:
            raise ProbeFailed(f"ICMP echo to {address}: {exc}") from None
        except OSError as exc:
            raise ProbeFailed(f"ICMP socket: {exc}") from None
        if not reply.is_alive:
            raise ProbeFailed(f"no echo reply from {address}")
        phases["rtt"] = reply.avg_rtt / 1000
        phases["setup"] = max(0.0, time.monotonic() - start - phases["rtt"])
        result.success = True
    except ProbeFailed as exc:
        result.error = str(exc)
    for phase, seconds in phases.items():
        result.add("probe_icmp_duration_seconds", seconds, phase=phase)
    return result


PROBE_FUNCTIONS = {"http": probe_http, "tcp": probe_tcp, "dns": probe_dns, "ssh": probe_ssh, "icmp": probe_icmp}


def run_probe(target: str, module: Module) -> ProbeResult:
    """Run one probe within the module's timeout; adds probe_success and
    probe_duration_seconds (handler.go). Never raises for a failing target."""
    start = time.monotonic()
    try:
        result = PROBE_FUNCTIONS[module.prober](target, module, Deadline(module.timeout))
    except ProbeFailed as exc:
        result = ProbeResult(error=str(exc))
    result.add("probe_duration_seconds", time.monotonic() - start)
    result.add("probe_success", 1 if result.success else 0)
    return result


__all__ = ["ProbeResult", "run_probe"]
