"""Languages of the dashboard: English (the source text) and Simplified Chinese (zh-CN).

Catalogs are GNU gettext PO files read with Babel (``babel.messages.pofile``) when the
console starts, so a checkout needs no compile step:

- ``console/locale/<ll_CC>/LC_MESSAGES/messages.po``: the text of the page templates
  (``web/templates/*.html``, ``{{ _("...") }}``) and of the page handlers;
- ``console/locale/<ll_CC>/LC_MESSAGES/scripts.po``: the text of ``web/static/js``
  (``t("...")``), handed to each page as a JSON object (``{msgid: msgstr}``) in a
  ``<script type="application/json" id="fleetdeck-i18n">`` data block;
- ``console/locale/<ll_CC>/LC_MESSAGES/cli.po``: the ``fleetdeck`` command's human output
  (table headings of ``print_table``, ``tr("...")``), in Chinese when the POSIX locale
  variables say so (:func:`terminal_language`);
- ``console/locale/<ll_CC>/LC_MESSAGES/errors.po``: error messages (``tx("...")`` anywhere
  under ``console/``), kept as :class:`Text` (the English text, with its template and
  values) where they are raised and translated where they are shown: the console's error
  answers (console/handlers.py, in the request's language) and the CLI's stderr (in the
  terminal's language).

``make messages`` extracts the source text (``babel.cfg``, ``babel-scripts.cfg``,
``babel-cli.cfg``, ``babel-errors.cfg``) and
merges it into the catalogs; tests/unit/test_i18n_catalog.py fails while a msgid lacks a
translation.

The language of a request: the ``fleetdeck_lang`` cookie (set by the top bar's language
switch), else the first supported language of ``Accept-Language`` (RFC 9110 §12.5.4,
q-values honoured; ``zh``, ``zh-CN``, ``zh-SG``, ``zh-Hans`` mean Simplified Chinese),
else English. Language tags are BCP 47 (RFC 5646).
"""
from __future__ import annotations

import ast
import gettext
import io
import json
import os
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import tornado.locale
from babel.core import parse_locale
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_python
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANG_COOKIE = "fleetdeck_lang"
# Request header with which the console's own clients (the CLI) ask the Prometheus- and
# Alertmanager-compatible APIs for error messages in the request's language (RFC 6648: no X-).
TRANSLATE_HEADER = "Fleetdeck-Translate-Errors"
ENGLISH = "en"
#: BCP 47 tag (``<html lang>``, the cookie, Intl) -> gettext directory name.
LANGUAGES = {ENGLISH: "en_US", "zh-CN": "zh_CN"}
# Tags meaning Simplified Chinese; zh-TW, zh-HK and zh-Hant (Traditional) are not it.
_SIMPLIFIED = frozenset(("zh", "zh-cn", "zh-sg", "zh-hans", "zh-hans-cn", "zh-hans-sg"))


class Text(str):
    """A translatable message: the English text itself (a ``str``, so logs, tests and
    machine-facing answers see English), keeping its ``template`` (the msgid, with
    ``{name}`` placeholders of :meth:`str.format`) and the ``values`` that fill it, so it
    can be translated when shown. Made by :func:`tx`."""

    template: str
    values: dict[str, Any]

    def __new__(cls, template: str, values: dict[str, Any] | None = None) -> Text:
        self = super().__new__(cls, template.format(**(values or {})))
        self.template = template
        self.values = dict(values or {})
        return self

    def __reduce__(self) -> tuple:
        # Errors cross process boundaries pickled: rebuild from the template, not the text.
        return Text, (self.template, self.values)

    def translated(self, lookup: Callable[[str], str]) -> str:
        """The text in the language of ``lookup`` (msgid -> msgstr, the msgid itself when
        untranslated); values that are :class:`Text` are translated too. A translation whose
        placeholders do not fit falls back to the English text."""
        values = {k: v.translated(lookup) if isinstance(v, Text) else v for k, v in self.values.items()}
        try:
            return lookup(self.template).format(**values)
        except (KeyError, IndexError, ValueError):
            return str(self)


class TextLines(Text):
    """Several messages shown as one (an error with one line per problem): the English
    parts joined by ``sep``, each part (and ``sep`` when it is a :class:`Text`) translated
    on its own when shown. A part that is a plain ``str`` stays as it is. Pickles as its
    parts."""

    parts: tuple[str, ...]
    sep: str

    def __new__(cls, parts: Iterable[str], sep: str = "\n") -> TextLines:
        kept = tuple(parts)
        joined = sep.join(kept)
        self = str.__new__(cls, joined)
        # The template is the English text with its braces doubled: it has no placeholders.
        self.template, self.values = joined.replace("{", "{{").replace("}", "}}"), {}
        self.parts, self.sep = kept, sep
        return self

    def __reduce__(self) -> tuple:
        return TextLines, (self.parts, self.sep)

    def translated(self, lookup: Callable[[str], str]) -> str:
        return translate_text(self.sep, lookup).join(translate_text(part, lookup) for part in self.parts)


