"""Messages from the webhook version-4 payload (console/notify/outbox.py): a title and
a body in markdown (DingTalk, WeCom, Feishu), Slack mrkdwn, plain text or HTML (email),
in English or Simplified Chinese (``language: zh-CN``).

The templates are Jinja2 files beside this module (``templates/body.j2`` for every text
form, ``templates/body.html.j2`` for email), rendered in a sandbox. Each alert shows what
fired (name, severity, summary, description), where (``instance``, else ``host``, else
``job``), the value (the ``value`` annotation, when the rule gives one), since when
(``startsAt``), when it resolved, its labels, the runbook (``runbook_url``), a link to the
alert (its ``generatorURL``, else the console's alerts page) and, while firing, a link
that opens a new silence with the alert's labels as matchers:
``{externalURL}/alerts/silences/new?matchers={alertname="X",instance="Y"}`` (URL-encoded).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_ALERTS = 20  # alerts written out in one message; the rest are counted ("and 3 more")

WORDS: dict[str, dict[str, str]] = {
    "en": {"firing": "FIRING", "resolved": "RESOLVED", "where": "Where", "value": "Value", "since": "Since",
           "resolved_at": "Resolved", "labels": "Labels", "runbook": "Runbook", "alert": "View alert",
           "silence": "Silence", "more": "… and {n} more alerts", "test": "Test notification"},
    "zh-CN": {"firing": "告警", "resolved": "已恢复", "where": "位置", "value": "当前值", "since": "开始时间",
              "resolved_at": "恢复时间", "labels": "标签", "runbook": "处理手册", "alert": "查看告警",
              "silence": "静默", "more": "…… 另有 {n} 条告警", "test": "测试通知"},
}
TEST_ALERTNAME = "FleetdeckTestNotification"


@dataclass(frozen=True)
class Message:
    """``title``: one line; ``body``: the text in the requested form."""

    title: str
    body: str


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(loader=FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                                undefined=StrictUndefined, keep_trailing_newline=False,
                                autoescape=lambda name: bool(name and name.endswith(".html.j2")))


_ENV = _environment()  # immutable after creation: templates are read once, from the package


def _time(rfc3339: str, tz: ZoneInfo) -> str:
    """``2026-01-02T03:04:05.123Z`` -> ``2026-01-02 03:04:05 UTC`` (in ``tz``, named by
    its abbreviation: ``2026-01-02 11:04:05 CST`` in Asia/Shanghai); empty for Go's zero time."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return ""
    try:
        ts = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return rfc3339
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def silence_url(external_url: str, labels: dict[str, str]) -> str:
    """The console's new-silence page with ``labels`` as equality matchers, in
    Alertmanager's matcher syntax (``{a="1",b="2"}``), URL-encoded."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{external_url}/alerts/silences/new?matchers={quote('{' + inner + '}', safe='')}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def title(payload: dict, language: str) -> str:
    """Alertmanager's default title: ``[FIRING:2] GroupLabelValues`` or ``[RESOLVED] ...``
    (``[告警:2]``, ``[已恢复]`` in Chinese)."""
    w = WORDS[language]
    firing = sum(1 for a in payload.get("alerts", ()) if a.get("status") == "firing")
    head = f"[{w['firing']}:{firing}]" if payload.get("status") == "firing" else f"[{w['resolved']}]"
    group = " ".join(v for _, v in sorted((payload.get("groupLabels") or {}).items()))
    if not group:
        names = sorted({a.get("labels", {}).get("alertname", "") for a in payload.get("alerts", ())} - {""})
        group = " ".join(names)
    return f"{head} {group}".strip()


def _alert(a: dict, w: dict[str, str], external_url: str, tz: ZoneInfo) -> dict[str, Any]:
    labels = a.get("labels") or {}
    ann = a.get("annotations") or {}
    resolved = a.get("status") == "resolved"
    return {
        "name": labels.get("alertname", ""), "severity": labels.get("severity", ""),
        "status_word": w["resolved" if resolved else "firing"], "resolved": resolved,
        "summary": ann.get("summary", ""), "description": ann.get("description", ""),
        "where": labels.get("instance") or labels.get("host") or labels.get("job") or "-",
        "value": ann.get("value", ""), "since": _time(a.get("startsAt", ""), tz),
        "ended": _time(a.get("endsAt", ""), tz),
        "label_text": ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname"),
        "runbook": ann.get("runbook_url", ""),
        "url": a.get("generatorURL") or f"{external_url}/alerts",
        "silence_url": silence_url(external_url, labels),
    }


FORMS: dict[str, tuple[Callable[[str], str], Callable[[str, str], str]]] = {
    "markdown": (lambda s: f"**{s}**", lambda url, text: f"[{text}]({url})"),
    "slack": (lambda s: f"*{s}*", lambda url, text: f"<{url}|{text}>"),
    "text": (lambda s: s, lambda url, text: f"{text}: {url}"),
}


def render(payload: dict, language: str, form: str, limit: int | None = None, time_zone: str = "UTC") -> Message:
    """The message of ``payload`` in ``language`` (``en``, ``zh-CN``) and ``form``
    (``markdown``, ``slack``, ``text``, ``html``), times in ``time_zone`` (IANA); a text
    body over ``limit`` characters is cut with an ellipsis (the vendors' message size limits)."""
    w = WORDS[language]
    external_url = (payload.get("externalURL") or "").rstrip("/")
    alerts = list(payload.get("alerts") or ())
    # Firing before resolved, as Alertmanager's default templates list them.
    alerts.sort(key=lambda a: a.get("status") != "firing")
    more = len(alerts) - MAX_ALERTS + int(payload.get("truncatedAlerts") or 0)
    context = {"title": title(payload, language), "alerts": [_alert(a, w, external_url, ZoneInfo(time_zone))
                                                        for a in alerts[:MAX_ALERTS]],
               "more": max(more, 0), "w": w, "lang": language, "status": payload.get("status", ""),
               "external_url": external_url}
    if form == "html":
        body = _ENV.get_template("body.html.j2").render(context)
    else:
        bold, link = FORMS[form]
        body = _ENV.get_template("body.j2").render(context, b=bold, link=link).strip() + "\n"
    if limit is not None and len(body) > limit:
        body = body[:limit - 1] + "…"
    return Message(context["title"], body)
