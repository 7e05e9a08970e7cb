"""console/answers.py: a large answer's chunks make exactly the JSON (or its gzip) that
encoding the whole value gives, whatever the value's shape."""
from __future__ import annotations

import gzip
import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.answers import LARGE, AnswerStream, json_pieces

SHAPES = [
    {}, [], {"a": 1}, [{"a": 1}], [{"a": 1}, {"b": [1, 2]}], [{"a": 1}, 2], [1, {"a": 1}],
    {1: 2, "a": 3},  # a non-string key: orjson's OPT_NON_STR_KEYS writes "1"
    {"a": {1: "x"}, "b": [{"c": None}, {"d": True}]},
    {"k\u00e9\"\n": [{"x": "\u4e2d\u6587"}, {"y": -0.0}], "nan": math.nan, "inf": [math.inf]},
    {"series": [{"labels": {"h": "a"}, "points": orjson.Fragment(b"[[1,2.5],[2,null]]")},
                {"labels": {}, "points": orjson.Fragment(b"[]")}]},
    {"status": "success", "data": {"resultType": "matrix",
                                   "result": [{"metric": {"i": str(i)}, "values": [[i, str(i / 7)]] * 40}
                                              for i in range(4000)]}},  # ~2.8 MB: many chunks
]


def chunks(value, gzip_ok: bool, size: int) -> tuple[list[bytes], AnswerStream]:
    stream = AnswerStream(value, gzip_ok, chunk=size)
    out = [stream.first()]
    while not stream.done:
        out.append(stream.next())
    return out, stream


@pytest.mark.parametrize("value", SHAPES, ids=range(len(SHAPES)))
def test_pieces_make_the_whole_json(value):
    whole = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    assert b"".join(json_pieces(value)) == whole
    json.loads(whole)  # and it is JSON


@pytest.mark.parametrize("value", SHAPES, ids=range(len(SHAPES)))
@pytest.mark.parametrize("gzip_ok", [False, True])
def test_chunks_make_the_answer(value, gzip_ok):
    whole = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    out, stream = chunks(value, gzip_ok, 64 * 1024)
    if len(whole) < LARGE:  # a small answer: one chunk, the JSON, left to the server's own gzip
        assert out == [whole] and stream.encoding is None
    elif gzip_ok:
        assert stream.encoding == "gzip"
        assert gzip.decompress(b"".join(out)) == whole
        assert len(out) > len(whole) // (64 * 1024) // 2  # written as it goes, not at the end
    else:
        assert stream.encoding is None
        assert b"".join(out) == whole
        assert all(len(c) >= 64 * 1024 for c in out[1:-1])  # chunks of at least the size asked
        assert len(out) >= len(whole) // (1024 * 1024)


def test_an_unencodable_value_raises_when_reached():
    stream = AnswerStream({"a": [{"b": 1}, {"c": object()}]}, gzip=False)
    with pytest.raises(orjson.JSONEncodeError):
        stream.first()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text() | st.integers(0, 9), inner, max_size=4)
    | st.lists(st.dictionaries(st.text(), inner, max_size=3), max_size=4),
    max_leaves=30)


@given(JSON)
@settings(max_examples=300, deadline=None)
def test_pieces_make_the_whole_json_for_any_value(value):
    try:
        whole = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # e.g. keys 1 and "1" together
        return
    assert b"".join(json_pieces(value)) == whole