def text_lines(text: str) -> list[str]:
    """The lines of ``text``, each still translatable when ``text`` is a :class:`TextLines`
    of lines (nested ones are flattened); the lines of any other text as plain ``str``."""
    if isinstance(text, TextLines) and text.sep == "\n":
        return [line for part in text.parts for line in text_lines(part)]
    return [text] if "\n" not in text else str(text).splitlines()


def replace_text(text: str, old: str, new: str) -> str:
    """``text.replace(old, new)`` keeping a :class:`Text` translatable: the replacement is
    made in its values (and the parts of :class:`TextLines`), not in its template."""
    if isinstance(text, TextLines):
        return TextLines((replace_text(part, old, new) for part in text.parts), text.sep)
    if isinstance(text, Text):
        return Text(text.template, {k: replace_text(v, old, new) if isinstance(v, str) else v
                                    for k, v in text.values.items()})
    return text.replace(old, new)


def list_separator() -> Text:
    """``"; "`` between the items of a :class:`TextLines` on one line, translatable (a
    call of its own: Babel does not extract a ``tx`` nested in another's arguments)."""
    return tx("; ")


def choices_text(expected: str) -> str:
    """pydantic's list of the allowed values of a literal or enum problem (its
    ``ctx["expected"]``: ``'a', 'b' or 'c'``) with the separators translatable (Chinese:
    ``'a'、'b' 或 'c'``); the English is the same text. One value (no " or ") is returned
    as it is."""
    head, sep, last = expected.rpartition(" or ")
    if not sep:
        return expected
    return tx("{choices} or {last}", choices=TextLines(head.split(", "), _choice_separator()), last=last)


def _choice_separator() -> Text:
    """``", "`` between allowed values, translatable (a call of its own, as :func:`list_separator`)."""
    return tx(", ")


def tx(template: str, **values: Any) -> Text:
    """Mark an error message for translation: ``tx("no host named {host}", host=name)``.
    ``template`` is the msgid (extracted by ``make messages`` into ``errors.po``); the
    placeholders are filled after translation. Literal braces are doubled, as for
    :meth:`str.format`."""
    return Text(template, values)


def N_(template: str) -> str:  # noqa: N802 - gettext's name for "mark, translate later"
    """Mark a template for extraction (``make messages``) where it is written apart from
    the :func:`tx` call that fills it; returns it unchanged."""
    return template


def translate_text(text: object, lookup: Callable[[str], str]) -> str:
    """``text`` translated when it is a :class:`Text`, else as it is (text that was never
    marked, such as a peer's or a library's message)."""
    return text.translated(lookup) if isinstance(text, Text) else str(text)


def text_data(text: Text) -> dict[str, Any]:
    """A :class:`Text` as JSON for storage (a deploy event's ``data["i18n"]``):
    ``{"template": msgid, "values": {name: str | nested text_data}}``; values become
    strings (numbers formatted as in the English text), a :class:`Text` value stays
    translatable. A :class:`TextLines` is ``{"parts": [str | text_data], "sep": str |
    text_data}``."""
    def value(v: object) -> object:
        return text_data(v) if isinstance(v, Text) else str(v)

    if isinstance(text, TextLines):
        return {"parts": [value(p) for p in text.parts], "sep": value(text.sep)}
    return {"template": text.template, "values": {k: value(v) for k, v in text.values.items()}}


def text_from_data(doc: object) -> Text | None:
    """The :class:`Text` of a :func:`text_data` document, None when ``doc`` is not one
    (an event stored before its message was translatable)."""
    if isinstance(doc, dict) and isinstance(doc.get("parts"), list) and "sep" in doc:
        parts = [text_from_data(p) if isinstance(p, dict) else str(p) for p in doc["parts"]]
        sep = text_from_data(doc["sep"]) if isinstance(doc["sep"], dict) else str(doc["sep"])
        if sep is None or any(p is None for p in parts):
            return None
        return TextLines([p for p in parts if p is not None], sep)
    if not (isinstance(doc, dict) and isinstance(doc.get("template"), str) and isinstance(doc.get("values"), dict)):
        return None
    values: dict[str, Any] = {}
    for k, v in doc["values"].items():
        values[k] = text_from_data(v) if isinstance(v, dict) else str(v)
        if values[k] is None:
            return None
    try:
        return Text(doc["template"], values)
    except (KeyError, IndexError, ValueError):
        return None


