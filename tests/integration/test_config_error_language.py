"""Configuration errors in Simplified Chinese when the terminal's or the request's language
says so: ``fleetdeck serve`` refusing a bad file, variable or flag before it listens (each
line keeps its key path, value and source, the words around them translated), and the
console refusing an apps reload (``POST /api/v1/apps/reload``, ``fleetdeck apps reload``);
English, unchanged, otherwise. The real console script and a real console on loopback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import http
from tests.integration.procs import REPO, ConsoleProcess, child_env, free_port
from tests.integration.test_cli_daily import SCRIPT, fleetdeck

LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
ZH = {"LANG": "zh_CN.UTF-8"}


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    if not SCRIPT.exists():
        pytest.fail(f"the fleetdeck console script is not installed beside {SCRIPT.parent}")
    return {k: v for k, v in child_env(XDG_CONFIG_HOME=str(tmp_path / "config"),
                                       FLEETDECK_DATA_DIR=str(tmp_path / "data")).items() if k not in LOCALE_VARS}


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def refused(config: Path, env: dict[str, str], *flags: str) -> list[str]:
    """``fleetdeck serve --config CONFIG`` must exit 2 before listening; its stderr lines."""
    port = free_port()
    done = fleetdeck("serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", *flags, env=env)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "listening" not in done.stdout.lower() and "Fleetdeck " not in done.stdout, done.stdout
    return done.stderr.splitlines()


def test_serve_refuses_a_bad_console_section_in_chinese(tmp_path, env):  # noqa: ANN001
    config = write_config(tmp_path, "console:\n"
                                    "  retention_raw_days: -1\n"
                                    "  colour: blue\n"
                                    "  cookie_secure: maybe\n"
                                    "  max_series_per_query: many\n")
    bad_env = {"FLEETDECK_MAX_BODY_BYTES": "10"}
    zh = refused(config, {**env, **bad_env, **ZH})
    assert zh[0].startswith("fleetdeck: 配置错误：")
    lines = [zh[0].removeprefix("fleetdeck: 配置错误："), *zh[1:]]
    assert sorted(lines) == sorted([
        "console.max_body_bytes：必须大于或等于 1024，收到的是 '10'（来自 环境变量 FLEETDECK_MAX_BODY_BYTES）",
        f"console.retention_raw_days：必须大于 0，收到的是 -1（来自 {config} 第 2 行）",
        f"console.colour：未知的键（来自 {config} 第 3 行）",
        f"console.cookie_secure：必须是有效的布尔值，无法解释输入，收到的是 'maybe'（来自 {config} 第 4 行）",
        f"console.max_series_per_query：必须是有效的整数，无法将字符串解析为整数，收到的是 'many'（来自 {config} 第 5 行）",
    ]), zh
    en = refused(config, {**env, **bad_env})
    assert en[0].startswith("fleetdeck: configuration: ")
    lines = [en[0].removeprefix("fleetdeck: configuration: "), *en[1:]]
    assert sorted(lines) == sorted([
        "console.max_body_bytes: must be greater than or equal to 1024, got '10' "
        "(from environment FLEETDECK_MAX_BODY_BYTES)",
        f"console.retention_raw_days: must be greater than 0, got -1 (from {config} line 2)",
        f"console.colour: unknown key (from {config} line 3)",
        f"console.cookie_secure: must be a valid boolean, unable to interpret input, got 'maybe' (from {config} line 4)",
        f"console.max_series_per_query: must be a valid integer, unable to parse string as an integer, got 'many' "
        f"(from {config} line 5)",
    ]), en


def test_cross_key_problems_flags_and_sections_in_chinese(tmp_path, env):  # noqa: ANN001
    config = write_config(tmp_path, "console:\n  retention_1m_days: 3\n")
    zh = refused(config, {**env, "FLEETDECK_RETENTION_RAW_DAYS": "5", **ZH})
    assert zh == [f"fleetdeck: 配置错误：console.retention_1m_days：必须至少为 retention_raw_days（5），收到的是 3"
                  f"（来自 {config} 第 2 行；retention_raw_days 来自 环境变量 FLEETDECK_RETENTION_RAW_DAYS）"], zh
    en = refused(config, {**env, "FLEETDECK_RETENTION_RAW_DAYS": "5"})
    assert en == [f"fleetdeck: configuration: console.retention_1m_days: must be at least retention_raw_days (5), "
                  f"got 3 (from {config} line 2; retention_raw_days from environment FLEETDECK_RETENTION_RAW_DAYS)"]
    # A flag is named as the flag; the value the default left is named as the default.
    defaults = write_config(tmp_path, "console:\n  database_read_url: postgresql+psycopg://u:p@127.0.0.1/db\n")
    zh = refused(defaults, {**env, **ZH})
    assert zh == [f"fleetdeck: 配置错误：console.database_read_url：只读副本需要 PostgreSQL 的 database_url"
                  f"（SQLite 没有副本）（来自 {defaults} 第 2 行；database_url 来自 默认值）"], zh
    flagged = refused(write_config(tmp_path, "{}\n"), {**env, **ZH}, "--listen", "nowhere")
    assert flagged == ["fleetdeck: 配置错误：console.listen：必须是 HOST:PORT（IPv6 为 [ADDRESS]:PORT），"
                       "收到的是 'nowhere'（来自 命令行参数 --listen）"], flagged
    # Other sections: an unknown section, a bad duration and a too-short list.
    section = write_config(tmp_path, "consol:\n  listen: x\n")
    assert refused(section, {**env, **ZH}) == [f"fleetdeck: 配置错误：{section}：未知的顶层部分 'consol'（第 1 行）；"
                                                "已知：console, apps, inventory, probes, alerting, agent"]
    assert refused(section, env) == [f"fleetdeck: configuration: {section}: unknown top-level section 'consol' "
                                     "(line 1); known: console, apps, inventory, probes, alerting, agent"]
    alerting = write_config(tmp_path, "alerting:\n  evaluation_interval: soon\n"
                                      "  deploy_watch:\n    web:\n      signals: []\n")
    zh = refused(alerting, {**env, **ZH})
    assert zh == [f"fleetdeck: 配置错误：alerting.evaluation_interval：必须是秒数或时长，例如 30s 或 1m，"
                  f"收到的是 'soon'（来自 {alerting} 第 2 行）",
                  f"alerting.deploy_watch.web.signals：列表在验证后应至少有 1 项，而不是 0 项，收到的是 []"
                  f"（来自 {alerting} 第 5 行）"], zh
    en = refused(alerting, env)
    assert en == [f"fleetdeck: configuration: alerting.evaluation_interval: must be seconds or a duration such as "
                  f"30s or 1m, got 'soon' (from {alerting} line 2)",
                  f"alerting.deploy_watch.web.signals: List should have at least 1 item after validation, not 0, "
                  f"got [] (from {alerting} line 5)"], en


def test_an_apps_reload_is_refused_in_the_requests_language(tmp_path, env):  # noqa: ANN001
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"apps": {}}))
    (tmp_path / "data").mkdir()
    console = ConsoleProcess(tmp_path / "data", FLEETDECK_CONFIG=str(config)).start()
    try:
        admin = console.api_token("t-admin", "admin")
        config.write_text("apps:\n"
                          "  web:\n"
                          "    target:\n"
                          "      image: busybox\n"
                          "      replicas: -1\n"
                          "      colour: blue\n")

        def reload(**headers: str):  # noqa: ANN202
            return http("POST", console.url + "/api/v1/apps/reload", b"{}",
                        {"Authorization": f"Bearer {admin}", "Content-Type": "application/json", **headers})

        zh = reload(**{"Accept-Language": "zh-CN,zh;q=0.9"})
        assert zh.status == 422, zh.body
        error = json.loads(zh.body)["error"]
        assert error["code"] == "apps_refused"
        message = error["message"]
        assert message.startswith("应用未重新加载："), message
        assert f"apps.web.target.replicas：必须大于或等于 0，收到的是 -1（来自 {config} 第 5 行）" in message, message
        assert f"apps.web.target.colour：未知的键（来自 {config} 第 6 行）" in message, message
        assert "；" in message
        # details.errors stay English, one line per problem, for programs.
        assert f"apps.web.target.replicas: must be greater than or equal to 0, got -1 (from {config} line 5)" \
            in error["details"]["errors"], error
        en = json.loads(reload().body)["error"]
        assert en["message"].startswith("the apps were not reloaded: "), en
        assert f"apps.web.target.colour: unknown key (from {config} line 6)" in en["message"], en
        assert "应用" not in en["message"]
        # The CLI asks in the terminal's language.
        cli_env = {**{k: v for k, v in console.env.items() if k not in LOCALE_VARS},
                   "FLEETDECK_URL": console.url, "FLEETDECK_TOKEN": admin, **ZH}
        done = subprocess.run([sys.executable, "-m", "console.cli", "apps", "reload"], env=cli_env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert done.stderr.startswith("fleetdeck: 422 apps_refused: 应用未重新加载："), done.stderr
        assert f"apps.web.target.replicas：必须大于或等于 0，收到的是 -1（来自 {config} 第 5 行）" in done.stderr
    finally:
        console.stop()
