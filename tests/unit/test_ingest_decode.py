"""The one-pass ingest decoder (console/ingest/batch.py BatchDecoder) answers every body
as the field-by-field validator does: the same Batch, or the same error (status, code,
message and JSON path)."""
from __future__ import annotations

import gzip
import json
from dataclasses import asdict

import msgspec
import pytest

from console.ingest.batch import BatchDecoder, IngestError, decode_body, parse_batch

CAP = 1 << 20


def answer(decode, raw: bytes, encoding: str | None = None):  # noqa: ANN001
    try:
        batch = decode(raw, encoding)
    except IngestError as exc:
        return (exc.status, exc.code, str(exc), exc.details)
    return {**asdict(batch), "metrics": [msgspec.structs.asdict(m) for m in batch.metrics]}


def one_pass(raw: bytes, encoding: str | None = None):
    return answer(lambda r, e: BatchDecoder().decode(r, e, CAP), raw, encoding)


def field_by_field(raw: bytes, encoding: str | None = None):
    return answer(lambda r, e: parse_batch(decode_body(r, e, CAP)), raw, encoding)


def body(**fields) -> bytes:
    return json.dumps({"host": "h1", "batch_id": "b1", **fields}).encode()


CASES = [
    body(metrics=[{"name": "a", "points": [[1, 2]]}]),
    body(metrics=[{"name": "a", "points": [[1.0, 2]]}]),  # 5.0 is an integer (JSON Schema)
    body(metrics=[{"name": "a", "points": [[1, "NaN"], [2, 3.5]]}]),
    body(metrics=[{"name": "a", "points": [[1, True]]}]),
    body(metrics=[{"name": "a", "points": [[-1, 1]]}]),
    body(metrics=[{"name": "a", "points": [[1, 2, 3]]}]),
    body(metrics=[{"name": "a-b", "points": []}]),
    body(metrics=[{"name": "a", "labels": {"b-c": "x"}, "points": []}]),
    body(metrics=[{"name": "a", "labels": {"bc": 1}, "points": []}]),
    body(metrics=[{"name": "a", "labels": {"z": "1", "a": "2"}, "points": [[5, 6]]}], labels={"env": "p"}),
    body(metrics=[{"name": "a", "labels": None, "points": [[5, 6]]}]),
    body(metrics=[{"name": "a", "type": "histogram", "points": [[5, 6]]}]),
    body(metrics={}),
    body(sent_at=True),
    body(sent_at=12.5, agent={"version": "1.0", "interval": 10, "config_hash": "abc"}),
    body(agent={"interval": 0}),
    body(agent=False),
    body(agent={"version": "a\x00"}),
    body(agent={"config_hash": ""}),
    json.dumps({"host": "h1", "batch_id": "b c"}).encode(),
    json.dumps({"host": "-h", "batch_id": "b"}).encode(),
    json.dumps({"host": "h1"}).encode(),
    body(logs=[{"ts": 1, "line": "x\x00y", "source": "s\x00"}]),
    body(logs=[{"ts": 1, "line": "x", "labels": {"level": "WARNING", "b": "c"}}]),
    body(logs=[{"ts": 1, "line": "x", "labels": {}}]),
    body(logs=[{"ts": 1, "line": "x" * 70_000}]),
    body(logs=[{"ts": 1}]),
    body(logs=[{"ts": 1, "line": "a", "labels": {"level": 3}}]),
    b"[]", b"{not json", b"", b"1e400",
    body(metrics=[{"name": "a", "points": [[1, 1e300]]}]).replace(b"1e+300", b"1e400"),
]


@pytest.mark.parametrize("raw", CASES)
def test_one_pass_answers_as_field_by_field(raw):
    assert one_pass(raw) == field_by_field(raw)


def test_answers_spelled_out():
    ok = one_pass(body(metrics=[{"name": "cpu", "labels": {"z": "1", "a": "2"}, "points": [[5, 6]]}]))
    assert ok["metrics"] == [{"name": "cpu", "type": "gauge", "labels_json": '{"a":"2","z":"1"}',
                              "points": [(5, 6.0)], "non_finite": 0}]
    assert one_pass(body(metrics=[{"name": "a", "points": [[1, "NaN"], [2, 3]]}]))["metrics"][0]["non_finite"] == 1
    assert one_pass(body(metrics=[{"name": "ok"}, {"name": "ok2", "points": [["soon", 1.0]]}])) == (
        400, "invalid_batch", "metrics[0].points: points must be a list of [ts_ms, value]",
        {"path": "metrics[0].points"})
    assert one_pass(body(metrics=[{"name": "a", "labels": {"b-c": "x"}, "points": []}]))[3] == {
        "path": "metrics[0].labels.b-c"}
    assert one_pass(b"{not json")[:2] == (400, "invalid_json")
    assert one_pass(gzip.compress(body()), "gzip")["batch_id"] == "b1"


def test_cached_label_set_is_still_checked_per_name():
    """The cache is keyed by name and labels text: a valid label set seen with one name
    does not let an invalid name through."""
    decoder = BatchDecoder()
    decoder.decode(body(metrics=[{"name": "a", "labels": {"x": "1"}, "points": []}]), None, CAP)
    with pytest.raises(IngestError) as caught:
        decoder.decode(body(metrics=[{"name": "1a", "labels": {"x": "1"}, "points": []}]), None, CAP)
    assert caught.value.details == {"path": "metrics[0].name"}
