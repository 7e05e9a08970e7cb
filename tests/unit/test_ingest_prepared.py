"""The writer's rows built before the write turn (IngestService._prepare_rows) give each
batch's result the same newest sample time as the batch itself (Batch.last_ts), which the
live host frame carries."""
from __future__ import annotations

import time

import orjson

from console.config import ConsoleConfig
from console.ingest.service import IngestService
from console.storage import Database


def test_a_prepared_batch_answers_its_newest_sample_time_as_the_batch_does(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'i.db'}")
    db.migrate()
    ingest = IngestService(db, config=ConsoleConfig())
    base = int(time.time() * 1000) - 600_000

    def batch(n: int, stamps: list[int], logs: list[int] | None = None):  # noqa: ANN202
        doc = {"host": "prep-1", "batch_id": f"b{n}", "metrics": [
            {"name": "prep_gauge", "labels": {"i": str(i)}, "points": [[ts, float(i)]]} for i, ts in enumerate(stamps)],
            "logs": [{"ts": ts, "line": "x"} for ts in logs or []]}
        return ingest.decode(orjson.dumps(doc), None, 1 << 20)

    def store(b):  # noqa: ANN001, ANN202 - as the writer stores a group of one
        now = time.time()
        prepared = ingest._prepare_rows([b], now)
        with db.turn():
            return prepared, ingest.store_group([b], prepared, now)[0]

    first = batch(1, [base, base + 5, base + 2])
    assert store(first)[1].last_ts == first.last_ts == base + 5  # series new: nothing prepared
    later = [base + 70_000, base + 90_000, base + 10_000]  # not in time order; one before the bounds
    second = batch(2, later)
    prepared, result = store(second)
    assert 0 in prepared and prepared[0].newest == base + 90_000
    assert result.last_ts == second.last_ts == base + 90_000 and result.accepted_samples == 3
    with_logs = batch(3, [base + 100_000] * 3, logs=[base + 120_000])
    prepared, result = store(with_logs)
    assert 0 in prepared and result.last_ts == with_logs.last_ts == base + 120_000  # a newer log line counts
    empty = ingest.decode(orjson.dumps({"host": "prep-1", "batch_id": "b4", "metrics": [
        {"name": "prep_gauge", "labels": {"i": str(i)}, "points": []} for i in range(3)]}), None, 1 << 20)
    prepared, result = store(empty)
    assert 0 in prepared and result.last_ts is empty.last_ts is None  # no point: no newest time
