"""Every kind of problem the configuration's validation reports is translated: pydantic's
own messages (by error type), the "unknown key" and "required" lines, the sources, and
the several lines of one error each on its own, keeping the English text as it was."""
from __future__ import annotations

import pickle
import re

import pytest

from console.config import ConfigError, load_config
from console.i18n import I18n, message_of
from console.deploy.apps import parse_apps
from console.notify.config import parse_notifications
from console.probes.config import parse_probes

ENGLISH_WORDS = re.compile(r"\b(must|should|got|from|unknown|required|valid|line|environment|default|item|items)\b")


def chinese(exc: ConfigError) -> str:
    return I18n().error_message("zh-CN", message_of(exc))


@pytest.mark.parametrize(("env", "english"), [
    ({"FLEETDECK_DEFAULT_INTERVAL": "0"}, "console.default_interval: must be greater than 0, got '0'"),
    ({"FLEETDECK_MAX_BODY_BYTES": "12"}, "console.max_body_bytes: must be greater than or equal to 1024, got '12'"),
    ({"FLEETDECK_STORAGE_RETRY_AFTER": "9999"},
     "console.storage_retry_after: must be less than or equal to 3600, got '9999'"),
    ({"FLEETDECK_MAX_SERIES_PER_HOST": "1.5"},
     "console.max_series_per_host: must be a valid integer, unable to parse string as an integer, got '1.5'"),
    ({"FLEETDECK_SESSION_DAYS": "soon"},
     "console.session_days: must be a valid number, unable to parse string as a number, got 'soon'"),
    ({"FLEETDECK_COOKIE_SECURE": "perhaps"},
     "console.cookie_secure: must be a valid boolean, unable to interpret input, got 'perhaps'"),
    ({"FLEETDECK_PUBLIC_URL": "ftp://x"},
     "console.public_url: must be an http:// or https:// URL (or empty), got 'ftp://x'"),
])
def test_console_problems_keep_their_english_and_read_in_chinese(env, english):  # noqa: ANN001
    with pytest.raises(ConfigError) as caught:
        load_config(None, env=env)
    variable = next(iter(env))
    assert str(caught.value) == f"{english} (from environment {variable})"
    said = chinese(caught.value)
    assert said.endswith(f"（来自 环境变量 {variable}）"), said
    assert said.startswith(english.split(":")[0] + "："), said
    assert ENGLISH_WORDS.search(said) is None, said


def test_probe_problems_one_translated_line_each():
    raw = {"workers": 0, "colour": "blue", "modules": {"m": {"prober": "smtp", "timeout": "x"}},
           "jobs": [{"name": "j", "module": "m"}]}
    with pytest.raises(ConfigError) as caught:
        parse_probes(raw, lambda loc: "probes.yaml line 3")
    english = str(caught.value).splitlines()
    said = chinese(caught.value).splitlines()
    assert len(said) == len(english) >= 5, (english, said)
    assert "probes.workers: must be greater than or equal to 1, got 0 (from probes.yaml line 3)" in english
    assert "probes.workers：必须大于或等于 1，收到的是 0（来自 probes.yaml line 3）" in said
    assert "probes.colour：未知的键（来自 probes.yaml line 3）" in said
    assert "probes.jobs[0].targets：必须提供（来自 probes.yaml line 3）" in said
    assert "probes.modules.m.prober：必须是 'http'、'tcp'、'dns'、'ssh' 或 'icmp'，收到的是 'smtp'（来自 probes.yaml line 3）" \
        in said, said
    for line in said:
        assert ENGLISH_WORDS.search(line.replace("probes.yaml line 3", "")) is None, line
    # Errors cross process boundaries pickled: the lines stay translatable.
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value) and chinese(again) == chinese(caught.value)


def test_the_sections_own_checks_read_in_chinese():
    apps = {"web": {"target": {"image": "busybox:1", "ports": ["99999:80"]}, "canary": {"duration": 5}}}
    with pytest.raises(ConfigError) as caught:
        parse_apps(apps, lambda loc: "apps.yaml")
    assert str(caught.value).splitlines() == [
        "apps.web.target.image: 'busybox:1' is not an image repository (no tag or digest; the deploy's version is "
        "the tag) (from apps.yaml)",
        "apps.web.target.ports[0]: host port range '99999' is not within 1-65535 and ascending (from apps.yaml)",
        "apps.web.canary.interval: required (from apps.yaml)"]
    assert chinese(caught.value).splitlines() == [
        "apps.web.target.image：'busybox:1' 不是镜像仓库（不能带标签或摘要；部署的版本就是标签）（来自 apps.yaml）",
        "apps.web.target.ports[0]：主机端口范围 '99999' 不在 1-65535 内或不是升序（来自 apps.yaml）",
        "apps.web.canary.interval：必须提供（来自 apps.yaml）"]
    notifications = {"route": {"receiver": "x", "group_by": ["a", "a"]}, "receivers": [{"name": "x"}],
                     "time_intervals": [{"name": "t", "time_intervals": [{"weekdays": ["funday"]}]}]}
    with pytest.raises(ConfigError) as caught:
        parse_notifications(notifications, lambda loc: None, "alerting.notifications")
    assert str(caught.value).splitlines() == [
        "alerting.notifications.route.group_by: duplicated label 'a' in group_by",
        "alerting.notifications.time_intervals[0].time_intervals[0].weekdays: funday is not a valid weekday"]
    assert chinese(caught.value).splitlines() == [
        "alerting.notifications.route.group_by：group_by 中的标签 'a' 重复",
        "alerting.notifications.time_intervals[0].time_intervals[0].weekdays：funday 不是有效的星期几"]
    # A check across receivers: the root route names a receiver nobody defined.
    with pytest.raises(ConfigError) as caught:
        parse_notifications({"route": {"receiver": "nobody"}, "receivers": [{"name": "x"}]},
                            lambda loc: "n.yaml line 2", "alerting.notifications")
    assert str(caught.value) == ("alerting.notifications.route.receiver: undefined receiver 'nobody' used in route "
                                 "(from n.yaml line 2)")
    assert chinese(caught.value) == "alerting.notifications.route.receiver：路由中使用了未定义的接收者 'nobody'（来自 n.yaml line 2）"