def text_parts(text: Text, lookup: Callable[[str], str]) -> list[dict[str, Any]]:
    """``text`` translated with ``lookup``, as ``[{"text": str, "value": bool}]``: the
    sentence's own words (``value`` false) and the values filled in (``value`` true: a
    name, a number or another program's output, shown as it is). A :class:`Text` value is
    expanded into its own parts. Falls back to the English text as one part when the
    translation's placeholders do not fit."""
    if isinstance(text, TextLines):
        parts: list[dict[str, Any]] = []
        for index, part in enumerate(text.parts):
            if index:
                parts.append({"text": translate_text(text.sep, lookup), "value": False})
            parts.extend(text_parts(part, lookup) if isinstance(part, Text)
                         else [{"text": part, "value": True}] if part else [])
        return parts
    try:
        fields = list(string.Formatter().parse(lookup(text.template)))
        parts = []
        for literal, name, _spec, _conversion in fields:
            if literal:
                parts.append({"text": literal, "value": False})
            if name is None:
                continue
            value = text.values[name]
            if isinstance(value, Text):
                parts.extend(text_parts(value, lookup))
            elif str(value):
                parts.append({"text": translate_text(value, lookup), "value": True})
        return parts
    except (KeyError, IndexError, ValueError):
        return [{"text": str(text), "value": False}]


def localize_message(item: dict[str, Any], doc: object, lookup: Callable[[str], str]) -> dict[str, Any]:
    """``item`` (a deploy event or step, ``{"message", ...}``) with its ``message`` in the
    language of ``lookup`` and ``message_parts`` (:func:`text_parts`), when ``doc`` is the
    :func:`text_data` of its message; else ``item`` as it is (stored English text)."""
    text = text_from_data(doc)
    if text is None:
        return item
    parts = text_parts(text, lookup)
    return dict(item, message="".join(p["text"] for p in parts), message_parts=parts)


def read_catalog(lang: str, domain: str, locale_dir: Path = LOCALE_DIR) -> Catalog:
    """The PO catalog of ``domain`` for the BCP 47 tag ``lang``. Raises OSError when missing."""
    path = locale_dir / LANGUAGES[lang] / "LC_MESSAGES" / f"{domain}.po"
    with path.open("rb") as fh:
        return read_po(fh, locale=LANGUAGES[lang])


def _gnu_translations(catalog: Catalog) -> gettext.GNUTranslations:
    # Babel writes the MO form in memory (fuzzy entries left out, as msgfmt does).
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def script_messages(catalog: Catalog) -> dict[str, str]:
    """``{msgid: msgstr}`` of the translated, non-fuzzy entries (the scripts' JSON catalog)."""
    return {m.id: m.string for m in catalog
            if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string and not m.fuzzy}


class I18n:
    """The catalogs of every language, read once when the application is built."""

    def __init__(self, locale_dir: Path = LOCALE_DIR) -> None:
        self._locales: dict[str, tornado.locale.Locale] = {ENGLISH: tornado.locale.CSVLocale("en_US", {})}
        self._scripts: dict[str, dict[str, str]] = {ENGLISH: {}}
        self._errors: dict[str, dict[str, str]] = {ENGLISH: {}}
        for lang in LANGUAGES:
            if lang == ENGLISH:
                continue
            self._locales[lang] = tornado.locale.GettextLocale(
                LANGUAGES[lang], _gnu_translations(read_catalog(lang, "messages", locale_dir)))
            self._scripts[lang] = script_messages(read_catalog(lang, "scripts", locale_dir))
            self._errors[lang] = script_messages(read_catalog(lang, "errors", locale_dir))

    def locale(self, lang: str) -> tornado.locale.Locale:
        """Tornado's locale of ``lang`` (its ``translate`` is the templates' ``_``)."""
        return self._locales.get(lang, self._locales[ENGLISH])

    def scripts(self, lang: str) -> dict[str, str]:
        """The scripts' catalog of ``lang``: ``{english text: translation}``."""
        return self._scripts.get(lang, {})

    def lookup(self, lang: str) -> Callable[[str], str]:
        """msgid -> its ``errors.po`` translation in ``lang`` (the msgid when missing)."""
        catalog = self._errors.get(lang, {})
        return lambda msgid: catalog.get(msgid, msgid)

    def error_message(self, lang: str, message: object) -> str:
        """An error ``message`` in ``lang``: a :class:`Text` translated with ``errors.po``,
        any other text as it is."""
        catalog = self._errors.get(lang, {})
        return translate_text(message, lambda msgid: catalog.get(msgid, msgid))


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The BCP 47 tag of a request's language: a valid ``cookie`` value, else the first
    supported tag of ``accept_language`` by q-value (RFC 9110 §12.5.4), else ``"en"``."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        match = re.fullmatch(r"\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*", params) if params else None
        if params and match is None:
            continue  # a malformed weight: the range is ignored rather than guessed
        if match:
            q = float(match.group(1))
        if tag and q > 0:
            ranked.append((-q, index, tag.strip().lower()))
    for _q, _i, tag in sorted(ranked):
        if tag in _SIMPLIFIED:
            return "zh-CN"
        if tag == "en" or tag.startswith("en-") or tag == "*":
            return ENGLISH
    return ENGLISH


