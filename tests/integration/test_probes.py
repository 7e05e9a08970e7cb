"""Blackbox probes run by a real console against real local servers started here (HTTP,
HTTPS with a self-signed certificate made here, a TCP banner server, a UDP DNS server,
the suite's sshd, ICMP to 127.0.0.1), compared with a real blackbox_exporter
(``/usr/bin/prometheus-blackbox-exporter``) probing the same targets with the same
modules: the same probe_success, status codes, redirects, certificate expiry and the
other deterministic values."""
from __future__ import annotations

import datetime
import http.server
import ipaddress
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from urllib.parse import urlencode

import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from console.config import ConfigError, load_config
from console.probes.config import parse_probes
from console.services import build_services
from tests.conftest import database_url, need
from tests.harness import ConsoleHarness, wait_for
from tests.integration.procs import REPO, free_port

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PREFIX = f"probes-{uuid.uuid4().hex[:8]}"
PROBE_HOST = f"{PREFIX}-console"
BODY = b"hello from fleetdeck\n"
DNS_NAME = f"{PREFIX}.test."
DNS_ADDRESSES = ("192.0.2.10", "192.0.2.11")
# The test CA expires on a whole second, before the server certificate it signs: both sides
# must report exactly this as the earliest expiry of the chain.
NOT_AFTER = datetime.datetime(2031, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)


