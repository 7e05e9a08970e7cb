"""Email notifications to a real SMTP server (aiosmtpd): plain, STARTTLS with a
self-signed certificate trusted through tls_config.ca_file, AUTH with the password from
the secret store; text and HTML bodies; 5xx not retried."""
from __future__ import annotations

import email
import email.policy
import time

import pytest

from tests.harness import wait_for
from tests.integration.notify_peers import SmtpServer, self_signed_cert, v4_payload
from tests.integration.test_notify_receivers import host_down, log_entry, put_secret, queue, start_console


def parts(raw: bytes) -> tuple[email.message.EmailMessage, str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return msg, msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def test_plain_smtp_text_and_html(tmp_path):
    smtp = SmtpServer()
    console = start_console(tmp_path, [{"name": "mail", "email_configs": [
        {"to": "ops@example.com, lead@example.com", "send_resolved": True}]}],
        glob={"smtp_smarthost": smtp.smarthost, "smtp_from": "fleetdeck@example.com", "smtp_require_tls": False})
    try:
        token = console.api_token("viewer")
        queue(console, "mail", "email[0]", v4_payload("mail", [host_down("web-1")], {"alertname": "HostDown"}))
        wait_for(lambda: smtp.messages, 10, "the email")
        got = smtp.messages[0]
        assert got["from"] == "fleetdeck@example.com" and got["to"] == ["ops@example.com", "lead@example.com"]
        assert not got["tls"]
        msg, text, html = parts(got["data"])
        assert msg["Subject"] == "[FIRING:1] HostDown" and msg["To"] == "ops@example.com, lead@example.com"
        assert "FIRING: HostDown (critical)" in text and "Where: web-1" in text and "Runbook: https://runbooks" in text
        assert "<h2" in html and 'href="https://runbooks.example/hostdown"' in html and "web-1" in html
        assert "alerts/silences/new?matchers=" in html
        sent = wait_for(lambda: log_entry(console, token, "mail", "sent"), 10, "the log entry")
        assert sent["last_status"] == 250 and "queued as TEST123" in sent["answer"]
        queue(console, "mail", "email[0]", v4_payload("mail", [host_down("web-1", resolved=True)],
                                                      {"alertname": "HostDown"}))
        wait_for(lambda: smtp.messages[1:], 10, "the resolved email")
        msg, text, _ = parts(smtp.messages[1]["data"])
        assert msg["Subject"] == "[RESOLVED] HostDown" and "Resolved: " in text
    finally:
        console.close()
        smtp.close()


def test_starttls_and_auth_with_the_password_from_the_secret_store(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    smtp = SmtpServer(tls=(cert, key), users={"alerts": "s3cret-pw"})
    console = start_console(tmp_path, [
        {"name": "mail", "language": "zh-CN", "email_configs": [{"to": "ops@example.com",
                                                                 "tls_config": {"ca_file": cert}}]},
        {"name": "untrusted", "email_configs": [{"to": "ops@example.com"}]},
        {"name": "wrongpw", "email_configs": [{"to": "ops@example.com", "tls_config": {"ca_file": cert},
                                                "auth_password_secret": "smtp-wrong"}]}],
        glob={"smtp_smarthost": smtp.smarthost, "smtp_from": "fleetdeck@example.com",
              "smtp_auth_username": "alerts", "smtp_auth_password_secret": "smtp-pw"})
    try:
        put_secret(console, "smtp-pw", "s3cret-pw")
        put_secret(console, "smtp-wrong", "not-the-password")
        token = console.api_token("viewer")
        queue(console, "mail", "email[0]", v4_payload("mail", [host_down("web-1")], {"alertname": "HostDown"}))
        wait_for(lambda: smtp.messages, 10, "the email")
        got = smtp.messages[0]
        assert got["tls"] and got["login"] == "alerts"
        msg, text, html = parts(got["data"])
        assert msg["Subject"] == "[告警:1] HostDown" and "位置: web-1" in text and "处理手册" in html
        # A certificate the console does not trust: failed at once, nothing sent.
        queue(console, "untrusted", "email[0]", v4_payload("untrusted", [host_down()], {"alertname": "HostDown"}))
        failed = wait_for(lambda: log_entry(console, token, "untrusted", "failed"), 10, "the refused TLS")
        assert "not trusted" in failed["last_error"] and failed["attempts"] == 1
        # A wrong password: 535, not retried.
        queue(console, "wrongpw", "email[0]", v4_payload("wrongpw", [host_down()], {"alertname": "HostDown"}))
        failed = wait_for(lambda: log_entry(console, token, "wrongpw", "failed"), 10, "the refused login")
        assert failed["last_status"] == 535 and failed["attempts"] == 1
        time.sleep(0.5)
        assert len(smtp.messages) == 1
    finally:
        console.close()
        smtp.close()


# aiosmtpd's auth_require_tls looks for STARTTLS only, so it is off with TLS from the first
# byte, and aiosmtpd warns of AUTH without TLS, which is not the case here.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_port_465_speaks_tls_from_the_first_byte(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    try:
        smtp = SmtpServer(tls=(cert, key), users={"alerts": "pw465"}, implicit_tls=True, port=465)
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.1:465 here: {exc}")
    console = start_console(tmp_path, [{"name": "mail", "email_configs": [
        {"to": "ops@example.com", "smarthost": "127.0.0.1:465", "from": "fd@example.com",
         "auth_username": "alerts", "auth_password_secret": "pw465", "tls_config": {"ca_file": cert}}]}])
    try:
        put_secret(console, "pw465", "pw465")
        queue(console, "mail", "email[0]", v4_payload("mail", [host_down("web-1")], {"alertname": "HostDown"}))
        wait_for(lambda: smtp.messages, 10, "the email over TLS")
        assert smtp.messages[0]["tls"] and smtp.messages[0]["login"] == "alerts"
    finally:
        console.close()
        smtp.close()
