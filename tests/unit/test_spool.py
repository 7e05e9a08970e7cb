"""The agent's disk spool: framing, torn tails, bounds with exact drop counts, replay order;
and the retry policy of delivery."""
from __future__ import annotations

import errno
import os
import random

import pytest

from agents.client import PushError
from agents.delivery import RetryPolicy, error_label, is_recoverable
from agents.spool import FRAME, META2, Spool


class Clock:
    def __init__(self, now: float = 1_763_700_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (record := spool.peek(timeout=0)) is not None:
        out.append(record.payload)
        spool.ack(record.seq)
    return out


def segments(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".seg2"))


def test_replays_in_order_after_reopening_and_skips_acknowledged(tmp_path):
    spool = Spool(str(tmp_path), fsync=False)
    for i in range(10):
        assert spool.append(b"batch-%d" % i, samples=3, lines=1) == i + 1
    first = spool.peek(timeout=0)
    assert (first.seq, first.payload, first.samples, first.lines) == (1, b"batch-0", 3, 1)
    spool.ack(first.seq)
    spool.close()
    reopened = Spool(str(tmp_path), fsync=False)
    assert reopened.snapshot().queued == 9
    assert drain(reopened) == [b"batch-%d" % i for i in range(1, 10)]
    # Sequence numbers keep growing after a restart.
    assert reopened.append(b"next", 1, 0) == 11


def test_a_torn_tail_is_cut_off_counted_and_appends_continue(tmp_path):
    spool = Spool(str(tmp_path), fsync=False)
    for i in range(3):
        spool.append(b"x" * 100 + bytes([i]), 1, 0)
    spool.close()
    path = tmp_path / segments(tmp_path)[-1]
    size = path.stat().st_size
    os.truncate(path, size - 7)  # the last record lost its end: a torn write
    reopened = Spool(str(tmp_path), fsync=False)
    stats = reopened.snapshot()
    assert stats.torn_records == 1
    assert stats.torn_bytes == FRAME.size + META2.size + 101 - 7
    assert path.stat().st_size == size - (FRAME.size + META2.size + 101)
    assert reopened.append(b"after", 1, 0) == 3  # seq 3 never became durable: reused
    assert drain(reopened) == [b"x" * 100 + b"\x00", b"x" * 100 + b"\x01", b"after"]
    reopened.close()
    assert Spool(str(tmp_path), fsync=False).snapshot().torn_records == 0


@pytest.mark.parametrize("garbage", [b"\x00" * 3, b"\xff" * 64, FRAME.pack(40, 0) + b"y" * 40])
def test_garbage_after_the_last_record_never_raises(tmp_path, garbage):
    spool = Spool(str(tmp_path), fsync=False)
    spool.append(b"good", 2, 0)
    spool.close()
    with open(tmp_path / segments(tmp_path)[-1], "ab") as fh:
        fh.write(garbage)
    reopened = Spool(str(tmp_path), fsync=False)
    assert reopened.snapshot().torn_records == 1
    assert drain(reopened) == [b"good"]


def test_a_flipped_bit_fails_the_checksum(tmp_path):
    spool = Spool(str(tmp_path), fsync=False)
    spool.append(b"a" * 50, 1, 0)
    spool.append(b"b" * 50, 1, 0)
    spool.close()
    path = tmp_path / segments(tmp_path)[-1]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    reopened = Spool(str(tmp_path), fsync=False)
    assert reopened.snapshot().torn_records == 1
    assert drain(reopened) == [b"a" * 50]


def test_size_cap_drops_oldest_batches_with_exact_counts(tmp_path):
    cap = 64 * 1024
    spool = Spool(str(tmp_path), max_bytes=cap, fsync=False)
    payload = os.urandom(1000)
    frame = FRAME.size + META2.size + len(payload)
    for i in range(200):
        spool.append(payload, samples=7, lines=2)
        assert spool.snapshot().bytes <= cap
        assert sum((tmp_path / n).stat().st_size for n in segments(tmp_path)) <= cap
    stats = spool.snapshot()
    assert stats.dropped_batches > 0
    assert stats.dropped_batches + stats.queued == 200
    assert stats.dropped_samples == 7 * stats.dropped_batches
    assert stats.dropped_lines == 2 * stats.dropped_batches
    assert stats.bytes == stats.queued * frame
    # What is left is the newest batches, in order.
    first = spool.peek(timeout=0)
    assert first.seq == stats.dropped_batches + 1


def test_a_batch_larger_than_the_cap_is_dropped_and_counted(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=16 * 1024, fsync=False)
    assert spool.append(b"z" * 20_000, samples=5, lines=3) is None
    stats = spool.snapshot()
    assert (stats.dropped_batches, stats.dropped_samples, stats.dropped_lines, stats.queued) == (1, 5, 3, 0)


def test_batches_older_than_max_age_are_dropped_before_sending(tmp_path):
    clock = Clock()
    spool = Spool(str(tmp_path), max_age=60, fsync=False, clock=clock)
    spool.append(b"old", 4, 0)
    clock.now += 30
    spool.append(b"young", 5, 1)
    clock.now += 31
    record = spool.peek(timeout=0)
    assert record.payload == b"young"
    stats = spool.snapshot()
    assert (stats.dropped_batches, stats.dropped_samples, stats.dropped_lines) == (1, 4, 0)


