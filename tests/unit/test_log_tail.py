"""The log tailer on real files: rotation, truncation, partial and long lines, encoding,
multiline, levels and positions. Numbered lines make loss and duplication exact counts."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from collectors.logs import LogCollector, LogOptions, LogOptionsError, parse_level


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path, paths, **opts) -> LogCollector:
    clock = Clock()
    options = LogOptions.from_mapping({"paths": [str(p) for p in paths], **opts}, "test")
    c = LogCollector(options, str(tmp_path / "state"), clock=lambda: 1.7e9, monotonic=clock)
    c.test_clock = clock
    return c


def write(path, start: int, end: int, mode: str = "a") -> None:
    with open(path, mode) as fh:
        for i in range(start, end):
            fh.write(f"line {i:06d}\n")


def numbers(records) -> list[int]:
    return [int(re.match(r"line (\d+)$", r["line"]).group(1)) for r in records]


def drain(c: LogCollector, ack: bool = True) -> list[dict]:
    """Take until nothing is left, acknowledging each take (a delivered batch)."""
    out = []
    while True:
        records, cp = c.take()
        if ack:
            c.acknowledge(cp)
        else:
            c.not_delivered(cp)
        out += records
        if not c.has_backlog:
            return out


def test_existing_file_is_read_from_its_end_and_new_lines_follow(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 10)
    c = make(tmp_path, [log])
    assert drain(c) == []
    write(log, 10, 15)
    recs = drain(c)
    assert numbers(recs) == list(range(10, 15))
    assert recs[0]["source"] == str(log) and recs[0]["ts"] == 1_700_000_000_000 and recs[0]["labels"] == {}


def test_from_start_reads_everything(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 10)
    c = make(tmp_path, [log], from_start=True)
    assert numbers(drain(c)) == list(range(10))


def test_rename_rotation_loses_and_doubles_nothing(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 0)
    c = make(tmp_path, [log])
    got = drain(c)
    n = 0
    for rotation in range(5):
        write(log, n, n + 100)
        n += 100
        got += drain(c)
        write(log, n, n + 37)  # written after our last read, before the rename
        n += 37
        os.rename(log, tmp_path / f"app.log.{rotation}")
        write(log, n, n + 50, "w")  # the program reopens a new file
        n += 50
        got += drain(c)
    got += drain(c)
    assert numbers(got) == list(range(n))
    assert c.counters["rotations"] == 5
    # rotated files are closed once acknowledged; only the live one stays open
    assert len(c._files) == 1


def test_copytruncate_loses_and_doubles_nothing(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 0)
    c = make(tmp_path, [log])
    drain(c)
    got, n = [], 0
    for rotation in range(4):
        write(log, n, n + 80)
        n += 80
        got += drain(c)
        write(log, n, n + 25)
        n += 25
        # logrotate copytruncate: copy the file elsewhere, then truncate it in place
        with open(log, "rb") as src, open(tmp_path / f"copy.{rotation}", "wb") as dst:
            dst.write(src.read())
        os.truncate(log, 0)
        write(log, n, n + 10)
        n += 10
        got += drain(c)
    nums = numbers(got)
    # Lines written between our last read and the copy live only in the copy, which
    # is not watched here; they are the ones missing, and nothing is doubled.
    missing = [i for i in range(n) if i not in nums]
    assert len(nums) == len(set(nums))
    assert missing == [i for r in range(4) for i in range(r * 115 + 80, r * 115 + 105)]
    assert c.counters["truncations"] == 4


def test_copytruncate_with_the_copy_watched_loses_nothing(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 0)
    c = make(tmp_path, [tmp_path / "app.log*"])
    drain(c)
    got, n = [], 0
    for rotation in range(3):
        write(log, n, n + 80)
        n += 80
        got += drain(c)
        write(log, n, n + 25)
        n += 25
        with open(log, "rb") as src, open(tmp_path / f"app.log.{rotation}", "wb") as dst:
            dst.write(src.read())
        os.truncate(log, 0)
        write(log, n, n + 10)
        n += 10
        got += drain(c)
    assert sorted(numbers(got)) == list(range(n))
    assert len(numbers(got)) == n
    assert {r["source"] for r in got} == {str(log)}


def test_truncation_while_the_agent_is_stopped(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 0)
    c = make(tmp_path, [log])
    drain(c)
    write(log, 0, 100)
    assert numbers(drain(c)) == list(range(100))
    c.close()
    # stopped: the file is truncated and rewritten, shorter than the saved offset
    os.truncate(log, 0)
    write(log, 100, 120)
    c2 = make(tmp_path, [log])
    assert numbers(drain(c2)) == list(range(100, 120))
    c2.close()
    # stopped again: truncated and regrown past the saved offset (size alone cannot tell)
    with open(log, "w") as fh:
        for i in range(120, 200):
            fh.write(f"line {i:06d}\n")
    c3 = make(tmp_path, [log])
    assert numbers(drain(c3)) == list(range(120, 200))


def test_rename_while_the_agent_is_stopped_finishes_the_old_file(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 0)
    c = make(tmp_path, [log])
    drain(c)
    write(log, 0, 50)
    assert numbers(drain(c)) == list(range(50))
    c.close()
    write(log, 50, 70)
    os.rename(log, tmp_path / "app.log.1")
    write(log, 70, 90, "w")
    c2 = make(tmp_path, [log])
    assert numbers(drain(c2)) == list(range(50, 90))


def test_unacknowledged_lines_are_sent_again_after_rotation(tmp_path):
    """The console is down across a rotation: nothing acknowledged, then all of it once."""
    log = tmp_path / "app.log"
    write(log, 0, 0)
    c = make(tmp_path, [log])
    drain(c)
    write(log, 0, 40)
    assert numbers(drain(c, ack=False)) == list(range(40))
    os.rename(log, tmp_path / "app.log.1")
    write(log, 40, 60, "w")
    assert numbers(drain(c, ack=False)) == list(range(60))
    os.unlink(tmp_path / "app.log.1")  # even deleted: the open file still has the lines
    assert numbers(drain(c)) == list(range(60))
    write(log, 60, 61)
    assert numbers(drain(c)) == [60]


def test_positions_are_saved_only_on_acknowledgement(tmp_path):
    log = tmp_path / "app.log"
    write(log, 0, 0)
    c = make(tmp_path, [log])
    drain(c)
    write(log, 0, 10)
    records, cp = c.take()
    state = tmp_path / "state" / "log-positions.json"
    saved = json.loads(state.read_text())["files"][0]
    assert saved["offset"] == 0 and numbers(records) == list(range(10))
    c.close()  # the agent dies before the console answered
    c2 = make(tmp_path, [log])
    assert numbers(drain(c2)) == list(range(10))
    saved = json.loads(state.read_text())
    assert saved["files"][0]["offset"] == os.path.getsize(log)
    assert saved["files"][0]["inode"] == os.stat(log).st_ino and len(saved["files"][0]["fingerprint"]) == 64
    assert not (tmp_path / "state" / "log-positions.json.tmp").exists()


def test_deleted_files_and_files_that_appear_later(tmp_path):
    c = make(tmp_path, [tmp_path / "*.log"])
    assert drain(c) == []
    a = tmp_path / "a.log"
    write(a, 0, 5)  # appears after the agent started: read whole
    assert numbers(drain(c)) == list(range(5))
    write(a, 5, 8)
    os.unlink(a)
    assert numbers(drain(c)) == [5, 6, 7]
    assert c._files == {}


def test_partial_last_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    c = make(tmp_path, [log])
    drain(c)
    with open(log, "a") as fh:
        fh.write("complete\nhalf a li")
    assert [r["line"] for r in drain(c)] == ["complete"]
    assert drain(c) == []
    with open(log, "a") as fh:
        fh.write("ne\r\n")
    assert [r["line"] for r in drain(c)] == ["half a line"]


def test_long_lines_are_cut_and_counted(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    c = make(tmp_path, [log], max_line_bytes=100)
    drain(c)
    with open(log, "a") as fh:
        fh.write("a" * 99 + "\n" + "b" * 250 + "\n" + "short\n" + "c" * 300_000)
    recs = drain(c)
    assert [(r["line"][:1], len(r["line"]), r["labels"].get("cut")) for r in recs] == [
        ("a", 99, None), ("b", 100, "true"), ("s", 5, None), ("c", 100, "true")]
    with open(log, "a") as fh:
        fh.write("c" * 1000 + "\nafter\n")  # the rest of the long line is skipped
    assert [r["line"] for r in drain(c)] == ["after"]
    assert c.counters["cut"] == 2
    # a cut never splits a character: "é" is 2 bytes, "€" 3; the line stays within the cap
    with open(log, "a") as fh:
        fh.write("x" + "é" * 80 + "\n" + "xx" + "€" * 50 + "\n" + "€" * 200_000)
    recs = drain(c)
    assert [r["line"] for r in recs] == ["x" + "é" * 49, "xx" + "€" * 32, "€" * 33]
    assert all(len(r["line"].encode()) <= 100 and r["labels"]["cut"] == "true" for r in recs)


@pytest.mark.parametrize("data, cap, kept", [
    (b"x" * 99 + b"\xc3", 100, b"x" * 99),  # a lead byte last: its continuation is not read yet
    (b"x" * 98 + "é".encode() + b"y", 100, b"x" * 98 + "é".encode()),
    (b"x" * 98 + "€".encode(), 100, b"x" * 98),
    (b"x" * 97 + "€".encode(), 100, b"x" * 97 + "€".encode()),
    (b"x" * 96 + "😀".encode() + b"z", 100, b"x" * 96 + "😀".encode()),
    (b"x" * 97 + "😀".encode(), 100, b"x" * 97),
    (b"\x80" * 120, 100, b"\x80" * 100),  # not UTF-8 at all: cut at the cap
])
def test_utf8_cut_never_splits_a_character(data, cap, kept):
    from collectors.logtail import utf8_cut

    assert utf8_cut(data, cap) == kept


def test_bytes_that_are_not_utf8_are_replaced(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    c = make(tmp_path, [log])
    drain(c)
    with open(log, "ab") as fh:
        fh.write(b"latin-1 caf\xe9\n\xff\xfe\x00binary\nok \xe2\x82\xac\n")
    assert [r["line"] for r in drain(c)] == ["latin-1 caf\ufffd", "\ufffd\ufffd\x00binary", "ok \u20ac"]


def test_multiline_records_by_start_pattern(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    c = make(tmp_path, [log], multiline_start=r"^\d{4}-\d\d-\d\d ", multiline_max_lines=5,
             multiline_max_wait=2.0)
    drain(c)
    java = ("2025-01-01 10:00:00 ERROR request failed\n"
            "java.lang.IllegalStateException: boom\n"
            "\tat com.example.Foo.bar(Foo.java:10)\n"
            "\tat com.example.Main.main(Main.java:3)\n")
    python = ("2025-01-01 10:00:01 ERROR handler crashed\n"
              "Traceback (most recent call last):\n"
              '  File "app.py", line 3, in <module>\n'
              "ZeroDivisionError: division by zero\n")
    with open(log, "a") as fh:
        fh.write(java + python + "2025-01-01 10:00:02 INFO next\n")
    recs = drain(c)
    assert [r["line"] for r in recs] == [java.rstrip("\n"), python.rstrip("\n")]
    assert [r["labels"]["level"] for r in recs] == ["error", "error"]
    # the last record waits for the next start line or the maximum wait
    c.test_clock.t += 2.5
    assert [r["line"] for r in drain(c)] == ["2025-01-01 10:00:02 INFO next"]
    # at most multiline_max_lines lines per record
    with open(log, "a") as fh:
        fh.write("2025-01-01 10:00:03 start\n" + "".join(f"  more {i}\n" for i in range(7)))
    c.test_clock.t += 2.5
    recs = drain(c)
    c.test_clock.t += 2.5
    recs += drain(c)
    assert [r["line"].count("\n") + 1 for r in recs] == [5, 3]


def test_unacknowledged_multiline_record_is_not_half_saved(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    c = make(tmp_path, [log], multiline_start=r"^\S")
    drain(c)
    with open(log, "a") as fh:
        fh.write("first\n  cont\nsecond\n  cont 2\n")
    recs, cp = c.take()
    c.acknowledge(cp)
    assert [r["line"] for r in recs] == ["first\n  cont"]
    c.close()  # "second" is pending: the saved offset is at its start
    c2 = make(tmp_path, [log], multiline_start=r"^\S", multiline_max_wait=0)
    assert [r["line"] for r in drain(c2)] == ["second\n  cont 2"]


@pytest.mark.parametrize("line, level", [
    ("2025-11-21 04:42:18.362 UTC [21250] LOG:  listening on port 5432", "info"),
    ("2025-11-21 04:43:01.002 UTC [21300] ERROR:  relation \"x\" does not exist", "error"),
    ("2025-11-21 04:43:01.002 UTC [21300] FATAL:  password authentication failed", "fatal"),
    ('time="2025-11-21T04:42:18Z" level=warning msg="foo"', "warn"),
    ("Nov 21 04:42:18 h sshd[99]: error: kex_exchange_identification: Connection closed", "error"),
    ("2025-11-21 04:42:18,123 WARNING root: disk almost full", "warn"),
    ("[INFO] started", "info"),
    ("[debug] verbose", "debug"),
    ("2025-11-21 status installed libc6:amd64 2.36", None),
    ("no error found in the request", None),
])
def test_level_parsing(line, level):
    assert parse_level(line) == level


@pytest.mark.parametrize("options, message", [
    ({"paths": "relative.log"}, "absolute"),
    ({"paths": ["/x"], "max_line_bytes": 0}, "positive"),
    ({"paths": ["/x"], "max_line_bytes": 70000}, "at most"),
    ({"paths": ["/x"], "multiline_start": "("}, "regex"),
    ({"paths": ["/x"], "from_start": "yes"}, "true or false"),
    ({"paths": ["/x"], "colour": 1}, "not a known option"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(LogOptionsError, match=message):
        LogOptions.from_mapping(options, "test")


def recreate_on_inode(path, inode: int, content: bytes, attempts: int = 200):
    """Write ``content`` to a new file at ``path`` that the file system put on ``inode``
    (ext4 hands a freed inode out again soon); None when it would not."""
    folder = path.parent
    spares = []
    try:
        for i in range(attempts):
            candidate = folder / f".reuse-{i}"
            candidate.write_bytes(content)
            if candidate.stat().st_ino == inode:
                os.replace(candidate, path)
                return path
            spares.append(candidate)
        return None
    finally:
        for spare in spares:
            spare.unlink()


def test_a_new_file_on_a_reused_inode_with_the_same_first_bytes_is_read_from_its_start(tmp_path):
    """Deleted and recreated while the agent is stopped, on the same inode, starting with
    the same 256+ bytes (a header) and grown past the old offset: no line is skipped."""
    log = tmp_path / "app.log"
    header = "".join(f"# header line {i:02d} of the application log\n" for i in range(10)).encode()
    log.write_bytes(header)
    write(log, 0, 100)
    c = make(tmp_path, [log], from_start=True)
    assert len(drain(c)) == 110
    c.close()
    inode = log.stat().st_ino
    log.unlink()
    content = header + "".join(f"line {i:06d}\n" for i in range(1000, 1300)).encode()
    if recreate_on_inode(log, inode, content) is None:
        pytest.skip("the file system did not hand the inode out again")
    assert log.stat().st_ino == inode and content[:256] == (header + b"line 000000")[:256]
    c = make(tmp_path, [log], from_start=True)
    assert numbers(r for r in drain(c) if r["line"].startswith("line ")) == list(range(1000, 1300))
    assert c.counters["truncations"] == 1


def test_positions_in_a_newer_spool_record_win_over_the_positions_file(tmp_path):
    """A crash after the spool write and before the positions file's save: the record's
    positions are used, so its lines are not read again."""
    log = tmp_path / "app.log"
    write(log, 0, 10)
    c = make(tmp_path, [log], from_start=True)
    records, cp = c.take()
    c.acknowledge(cp, spool_seq=7)
    write(log, 10, 20)
    records, cp = c.take()
    assert numbers(records) == list(range(10, 20))
    record_ext = c.encode_checkpoint(cp)  # spooled as record 8; the process dies before acknowledge
    c.close()
    options = LogOptions.from_mapping({"paths": [str(log)], "from_start": True}, "test")
    again = LogCollector(options, str(tmp_path / "state"), recovered=(8, record_ext))
    assert again.spool_seq == 8
    write(log, 20, 25)
    assert numbers(drain(again)) == list(range(20, 25))
    # An older record does not override a newer positions file.
    again.close()
    older = LogCollector(options, str(tmp_path / "state"), recovered=(3, record_ext))
    assert older.spool_seq == 8 and drain(older) == []


def test_copytruncate_while_stopped_with_the_copy_watched_continues_in_the_copy(tmp_path):
    """logrotate's copytruncate ran while the agent was stopped (after a crash: no stop
    flush): the unread end of the old content is read from the copy, from the saved
    offset, and the truncated file from its start; nothing lost, nothing read twice."""
    log = tmp_path / "app.log"
    write(log, 0, 100)
    c = make(tmp_path, [str(tmp_path / "app.log*")], from_start=True)
    assert numbers(drain(c)) == list(range(100))
    write(log, 100, 130)  # written, not read before the agent went away
    c.close()
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    write(log, 130, 140)
    c = make(tmp_path, [str(tmp_path / "app.log*")], from_start=True)
    got = drain(c)
    assert numbers(got) == list(range(100, 140))
    assert {r["source"] for r in got[:30]} == {str(log)}
