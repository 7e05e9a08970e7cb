"""console/logs/blocks.py: a packed group gives back exactly the lines packed, and its word
and level narrowing keeps every line that holds the word."""
from __future__ import annotations

import random

import msgspec
import pytest
import zstandard

from console.logs.blocks import pack, unpack

ROWS = [
    (1_000_000_000_001, 1_700_000_000_000, "/var/log/app.log", "GET /a 200 req=0741c7a8", "{}", "info"),
    (1_000_000_000_002, 1_699_999_999_990, "/var/log/app.log", "line with\nnewline Upstream", '{"unit": "a"}', None),
    (1_000_000_000_009, 1_700_000_000_500, "/var/log/db.log", "", "{}", "error"),
    (1_000_000_000_010, 1_700_000_000_500, "/var/log/db.log", "Éclair ошибка İstanbul upstream", "{}", "warn"),
    (1_000_000_000_300, 1_700_000_300_000, "/var/log/app.log", "UPSTREAMTIMEOUT x", '{"unit": "b"}', "info"),
]


def test_pack_unpack_gives_back_every_field_of_every_line():
    lines = unpack(ROWS[0][0], "web-1", pack(ROWS[0][0], ROWS))
    assert [(p.id, p.ts, p.source, p.line, p.labels, p.level) for p in lines] == ROWS
    assert {p.name for p in lines} == {"web-1"}


def test_words_and_levels_narrow_to_the_lines_that_hold_them():
    blob = pack(ROWS[0][0], ROWS)
    held = [p.id for p in unpack(ROWS[0][0], "h", blob, words=["upstream"])]
    # substring, case-insensitive: "Upstream", "UPSTREAMTIMEOUT"; the non-ASCII group falls
    # back to asking about every line (none here is dropped by the word)
    assert held == [r[0] for r in ROWS]
    ascii_rows = [r for r in ROWS if r[3].isascii()]
    blob = pack(ascii_rows[0][0], ascii_rows)
    held = [p.id for p in unpack(ascii_rows[0][0], "h", blob, words=["upstream", "x"])]
    assert held == [ROWS[1][0], ROWS[4][0]]
    held = [p.id for p in unpack(ascii_rows[0][0], "h", blob, levels={"info"})]
    assert held == [ROWS[0][0], ROWS[4][0]]
    asked = []
    unpack(ascii_rows[0][0], "h", blob, lambda *args: asked.append(args) or False, ["req"], {"info", None})
    assert asked == [(ROWS[0][1], ROWS[0][0], ROWS[0][2], ROWS[0][3], "info")]  # (ts, id, source, line, level)


def test_the_word_narrowing_keeps_every_line_holding_the_word():
    rnd = random.Random(3)
    alphabet = "ab\n -"
    rows = [(i + 1, 1000 + i, "s", "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 12))), "{}", None)
            for i in range(256)]
    blob = pack(1, rows)
    for word in ("ab", "ba", "aab", "b-a", "a"):
        held = [p.id for p in unpack(1, "h", blob, words=[word])]
        assert held == [r[0] for r in rows if word in r[3].lower()], word


def test_another_layout_version_is_refused():
    blob = zstandard.ZstdCompressor().compress(msgspec.msgpack.encode([99, [], [], [], [], [], [], [], [], []]))
    with pytest.raises(ValueError, match="version 99"):
        unpack(1, "h", blob)
