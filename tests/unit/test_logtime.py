"""collectors.logtime: the time written at the start of a log line, per format. The
expected values are written out as Unix seconds (UTC zones) or built from the local
time with time.mktime (lines without a zone)."""
from __future__ import annotations

import time

import pytest

from collectors.logtime import line_time

NOW = 1795953600.0 + 3600  # 2026-11-29T13:00:00Z


@pytest.mark.parametrize("line, expected", [
    ('time="2026-11-29T12:22:29.414486828Z" level=info msg="Starting up"', 1795954949.414486),  # dockerd
    ("2026-11-29T12:00:00.123456+00:00 web1 sshd[812]: Accepted publickey", 1795953600.123456),  # rsyslog
    ("2026-11-29T12:00:00.5-02:30 web1 app: x", 1795962600.5),
    ("<165>1 2026-11-29T12:00:00.003Z web1 app 12 ID47 - message", 1795953600.003),  # RFC 5424
    ('127.0.0.1 - - [29/Nov/2026:12:00:00 +0100] "GET / HTTP/1.1" 200 612 "-" "curl/8"', 1795950000.0),
    ('{"ts":"2026-11-29T12:00:00Z","level":"info","msg":"ok"}', 1795953600.0),
])
def test_zoned_formats(line, expected):
    assert line_time(line, NOW) == pytest.approx(expected, abs=1e-6)


def test_local_time_formats():
    local = time.mktime((2026, 11, 29, 12, 0, 0, 0, 0, -1))
    assert line_time("2026-11-29 12:00:00,123 INFO app: started", NOW) == pytest.approx(local + 0.123)
    assert line_time("Nov 29 12:00:00 web1 sshd[812]: Server listening", NOW) == local
    assert line_time("<38>Nov 29 12:00:00 sshd[812]: Server listening", NOW) == local


def test_syslog_without_year_read_in_january_is_last_year():
    jan = time.mktime((2027, 1, 1, 0, 10, 0, 0, 0, -1))
    assert line_time("Dec 31 23:59:00 web1 cron[1]: x", jan) == time.mktime((2026, 12, 31, 23, 59, 0, 0, 0, -1))


@pytest.mark.parametrize("line", ["no time here 12:00", "2026-13-45 12:00:00 bad month",
                                  "2030-01-01T00:00:00Z far in the future", "", "Foo 29 12:00:00 x"])
def test_no_time(line):
    assert line_time(line, NOW) is None