# -- servers --------------------------------------------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
        pass

    def _send(self, status: int, body: bytes = b"", location: str | None = None) -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        routes = {"/ok": (200, BODY, None), "/missing": (404, b"not here\n", None),
                  "/teapot": (418, b"short and stout\n", None),
                  "/redirect": (302, b"", "/ok"), "/twice": (301, b"", "/redirect"),
                  "/away": (302, b"", self.server.away)}  # to a port nothing listens on
        status, body, location = routes.get(self.path, (404, b"", None))
        self._send(status, body, location)

    do_HEAD = do_GET


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A CA made here (expiring at NOT_AFTER) and a server certificate for 127.0.0.1 and
    localhost signed by it that expires later. Returns (CA file, server key file, chain
    file): the server sends both certificates, so the earliest expiry of the chain is the
    CA's, and a probe that looked at the server's certificate alone would be caught."""
    work = tmp_path_factory.mktemp(PREFIX)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{PREFIX} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(NOT_AFTER)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{PREFIX}.local")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(NOT_AFTER + datetime.timedelta(days=200))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    ca_file, key_file, chain_file = work / "ca.pem", work / "key.pem", work / "chain.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, key_file, chain_file


@pytest.fixture(scope="module")
def web(cert):
    """An HTTP and an HTTPS server on loopback ports: {"http": URL, "https": URL, ...}."""
    plain = Server(("127.0.0.1", 0), Handler)
    secure = Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert[2]), str(cert[1]))
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        server.away = f"http://127.0.0.1:{closed_port()}/"
        serve(server)
    yield {"http": f"http://127.0.0.1:{plain.server_address[1]}",
           "https": f"https://127.0.0.1:{secure.server_address[1]}",
           "https_port": secure.server_address[1], "http_port": plain.server_address[1]}
    for server in (plain, secure):
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def banner():
    """A TCP server that greets with a line that is not an SSH version line and closes."""

    class Greeter(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"220 not an ssh server\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Greeter)
    server.daemon_threads = True
    serve(server)
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def dns_answer(query: dns.message.Message) -> dns.message.Message:
    """DNS_NAME A: the two addresses; anything else: NXDOMAIN."""
    response = dns.message.make_response(query)
    question = query.question[0]
    if question.name.to_text() == DNS_NAME and question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(DNS_NAME, 300, "IN", "A", *DNS_ADDRESSES))
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response


@pytest.fixture(scope="module")
def dns_server():
    """A DNS server on one port, over UDP and TCP (RFC 1035 section 4.2), answering with
    :func:`dns_answer`."""
    class AnswerTCP(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            query, _ = dns.query.receive_tcp(self.request, expiration=time.time() + 5)
            dns.query.send_tcp(self.request, dns_answer(query))

    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), AnswerTCP)
    tcp.daemon_threads = True
    port = tcp.server_address[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer_udp() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(dns_answer(dns.message.from_wire(wire)).to_wire(), peer)

    serve(tcp)
    thread = threading.Thread(target=answer_udp, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    stop.set()
    thread.join(5)
    sock.close()
    tcp.shutdown()
    tcp.server_close()


def closed_port() -> int:
    return free_port()  # bound, then released: nothing listens there


# -- the modules, as blackbox.yml, and the same for the console ------------------------------
def modules(ca_file: str) -> dict:
    ip4 = {"preferred_ip_protocol": "ip4"}
    tls = {"ca_file": ca_file}
    return {
        "http_2xx": {"prober": "http", "timeout": "3s",
                     "http": {**ip4, "tls_config": tls, "fail_if_body_not_matches_regexp": ["hello from"]}},
        "http_no_redirect": {"prober": "http", "timeout": "3s",
                             "http": {**ip4, "tls_config": tls, "follow_redirects": False}},
        "http_forbidden_body": {"prober": "http", "timeout": "3s",
                                "http": {**ip4, "tls_config": tls, "fail_if_body_matches_regexp": ["fleet[d]eck"]}},
        "http_headers": {"prober": "http", "timeout": "3s",
                         "http": {**ip4, "fail_if_header_not_matches": [{"header": "content-type", "regexp": "^text/"}],
                                  "fail_if_header_matches": [{"header": "X-Debug", "regexp": ".", "allow_missing": True}]}},
        "http_header_missing": {"prober": "http", "timeout": "3s",
                                "http": {**ip4, "fail_if_header_matches": [{"header": "X-Debug", "regexp": "."}]}},
        "http_header_bad": {"prober": "http", "timeout": "3s",
                            "http": {**ip4, "fail_if_header_matches": [{"header": "Content-Type", "regexp": "plain"}]}},
        "http_teapot": {"prober": "http", "timeout": "3s",
                        "http": {**ip4, "valid_status_codes": [418], "method": "GET"}},
        "http_untrusted": {"prober": "http", "timeout": "3s", "http": {**ip4}},
        "http_insecure": {"prober": "http", "timeout": "3s",
                          "http": {**ip4, "tls_config": {"insecure_skip_verify": True}}},
        "http_head": {"prober": "http", "timeout": "3s", "http": {**ip4, "method": "HEAD"}},
        "http_need_tls": {"prober": "http", "timeout": "3s", "http": {**ip4, "fail_if_not_ssl": True}},
        "tcp_tls_other_name": {"prober": "tcp", "timeout": "3s",
                               "tcp": {**ip4, "tls": True, "tls_config": {**tls, "server_name": "wrong.example"}}},
        "tcp_connect": {"prober": "tcp", "timeout": "3s", "tcp": {**ip4}},
        "tcp_tls": {"prober": "tcp", "timeout": "3s", "tcp": {**ip4, "tls": True, "tls_config": tls}},
        "dns_a": {"prober": "dns", "timeout": "3s",
                  "dns": {**ip4, "query_name": DNS_NAME, "query_type": "A", "transport_protocol": "udp"}},
        "dns_missing": {"prober": "dns", "timeout": "3s",
                        "dns": {**ip4, "query_name": f"nothing.{DNS_NAME}", "query_type": "A",
                                "transport_protocol": "udp"}},
        "dns_tcp": {"prober": "dns", "timeout": "3s",
                    "dns": {**ip4, "query_name": DNS_NAME, "query_type": "A", "transport_protocol": "tcp"}},
        "tcp_default_family": {"prober": "tcp", "timeout": "3s"},
        "icmp": {"prober": "icmp", "timeout": "3s", "icmp": {**ip4}},
        "ssh_banner": {"prober": "ssh", "timeout": "3s", "ssh": {**ip4}},
    }


def blackbox_module(name: str, module: dict) -> dict:
    """The console's module as blackbox.yml spells it: ``ssh`` is blackbox_exporter's
    documented ssh_banner module (tcp expecting ``^SSH-2.0-``)."""
    if module["prober"] == "ssh":
        return {"prober": "tcp", "timeout": module["timeout"],
                "tcp": {**module["ssh"], "query_response": [{"expect": "^SSH-2.0-"}]}}
    return module


def console_module(module: dict) -> dict:
    return {**module, "timeout": float(module["timeout"].rstrip("s"))}


@pytest.fixture(scope="module")
def cases(web, banner, dns_server, sshd):
    """(module, target) pairs probed by both sides."""
    ssh_target = f"{sshd.host}:{sshd.port}"
    return [
        ("http_2xx", f"{web['http']}/ok"), ("http_2xx", f"{web['https']}/ok"),
        ("http_2xx", f"{web['http']}/missing"), ("http_2xx", f"{web['https']}/twice"),
        ("http_2xx", f"http://127.0.0.1:{closed_port()}/"), ("http_2xx", f"{web['https']}/away"),
        ("http_no_redirect", f"{web['http']}/redirect"), ("http_no_redirect", f"{web['https']}/redirect"),
        ("http_forbidden_body", f"{web['https']}/ok"), ("http_forbidden_body", f"{web['http']}/missing"),
        ("http_headers", f"{web['http']}/ok"), ("http_header_missing", f"{web['http']}/ok"),
        ("http_header_bad", f"{web['http']}/ok"),
        ("http_teapot", f"{web['http']}/teapot"), ("http_teapot", f"{web['http']}/ok"),
        ("http_untrusted", f"{web['https']}/ok"), ("http_insecure", f"{web['https']}/ok"),
        ("http_head", f"{web['http']}/ok"), ("http_need_tls", f"{web['http']}/ok"),
        ("tcp_tls_other_name", f"127.0.0.1:{web['https_port']}"),
        ("tcp_connect", f"127.0.0.1:{web['http_port']}"), ("tcp_connect", f"127.0.0.1:{closed_port()}"),
        ("tcp_tls", f"127.0.0.1:{web['https_port']}"), ("tcp_tls", f"127.0.0.1:{web['http_port']}"),
        ("dns_a", dns_server), ("dns_missing", dns_server), ("dns_tcp", dns_server),
        ("tcp_default_family", f"localhost:{web['http_port']}"),
        ("icmp", "127.0.0.1"),
        ("ssh_banner", ssh_target), ("ssh_banner", banner),
    ]


@pytest.fixture(scope="module")
def blackbox(cert, tmp_path_factory):
    """A real blackbox_exporter on a loopback port with the same modules; yields its URL."""
    if shutil.which(BLACKBOX) is None:
        need("blackbox", f"no {BLACKBOX} (Debian package prometheus-blackbox-exporter)")
    work = tmp_path_factory.mktemp(f"{PREFIX}-blackbox")
    config = {"modules": {n: blackbox_module(n, m) for n, m in modules(str(cert[0])).items()}}
    (work / "blackbox.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "log", "wb")
    proc = subprocess.Popen([BLACKBOX, f"--config.file={work / 'blackbox.yml'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return urllib.request.urlopen(url + "/metrics", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=30, what="blackbox_exporter to listen", proc=proc)
    except Exception:
        proc.kill()
        need("blackbox", f"blackbox_exporter did not start: {(work / 'log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(30)
    log.close()


@pytest.fixture(scope="module")
def console(cases, cert, tmp_path_factory):
    """A console running every case as its own job (one run at start; interval one hour)."""
    all_modules = modules(str(cert[0]))
    used = {module for module, _ in cases}
    probes = {"host": PROBE_HOST, "workers": 4,
              "modules": {name: console_module(all_modules[name]) for name in used},
              "jobs": [{"name": f"{PREFIX}-{i}", "module": module, "interval": 3600, "targets": [target]}
                       for i, (module, target) in enumerate(cases)]}
    harness = ConsoleHarness(tmp_path_factory.mktemp(PREFIX), probes=probes).start()
    states = harness.services.probes.states
    wait_for(lambda: all(s.runs for s in states.values()), timeout=60, what="every probe to run once")
    yield harness
    harness.close()


def blackbox_probe(url: str, module: str, target: str) -> dict[tuple, float]:
    """{(name, sorted label pairs): value} from blackbox_exporter's /probe."""
    with urllib.request.urlopen(f"{url}/probe?{urlencode({'module': module, 'target': target})}",
                                timeout=30) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def console_series(harness: ConsoleHarness, job: str, target: str, names: list[str],
                   token: str) -> dict[tuple, float]:
    """{(name, sorted label pairs minus host/instance/job): last value} as stored."""
    out = {}
    for name in names:
        query = urlencode({"metric": name, "host": PROBE_HOST, "start": time.time() - 600, "end": time.time() + 60})
        resp = harness.request("GET", f"/api/v1/metrics/range?{query}", token=token)
        assert resp.status == 200, resp.body
        for series in resp.json()["series"]:
            labels = dict(series["labels"])
            if labels.get("job") != job:
                continue
            assert labels.pop("instance") == target and labels.pop("host") == PROBE_HOST
            labels.pop("job")
            out[(name, tuple(sorted(labels.items())))] = series["points"][-1][1]
    return out


