"""Large JSON answers written in chunks beside the event loop, not built whole on it.

The console compresses its answers with gzip (Tornado's ``compress_response``, level 6)
in the event loop's thread. That is harmless for a page or a chart of one day, but a
range query's answer grows with its series: 24 h of 500 series at a 1 m step, per series,
is 25 MB of JSON, and gzip level 6 of it took 1.5 s, a time in which the console served
nothing else (agents' batches waited, live charts froze, other queries queued); 8,000
series are 394 MB, which were held twice (the series' points and the whole answer) and
hashed on the loop for an ETag.

:class:`AnswerEncoder` writes such an answer on a pool of its own, a chunk at a time
(:class:`AnswerStream`): its JSON in pieces (:func:`json_pieces`), compressed with ISA-L
(python-isal), which releases the GIL while it deflates, when the client takes gzip. The
handler sends each chunk (HTTP/1.1 chunked transfer coding, RFC 9112 section 7.1) while
the next one is written, so the whole answer never exists as one buffer and a slow
client slows the writing, not the memory. ISA-L's level 1 compressed the 25 MB answer
16x faster than zlib's level 6 (94 against 1,499 ms) for 7 % more bytes, and 4x faster
than zlib's level 1, to fewer bytes (BENCHMARKS.md, "Large answers over HTTP").
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

import orjson
from isal import isal_zlib

T = TypeVar("T")

# Below this many bytes of JSON an answer is sent whole, left to Tornado's own gzip (on
# the event loop, at level 6): a few milliseconds at most, not worth a thread hop.
LARGE = 256 * 1024
CHUNK = 1024 * 1024  # bytes of JSON per chunk of a large answer: ~400 thread hops for 394 MB
LEVEL = 1  # ISA-L's levels are 0-3: 2 and 3 saved under 0.3 % of these answers' bytes, for more time


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON (orjson, non-string keys allowed): every answer's encoding."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def json_pieces(value: Any) -> Iterator[bytes]:
    """:func:`json_bytes` of ``value`` in pieces whose concatenation is exactly it: a dict
    with string keys member by member, a list of dicts item by item (each item whole: a
    range answer's series, a log search's lines), anything else whole. Raises
    orjson.JSONEncodeError as :func:`json_bytes`, when the piece holding the value is
    reached."""
    if isinstance(value, dict) and value and all(type(k) is str for k in value):
        sep = b"{"
        for key, member in value.items():
            yield sep + orjson.dumps(key) + b":"
            yield from json_pieces(member)
            sep = b","
        yield b"}"
    elif isinstance(value, list) and len(value) > 1 and all(type(item) is dict for item in value):
        sep = b"["
        for item in value:
            yield sep
            yield json_bytes(item)
            sep = b","
        yield b"]"
    else:
        yield json_bytes(value)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header value lets the answer be gzip-compressed, by
    the rule Tornado's ``GZipContentEncoding`` applies to every other answer ("gzip"
    anywhere in it), so one client gets one behaviour from every route."""
    return "gzip" in accept_encoding


class AnswerStream:
    """One answer's bytes, chunk by chunk: :meth:`first`, then :meth:`next` until
    :attr:`done`. Not for two threads at once (the handler asks for one chunk at a time).

    An answer under :data:`LARGE` bytes of JSON is the first chunk whole and
    :attr:`encoding` None (sent as a small answer is). A larger one is a gzip member (RFC
    1952, deflated by ISA-L at its level :data:`LEVEL`; :attr:`encoding` ``"gzip"``) when
    ``gzip``, else its JSON, in chunks from :data:`CHUNK` bytes of JSON each. The chunks'
    concatenation is :func:`json_bytes` of ``value`` (or its gzip)."""

    def __init__(self, value: Any, gzip: bool, chunk: int = CHUNK) -> None:
        self._pieces = json_pieces(value)
        self._gzip = gzip
        self._chunk = chunk
        self._deflater: Any = None
        self.encoding: str | None = None
        self.done = False

    def first(self) -> bytes:
        """The first chunk (the whole answer if :attr:`done` after it). Raises
        orjson.JSONEncodeError for a value orjson cannot encode."""
        head = self._take(LARGE)
        if self.done:  # under LARGE bytes in all
            return b"".join(head)
        if self._gzip:
            self._deflater = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)  # 16 +: gzip's wrapper
            self.encoding = "gzip"
        return self._out(head)

    def next(self) -> bytes:
        """The next chunk (the last when :attr:`done` after it; possibly empty). Raises
        orjson.JSONEncodeError as :meth:`first`."""
        return self._out(self._take(self._chunk))

    def _take(self, size: int) -> list[bytes]:
        """Pieces of JSON up to ``size`` bytes or more (fewer at the end: then :attr:`done`)."""
        taken: list[bytes] = []
        held = 0
        for piece in self._pieces:
            taken.append(piece)
            held += len(piece)
            if held >= size:
                return taken
        self.done = True
        return taken

    def _out(self, pieces: list[bytes]) -> bytes:
        if self._deflater is None:
            return b"".join(pieces)
        out = [self._deflater.compress(piece) for piece in pieces]  # piece by piece: no joined copy
        if self.done:
            out.append(self._deflater.flush())
        return b"".join(out)


class AnswerEncoder:
    """:class:`AnswerStream` chunks written on a pool of ``workers`` threads of its own.
    Call :meth:`stream` and :meth:`run` from the event loop; :meth:`close` waits for the
    chunks being written."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="answers")

    @staticmethod
    def stream(value: Any, gzip: bool) -> AnswerStream:
        """The chunks of ``value``'s answer (nothing encoded yet)."""
        return AnswerStream(value, gzip)

    def run(self, step: Callable[[], T]) -> "asyncio.Future[T]":
        """``step`` (an :class:`AnswerStream`'s ``first`` or ``next``) on the pool."""
        return asyncio.get_running_loop().run_in_executor(self._pool, step)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
