"""Receiver configuration models: Alertmanager's shape, credentials only by secret name."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from console.config import ConfigError
from console.notify.config import parse_notifications
from console.notify.receivers.config import Receiver, ReceiverGlobals, receiver_integrations


@pytest.mark.parametrize("kind, key, instead", [
    ("email", "auth_password", "auth_password_secret"), ("slack", "api_url", "url_secret"),
    ("pagerduty", "routing_key", "routing_key_secret"), ("webhook", "url_file", "url_secret")])
def test_credentials_in_the_file_are_refused_naming_the_secret_key(kind, key, instead):
    with pytest.raises(ValidationError, match=f"{key}: credentials are not written.*{instead}"):
        Receiver.model_validate({"name": "r", f"{kind}_configs": [{key: "plaintext", "to": "a@b.c"}]})
    with pytest.raises(ValidationError, match="smtp_auth_password_secret"):
        ReceiverGlobals.model_validate({"smtp_auth_password": "x"})


def test_unknown_keys_missing_urls_and_bad_values_are_refused():
    for bad in ({"webhook_configs": [{"url": "http://x", "colour": "red"}]}, {"webhook_configs": [{}]},
                {"webhook_configs": [{"url": "ftp://x/y"}]}, {"dingtalk_configs": [{"url": "http://x", "url_secret": "s"}]},
                {"email_configs": [{"to": "a@b.c", "smarthost": "nohostport"}]}, {"language": "fr"},
                {"time_zone": "Mars/Olympus"},
                {"pagerduty_configs": [{"routing_key_secret": "k", "severity": "fatal"}]}):
        with pytest.raises(ValidationError):
            Receiver.model_validate({"name": "r", **bad})


def test_receiver_integrations_names_them_as_alertmanager_and_inherits_the_language():
    cfg = SimpleNamespace(receivers=[Receiver.model_validate({
        "name": "cn", "language": "zh-CN", "webhook_configs": [{"url": "http://a"}, {"url": "http://b"}],
        "dingtalk_configs": [{"url": "http://d", "language": "en"}]})], global_=None)
    got = receiver_integrations(cfg, "cn")
    assert [(i.name, i.language) for i in got] == [("webhook[0]", "zh-CN"), ("webhook[1]", "zh-CN"),
                                                   ("dingtalk[0]", "en")]
    assert got[1].config.url == "http://b" and got[0].globals == ReceiverGlobals()
    with pytest.raises(KeyError):
        receiver_integrations(cfg, "other")


@pytest.mark.parametrize("receiver, glob, error", [
    ({"email_configs": [{"to": "a@b.c"}]}, {},
     "receivers[0].email_configs[0]: no global SMTP smarthost set: give smarthost here or global.smtp_smarthost"),
    ({"email_configs": [{"to": "a@b.c", "smarthost": "mx:25"}]}, {},
     "receivers[0].email_configs[0]: no global SMTP from set: give from here or global.smtp_from"),
    ({"email_configs": [{"to": "a@b.c"}]}, {"smtp_smarthost": "mx:25"},
     "receivers[0].email_configs[0]: no global SMTP from set"),
    ({"slack_configs": [{"channel": "#ops"}]}, {},
     "receivers[0].slack_configs[0]: no global Slack API URL set: give url_secret here or global.slack_api_url_secret"),
])
def test_what_an_integration_cannot_send_without_is_refused_at_load(receiver, glob, error):
    # as Alertmanager's config.Load refuses it, not at the first notification
    doc = {"global": glob, "route": {"receiver": "r"}, "receivers": [{"name": "r", **receiver}]}
    with pytest.raises(ConfigError) as refused:
        parse_notifications(doc, lambda loc: None, "alerting.notifications")
    assert str(refused.value).startswith(f"alerting.notifications.{error}")


@pytest.mark.parametrize("receiver, glob", [
    ({"email_configs": [{"to": "a@b.c"}]}, {"smtp_smarthost": "mx:25", "smtp_from": "fd@b.c"}),
    ({"email_configs": [{"to": "a@b.c", "smarthost": "mx:25", "from": "fd@b.c"}]}, {}),
    ({"slack_configs": [{"channel": "#ops"}]}, {"slack_api_url_secret": "slack-hook"}),
    ({"slack_configs": [{"url_secret": "slack-hook"}]}, {}),
])
def test_an_integration_with_its_own_or_the_global_setting_loads(receiver, glob):
    doc = {"global": glob, "route": {"receiver": "r"}, "receivers": [{"name": "r", **receiver}]}
    assert parse_notifications(doc, lambda loc: None, "alerting.notifications").receivers[0].name == "r"
