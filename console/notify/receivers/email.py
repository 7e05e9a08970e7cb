"""``email``: a text and an HTML body (multipart/alternative) by SMTP (RFC 5321), with
TLS from the first byte on port 465 (RFC 8314) or STARTTLS (RFC 3207) when
``require_tls``, certificate always verified (``tls_config.ca_file`` to trust a private
CA), and AUTH (RFC 4954) when ``auth_username`` is set. The answer logged is the
server's reply to DATA (``250 ...``). SMTP 4xx replies, timeouts and dropped connections
are retried; 5xx replies (a rejected recipient, failed authentication) are not.
"""
from __future__ import annotations

import contextlib
import email.utils
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

from console.notify.receivers.base import Attempt, PermanentError, SendContext
from console.notify.receivers.config import smarthost


def build(ctx: SendContext, sender: str, recipients: list[str]) -> EmailMessage:
    text = ctx.render("text")
    html = ctx.render("html")
    msg = EmailMessage()
    msg["Subject"] = text.title
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = email.utils.formatdate(ctx.now(), localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    for name, value in ctx.config.headers.items():
        del msg[name]
        msg[name] = value
    msg.set_content(text.body)
    msg.add_alternative(html.body, subtype="html")
    return msg


def _session(ctx: SendContext, smtp: smtplib.SMTP, where: str, sender: str, recipients: list[str],
             msg: EmailMessage, starttls: bool, username: str | None, password_secret: str | None,
             tls: ssl.SSLContext) -> Attempt:
    smtp.ehlo()
    if starttls:
        if not smtp.has_extn("starttls"):
            return Attempt(ok=False, error=f"{where} does not offer STARTTLS and require_tls is set")
        smtp.starttls(context=tls)
        smtp.ehlo()
    if username:
        if not password_secret:
            raise PermanentError("auth_username is set without auth_password_secret")
        smtp.login(username, ctx.secret(password_secret))
    code, reply = smtp.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    for rcpt in recipients:
        code, reply = smtp.rcpt(rcpt)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
    # SMTP lines end in CRLF (RFC 5321 2.3.8); smtplib.data() sends bytes as they are.
    code, reply = smtp.data(msg.as_bytes(policy=SMTP_POLICY))
    return Attempt(ok=True, status=code, answer=f"{code} {reply.decode('utf-8', 'replace')}")


def send(ctx: SendContext) -> Attempt:
    config, glob = ctx.config, ctx.integration.globals
    sender = config.from_ or glob.smtp_from
    where = config.smarthost or glob.smtp_smarthost
    if not sender or not where:
        raise PermanentError("email needs from and smarthost (or global smtp_from and smtp_smarthost)")
    host, port = smarthost(where)
    hello = config.hello or glob.smtp_hello
    username = config.auth_username or glob.smtp_auth_username
    password_secret = config.auth_password_secret or glob.smtp_auth_password_secret
    require_tls = glob.smtp_require_tls if config.require_tls is None else config.require_tls
    recipients = [r.strip() for r in config.to.split(",") if r.strip()]
    timeout = ctx.timeout
    tls = ssl.create_default_context(cafile=config.tls_config.ca_file)
    msg = build(ctx, sender, recipients)
    try:
        if port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, local_hostname=hello, timeout=timeout, context=tls)
        else:
            smtp = smtplib.SMTP(host, port, local_hostname=hello, timeout=timeout)
        try:
            return _session(ctx, smtp, where, sender, recipients, msg, require_tls and port != 465, username,
                            password_secret, tls)
        finally:
            # The message's fate is decided by the reply to DATA; a failed QUIT changes nothing.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()
    except smtplib.SMTPRecipientsRefused as exc:
        rcpt, (code, raw_reply) = next(iter(exc.recipients.items()))
        return Attempt(ok=False, status=code, answer=f"{code} {raw_reply.decode('utf-8', 'replace')}",
                       error=f"recipient {rcpt} refused", retry=400 <= code < 500)
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return Attempt(ok=False, status=exc.smtp_code, answer=f"{exc.smtp_code} {reply}",
                       error=f"SMTP {exc.smtp_code} from {where}", retry=400 <= exc.smtp_code < 500)
    except ssl.SSLCertVerificationError as exc:
        return Attempt(ok=False, error=f"TLS certificate of {where} not trusted: {exc.verify_message}")
    except smtplib.SMTPNotSupportedError as exc:
        return Attempt(ok=False, error=f"{where}: {exc}")
    except (smtplib.SMTPException, socket.timeout, TimeoutError, OSError) as exc:
        return Attempt(ok=False, error=f"SMTP {where}: {exc}", retry=True)
