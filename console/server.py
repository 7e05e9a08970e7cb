"""Start the console's HTTP server on the IOLoop that is running."""
from __future__ import annotations

import gc
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
    return server, sockets[0].getsockname()[1]
