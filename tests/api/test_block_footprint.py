"""Cold blocks take about the room of their bytes in the database file: samples pushed over
HTTP, packed by the rollup job into raw blocks and 1m day blocks, then the pages the
tables hold counted (SQLite's dbstat)."""
from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import text

from console.tiers.service import BLOCK_MS, RollupService
from tests.conftest import console_on

NOW = time.time()
# a block start 7-9 hours ago: two or three whole 2 h blocks due, and 1m rows for a day block
START = (int(NOW) - 7 * 3600) * 1000 // BLOCK_MS * BLOCK_MS


@pytest.fixture(scope="module")
def sqlite_console(tmp_path_factory):
    with console_on("sqlite", tmp_path_factory) as harness:
        yield harness


SIZES = {"sample_blocks": text("SELECT COUNT(*), MIN(LENGTH(data)), MAX(LENGTH(data)), SUM(LENGTH(data)) "
                                "FROM sample_blocks"),
         "rollup_1m_blocks": text("SELECT COUNT(*), MIN(LENGTH(data)), MAX(LENGTH(data)), SUM(LENGTH(data)) "
                                  "FROM rollup_1m_blocks")}


def footprint(console, table: str) -> tuple[int, int, tuple[int, int, int, int]]:
    """(bytes of the pages of ``table`` and of its indexes, overflow pages among them, and
    the blocks' count, least, greatest and total length of ``data``)."""
    def read(s):
        pages, overflow = s.execute(text(
            "SELECT SUM(pgsize), SUM(pagetype = 'overflow') FROM dbstat WHERE name = :t OR name IN "
            "(SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = :t)"), {"t": table}).one()
        return int(pages), int(overflow), tuple(s.execute(SIZES[table]).one())
    return console.services.db.run(read)


def test_blocks_longer_than_a_quarter_page_fill_their_pages(sqlite_console):
    """2 h blocks and 1m day blocks of values with two decimals (1.1-4 KB each: more than the
    ~1 KB a WITHOUT ROWID leaf keeps of a row, less than a page) stay in their leaf pages,
    with no overflow page each (which took the raw blocks 2.8 times their bytes)."""
    console = sqlite_console
    token = console.agent_token("fp-1")
    rnd = random.Random(20)
    ts = list(range(START + 137, int(NOW * 1000), 10_000))
    series = [{"name": "fp_temperature", "type": "gauge", "labels": {"sensor": str(k)},
               "points": [[t, rnd.randint(0, 99_999) / 100] for t in ts]} for k in range(40)]
    for i in range(0, len(ts), 500):
        status, body = console.push("fp-1", token, [dict(s, points=s["points"][i:i + 500]) for s in series])
        assert status == 200, body
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    pages, overflow, (count, shortest, longest, data) = footprint(console, "sample_blocks")
    assert count >= 80 and 1100 < shortest and longest < 4000, (count, shortest, longest)
    assert overflow == 0
    assert pages <= 1.5 * data, (pages, data)
    pages, overflow, (count, shortest, longest, data) = footprint(console, "rollup_1m_blocks")
    assert count == 40 and 1100 < shortest and longest < 4000, (count, shortest, longest)
    assert overflow == 0