def test_acknowledged_segments_are_deleted(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=64 * 1024, fsync=False)  # 4 KiB segments
    for _ in range(20):
        spool.append(os.urandom(1000), 1, 0)
    assert len(segments(tmp_path)) >= 5
    drain(spool)
    assert len(segments(tmp_path)) == 1  # the one still appended to
    assert spool.snapshot().queued == 0


def test_backoff_is_exponential_with_full_jitter_capped_and_honours_retry_after():
    policy = RetryPolicy(min_backoff=0.5, max_backoff=30.0, rng=random.Random(7))
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (40, 30.0)]:
        delays = [policy.delay(attempt) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over the whole range
    assert policy.delay(5, retry_after=7.0) == 7.0


@pytest.mark.parametrize("status, code, recoverable, label", [
    (None, "connection_failed", True, "connection_failed"),
    (None, "timeout", True, "timeout"),
    (500, "internal_error", True, "500"),
    (503, "storage_unavailable", True, "503"),
    (429, "rate_limited", True, "429"),
    (400, "invalid_batch", False, "400"),
    (408, "request_timeout", True, "408"),
    (401, "unauthorized", True, "401"),  # the token, not the batch: kept and retried
    (403, "forbidden", True, "403"),
    (413, "body_too_large", False, "413"),
    (422, "invalid_range", False, "422"),
])
def test_which_failures_are_retried(status, code, recoverable, label):
    exc = PushError(status, code, "m")
    assert is_recoverable(exc) is recoverable
    assert error_label(exc) == label


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 64 KiB tmpfs (skipped where mounting is not permitted)."""
    from tests.integration.procs import tmpfs

    with tmpfs(tmp_path / "tmpfs", "64k") as path:
        yield path


def records_on_disk(directory) -> list[tuple[int, bytes]]:
    """(seq, payload) of every whole record in the segment files, in file order."""
    out = []
    for name in segments(directory):
        data = (directory / name).read_bytes()
        offset = 0
        while offset + FRAME.size <= len(data):
            length, _ = FRAME.unpack_from(data, offset)
            body = data[offset + FRAME.size:offset + FRAME.size + length]
            seq, _, _, _, ext_len = META2.unpack_from(body)
            out.append((seq, body[META2.size + ext_len:]))
            offset += FRAME.size + length
        assert offset == len(data), f"{name}: {len(data) - offset} bytes of residue after the last record"
    return out


def test_enospc_on_a_real_tmpfs_leaves_no_residue_and_never_reuses_a_seq(small_tmpfs):
    spool = Spool(str(small_tmpfs / "spool"), max_bytes=1 << 20, fsync=True)
    written: dict[int, bytes] = {}
    failures = 0
    for i in range(60):
        payload = os.urandom(2500 + 37 * i)  # uneven sizes: writes fail part way through a page
        try:
            written[spool.append(payload, 1, 0)] = payload
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            failures += 1
    assert failures > 20 and written
    assert spool.snapshot().write_errors == failures
    on_disk = records_on_disk(small_tmpfs / "spool")
    assert dict(on_disk) == written and len(on_disk) == len(written)
    # Acknowledge everything: space comes back (the ack mark is rewritten in place) and
    # new batches get numbers above every number ever handed out, failed ones included.
    last = max(written)
    spool.ack(last)
    later = spool.append(b"after the disk was full", 1, 0)
    assert later is not None and later > last + failures - 1
    spool.close()
    reopened = Spool(str(small_tmpfs / "spool"), max_bytes=1 << 20, fsync=False)
    assert drain(reopened) == [b"after the disk was full"]
    assert reopened.snapshot().torn_records == 0


def test_extensions_survive_acknowledgement_and_restart(tmp_path):
    spool = Spool(str(tmp_path), fsync=False)
    spool.append(b"a", 1, 0, ext=b'{"pos":1}')
    spool.append(b"b", 1, 0)
    assert spool.last_extension() == (1, b'{"pos":1}')
    spool.ack(2)  # every segment acknowledged: the extension lives on in the ack mark
    spool.append(b"c", 1, 0, ext=b'{"pos":3}')
    spool.close()
    assert Spool(str(tmp_path), fsync=False).last_extension() == (3, b'{"pos":3}')


def test_segments_of_the_previous_format_are_still_replayed(tmp_path):
    import struct
    import zlib

    old_meta = struct.Struct("<QQII")
    with open(tmp_path / f"{1:020d}.seg", "wb") as fh:
        for seq in (1, 2):
            body = old_meta.pack(seq, 1_763_700_000_000, 3, 1) + b"old-%d" % seq
            fh.write(FRAME.pack(len(body), zlib.crc32(body)) + body)
    spool = Spool(str(tmp_path), fsync=False, clock=Clock(1_763_700_100.0))
    assert spool.append(b"new", 1, 0) == 3
    assert drain(spool) == [b"old-1", b"old-2", b"new"]


def test_a_deleted_spool_directory_is_recreated_and_its_batches_counted(tmp_path):
    import shutil

    spool = Spool(str(tmp_path / "spool"), fsync=False)
    spool.append(b"x", 4, 2)
    shutil.rmtree(tmp_path / "spool")
    assert spool.peek(timeout=0) is None  # before: FileNotFoundError in the sender thread
    stats = spool.snapshot()
    assert (stats.recreated, stats.dropped_batches, stats.dropped_samples, stats.dropped_lines) == (1, 1, 4, 2)
    assert spool.append(b"y", 1, 0) == 2
    assert drain(spool) == [b"y"]
