"""Log storage and search (``GET /api/v1/logs``) over real HTTP, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
import uuid

import pytest
from sqlalchemy import text

from bench.logs_search import pack_all
from console.logs.service import LogService
from tests.conftest import database_url
from tests.harness import ConsoleHarness, wait_for

T0 = int(time.time() * 1000) - 3_600_000  # an hour ago, Unix ms


def rec(i: int, line: str, source: str = "/var/log/app.log", level: str | None = None, ts: int | None = None):
    labels = {"level": level} if level else {}
    return {"ts": T0 + i if ts is None else ts, "source": source, "line": line, "labels": labels}


def search(console, token, **params):
    resp = console.request("GET", "/api/v1/logs?" + urllib.parse.urlencode(params), token=token)
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()


@pytest.fixture(scope="module")
def seeded(db_console):
    """Two hosts with known lines; returns (console, viewer token, host names, unique tag)."""
    return seed(db_console)


def seed(c):
    """Push the known lines of two new hosts to console ``c``; returns (console, viewer
    token, host names, unique tag)."""
    tag = "tag" + uuid.uuid4().hex[:8]
    web, db = f"web-{tag}", f"db-{tag}"
    web_lines = [rec(i, f"{tag} request {i} served in {i}ms") for i in range(250)]
    web_lines += [rec(300, f"{tag} ERROR upstream connection refused: 10.0.0.7:5432", level="ERROR"),
                  rec(301, f"{tag} WARNING disk almost full on /var", level="warning"),
                  rec(302, f"{tag} <script>alert(1)</script> \x1b[31mred\x1b[0m", source="/var/log/x.log")]
    status, body = c.push(web, c.agent_token(web), [], web_lines)
    assert status == 200 and body["accepted_logs"] == 253
    status, body = c.push(db, c.agent_token(db), [], [
        rec(400, f"{tag} LOG: checkpoint starting: time", source="/var/log/postgresql/main.log"),
        rec(401, f"{tag} ERROR: relation \"missing_table\" does not exist", level="ERROR",
            source="/var/log/postgresql/main.log")])
    assert status == 200
    return c, c.api_token("viewer"), (web, db), tag


def test_search_finds_words_newest_first(seeded):
    c, token, (web, db), tag = seeded
    body = search(c, token, q=f"{tag} connection refused")
    assert [r["line"] for r in body["logs"]] == [f"{tag} ERROR upstream connection refused: 10.0.0.7:5432"]
    r = body["logs"][0]
    assert (r["host"], r["source"], r["level"], r["labels"]) == (web, "/var/log/app.log", "error", {"level": "ERROR"})
    assert r["ts"] == T0 + 300 and isinstance(r["id"], int)
    assert body["next"] is None and body["terms"] == [tag, "connection", "refused"]
    # case-insensitive, punctuation splits words (an IP and a port are searchable words)
    assert len(search(c, token, q=f"{tag} CONNECTION 5432")["logs"]) == 1
    # every word must occur
    assert search(c, token, q=f"{tag} connection accepted")["logs"] == []
    # prefix search
    assert {r["line"] for r in search(c, token, q=f"{tag} relat*")["logs"]} == {
        f'{tag} ERROR: relation "missing_table" does not exist'}
    all_lines = search(c, token, q=tag, limit=1000)["logs"]
    assert len(all_lines) == 255
    keys = [(r["ts"], r["id"]) for r in all_lines]
    assert keys == sorted(keys, reverse=True)


def test_filters_host_source_level_time(seeded):
    c, token, (web, db), tag = seeded
    assert {r["host"] for r in search(c, token, q=tag, host=db)["logs"]} == {db}
    assert len(search(c, token, q=tag, host=f"{web},{db}", limit=1000)["logs"]) == 255
    assert [r["source"] for r in search(c, token, q=tag, source="/var/log/x.log")["logs"]] == ["/var/log/x.log"]
    assert len(search(c, token, q=tag, source="/var/log/postgresql/*")["logs"]) == 2
    errors = search(c, token, q=tag, level="error")["logs"]
    assert sorted(r["host"] for r in errors) == sorted([web, db])
    assert {r["level"] for r in search(c, token, q=tag, level="ERR,warn")["logs"]} == {"error", "warn"}
    # start inclusive, end exclusive, Unix seconds
    body = search(c, token, q=tag, host=web, start=(T0 + 10) / 1000, end=(T0 + 20) / 1000)
    assert [r["ts"] - T0 for r in body["logs"]] == list(range(19, 9, -1))


def test_cursor_pagination_is_complete_and_stable(seeded):
    # Lines of its own: the late arrival below would otherwise join what other tests count.
    c, token, _, _ = seeded
    tag = "page" + uuid.uuid4().hex[:8]
    web = f"web-{tag}"
    status, _ = c.push(web, c.agent_token(web), [], [rec(i, f"{tag} request {i} served in {i}ms") for i in range(253)])
    assert status == 200
    seen, cursor, pages = [], None, 0
    while True:
        params = {"q": tag, "host": web, "limit": 40}
        if cursor:
            params["cursor"] = cursor
        body = search(c, token, **params)
        seen += [r["id"] for r in body["logs"]]
        pages += 1
        if pages == 2:  # new lines arriving meanwhile do not shift later pages
            status, _ = c.push(web, c.agent_token(web), [], [rec(999, f"{tag} late arrival", ts=int(time.time() * 1000))])
            assert status == 200
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 7 and len(seen) == 253 and len(set(seen)) == 253


def pack_now(c) -> None:
    """Group every stored line, then pack every group and delete its rows, as the console
    does once lines are older than its hot window (console/logs/groups.py)."""
    db = c.services.db
    caught_up = text("SELECT (SELECT indexed_id FROM log_search_state) >= (SELECT coalesce(max(id), 0) "
                     "FROM log_records)")
    wait_for(lambda: db.run(lambda s: s.execute(caught_up).scalar()), 30, "the group index to catch up")
    pack_all(db)
    assert db.run(lambda s: s.execute(text("SELECT count(*) FROM log_search_groups WHERE packed IS NULL OR rows_kept")
                                      ).scalar()) == 0


def test_rows_and_packed_groups_give_the_same_pages(db_console):
    """Lines read as rows (the hot window) and read from their packed groups return the
    same records and cursors."""
    # Lines of their own: the module's seeded lines may already have left the hot window
    # (GroupIndexer.HOT_S) when this test runs late on a slow machine.
    c, token, (web, db), tag = seed(db_console)
    queries = [{"q": f"{tag} request", "host": web, "limit": 60},
               {"q": f"{tag} served", "host": f"{web},{db}", "start": (T0 + 100.5) / 1000, "end": (T0 + 302.5) / 1000,
                "limit": 50},
               {"q": f"{tag} relat*", "source": "/var/log/postgresql/*"},
               {"q": tag, "level": "error,warn"},
               {"q": tag, "level": "fatal"}]

    def pages(params):
        out, cursor = [], None
        while True:
            body = search(c, token, **params, **({"cursor": cursor} if cursor else {}))
            out.append(([r["id"] for r in body["logs"]], body["next"]))
            cursor = body["next"]
            if cursor is None:
                return out

    rows = [pages(q) for q in queries]
    assert c.count("log_records") > 0
    pack_now(c)
    packed = [pages(q) for q in queries]
    assert rows == packed
    assert [sum(len(ids) for ids, _ in p) for p in rows] == [250, 150, 1, 3, 0]  # lines 0..249 hold "request ... served"


def test_a_part_of_a_run_without_spaces_is_found(db_console):
    """Chinese and Japanese write words without spaces: a search word in such a script
    matches any part of a line's word, in the lines above the index watermark, in grouped
    rows, in packed groups (by the n-grams their filters hold), and in groups made before
    the filters held n-grams (read whole)."""
    c = db_console
    tag = "cjk" + uuid.uuid4().hex[:8]
    host = f"cn-{tag}"
    lines = [f"{tag} 数据库连接失败 error code E1001", f"{tag} 服务启动成功", f"{tag} サーバーが停止しました"]
    status, _ = c.push(host, c.agent_token(host), [], [rec(i, line) for i, line in enumerate(lines)])
    assert status == 200
    token = c.api_token("viewer")
    expected = {"失败": [lines[0]], "连接失败": [lines[0]], "数据库连接失败": [lines[0]], "数据*": [lines[0]],
                "败": [lines[0]], "成功": [lines[1]], "停止": [lines[2]], "サーバー": [lines[2]],
                "失误": [], "功启": [], "e1001 连接": [lines[0]], "code 启动": []}

    def found() -> dict:
        return {q: [r["line"] for r in search(c, token, q=f"{tag} {q}", host=host)["logs"]] for q in expected}

    assert found() == expected  # as rows, grouped or not yet
    pack_now(c)
    assert found() == expected  # packed: their groups' filters asked for the n-grams
    # This host's groups with filters that hold nothing, as if made before n-grams: the
    # filter rules them out while they count as made since, not once they count as older.
    db = c.services.db
    blooms = db.run(lambda s: s.execute(text("SELECT id, bloom, last_record_id FROM log_search_groups "
                                             "WHERE host_id = (SELECT id FROM hosts WHERE name = :h)"),
                                        {"h": host}).all())
    since = db.run(lambda s: s.execute(text("SELECT ngrams_from_id FROM log_search_state")).scalar())

    def parts() -> list[str]:
        return [r["line"] for r in search(c, token, q="失败", host=host)["logs"]]
    try:
        for gid, bloom, _ in blooms:
            db.run(lambda s: s.execute(text("UPDATE log_search_groups SET bloom = :b WHERE id = :i"),
                                       {"b": bytes(len(bloom)), "i": gid}))
        assert parts() == []
        db.run(lambda s: s.execute(text("UPDATE log_search_state SET ngrams_from_id = :v"),
                                   {"v": max(last for _, _, last in blooms) + 1}))
        assert parts() == [lines[0]]
    finally:
        db.run(lambda s: s.execute(text("UPDATE log_search_state SET ngrams_from_id = :v"), {"v": since}))
        for gid, bloom, _ in blooms:
            db.run(lambda s: s.execute(text("UPDATE log_search_groups SET bloom = :b WHERE id = :i"),
                                       {"b": bloom, "i": gid}))


def test_common_word_pages_equal_brute_force_with_late_arrivals(db_console):
    """A word in most lines, with filters, paged across several pages, returns exactly the
    lines a brute-force filter over every stored row gives in (ts, id) descending order,
    though lines replayed late (an agent's spool after an outage) have higher ids than
    newer lines and some lines share a ts. Run with the lines as rows (the hot window) and
    again once their groups are packed."""
    c = db_console
    tag = "cw" + uuid.uuid4().hex[:8]
    hosts = (f"a-{tag}", f"b-{tag}")
    t1 = T0 + 100_000

    def line(i):
        words = [tag, f"n{i}"] + [f"common{tag}"] * (i % 5 != 0) + [f"mid{tag}"] * (i % 3 == 0)
        return rec(0, " ".join(words) + " end_of:line", source=f"/var/log/{'ab'[i % 2]}.log",
                   level=("ERROR", "info", None)[i % 3], ts=t1 + i // 2)  # pairs of lines share a ts

    order = list(range(600, 1200)) + list(range(0, 300)) + list(range(900, 1000)) + list(range(300, 600))
    for n, start in enumerate(range(0, len(order), 250)):  # newest first, then the replayed spool
        for h, host in enumerate(hosts):
            batch = [line(i) for i in order[start:start + 250] if i % 4 in ((0, 1), (2, 3))[h]]
            status, body = c.push(host, c.agent_token(host), [], batch)
            assert status == 200 and body["accepted_logs"] == len(batch), body
    token = c.api_token("viewer")

    rows = [r for r in c.services.db.run(lambda s: s.execute(text(
        "SELECT log_records.id, log_records.ts, hosts.name, log_records.source, log_records.line, log_records.level "
        "FROM log_records JOIN hosts ON hosts.id = log_records.host_id")).all()) if r.name in hosts]
    assert len(rows) == 1300
    assert [r.id for r in sorted(rows, key=lambda r: (r.ts, r.id))] != sorted(r.id for r in rows)  # late arrivals

    def brute_force(q, host=None, source=None, level=None, start=None, end=None):
        out = []
        for r in rows:
            words = {w.lower() for w in re.findall(r"[^\W_]+", r.line)}
            if not all(any(w.startswith(t[:-1]) for w in words) if t.endswith("*") else t in words
                       for t in q.lower().split()):
                continue
            if (host and r.name not in host.split(",")) or (source and not r.source.startswith(source.rstrip("*")))\
                    or (level and r.level not in level.split(",")) or (start and r.ts < int(start * 1000))\
                    or (end and r.ts >= int(end * 1000)):
                continue
            out.append(r)
        return [r.id for r in sorted(out, key=lambda r: (r.ts, r.id), reverse=True)]

    queries = [{"q": f"common{tag}", "host": ",".join(hosts)},
               {"q": f"common{tag}", "host": hosts[0]},
               {"q": f"COMMON{tag} mid{tag}", "level": "error"},
               {"q": f"common{tag}*", "source": "/var/log/a*", "start": (t1 + 50.5) / 1000, "end": (t1 + 560.5) / 1000},
               {"q": f"mid{tag} end", "host": hosts[1], "level": "info,error"}]
    for state in ("rows", "packed"):
        if state == "packed":
            pack_now(c)
        for params in queries:
            expected = brute_force(**params)
            got, cursor, pages = [], None, 0
            while True:
                body = search(c, token, **params, limit=37, **({"cursor": cursor} if cursor else {}))
                got += [r["id"] for r in body["logs"]]
                pages += 1
                cursor = body["next"]
                if cursor is None:
                    break
                assert cursor == f"{body['logs'][-1]['ts']}_{body['logs'][-1]['id']}"
            assert len(expected) > 37 * 2, params  # several pages each
            assert got == expected, (state, params)
            assert pages == -(-len(expected) // 37)


def test_search_without_words_lists_recent(seeded):
    c, token, (web, db), tag = seeded
    body = search(c, token, host=db, limit=1)
    assert len(body["logs"]) == 1 and body["next"] is not None and body["terms"] == []


@pytest.mark.parametrize("params, status, code", [
    ({"limit": "0"}, 400, "invalid_parameter"),
    ({"limit": "abc"}, 400, "invalid_parameter"),
    ({"limit": "1001"}, 400, "invalid_parameter"),
    ({"limit": "\u00b2"}, 400, "invalid_parameter"),  # str.isdigit() is true, int() refuses it
    ({"limit": "\u2460"}, 400, "invalid_parameter"),
    ({"limit": "\uff11"}, 400, "invalid_parameter"),  # fullwidth 1: ASCII digits only
    ({"cursor": "nope"}, 400, "invalid_parameter"),
    ({"cursor": "1_9223372036854775808"}, 400, "invalid_parameter"),  # id past int64
    ({"cursor": "9007199254740993_1"}, 400, "invalid_parameter"),  # ts past 2**53
    ({"cursor": "1_2_3"}, 400, "invalid_parameter"),
    ({"start": "yesterday"}, 400, "invalid_parameter"),
    ({"start": "nan"}, 400, "invalid_parameter"),
    ({"start": "100", "end": "50"}, 422, "invalid_range"),
    ({"level": "loud"}, 400, "invalid_parameter"),
    ({"level": "\x1f\x07"}, 400, "invalid_parameter"),  # control characters: not spaces (Tornado made them so)
    ({"q": "\"*-:()"}, 400, "invalid_parameter"),
    ({"q": "x" * 65}, 400, "invalid_parameter"),
    ({"q": b"\xff\xfe"}, 400, "invalid_parameter"),  # not UTF-8
    ({"host": "web\x00"}, 400, "invalid_parameter"),  # PostgreSQL text cannot hold NUL
    ({"source": "/var/\x00"}, 400, "invalid_parameter"),
    ({"q": " ".join(f"w{i}" for i in range(17))}, 400, "invalid_parameter"),
])
def test_bad_parameters_are_json_errors(seeded, params, status, code):
    c, token, _, _ = seeded
    resp = c.request("GET", "/api/v1/logs?" + urllib.parse.urlencode(params), token=token)
    assert resp.status == status, resp.body
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["details"]["parameter"]


def test_fts_syntax_in_query_is_data(seeded):
    c, token, _, tag = seeded
    # FTS5 / tsquery operators in the text are treated as plain words, never as syntax
    body = search(c, token, q=f'{tag} NEAR(script OR "alert") & !red')
    assert body["terms"] == [tag, "near", "script", "or", "alert", "red"] and body["logs"] == []
    body = search(c, token, q=f'{tag} (script) "alert" & 1 | 0m')
    assert [r["source"] for r in body["logs"]] == ["/var/log/x.log"]


def test_logs_need_viewer_credentials(seeded):
    c, _, _, _ = seeded
    assert c.request("GET", "/api/v1/logs").status == 401
    agent = c.agent_token("somehost-" + uuid.uuid4().hex[:6])
    assert c.request("GET", "/api/v1/logs", token=agent).status == 403


@pytest.fixture
def own_console(db_console, tmp_path_factory):
    """A console on a database of its own, of ``db_console``'s kind: retention deletes the
    oldest lines of every host, so on the module's shared database it would delete what
    ``seeded`` stored for the other tests (which then fail when run after it)."""
    with database_url(db_console.kind, tmp_path_factory) as url:
        harness = ConsoleHarness(tmp_path_factory.mktemp("console"), database_url=url, rollup_interval=0.0).start()
        try:
            yield harness
        finally:
            harness.close()


def stored_lines(c) -> int:
    """Lines stored: rows, and the lines of packed groups whose rows are gone."""
    return c.services.db.run(lambda s: s.execute(text(
        "SELECT (SELECT count(*) FROM log_records) + (SELECT coalesce(sum(lines), 0) FROM log_search_groups "
        "WHERE packed IS NOT NULL AND NOT rows_kept)")).scalar())


@pytest.mark.parametrize("packed", [False, True], ids=["rows", "packed"])
def test_retention_by_age_and_size(own_console, packed):
    c = own_console
    svc = c.services.logs
    host = "ret-" + uuid.uuid4().hex[:8]
    token = c.agent_token(host)
    now_ms = int(time.time() * 1000)
    # 10 days old: within the console's 14-day retention (older lines are refused at
    # ingest), beyond the 7 days of the retention run below.
    old = [rec(i, f"old line {i}", ts=now_ms - 10 * 86_400_000 + i) for i in range(30)]
    n_new = 1000 if packed else 100  # packed: several groups of 256 lines, the size cap deletes whole ones
    new = [rec(i, f"new line {i} " + "x" * 100, ts=now_ms - 1000 + i) for i in range(n_new)]
    assert c.push(host, token, [], old + new)[0] == 200
    if packed:  # the lines older than the hot window: packed (the old straddle no group boundary here)
        pack_now(c)
    before_total = stored_lines(c)
    age_only = LogService(c.services.db, retention_days=7, retention_bytes=0)
    result = age_only.enforce_retention()
    assert result.deleted_by_age >= 30
    assert search(c, c.api_token("viewer"), host=host, limit=1000)["logs"][-1]["line"].startswith("new line 0 ")
    remaining = stored_lines(c)
    assert remaining == before_total - result.deleted_by_age
    # size cap: keep at most ~half of what is stored; the oldest go first
    stored = c.services.db.run(svc.stored_bytes)
    cap = stored // 2
    by_size = LogService(c.services.db, retention_days=0, retention_bytes=cap).enforce_retention()
    assert by_size.deleted_by_size > 0 and by_size.bytes_before == stored
    after = c.services.db.run(svc.stored_bytes)
    # rows go one by one; packed lines by whole groups, of which at most one too many
    group = c.services.db.run(lambda s: s.execute(text(
        "SELECT coalesce(max(packed_bytes + lines * 64), 0) FROM log_search_groups WHERE packed IS NOT NULL")).scalar())
    assert after <= cap * 0.95 and after > (cap * 0.95 - group if packed else cap * 0.8)
    # what survived is the newest
    lines = search(c, c.api_token("viewer"), host=host, limit=1000)["logs"]
    assert lines and lines[0]["line"].startswith(f"new line {n_new - 1} ")
    # the search index forgot deleted lines too
    assert search(c, c.api_token("viewer"), q="old", host=host)["logs"] == []


def test_nul_characters_and_future_stamps_are_stored_not_refused(db_console):
    """PostgreSQL text cannot hold NUL: a line or source with one is stored with U+FFFD on
    both back-ends. A line stamped a day ahead (a skewed agent clock) is stored at the
    receive time, its stamp kept in the ``original_ts`` label."""
    c = db_console
    host = "odd-" + uuid.uuid4().hex[:8]
    now_ms = int(time.time() * 1000)
    ahead = now_ms + 86_400_000
    status, body = c.push(host, c.agent_token(host), [], [
        rec(1, "before\x00after nulword", ts=now_ms - 2000),
        {"ts": now_ms - 1000, "source": "/var/log/\x00odd.log", "line": "odd source", "labels": {}},
        rec(3, "from the future", ts=ahead)])
    assert status == 200 and body["accepted_logs"] == 3, body
    viewer = c.api_token("viewer")
    assert [r["line"] for r in search(c, viewer, q="nulword")["logs"]] == ["before\ufffdafter nulword"]
    stored = search(c, viewer, host=host)["logs"]
    assert [r["line"] for r in stored] == ["from the future", "odd source", "before\ufffdafter nulword"]
    assert stored[1]["source"] == "/var/log/\ufffdodd.log"
    future = stored[0]
    assert now_ms <= future["ts"] <= int(time.time() * 1000) and future["labels"] == {"original_ts": str(ahead)}
    # a line sent later with a true stamp is listed above it
    assert c.push(host, c.agent_token(host), [], [rec(4, "later", ts=int(time.time() * 1000) + 5)])[0] == 200
    assert search(c, viewer, host=host, limit=1)["logs"][0]["line"] == "later"


def test_live_tail_frames_after_commit(db_console):
    c = db_console
    host = "live-" + uuid.uuid4().hex[:8]
    token = c.agent_token(host)
    viewer = c.api_token("viewer")

    async def run():
        ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
            c.url.replace("http", "ws") + "/api/v1/live", headers={"Authorization": f"Bearer {viewer}"}))
        ws.write_message(json.dumps({"subscribe": [f"logs:{host}"]}))
        assert json.loads(await ws.read_message()) == {"subscribed": [f"logs:{host}"]}
        loop = asyncio.get_running_loop()
        status, _ = await loop.run_in_executor(None, lambda: c.push(host, token, [], [
            rec(1, "first <b>line</b>"), rec(2, "second line", level="WARN")]))
        assert status == 200
        frame = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        ws.close()
        return frame

    import tornado.httpclient  # noqa: F401 - HTTPRequest above

    frame = asyncio.run(run())
    assert frame["topic"] == f"logs:{host}"
    assert [(r["line"], r["level"]) for r in frame["data"]["logs"]] == [("first <b>line</b>", None),
                                                                         ("second line", "warn")]
    assert frame["data"]["host"] == host
