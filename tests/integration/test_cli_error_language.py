"""The ``fleetdeck`` command's errors in Simplified Chinese when the POSIX locale says so:
its own messages (a console it cannot reach, an unknown enum value, a bad flag value) and
the console's, which it asks for in the terminal's language (Accept-Language), from the
console's API and from its Prometheus-compatible API alike; English otherwise. The real
console script against a real console (tests/harness.py ConsoleHarness on loopback)."""
from __future__ import annotations

import pytest

from tests.integration.procs import child_env, free_port
from tests.integration.test_cli_daily import SCRIPT, fleetdeck

LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
ZH = {"LANG": "zh_CN.UTF-8"}


@pytest.fixture()
def env(tmp_path):
    if not SCRIPT.exists():
        pytest.fail(f"the fleetdeck console script is not installed beside {SCRIPT.parent}")
    return {k: v for k, v in child_env(XDG_CONFIG_HOME=str(tmp_path / "config")).items() if k not in LOCALE_VARS}


def test_an_unreachable_console_in_chinese(env):  # noqa: ANN001
    dead = f"http://127.0.0.1:{free_port()}"
    target = {"FLEETDECK_URL": dead, "FLEETDECK_TOKEN": "fd_whatever"}
    zh = fleetdeck("hosts", env={**env, **target, **ZH})
    assert zh.returncode == 1, zh
    assert zh.stderr.startswith(f"fleetdeck: network unreachable: 无法连接到控制台 {dead}："), zh.stderr
    en = fleetdeck("hosts", env={**env, **target})
    assert en.returncode == 1 and en.stderr.startswith(f"fleetdeck: network unreachable: cannot reach {dead}: ")


def test_a_url_without_a_scheme_in_chinese(env):  # noqa: ANN001
    zh = fleetdeck("hosts", env={**env, "FLEETDECK_URL": "127.0.0.1:1", "FLEETDECK_TOKEN": "x", **ZH})
    assert zh.returncode == 2
    assert zh.stderr.strip() == ("fleetdeck: FLEETDECK_URL (environment) 必须是 http:// 或 https:// URL，"
                                 "例如 http://127.0.0.1:8700，收到的是 '127.0.0.1:1'")


def test_unknown_enum_values_and_bad_flags_in_chinese(env):  # noqa: ANN001
    typo = fleetdeck("logs", "--level", "warnign", env={**env, **ZH})
    assert typo.returncode == 2
    assert "fleetdeck logs：错误：" in typo.stderr, typo.stderr
    assert "'warnign' 不是以下值之一：trace, debug, info, warn, error, fatal；您是想输入 'warn' 吗？" in typo.stderr
    command = fleetdeck("hots", env={**env, **ZH})
    assert command.returncode == 2 and "无效的选项：'hots'；您是想输入 'hosts' 吗？" in command.stderr, command.stderr
    since = fleetdeck("logs", "--since", "soon", env={**env, **ZH})
    assert since.returncode == 2
    assert since.stderr.strip() == "fleetdeck: --since 必须是时长，例如 30s、15m、1h 或 2d，收到的是 'soon'"
    english = fleetdeck("logs", "--level", "warnign", env=env)
    assert "'warnign' is not one of" in english.stderr and "fleetdeck logs: error: " in english.stderr


def test_the_consoles_errors_come_back_in_chinese(console, env):  # noqa: ANN001
    target = {"FLEETDECK_URL": console.url, "FLEETDECK_TOKEN": console.api_token("deployer")}
    missing = fleetdeck("cancel", "987654", env={**env, **target, **ZH})
    assert missing.returncode == 1
    assert missing.stderr.strip() == "fleetdeck: 404 unknown_deploy: 没有部署 987654", missing.stderr
    english = fleetdeck("cancel", "987654", env={**env, **target})
    assert english.stderr.strip() == "fleetdeck: 404 unknown_deploy: no deploy 987654"
    # The Prometheus-compatible API answers the CLI in its language too (it asks for it).
    bad = fleetdeck("query", "sum(rate(", env={**env, **target, **ZH})
    assert bad.returncode == 1
    assert bad.stderr.startswith('fleetdeck: 400 bad_data: 参数 "query" 无效：'), bad.stderr
    # A refused token: the console's word and the CLI's hint, both in Chinese.
    refused = fleetdeck("hosts", env={**env, **target, "FLEETDECK_TOKEN": "fd_not-a-token", **ZH})
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("fleetdeck: 401 unauthorized: 缺少凭据或凭据无效：来自 environment FLEETDECK_TOKEN "
                                      "的令牌被拒绝（已吊销、已过期还是输错了？）"), refused.stderr
