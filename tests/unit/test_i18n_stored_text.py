"""Messages stored as their template and values (console/i18n.py ``text_data``) and
rendered later in a reader's language: the deploy step log's path (docs/deploys.md)."""
from __future__ import annotations

import json

from console.i18n import I18n, localize_message, text_data, text_from_data, tx


def test_a_stored_message_is_rendered_in_chinese_with_its_values_verbatim():
    zh = I18n().lookup("zh-CN")
    message = tx("{state} after {took} s: {error}", state=tx("failed"), took="3.0",
                 error=tx("Docker engine unreachable: {error}", error="Connection aborted. {not a field}"))
    doc = json.loads(json.dumps(text_data(message)))  # as stored in a JSON column
    event = localize_message({"seq": 1, "message": str(message)}, doc, zh)
    assert event["message"] == "3.0 秒后失败：无法连接 Docker 引擎：Connection aborted. {not a field}"
    assert [p["text"] for p in event["message_parts"] if p["value"]] == ["3.0", "Connection aborted. {not a field}"]
    assert event["seq"] == 1
    english = localize_message({"message": str(message)}, doc, I18n().lookup("en"))
    assert english["message"] == str(message)


def test_events_without_a_template_or_with_a_broken_one_are_shown_as_stored():
    zh = I18n().lookup("zh-CN")
    old = {"message": "connecting to unix:///var/run/docker.sock"}
    assert localize_message(old, None, zh) == old
    for broken in ({"template": "x {missing}", "values": {}}, {"template": 3, "values": {}}, {"values": {}},
                   {"template": "{a}", "values": {"a": {"template": "{b}", "values": {}}}}, "text"):
        assert text_from_data(broken) is None
        assert localize_message(old, broken, zh) == old