# Values that do not depend on timing: they must be equal on both sides when present.
COMPARED = {
    "http": ["probe_success", "probe_http_status_code", "probe_http_redirects", "probe_http_ssl",
             "probe_http_content_length", "probe_http_version", "probe_failed_due_to_regex",
             "probe_ssl_earliest_cert_expiry", "probe_tls_version_info", "probe_ip_protocol", "probe_ip_addr_hash",
             "probe_http_uncompressed_body_length"],
    "tcp": ["probe_success", "probe_ip_protocol", "probe_ip_addr_hash", "probe_ssl_earliest_cert_expiry",
            "probe_tls_version_info"],
    "ssh": ["probe_success", "probe_ip_protocol", "probe_failed_due_to_regex"],
    "dns": ["probe_success", "probe_ip_protocol", "probe_dns_answer_rrs", "probe_dns_authority_rrs",
            "probe_dns_additional_rrs", "probe_dns_query_succeeded"],
    "icmp": ["probe_success", "probe_ip_protocol", "probe_ip_addr_hash"],
}


def test_probe_results_match_blackbox_exporter(console, blackbox, cases, cert):
    """Equal deterministic values, and no series blackbox_exporter would not write."""
    token = console.api_token("viewer")
    stored_names = console.request("GET", f"/api/v1/metrics/names?host={PROBE_HOST}", token=token).json()["names"]
    assert "probe_success" in stored_names and "probe_http_status_code" in stored_names
    all_modules = modules(str(cert[0]))
    mismatches = []
    for i, (module, target) in enumerate(cases):
        names = COMPARED[all_modules[module]["prober"]]
        exported = blackbox_probe(blackbox, module, target)
        stored = console_series(console, f"{PREFIX}-{i}", target, stored_names, token)
        want = {key: value for key, value in exported.items() if key[0] in names}
        got = {key: value for key, value in stored.items() if key[0] in names}
        invented = sorted(set(stored) - set(exported))
        if got != want or invented:
            mismatches.append(f"{module} {target}:\n  blackbox_exporter {sorted(want.items())}\n"
                              f"  console           {sorted(got.items())}\n  not from blackbox_exporter {invented}")
    assert not mismatches, "\n".join(mismatches)


