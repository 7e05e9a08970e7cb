"""Large JSON answers encoded and compressed beside the event loop, not on it.

The console compresses its answers with gzip (Tornado's ``compress_response``, level 6)
in the event loop's thread. That is harmless for a page or a chart of one day, but a
range query's answer grows with its series: 24 h of 500 series at a 1 m step, per series,
is 25 MB of JSON, and gzip level 6 of it took 1.6 s, a time in which the console served
nothing else (agents' batches waited, live charts froze, other queries queued).
:class:`AnswerEncoder` writes such an answer's JSON and gzip stream on a pool of its own;
zlib releases the GIL while it deflates, so the event loop keeps running meanwhile.
Answers of at least :data:`LARGE` bytes are deflated at level 1: 4x faster than level 6
for ~12 % more bytes on these answers (BENCHMARKS.md, "Large answers over HTTP").
"""
from __future__ import annotations

import asyncio
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

# Below this many bytes of JSON an answer is left to Tornado's own gzip (on the event
# loop, at level 6): a few milliseconds at most, not worth a thread hop.
LARGE = 256 * 1024
LEVEL = 1  # zlib level for large answers


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header value lets the answer be gzip-compressed, by
    the rule Tornado's ``GZipContentEncoding`` applies to every other answer ("gzip"
    anywhere in it), so one client gets one behaviour from every route."""
    return "gzip" in accept_encoding


def encode(value: Any, gzip: bool) -> tuple[bytes, str | None]:
    """``value`` as JSON bytes (orjson, non-string keys allowed), and the
    ``Content-Encoding`` they carry: ``"gzip"`` (a gzip member, RFC 1952, at zlib level
    :data:`LEVEL`) when ``gzip`` and the JSON is at least :data:`LARGE` bytes, else None
    (the JSON itself). Raises orjson.JSONEncodeError for a value orjson cannot encode."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    if not gzip or len(text) < LARGE:
        return text, None
    deflater = zlib.compressobj(LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16 +: gzip's header and trailer
    return deflater.compress(text) + deflater.flush(), "gzip"


class AnswerEncoder:
    """:func:`encode` on a pool of ``workers`` threads of its own. Call :meth:`encode_off_loop`
    from the event loop; :meth:`close` waits for the answers being encoded."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="answers")

    async def encode_off_loop(self, value: Any, gzip: bool) -> tuple[bytes, str | None]:
        """:func:`encode` of ``value`` on the pool; the same return and errors."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, encode, value, gzip)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
