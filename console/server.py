"""Start the console's HTTP server on the IOLoop that is running."""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import socket

import tornado.httpserver
import tornado.netutil
import tornado.web

from console.services import Services

# Objects allocated (net) before the youngest generation of the cyclic garbage collector is
# collected. Ingest allocates a few objects per sample (decoded points, rows), so with
# CPython's default of 700 the collector ran every few hundred samples and cost ~40 % of
# decoding (bench/ingest.py); the memory it reclaims here is almost never in cycles. The
# batches in flight (64 agents' batches of 500 series: ~65,000 objects, freed once
# stored) stay below this count: at 20,000 each collection walked and promoted them,
# 1.2-1.7 us of CPU per sample (bench/ingest_cpu.py; BENCHMARKS.md, "Ingest in the agent's shape").
GC_GEN0_THRESHOLD = 200_000


def tune_gc() -> None:
    """Collect the youngest generation less often, and move what start-up allocated
    (modules, configuration, caches) out of the collector's way (``gc.freeze``,
    https://docs.python.org/3/library/gc.html#gc.freeze)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


# glibc's malloc (mallopt(3)): allocations from MALLOC_MMAP_THRESHOLD bytes up are mappings
# of their own, and free memory above the heap's top is given back to the system past
# MALLOC_TRIM_THRESHOLD bytes. By default both thresholds start low (128 KiB, 256 KiB) and
# only grow as the process frees large blocks, so a query's answer (1 MiB chunks, columns
# of a few MiB) was mapped and unmapped, or the heap grown and trimmed, on every query: a
# 24 h x 500 series per-series query faulted in up to ~5,500 fresh pages each time, and
# its first load uncompressed over HTTP took 12-17 % longer (BENCHMARKS.md, "Memory the
# allocator keeps"). Fixed thresholds keep those blocks in the heap for the next query.
# 32 MiB is the ceiling glibc's own adjustment reaches (DEFAULT_MMAP_THRESHOLD_MAX on
# 64-bit); the trim threshold bounds the free memory an arena keeps once a large query is
# over (docs/scaling.md, "Memory after large answers").
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (<malloc.h>)
MALLOC_THRESHOLDS = {M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 32 << 20),
                     M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 256 << 20)}


def tune_malloc() -> list[str]:
    """Set glibc's mmap and trim thresholds (:data:`MALLOC_THRESHOLDS`), each unless the
    operator set it in the environment (glibc's own ``MALLOC_*_THRESHOLD_`` variables,
    which then stand). Returns the names of the thresholds set; none on a C library other
    than glibc (musl, macOS), whose allocators this does not concern."""
    if platform.libc_ver()[0] != "glibc":
        return []
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = []
    for param, (name, value) in MALLOC_THRESHOLDS.items():
        if name not in os.environ and mallopt(param, value) == 1:  # 1: accepted
            done.append(name)
    return done


def start_http(app: tornado.web.Application, services: Services, host: str, port: int,
               sockets: list[socket.socket] | None = None) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Listen on ``host:port`` (port 0 picks a free one), or accept on ``sockets`` already
    bound (a worker of ``serve --workers``); returns the server and the bound port.
    Raises OSError when the address is taken. Must be called with an IOLoop running or
    about to run on this thread; starts the services' background work (deploy runners)."""
    console = services.config.console
    # The ingest route raises its own cap per request (for a JSON 413); everything else is
    # refused by tornado above the larger of the two caps.
    server = tornado.httpserver.HTTPServer(
        app, max_body_size=max(console.max_body_bytes, console.api_max_body_bytes) + 1024, xheaders=False)
    if sockets is None:
        sockets = tornado.netutil.bind_sockets(port, host or None)
    server.add_sockets(sockets)
    services.start()
    tune_gc()
    tune_malloc()
    return server, sockets[0].getsockname()[1]
