"""Large JSON answers encoded and compressed beside the event loop, not on it.

The console compresses its answers with gzip (Tornado's ``compress_response``, level 6)
in the event loop's thread. That is harmless for a page or a chart of one day, but a
range query's answer grows with its series: 24 h of 500 series at a 1 m step, per series,
is 25 MB of JSON, and gzip level 6 of it took 1.5 s, a time in which the console served
nothing else (agents' batches waited, live charts froze, other queries queued).
:class:`AnswerEncoder` writes such an answer's JSON and gzip stream on a pool of its own,
compressed with ISA-L (python-isal), which releases the GIL while it deflates, so the
event loop keeps running meanwhile. ISA-L's level 1 compressed that answer 16x faster
than zlib's level 6 (94 against 1,499 ms) for 7 % more bytes, and 4x faster than zlib's
level 1, to fewer bytes (BENCHMARKS.md, "Large answers over HTTP").
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from isal import isal_zlib

# Below this many bytes of JSON an answer is left to Tornado's own gzip (on the event
# loop, at level 6): a few milliseconds at most, not worth a thread hop.
LARGE = 256 * 1024
LEVEL = 1  # ISA-L's levels are 0-3: 2 and 3 saved under 0.3 % of these answers' bytes, for more time


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON (orjson, non-string keys allowed): every answer's encoding."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header value lets the answer be gzip-compressed, by
    the rule Tornado's ``GZipContentEncoding`` applies to every other answer ("gzip"
    anywhere in it), so one client gets one behaviour from every route."""
    return "gzip" in accept_encoding


def encode(value: Any, gzip: bool) -> tuple[bytes, str | None]:
    """``value`` as JSON bytes (:func:`json_bytes`), and the
    ``Content-Encoding`` they carry: ``"gzip"`` (one gzip member, RFC 1952, deflated by
    ISA-L at its level :data:`LEVEL`) when ``gzip`` and the JSON is at least :data:`LARGE`
    bytes, else None (the JSON itself). Raises orjson.JSONEncodeError for a value orjson cannot encode."""
    text = json_bytes(value)
    if not gzip or len(text) < LARGE:
        return text, None
    deflater = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)  # 16 +: gzip's wrapper
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
