"""The zh-CN catalogs cover every text the pages and scripts use, and each request's
language is chosen as docs/dashboard.md ("Languages") says.

The source text is extracted with Babel exactly as ``make messages`` does (babel.cfg,
babel-scripts.cfg, babel-cli.cfg, babel-errors.cfg), so a new ``_("...")`` in a template,
``t("...")`` in a script or ``tx("...")`` error message without a translation fails here."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from console.i18n import (I18n, choose_language, cli_text, extract_cli, extract_tornado, read_catalog, script_block,
                          terminal_language)

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}")


def source_messages(cfg: str, keywords: dict) -> dict[str, str]:
    """msgid -> "file:line" of its first use, extracted with the mapping file ``cfg``."""
    with (ROOT / cfg).open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, cfg)
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        msgid = message[0] if isinstance(message, tuple) else message
        found.setdefault(msgid, f"{filename}:{lineno}")
    return found


@pytest.mark.parametrize(("cfg", "keywords", "domain", "least"), [
    ("babel.cfg", {"_": None, "translate": None}, "messages", 250),
    ("babel-scripts.cfg", {"t": None}, "scripts", 100),
    ("babel-cli.cfg", {"tr": None}, "cli", 50),
    ("babel-errors.cfg", {"tx": None, "N_": None}, "errors", 150),
])
def test_every_source_text_has_a_chinese_translation(cfg, keywords, domain, least):  # noqa: ANN001
    used = source_messages(cfg, keywords)
    assert len(used) >= least, f"only {len(used)} texts extracted with {cfg}: is the extraction broken?"
    catalog = read_catalog("zh-CN", domain)
    problems = []
    for msgid, where in sorted(used.items(), key=lambda kv: kv[1]):
        entry = catalog.get(msgid)
        if entry is None or not entry.string:
            problems.append(f"{where}: {msgid!r} has no zh-CN translation (run `make messages`, then translate)")
        elif entry.fuzzy:
            problems.append(f"{where}: {msgid!r} is marked fuzzy: check and unmark it")
        elif sorted(PLACEHOLDER.findall(msgid)) != sorted(PLACEHOLDER.findall(entry.string)):
            problems.append(f"{where}: {msgid!r} -> {entry.string!r}: placeholders differ")
        elif msgid.strip() and not entry.string.strip():
            problems.append(f"{where}: {msgid!r} is translated to blanks")
    assert problems == []


def test_catalogs_load_and_translate():
    i18n = I18n()
    assert i18n.locale("zh-CN").translate("Overview") == "概览"
    assert i18n.locale("en").translate("Overview") == "Overview"
    assert i18n.locale("fr").translate("Overview") == "Overview"  # unknown: English
    scripts = i18n.scripts("zh-CN")
    assert scripts and all(isinstance(k, str) and v for k, v in scripts.items())
    assert i18n.scripts("en") == {}


@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, None, "en"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, "zh", "zh-CN"),
    (None, "zh-Hans", "zh-CN"),
    (None, "zh-hans-CN;q=0.7", "zh-CN"),
    (None, "en-US,en;q=0.9", "en"),
    (None, "en;q=0.5, zh-CN;q=0.8", "zh-CN"),  # by weight, not by position
    (None, "zh-TW,zh-Hant;q=0.9", "en"),  # Traditional Chinese is not offered
    (None, "fr-FR, de;q=0.8", "en"),
    (None, "zh-CN;q=0", "en"),  # q=0: "not acceptable"
    (None, "zh-CN;q=bogus, en", "en"),
    ("en", "zh-CN", "en"),  # the switch wins over the browser
    ("zh-CN", "en-US", "zh-CN"),
    ("klingon", "zh", "zh-CN"),  # an unknown cookie value is ignored
])
def test_language_of_a_request(cookie, header, expected):  # noqa: ANN001
    assert choose_language(cookie, header) == expected


def test_template_extraction_keeps_template_line_numbers():
    template = b'<h1>{{ _("Hosts") }}</h1>\n<p>\n{{ _("Group %(group)s in") % {"group": g} }}</p>\n{% set x = 1 %}'
    found = [(line, msg) for line, _f, msg, _c in extract_tornado(io.BytesIO(template), ["_"], [], {})]
    assert found == [(1, "Hosts"), (3, "Group %(group)s in")]


def test_script_catalog_cannot_end_its_script_element():
    text = script_block({"a</script><script>x": "</b>"})
    assert "</" not in text


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "en"),
    ({"LANG": "zh_CN.UTF-8"}, "zh-CN"),
    ({"LANG": "zh_CN.UTF-8", "LC_CTYPE": "C.UTF-8"}, "zh-CN"),  # PEP 538's coercion is not the language
    ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN"}, "zh-CN"),
    ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}, "en"),
    ({"LANG": "en_US.UTF-8", "LANGUAGE": "zh_CN:en"}, "zh-CN"),
    ({"LANG": "zh_Hans_CN.UTF-8"}, "zh-CN"),
    ({"LANG": "zh_TW.UTF-8"}, "en"),
    ({"LANG": "zh_CN.GB18030@stroke"}, "zh-CN"),
])
def test_language_of_the_terminal(env, expected):  # noqa: ANN001
    assert terminal_language(env) == expected


def test_cli_translator():
    assert cli_text("zh-CN")("HOST") == "主机"
    assert cli_text("zh-CN")("a heading nobody wrote") == "a heading nobody wrote"
    assert cli_text("en")("HOST") == "HOST"


def test_cli_extraction_finds_table_headings_and_tr_calls():
    source = b'print_table(rows, [("host", "HOST"), ("state", name)])\nx = tr("never")\nprint("other")\n'
    found = [(line, msg) for line, _f, msg, _c in extract_cli(io.BytesIO(source), ["tr"], [], {})]
    assert sorted(found) == [(1, "HOST"), (2, "never")]


def test_an_error_message_is_english_text_translated_where_it_is_shown():
    import pickle

    from console.errors import NotFound
    from console.i18n import Text, cli_errors, tx

    message = tx("no host named {host}", host="'db-1'")
    assert message == "no host named 'db-1'" and isinstance(message, str)
    assert I18n().error_message("zh-CN", message) == "没有名为 'db-1' 的主机"
    assert I18n().error_message("en", message) == "no host named 'db-1'"
    assert I18n().error_message("zh-CN", "a peer's own words") == "a peer's own words"  # never marked
    nested = tx("{name}: {problem}", name="password", problem=tx("String should have at least {min_length} characters",
                                                                  min_length="10"))
    assert cli_errors("zh-CN")(nested) == "password：至少需要 10 个字符"
    # An error crossing a process boundary keeps its template.
    again = pickle.loads(pickle.dumps(NotFound(message)))
    assert isinstance(again.message, Text) and cli_errors("zh-CN")(again.message) == "没有名为 'db-1' 的主机"
    # A translation whose placeholders do not fit falls back to English, never raises.
    assert Text("no host named {host}", {"host": "x"}).translated(lambda _: "{nope}") == "no host named x"
