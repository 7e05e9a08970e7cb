"""The ``fleetdeck`` command's tables in Simplified Chinese when the POSIX locale variables
name it (LANGUAGE, then LC_ALL, LC_MESSAGES, LANG), aligned by terminal columns (a CJK
character takes two); English otherwise. Run as the real console script."""
from __future__ import annotations

import pytest

from tests.integration.procs import child_env
from tests.integration.test_cli_daily import SCRIPT, fleetdeck

LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@pytest.fixture()
def contexts_env(tmp_path):
    if not SCRIPT.exists():
        pytest.fail(f"the fleetdeck console script is not installed beside {SCRIPT.parent}")
    env = {k: v for k, v in child_env(XDG_CONFIG_HOME=str(tmp_path / "config")).items() if k not in LOCALE_VARS}
    for name, url in (("prod", "https://fleetdeck.example.com"), ("lab", "http://127.0.0.1:8700")):
        added = fleetdeck("context", "add", name, "--url", url, "--token-env", "LAB_TOKEN", env=env)
        assert added.returncode == 0, added.stderr
    return env


def context_table(env: dict, **locale: str) -> list[str]:
    listed = fleetdeck("context", "list", env={**env, **locale})
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.splitlines()


@pytest.mark.parametrize("locale", [
    {"LANG": "zh_CN.UTF-8"},
    {"LC_ALL": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"},
    {"LANGUAGE": "zh_CN:en", "LANG": "en_US.UTF-8"},
])
def test_tables_in_chinese_aligned_by_columns(contexts_env, locale):  # noqa: ANN001
    head, *rows = context_table(contexts_env, **locale)
    assert head.split() == ["当前", "名称", "URL", "令牌"]
    # "当前" takes 4 terminal columns, so the names start at column 6, as "名称" does.
    assert head.startswith("当前  名称  URL")
    assert [r[:10] for r in rows] == ["      lab ", "*     prod"]  # the first added is current


@pytest.mark.parametrize("locale", [{}, {"LANG": "C.UTF-8"}, {"LANG": "zh_TW.UTF-8"},
                                    {"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}])
def test_tables_in_english_otherwise(contexts_env, locale):  # noqa: ANN001
    head, *rows = context_table(contexts_env, **locale)
    assert head.split() == ["CURRENT", "NAME", "URL", "TOKEN"]
    assert rows[0].index("lab") == head.index("NAME")
