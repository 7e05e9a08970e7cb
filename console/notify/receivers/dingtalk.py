"""``dingtalk``: a DingTalk custom robot (open.dingtalk.com, "自定义机器人发送群消息").

Message: ``{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles",
"isAtAll"}}``; the mobiles are also written as ``@138...`` in the text, which is what
makes DingTalk notify them. With a signing secret ("加签"), the URL gets ``timestamp``
(Unix milliseconds) and ``sign`` = URL-encoded base64 of HMAC-SHA256, keyed with the
secret, over ``timestamp + "\\n" + secret``. DingTalk answers HTTP 200 with ``{"errcode":
0, "errmsg": "ok"}``; a non-zero ``errcode`` is a failure (130101, sending too fast, is
retried).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus

from console.notify.receivers.base import Attempt, SendContext, post_json

TEXT_LIMIT = 5000  # characters; DingTalk takes up to 20,000 bytes of UTF-8
RETRIED_CODES = {130101}  # "send too fast, exceed 20 times per minute"


def sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value: URL-encoded base64(HMAC-SHA256(secret, ts + "\\n" + secret))."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def message(ctx: SendContext, at_mobiles: list[str], at_all: bool) -> dict:
    m = ctx.render("markdown", TEXT_LIMIT)
    text = m.body + ("\n" + " ".join(f"@{mobile}" for mobile in at_mobiles) if at_mobiles else "")
    return {"msgtype": "markdown", "markdown": {"title": m.title, "text": text},
            "at": {"atMobiles": list(at_mobiles), "isAtAll": at_all}}


def vendor_answer(attempt: Attempt, answer: object, code_key: str, message_key: str, retried: set[int]) -> Attempt:
    """An HTTP 200 whose JSON body carries a non-zero error code is a failure."""
    if not attempt.ok or not isinstance(answer, dict):
        return attempt
    code = answer.get(code_key, 0)
    if code in (0, None):
        return attempt
    return Attempt(ok=False, status=attempt.status, answer=attempt.answer,
                   error=f"{code_key} {code}: {answer.get(message_key, '')}", retry=code in retried)


def send(ctx: SendContext) -> Attempt:
    config = ctx.config
    url = ctx.url()
    if config.secret:
        ts = int(ctx.now() * 1000)
        url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={sign(ctx.secret(config.secret), ts)}"
    attempt, answer = post_json(ctx, url, message(ctx, config.at_mobiles, config.at_all))
    return vendor_answer(attempt, answer, "errcode", "errmsg", RETRIED_CODES)
