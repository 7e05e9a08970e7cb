"""Cold blocks take about the room of their bytes in the database: samples pushed over
HTTP, packed by the rollup job into raw blocks and 1m day blocks, then the pages the
tables hold counted (SQLite's dbstat; PostgreSQL's relation sizes)."""
from __future__ import annotations

import random
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text
from sqlalchemy import table as table_clause

from console.storage.partitions import DAY_MS, HOUR_MS, partition_name, partitions
from console.tiers.service import BLOCK_MS, RollupService
from tests.conftest import console_on

NOW = time.time()
# The SQLite test's samples end at 20:00 UTC of the day before, from a block start 7-9 hours
# earlier, and the job runs an hour later (the default hot window, 1 h: they are packed up to
# 20:00, into whole 2 h blocks), so that they lie in one UTC day: 1m blocks are per UTC day,
# and a run after 00:00 with the real clock would split each series' rows in two.
CLOCK = int(NOW) // 86_400 * 86_400 - 4 * 3600
START = (CLOCK - 7 * 3600) * 1000 // BLOCK_MS * BLOCK_MS


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
    ts = list(range(START + 137, CLOCK * 1000, 10_000))
    series = [{"name": "fp_temperature", "type": "gauge", "labels": {"sensor": str(k)},
               "points": [[t, rnd.randint(0, 99_999) / 100] for t in ts]} for k in range(40)]
    for i in range(0, len(ts), 500):
        status, body = console.push("fp-1", token, [dict(s, points=s["points"][i:i + 500]) for s in series])
        assert status == 200, body
    RollupService(console.services.db, console.services.config.console, clock=lambda: CLOCK + 3600).run_all()
    pages, overflow, (count, shortest, longest, data) = footprint(console, "sample_blocks")
    assert count >= 80 and 1100 < shortest and longest < 4000, (count, shortest, longest)
    assert overflow == 0
    assert pages <= 1.5 * data, (pages, data)
    pages, overflow, (count, shortest, longest, data) = footprint(console, "rollup_1m_blocks")
    assert count == 40 and 1100 < shortest and longest < 4000, (count, shortest, longest)
    assert overflow == 0


@pytest.fixture(scope="module")
def postgres_console(tmp_path_factory):
    with console_on("postgres", tmp_path_factory) as harness:
        yield harness


def partition_bytes(console, name: str) -> tuple[int, int]:
    """(heap bytes, index bytes) of the partition ``name``."""
    return console.services.db.run(lambda s: tuple(s.execute(text(
        "SELECT pg_relation_size(CAST(:p AS regclass)), pg_indexes_size(CAST(:p AS regclass))"), {"p": name}).one()))


def vacuum(console, *names: str) -> None:
    """VACUUM the partitions ``names`` until their heaps are given back, as autovacuum does
    after the packing's DELETEs: a transaction another client of the database keeps open
    holds back the removal of the deleted rows (at most a minute here)."""
    deadline = time.monotonic() + 60
    with console.services.db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        while True:
            for name in names:
                conn.execute(text("VACUUM " + conn.dialect.identifier_preparer.quote(name)))
            if all(partition_bytes(console, name)[0] == 0 for name in names) or time.monotonic() > deadline:
                return
            time.sleep(1)


