"""The words of a log line as search sees them: runs of letters and digits, lower-cased.

One definition for the index (the group filters of console/logs/groups.py hash these
words) and for the lines a search matches itself (console/logs/service.py), so index and
query never disagree.
"""
from __future__ import annotations

import re

# Runs of letters and digits; punctuation and "_" separate words (as SQLite's FTS5
# unicode61 tokenizer did, and console.logs.service.parse_terms).
WORD = re.compile(r"[^\W_]+")
# PostgreSQL rejects lexemes of 2 KiB or more; a word that long is no search word anyway
# (terms are at most 64 characters), its first 500 characters still match a prefix search.
MAX_LEXEME_CHARS = 500
# Every ASCII character that is not a letter or digit ("_" included) -> a space.
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})

def line_words(line: str) -> set[str]:
    """The distinct lower-cased words of ``line``, as the index holds them:
    ``"GET /a 200"`` -> ``{"get", "a", "200"}``."""
    if line.isascii():
        # ASCII: lower-casing never changes what is a letter or digit, and a translate to
        # spaces plus split is ~30 % cheaper than the regular expression.
        return set(line.lower().translate(_ASCII_SEPARATORS).split())
    return {w.lower() for w in WORD.findall(line)}  # as parse_terms: split, then lower


# Scripts written without spaces between words (Han, Hiragana, Katakana; Hangul, whose words
# carry their particles): a part of such a run is found by the run's character n-grams,
# which the group filters hold beside the words (console/logs/groups.py).
_SPACELESS = re.compile("[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


def spaceless(word: str) -> bool:
    """Whether ``word`` holds a character of a script written without spaces: such a
    search word matches any part of a line's word (``失败`` in ``数据库连接失败``)."""
    return _SPACELESS.search(word) is not None


def ngrams(text: str) -> set[str]:
    """Each character and each pair of neighbouring characters of the spaceless runs in
    ``text``, as the group filters hold them: ``"连接失败"`` -> 连, 接, 失, 败, 连接, 接失, 失败."""
    out: set[str] = set()
    for run in _SPACELESS.findall(text):
        out.update(run)
        out.update(run[i:i + 2] for i in range(len(run) - 1))
    return out


def needed_ngrams(word: str) -> set[str]:
    """The n-grams every line holding ``word`` within one of its words has (its runs'
    pairs; a run of one character, itself): what a group filter is asked for."""
    out: set[str] = set()
    for run in _SPACELESS.findall(word):
        out.update([run] if len(run) == 1 else (run[i:i + 2] for i in range(len(run) - 1)))
    return out