def test_expected_outcomes(console, cases, web):
    """What each case must give, independently of blackbox_exporter."""
    states = {(s.target, s.job): s for s in console.services.probes.states.values()}
    by_case = {(module, target): states[(target, f"{PREFIX}-{i}")].last_success
               for i, (module, target) in enumerate(cases)}
    assert by_case[("http_2xx", f"{web['https']}/ok")] is True
    assert by_case[("http_2xx", f"{web['https']}/twice")] is True
    assert by_case[("http_2xx", f"{web['http']}/missing")] is False
    assert by_case[("http_no_redirect", f"{web['http']}/redirect")] is False
    assert by_case[("http_forbidden_body", f"{web['https']}/ok")] is False
    assert by_case[("http_teapot", f"{web['http']}/teapot")] is True
    assert by_case[("http_headers", f"{web['http']}/ok")] is True
    assert by_case[("http_header_missing", f"{web['http']}/ok")] is False
    assert by_case[("http_header_bad", f"{web['http']}/ok")] is False
    assert by_case[("http_untrusted", f"{web['https']}/ok")] is False
    assert by_case[("http_insecure", f"{web['https']}/ok")] is True
    assert by_case[("http_head", f"{web['http']}/ok")] is True
    assert by_case[("http_need_tls", f"{web['http']}/ok")] is False
    assert by_case[("tcp_tls_other_name", f"127.0.0.1:{web['https_port']}")] is False
    assert by_case[("tcp_tls", f"127.0.0.1:{web['https_port']}")] is True
    assert by_case[("icmp", "127.0.0.1")] is True
    ssh = [ok for (module, _), ok in by_case.items() if module == "ssh_banner"]
    dns_ok = [ok for (module, _), ok in by_case.items() if module.startswith("dns")]
    assert ssh == [True, False] and dns_ok == [True, False, True]
    token = console.api_token("viewer")
    https_ok = cases.index(("http_2xx", f"{web['https']}/ok"))
    got = console_series(console, f"{PREFIX}-{https_ok}", f"{web['https']}/ok",
                         ["probe_ssl_earliest_cert_expiry", "probe_http_redirects", "probe_duration_seconds"], token)
    assert got[("probe_ssl_earliest_cert_expiry", ())] == NOT_AFTER.timestamp()
    assert 0 < got[("probe_duration_seconds", ())] < 3


