"""Stand-ins for the services notifications go to, on loopback: an HTTP receiver that
records each request and answers from a script, the vendors' signature checks (written
from the vendors' documentation, not from the console's code), an SMTP server
(aiosmtpd) with optional STARTTLS and AUTH, and a version-4 payload builder."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from console.config import AlertingConfig
from console.notify.model import fingerprint
from console.notify.receivers.config import DeliveryConfig


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers each POST with the next ``(status, headers, body)`` of ``script`` (the
    last one repeats); ``delay`` seconds before answering."""

    script: list[tuple[int, dict, bytes]] = field(default_factory=lambda: [(200, {}, b"ok")])
    delay: float = 0.0
    port: int = 0  # 0: any free port
    received: list[Received] = field(default_factory=list)

    def start(self) -> "HttpReceiver":
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                with peer._lock:
                    index = len(peer.received)
                    peer.received.append(Received(parts.path, parse_qs(parts.query), dict(self.headers.items()),
                                                  body, time.time()))
                    status, headers, answer = peer.script[min(index, len(peer.script) - 1)]
                if peer.delay:
                    time.sleep(peer.delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dingtalk_signature_ok(secret: str, timestamp: str, sign: str, now: float) -> bool:
    """DingTalk's check (open.dingtalk.com, custom robot security settings): ``sign`` is
    base64(HmacSHA256(key=secret, data=timestamp + "\\n" + secret)), URL-encoded in the
    query (``parse_qs`` has decoded it), and the timestamp (ms) within an hour of now."""
    string_to_sign = f"{timestamp}\n{secret}".encode("utf-8")
    expected = base64.b64encode(hmac.new(secret.encode("utf-8"), string_to_sign, digestmod=hashlib.sha256).digest())
    return hmac.compare_digest(expected.decode(), sign) and abs(int(timestamp) / 1000 - now) < 3600


def feishu_signature_ok(secret: str, timestamp: str, sign: str, now: float) -> bool:
    """Feishu's check (open.feishu.cn, custom bot "签名校验"): HmacSHA256 keyed with
    timestamp + "\\n" + secret over an empty message, base64; timestamp (s) within an hour."""
    key = f"{timestamp}\n{secret}".encode("utf-8")
    expected = base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, sign) and abs(int(timestamp) - now) < 3600


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def v4_payload(receiver: str, alerts: list[dict], group_labels: dict, external_url: str = "http://fleetdeck.test:8700",
               group_key: str | None = None) -> dict:
    """Alertmanager's webhook version-4 message for ``alerts`` (``labels``,
    ``annotations``, ``starts_at``, ``ends_at`` None while firing)."""
    now = time.time()
    out = []
    for a in alerts:
        resolved = a.get("ends_at") is not None and a["ends_at"] <= now
        out.append({"status": "resolved" if resolved else "firing", "labels": a["labels"],
                    "annotations": a.get("annotations", {}), "startsAt": rfc3339(a["starts_at"]),
                    "endsAt": rfc3339(a.get("ends_at")), "generatorURL": a.get("generator_url", ""),
                    "fingerprint": fingerprint(a["labels"])})
    common = dict(out[0]["labels"])
    for a in out[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    common_ann = dict(out[0]["annotations"])
    for a in out[1:]:
        common_ann = {k: v for k, v in common_ann.items() if a["annotations"].get(k) == v}
    key = group_key or "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}"
    return {"receiver": receiver, "status": "firing" if any(a["status"] == "firing" for a in out) else "resolved",
            "alerts": out, "groupLabels": group_labels, "commonLabels": common, "commonAnnotations": common_ann,
            "externalURL": external_url, "version": "4", "groupKey": key, "truncatedAlerts": 0}


def alerting_config(receivers: list[dict], glob: dict | None = None, **delivery: Any) -> AlertingConfig:
    """The ``alerting:`` section with ``notifications`` holding ``receivers`` and ``global``
    as written in YAML (the root route goes to the first receiver; no receivers: no
    notifications); delivery settings fast enough for tests unless given."""
    settings = {"backoff_initial": 0.2, "backoff_max": 1.0, "poll_interval": 0.1, "timeout": 5.0, **delivery}
    notifications = ({"global": glob or {}, "route": {"receiver": receivers[0]["name"]}, "receivers": receivers}
                     if receivers else None)
    return AlertingConfig(default_rules=False, delivery=DeliveryConfig(**settings), notifications=notifications)


def self_signed_cert(folder) -> tuple[str, str]:  # noqa: ANN001 - a Path
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files in ``folder``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class SmtpServer:
    """An aiosmtpd server on loopback that keeps every message with whether it came over
    TLS and which user authenticated. ``tls``: (cert, key) offers STARTTLS (and then
    requires it), or with ``implicit_tls`` speaks TLS from the first byte; ``users``:
    {login: password} enables AUTH (required); ``port`` 0: any free port."""

    def __init__(self, tls: tuple[str, str] | None = None, users: dict[str, str] | None = None,
                 implicit_tls: bool = False, port: int = 0) -> None:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[dict] = []
        self.logins: dict[int, str] = {}
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802 - aiosmtpd's hook
                outer.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                       "data": envelope.content,
                                       # STARTTLS sets session.ssl; TLS from the first byte shows on the transport
                                       "tls": session.ssl is not None
                                       or server.transport.get_extra_info("ssl_object") is not None,
                                       "login": outer.logins.get(id(session)) if session.authenticated else None})
                return "250 2.0.0 Ok: queued as TEST123"

        def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
            ok = (users or {}).get(auth_data.login.decode()) == auth_data.password.decode()
            if ok:
                outer.logins[id(session)] = auth_data.login.decode()
            return AuthResult(success=ok, handled=False)

        kwargs: dict = {}
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            if implicit_tls:
                kwargs.update(ssl_context=context)
            else:
                kwargs.update(tls_context=context, require_starttls=True)
        if users:
            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=bool(tls) and not implicit_tls)
        import socket
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # OSError when the port is taken or privileged
            self.port = sock.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.controller.stop()
