"""console.logs.store.lexemes: PostgreSQL's line_tsv must hold exactly the words a search
for them produces (console.logs.service.parse_terms), or a line would not be found."""
from __future__ import annotations

import re

import pytest

from console.logs.service import parse_terms
from console.logs.store import MAX_LEXEME_CHARS, lexemes

LINES = [
    "GET /api/v1/items 200 upstream_timeout user=42 10.0.0.7:5432",
    "Éclair CAFÉ naïve İstanbul ß straße 東京 ошибка Ошибка",
    "tabs\tand\nnewlines, (brackets) [x] {y} 'quotes' \"dq\" back\\slash",
    "",
    "...---!!!",
]


def words(tsvector_text: str) -> set[str]:
    return {w[1:-1] for w in tsvector_text.split(" ")} if tsvector_text else set()


@pytest.mark.parametrize("line", LINES)
def test_lexemes_are_the_search_terms_of_the_line(line):
    # parse_terms caps a query at 16 words: ask it word by word
    expected = {t.word for w in re.findall(r"\S+", line) for t in parse_terms(w)}
    assert words(lexemes(line)) == expected
    # quoted lexemes only: no quote or backslash inside a word
    assert all("'" not in w and "\\" not in w for w in words(lexemes(line)))


def test_very_long_words_are_cut_to_a_prefix():
    long_word = "a" * (MAX_LEXEME_CHARS + 100)
    assert words(lexemes(f"{long_word} b")) == {"a" * MAX_LEXEME_CHARS, "b"}