def terminal_language(env: Mapping[str, str] | None = None) -> str:
    """The CLI's language: ``"zh-CN"`` when the first set of ``LANGUAGE`` (its first
    entry), ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` (GNU gettext's order for messages)
    names Simplified Chinese (``zh_CN.UTF-8``, ``zh_SG``, ``zh``, ``zh_Hans_CN``, parsed
    by ``babel.core.parse_locale``), else ``"en"``. ``LC_CTYPE`` is not consulted:
    Python itself sets it to ``C.UTF-8`` when the C locale is coerced (PEP 538)."""
    env = os.environ if env is None else env
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = (env.get(name) or "").split(":")[0]
        if not value:
            continue
        try:
            parts = parse_locale(value.split(".")[0].split("@")[0])
        except ValueError:
            return ENGLISH  # set but unreadable: as gettext, no translation
        tag = "-".join(p for p in (parts[0], parts[2], parts[1]) if p).lower()  # language-script-region
        return "zh-CN" if tag in _SIMPLIFIED else ENGLISH
    return ENGLISH


def cli_text(lang: str | None = None) -> Callable[[str], str]:
    """The CLI's translator for ``lang`` (default :func:`terminal_language`): English
    text -> its translation from ``cli.po``, the text itself when missing."""
    lang = terminal_language() if lang is None else lang
    if lang == ENGLISH or lang not in LANGUAGES:
        return str
    messages = script_messages(read_catalog(lang, "cli"))
    return lambda text: messages.get(text, text)


def cli_errors(lang: str | None = None) -> Callable[[object], str]:
    """The CLI's translator of error messages for ``lang`` (default
    :func:`terminal_language`): a :class:`Text` -> its translation from ``errors.po``, any
    other text as it is."""
    lang = terminal_language() if lang is None else lang
    catalog = {} if lang == ENGLISH or lang not in LANGUAGES else script_messages(read_catalog(lang, "errors"))
    return lambda message: translate_text(message, lambda msgid: catalog.get(msgid, msgid))


def message_of(exc: BaseException) -> str:
    """The message an exception was raised with, keeping a :class:`Text` (``str(exc)``
    makes a plain ``str`` of it): its ``message`` attribute, else its one argument."""
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        return message
    return exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)


def script_block(messages: dict[str, Any]) -> str:
    """JSON for a ``<script type="application/json">`` data block: ``</`` is escaped so
    the text cannot end the element (HTML Standard, "restrictions for contents of script
    elements"); a data block is not run, so the page's CSP (script-src 'self') allows it."""
    return json.dumps(messages, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")


# ------------------------------------------------------------------ extraction (make messages)

_TEMPLATE_CODE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)


def extract_tornado(fileobj: IO[bytes], keywords: Any, comment_tags: Any,
                    options: Any) -> Iterator[tuple[int, Any, Any, Any]]:
    """Babel extraction method for Tornado templates: the Python expressions inside
    ``{{ }}`` and ``{% %}`` go through Babel's own Python extractor, with line numbers
    of the template. Registered in babel.cfg's ``[extractors]`` section."""
    text = fileobj.read().decode(options.get("encoding", "utf-8"))
    for m in _TEMPLATE_CODE.finditer(text):
        code = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        if "_(" not in code:
            continue
        # {% set x = _("...") %} and {% if ... %}: only the expression part is Python.
        code = re.sub(r"^(set|if|elif|for|while|apply|module)\s+", "", code)
        line = text.count("\n", 0, m.start())
        for lineno, funcname, message, comments in extract_python(
                io.BytesIO(code.encode("utf-8")), keywords, comment_tags, options):
            yield line + lineno, funcname, message, comments


def extract_cli(fileobj: IO[bytes], keywords: Any, comment_tags: Any,
                options: Any) -> Iterator[tuple[int, Any, Any, Any]]:
    """Babel extraction method for the CLI's text: the headings of every
    ``print_table(rows, [(key, "HEADING"), ...])`` call and every ``tr("...")`` call
    (the translator of :func:`cli_text`). Registered in babel-cli.cfg."""
    tree = ast.parse(fileobj.read())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name == "print_table" and len(node.args) >= 2 and isinstance(node.args[1], ast.List):
            for column in node.args[1].elts:
                if (isinstance(column, ast.Tuple) and len(column.elts) == 2
                        and isinstance(column.elts[1], ast.Constant) and isinstance(column.elts[1].value, str)):
                    yield column.lineno, None, column.elts[1].value, []
        elif name == "tr" and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.lineno, None, node.args[0].value, []
