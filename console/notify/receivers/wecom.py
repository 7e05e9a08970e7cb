"""``wecom``: a WeCom (WeChat Work) group robot (developer.work.weixin.qq.com,
"群机器人配置说明"): ``{"msgtype": "markdown", "markdown": {"content"}}``, content at most
4096 bytes of UTF-8. WeCom answers HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``; a
non-zero ``errcode`` is a failure (45009, over the rate limit, and -1, busy, are retried).
"""
from __future__ import annotations

from console.notify.receivers.base import Attempt, SendContext, post_json
from console.notify.receivers.dingtalk import vendor_answer

CONTENT_BYTES = 4096
RETRIED_CODES = {45009, -1}


def message(ctx: SendContext) -> dict:
    body = ctx.render("markdown").body
    raw = body.encode("utf-8")
    if len(raw) > CONTENT_BYTES:
        body = raw[:CONTENT_BYTES - 3].decode("utf-8", "ignore") + "…"
    return {"msgtype": "markdown", "markdown": {"content": body}}


def send(ctx: SendContext) -> Attempt:
    attempt, answer = post_json(ctx, ctx.url(), message(ctx))
    return vendor_answer(attempt, answer, "errcode", "errmsg", RETRIED_CODES)