def test_a_day_of_samples_packed_into_blocks_gives_its_partitions_pages_back(postgres_console, tmp_path):
    """PostgreSQL: once every sample of an hourly partition of ``samples`` is packed and
    VACUUM has given its heap back, the rollup job drops the partition, and truncates the
    day's partition of 1m rows, so their primary keys' pages do not stay until retention;
    a partition another transaction is reading is left alone until the next run; the
    samples read the same before and after."""
    console = postgres_console
    token, viewer = console.agent_token("fp-pg"), console.api_token("viewer")
    day = (int(NOW * 1000) // DAY_MS - 2) * DAY_MS  # the day before yesterday, UTC: wholly past the hot window
    ts = list(range(day + 137, day + DAY_MS, 30_000))
    series = [{"name": "fp_pg_load", "type": "gauge", "labels": {"cpu": str(k)},
               "points": [[t, round(k + (i % 360) / 100, 2)] for i, t in enumerate(ts)]} for k in range(20)]
    for i in range(0, len(ts), 720):
        status, body = console.push("fp-pg", token, [dict(s, points=s["points"][i:i + 720]) for s in series])
        assert status == 200, body
    query = "/api/v1/metrics/range?" + urlencode(dict(metric="fp_pg_load", host="fp-pg", start=day / 1000,
                                                      end=(day + DAY_MS) / 1000))
    before = console.request("GET", query, token=viewer).json()
    assert sum(len(s["points"]) for s in before["series"]) == 20 * len(ts)
    hours = [partition_name("samples", day + h * HOUR_MS) for h in range(24)]
    minutes = partition_name("rollup_1m", day)
    assert set(hours) <= set(tree(console, "samples"))  # ingest made the day's hourly partitions
    # The heaps are given back by this test's VACUUM, after the packing: autovacuum doing it
    # within the job's run (under load) let that run drop an hour this test then looks at.
    with console.services.db.engine.connect() as conn:
        for name in hours:
            conn.execute(text("ALTER TABLE " + conn.dialect.identifier_preparer.quote(name)
                              + " SET (autovacuum_enabled = false)"))
        conn.commit()
    job = RollupService(console.services.db, console.services.config.console, clock=lambda: NOW)
    job.run_all()  # rolls up and packs the day
    vacuum(console, *hours, minutes)
    heap, index = partition_bytes(console, hours[5])
    assert heap == 0 and index > 8192, (heap, index)  # rows gone, the primary key's pages kept
    assert partition_bytes(console, minutes)[1] > 8192
    with console.services.db.engine.connect() as reader:  # a long read of an hour holds its lock
        reader.execute(select(func.count()).select_from(table_clause(hours[5])))
        done = job.free_packed_partitions()
        assert hours[5] not in done and set(tree(console, "samples")) & set(hours)
        assert partition_bytes(console, hours[5])[1] == index
        reader.rollback()
    job.run_all()
    assert not set(tree(console, "samples")) & set(hours)  # every hour of the day dropped
    assert partition_bytes(console, minutes) == (0, 8192)  # the metapage of an empty primary key
    assert console.request("GET", query, token=viewer).json() == before


def tree(console, table: str) -> list[str]:
    """The partitions of ``table``."""
    return console.services.db.run(lambda s: [p.name for p in partitions(s, table)])


MAIN_SERIES = "WHERE series_id IN (SELECT id FROM series WHERE name = 'fp_main_temp')"
SIZES_OF = {"sample_blocks": "SELECT COUNT(*), MAX(LENGTH(data)) FROM sample_blocks " + MAIN_SERIES,
            "rollup_1m_blocks": "SELECT COUNT(*), MAX(LENGTH(data)) FROM rollup_1m_blocks " + MAIN_SERIES}


def test_blocks_are_stored_in_their_rows_not_in_toast(postgres_console):
    """PostgreSQL: 2 h blocks and 1m day blocks of 1-4 KB (over the ~2 KB past which a
    value goes out of line by default) are kept in their rows (STORAGE MAIN): their
    partitions' TOAST tables hold no chunk, so no chunk index and no old chunks left by a
    block rewritten; the samples read the same from them."""
    console = postgres_console
    token, viewer = console.agent_token("fp-main"), console.api_token("viewer")
    day = (int(NOW * 1000) // DAY_MS - 2) * DAY_MS + 2 * 3_600_000  # 02:00 UTC the day before yesterday
    ts = list(range(day + 137, day + 6 * 3_600_000, 10_000))  # six hours: three 2 h blocks a series
    rnd = random.Random(21)
    series = [{"name": "fp_main_temp", "type": "gauge", "labels": {"sensor": str(k)},
               "points": [[t, rnd.randint(0, 99_999_999) / 100_000] for t in ts]} for k in range(10)]
    for i in range(0, len(ts), 720):
        status, body = console.push("fp-main", token, [dict(s, points=s["points"][i:i + 720]) for s in series])
        assert status == 200, body
    query = "/api/v1/metrics/range?" + urlencode(dict(metric="fp_main_temp", host="fp-main", start=day / 1000,
                                                      end=(day + 6 * 3_600_000) / 1000))
    before = console.request("GET", query, token=viewer).json()
    assert sum(len(s["points"]) for s in before["series"]) == 10 * len(ts)
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    for table in ("sample_blocks", "rollup_1m_blocks"):
        count, longest = console.services.db.run(lambda s: s.execute(text(SIZES_OF[table])).one())
        assert count >= 10 and 2200 < longest < 7000, (table, count, longest)
        toast = console.services.db.run(lambda s: s.execute(text(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = CAST(:p AS regclass)"),
            {"p": partition_name(table, day // DAY_MS * DAY_MS)}).scalar_one())
        assert toast == 0, (table, toast)
    assert console.request("GET", query, token=viewer).json() == before