def test_probes_config_errors_name_key_and_line(tmp_path):
    config = tmp_path / "fleetdeck.yaml"
    config.write_text("console:\n  data_dir: ./var\nprobes:\n  modules:\n    web:\n      prober: http\n"
                      "      http:\n        fail_if_body_matches_regexp: ['(']\n        retries: 3\n"
                      "  jobs:\n    - name: web\n      module: web\n      targets: [https://example.test/]\n")
    with pytest.raises(ConfigError) as err:
        build_services(load_config(config, env={}), migrate=False)
    message = str(err.value)
    assert f"probes.modules.web.http.retries: unknown key (from {config} line 9)" in message
    assert "probes.modules.web.http.fail_if_body_matches_regexp[0]: is not a valid RE2" in message
    config.write_text("probes:\n  modules:\n    m:\n      prober: smtp\n")
    with pytest.raises(ConfigError, match=r"probes\.modules\.m\.prober: must be 'http', 'tcp', 'dns', 'ssh' or "
                                          r"'icmp', got 'smtp' \(from .* line 4\)"):
        build_services(load_config(config, env={}), migrate=False)
    config.write_text("probes:\n  modules:\n    m:\n      prober: tcp\n  jobs:\n    - name: j\n      module: nope\n"
                      "      targets: ['127.0.0.1:22']\n")
    with pytest.raises(ConfigError, match=r"probes\.jobs\[0\]\.module: names no module of probes.modules, "
                                          r"got 'nope' \(from .* line 7\)"):
        build_services(load_config(config, env={}), migrate=False)
    config.write_text("probes:\n  modules:\n    m: {prober: icmp}\n  jobs:\n    - name: j\n      module: m\n"
                      "      targets:\n        - 127.0.0.1\n        - 127.0.0.1\n")
    with pytest.raises(ConfigError, match=r"probes\.jobs\[0\]\.targets\[1\]: target '127.0.0.1' is listed twice "
                                          r"in this job \(from .* line 9\)"):
        build_services(load_config(config, env={}), migrate=False)
    config.write_text("probes:\n  host: edge-probes\n  modules:\n    m: {prober: icmp}\n"
                      "  jobs:\n    - {name: ping, module: m, targets: [127.0.0.1]}\n")
    loaded = load_config(config, env={})
    parsed = parse_probes(loaded.probes, loaded.source_of("probes"))
    assert parsed.host == "edge-probes" and parsed.jobs[0].targets == ["127.0.0.1"]
    # The commented example in config.yaml is a valid probes: section.
    text = (REPO / "config.yaml").read_text()
    block = text[text.index("\nprobes: {}\n"):].splitlines()[2:]
    example = yaml.safe_load("\n".join(line[1:] for line in block if line.startswith("#")))
    parsed = parse_probes(example, None)
    assert parsed.jobs[0].module == "http_2xx" and set(parsed.modules) >= {"http_2xx", "dns_a", "ping"}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_probes_repeat_on_their_interval_and_time_out(kind, tmp_path, tmp_path_factory, web):
    """A target that accepts and never answers fails after the module's timeout; both jobs
    keep running every interval, each run stored (on SQLite and PostgreSQL)."""
    with database_url(kind, tmp_path_factory) as url:
        run_schedule(tmp_path, url, web)


