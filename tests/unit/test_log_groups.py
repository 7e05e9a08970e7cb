"""console.logs.groups: a group's Bloom filter holds every token a search for one of its
lines asks for (words, word prefixes, levels, sources), hashed the same way on both sides,
and few others."""
from __future__ import annotations

import random
import re
import uuid
import zlib

import numpy as np
import pytest

from console.logs import groups
from console.logs.service import parse_terms
from console.logs.words import line_words, ngrams
from tests.unit.test_log_store import LINES as STORE_LINES

LINES = [*STORE_LINES, "req=4f2a9c1e0b7d3a55 trace=" + str(uuid.UUID(int=7))]  # the lexeme tests' lines and a UUID


def holds(bloom: bytes, token: str, kind: int = 0) -> bool:
    """Every bit of the token is set (as the SQL condition of groups.may_hold reads it)."""
    h1, h2 = groups._hashes(token, kind)
    m = len(bloom) * 8
    bits = [((h1 + i * h2) % 2**32) * m >> 32 for i in range(groups.HASHES)]
    return all(bloom[n // 8] >> (n % 8) & 1 for n in bits)


@pytest.mark.parametrize("ascii_only", [True, False])
def test_the_filter_holds_what_a_search_asks_for(ascii_only):
    lines = [line for line in LINES if line.isascii() or not ascii_only]
    bloom = groups.bloom(groups.group_hashes(lines, ["error", None], ["/var/log/app.log"]))
    for line in lines:
        for word in {t.word for w in re.findall(r"\S+", line) for t in parse_terms(w)}:
            assert holds(bloom, word), word
            if len(word) >= groups.PREFIX_CHARS:
                assert holds(bloom, word[:groups.PREFIX_CHARS], groups._PREFIX), word
    assert holds(bloom, "error", groups._LEVEL) and holds(bloom, "/var/log/app.log", groups._SOURCE)
    # a mark keeps kinds apart: the level is no word of the lines, the word "get" no level
    assert not holds(bloom, "warn", groups._LEVEL) or not holds(bloom, "info", groups._LEVEL)


def test_few_absent_tokens_seem_present():
    rnd = random.Random(3)
    lines = [f"GET /api/{rnd.getrandbits(32):x} req={rnd.getrandbits(64):016x} {rnd.randrange(10**6)}ms"
             for _ in range(256)]
    hashes = groups.group_hashes(lines, [None], ["s"])
    bloom = groups.bloom(hashes)
    assert len(bloom) * 8 >= len(hashes) * groups.BITS_PER_TOKEN
    absent = [f"zz{rnd.getrandbits(40):x}" for _ in range(2000)]
    false = sum(holds(bloom, w) for w in absent)
    assert false < 2000 * 0.03, false  # ~0.8 % expected at 10 bits and 7 hashes


def reference_hashes(lines, levels, sources):
    """The tokens of a group's filter, one zlib.crc32 call per distinct token: every word
    of console/logs/words.py, each word's first PREFIX_CHARS characters (of an ASCII group
    also a shorter word's, which costs bits but changes no answer), the n-grams of spaceless
    runs (東京: 東, 京, 東京), levels, sources."""
    words = set().union(*(line_words(line) for line in lines)) if lines else set()
    shortest = 1 if all(line.isascii() for line in lines) else groups.PREFIX_CHARS
    prefixes = {w[:groups.PREFIX_CHARS] for w in words if len(w) >= shortest}
    return sorted([zlib.crc32(w.encode()) for w in words]
                  + [zlib.crc32(p.encode()) ^ groups._PREFIX for p in prefixes]
                  + [zlib.crc32(g.encode()) ^ groups._NGRAM for g in ngrams(" ".join(lines))]
                  + [zlib.crc32(v.encode()) ^ groups._LEVEL for v in set(levels) if v]
                  + [zlib.crc32(s.encode()) ^ groups._SOURCE for s in set(sources)])


def test_the_filter_holds_each_distinct_token_once_hashed_as_zlib_does():
    """Words of every length from 1 to 40 characters (around the 16 bytes hashed in bulk),
    upper and lower case, digits, prefixes shared and not, over groups of one to 256
    realistic lines: the hashes, and so the filter and its size, are those of one
    zlib.crc32 per distinct token."""
    rnd = random.Random(11)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    lines = []
    for i in range(600):
        words = ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 41))) for _ in range(rnd.randrange(8))]
        lines.append(f"2025-11-21T04:42:{i % 60:02d}Z INFO 10.{rnd.randrange(256)}.0.{rnd.randrange(256)} "
                     f"GET /api/v1/x/{rnd.randrange(10**5)} req={rnd.getrandbits(64):016x} "
                     f"trace={uuid.UUID(int=rnd.getrandbits(128))} " + " ".join(words) + "; a,b ab abc_abcd")
    for group in ([lines[0]], lines[:7], lines[7:263], lines[263:519], ["", "!!"], ["x"], ["ab cd"], LINES):
        levels, sources = ["info", None, "warn"], ["/var/log/app.log", "/var/log/app.log"]
        hashes = groups.group_hashes(group, levels, sources)
        expected = reference_hashes(group, levels, sources)
        assert sorted(int(h) for h in hashes) == expected
        assert groups.bloom(hashes) == groups.bloom(np.array(expected, dtype=np.uint64))


def test_spaceless_runs_are_held_as_characters_and_pairs():
    lines = ["数据库连接失败 error code E1001", "サーバーが停止しました"]
    bloom = groups.bloom(groups.group_hashes(lines, [None], ["/var/log/app.log"]))
    # what a search for a part of a run asks for: its pairs, or the one character
    for part in ("失败", "连接失败", "数据库", "败", "停止", "サーバー"):
        [term] = parse_terms(part)
        assert term.infix, part
        for gram in sorted(groups.needed_ngrams(part)):
            assert holds(bloom, gram, groups._NGRAM), (part, gram)
    assert not holds(bloom, "失误", groups._NGRAM)  # a pair no line has (this filter's bits: checked absent)
    assert holds(bloom, "数据库连接失败") and holds(bloom, "e1001")  # the words as before
    [ascii_term] = parse_terms("error")
    assert not ascii_term.infix
