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