def run_schedule(tmp_path, url: str, web: dict) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the backlog; nothing ever answers
    host = f"{PREFIX}-sched"
    probes = {"host": host, "modules": {"slow": {"prober": "http", "timeout": 1.0},
                                        "tcp": {"prober": "tcp", "timeout": 1.0}},
              "jobs": [{"name": "silent", "module": "slow", "interval": 1.5,
                        "targets": [f"http://127.0.0.1:{silent.getsockname()[1]}/"]},
                       {"name": "open", "module": "tcp", "interval": 1, "targets": [f"127.0.0.1:{web['http_port']}"]}]}
    harness = ConsoleHarness(tmp_path, database_url=url, probes=probes).start()
    try:
        states = {s.job: s for s in harness.services.probes.states.values()}
        wait_for(lambda: states["silent"].runs >= 2 and states["open"].runs >= 3, timeout=20,
                 what="repeated probe runs")
        assert states["silent"].last_success is False and "timed out" in states["silent"].last_error
        assert states["open"].last_success is True
        token = harness.api_token("viewer")
        hosts = {h["host"]: h for h in harness.request("GET", "/api/v1/hosts", token=token).json()}
        # Listed, up, with the shortest job interval so it is not shown down between runs.
        assert hosts[host]["up"] is True and hosts[host]["interval"] == 1.0
        query = urlencode({"metric": "probe_duration_seconds", "host": host, "start": time.time() - 60,
                           "end": time.time() + 60, "label.job": "silent"})

        def stored() -> list:
            return harness.request("GET", f"/api/v1/metrics/range?{query}", token=token).json()["series"]
        # A run is counted when it ends; its samples are stored just after, through ingest.
        wait_for(lambda: len(stored()) == 1 and len(stored()[0]["points"]) >= 2, timeout=10,
                 what="two stored runs of the silent job")
        series = stored()
        assert len(series) == 1 and len(series[0]["points"]) >= 2
        assert all(0.9 <= value < 1.9 for _, value in series[0]["points"])
        query = urlencode({"metric": "probe_success", "host": host, "start": time.time() - 60,
                           "end": time.time() + 60, "label.job": "open"})
        series = harness.request("GET", f"/api/v1/metrics/range?{query}", token=token).json()["series"]
        assert series[0]["labels"]["instance"] == f"127.0.0.1:{web['http_port']}"
        assert len(series[0]["points"]) >= 3 and {v for _, v in series[0]["points"]} == {1.0}
    finally:
        harness.close()
        silent.close()
