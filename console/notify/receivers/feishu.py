"""``feishu``: a Feishu (Lark) custom bot (open.feishu.cn, "自定义机器人使用指南"): an
interactive card with the title as its header (red while firing, green resolved) and the
alerts as a markdown element. With a signature secret ("签名校验"), the body carries
``timestamp`` (Unix seconds, a string) and ``sign`` = base64 of HMAC-SHA256 keyed with
``timestamp + "\\n" + secret`` over an empty message. Feishu answers ``{"code": 0,
"msg": "success"}``; a non-zero ``code`` is a failure (9499 and 11232, rate limits, are
retried).
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from console.notify.receivers.base import Attempt, SendContext, post_json
from console.notify.receivers.dingtalk import vendor_answer

TEXT_LIMIT = 8000
RETRIED_CODES = {9499, 11232}


def sign(secret: str, timestamp_s: int) -> str:
    """base64(HMAC-SHA256(key = ts + "\\n" + secret, message = b""))."""
    return base64.b64encode(hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


def message(ctx: SendContext) -> dict:
    m = ctx.render("markdown", TEXT_LIMIT)
    return {"msg_type": "interactive", "card": {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": m.title},
                   "template": "green" if ctx.payload.get("status") == "resolved" else "red"},
        "elements": [{"tag": "markdown", "content": m.body}]}}


def send(ctx: SendContext) -> Attempt:
    doc = message(ctx)
    if ctx.config.secret:
        ts = int(ctx.now())
        doc = {"timestamp": str(ts), "sign": sign(ctx.secret(ctx.config.secret), ts), **doc}
    attempt, answer = post_json(ctx, ctx.url(), doc)
    return vendor_answer(attempt, answer, "code", "msg", RETRIED_CODES)
