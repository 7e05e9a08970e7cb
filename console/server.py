"""Start the console's HTTP server on the IOLoop that is running."""
from __future__ import annotations

import tornado.httpserver
import tornado.netutil
import tornado.web

from console.services import Services


def start_http(app: tornado.web.Application, services: Services, host: str, port: int
               ) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Listen on ``host:port`` (port 0 picks a free one); returns the server and the bound port.
    Raises OSError when the address is taken. Must be called with an IOLoop running or
    about to run on this thread."""
    console = services.config.console
    # The ingest route raises its own cap per request (for a JSON 413); everything else is
    # refused by tornado above the larger of the two caps.
    server = tornado.httpserver.HTTPServer(
        app, max_body_size=max(console.max_body_bytes, console.api_max_body_bytes) + 1024, xheaders=False)
    sockets = tornado.netutil.bind_sockets(port, host or None)
    server.add_sockets(sockets)
    if services.rollups is not None:
        services.rollups.start()  # rollup + retention jobs live as long as this loop
    return server, sockets[0].getsockname()[1]
