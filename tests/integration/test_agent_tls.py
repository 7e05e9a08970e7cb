"""The agent process pushing to a console over https, as behind a TLS-terminating reverse
proxy (tests/relay.py in front of a real console) with a certificate from a CA made for
this run: the agent's ``ca_file`` naming that CA works, another CA (or the system store)
is refused and nothing is stored; with a proxy that asks for client certificates, the
agent's ``client_cert``/``client_key`` is what lets it in."""
from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.procs import REPO, child_env
from tests.relay import Relay


def _key_pem(key) -> bytes:  # noqa: ANN001 - a cryptography private key
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Ca:
    """A CA for this run, writing PEM files under ``folder``."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.key = folder, ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fleetdeck-test {name} {uuid.uuid4().hex[:6]}")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = folder / f"{name}-ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, server: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(self.name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert_path, key_path = self.folder / f"{name}.pem", self.folder / f"{name}-key.pem"
        cert_path.write_bytes(builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Ca(folder, "trusted"), Ca(folder, "other")
    server = ca.issue("console", server=True)
    client = ca.issue("agent", server=False)
    return {"folder": folder, "ca": ca, "other": other, "server": server, "client": client}


def _proxy(console, pki, client_certs: bool) -> Relay:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*pki["server"])
    if client_certs:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(pki["ca"].pem))
    return Relay(("127.0.0.1", console.port), tls=context).open()


def push_once(console, tmp_path: Path, url: str, host: str, **tls: str) -> subprocess.CompletedProcess:
    """``fleetdeck-agent --once`` with ``tls`` settings (ca_file, client_cert, client_key)."""
    folder = tmp_path / host
    folder.mkdir()
    config = folder / "agent.yaml"
    config.write_text(json.dumps({"agent": {"collectors": ["host"], "state_dir": str(folder / "state"), **tls}}))
    env = child_env(FLEETDECK_AGENT_TOKEN=console.agent_token(host))
    return subprocess.run([sys.executable, "-m", "agents", "--config", str(config), "--console", url, "--host", host,
                           "--once"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def stored_hosts(console) -> set[str]:
    return {h["host"] for h in console.request("GET", "/api/v1/hosts", token=console.api_token("viewer")).json()}


def test_agent_trusts_the_console_through_its_ca_file_and_refuses_another_ca(console, pki, tmp_path):
    proxy = _proxy(console, pki, client_certs=False)
    try:
        for url in (f"https://localhost:{proxy.port}", f"https://127.0.0.1:{proxy.port}"):
            host = "tls-" + uuid.uuid4().hex[:8]
            done = push_once(console, tmp_path, url, host, ca_file=str(pki["ca"].pem))
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["accepted_samples"] > 0
            assert host in stored_hosts(console)

        for settings in ({"ca_file": str(pki["other"].pem)}, {}):  # another CA; the system store
            host = "tls-" + uuid.uuid4().hex[:8]
            refused = push_once(console, tmp_path, f"https://localhost:{proxy.port}", host, **settings)
            assert refused.returncode != 0, refused.stdout
            assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr, refused.stderr[-2000:]
            assert host not in stored_hosts(console)
    finally:
        proxy.close()


def test_a_proxy_asking_for_client_certificates_lets_in_the_agent_with_one(console, pki, tmp_path):
    proxy = _proxy(console, pki, client_certs=True)
    try:
        url = f"https://localhost:{proxy.port}"
        host = "mtls-" + uuid.uuid4().hex[:8]
        cert, key = pki["client"]
        done = push_once(console, tmp_path, url, host, ca_file=str(pki["ca"].pem), client_cert=str(cert),
                         client_key=str(key))
        assert done.returncode == 0, done.stderr
        assert host in stored_hosts(console)
        host = "mtls-" + uuid.uuid4().hex[:8]
        refused = push_once(console, tmp_path, url, host, ca_file=str(pki["ca"].pem))
        assert refused.returncode != 0, refused.stdout
        assert host not in stored_hosts(console)
    finally:
        proxy.close()
