"""Every kind of problem the configuration's validation reports is translated: pydantic's
own messages (by error type), the "unknown key" and "required" lines, the sources, and
the several lines of one error each on its own, keeping the English text as it was."""
from __future__ import annotations

import pickle
import re

import pytest

from console.config import ConfigError, load_config
from console.i18n import I18n, message_of
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
    assert "probes.modules.m.prober：必须是 'http', 'tcp', 'dns', 'ssh' or 'icmp'，收到的是 'smtp'（来自 probes.yaml line 3）" \
        in said, said
    for line in said:
        assert ENGLISH_WORDS.search(line.replace("probes.yaml line 3", "")) is None, line
    # Errors cross process boundaries pickled: the lines stay translatable.
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value) and chinese(again) == chinese(caught.value)
