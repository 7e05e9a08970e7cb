"""console.logs.groups: a group's Bloom filter holds every token a search for one of its
lines asks for (words, word prefixes, levels, sources), hashed the same way on both sides,
and few others."""
from __future__ import annotations

import random
import re
import uuid

import pytest

from console.logs import groups
from console.logs.service import parse_terms
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
