"""HTTP client for the console's ingest endpoint (standard library only).

Wire format (docs/architecture.md, "The write path"; the body in the README): ``POST {console_url}/api/v1/ingest``
with a gzip-compressed JSON body, ``Content-Encoding: gzip``,
``Content-Type: application/json`` and ``Authorization: Bearer <agent token>``.
Errors come back as ``{"error": {"code", "message", "details"}}``.

The client speaks HTTP/1.1 itself over one kept-alive socket (RFC 9112: a status line,
headers, a body of Content-Length bytes, chunked, or up to the close) instead of using
urllib/http.client: those load ``ssl`` and ``email`` at import, ~8 MiB of the agent's
RSS, and open a new connection per batch. ``ssl`` is imported only for https URLs.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from typing import Any

from agents import __version__
from agents.errors import AgentError

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/ingest"
# Bound how much of an error body is read: it is only there to be reported.
_MAX_ERROR_BODY = 64 * 1024


class PushError(AgentError):
    """A batch was not accepted.

    - ``status``: HTTP status, or None when no HTTP answer arrived (refused,
      DNS failure, timeout, TLS error).
    - ``code``: the console's snake_case error code, or a local one:
      ``connection_failed``, ``timeout``, ``http_<status>`` (non-JSON error
      body), ``invalid_response`` (2xx without a JSON object).
    - ``message``: human-readable reason.
    - ``retry_after``: seconds from the ``Retry-After`` header (429/503), else None.
    """

    def __init__(self, status: int | None, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status if status is not None else 'no response'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit alone takes "²", which float() refuses
        return float(value)
    import email.utils  # only for the rare HTTP-date form; ~3 MiB the steady state does without

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _describe(reason: object) -> str:
    """``Connection refused`` rather than ``[Errno 111] Connection refused``."""
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__


def _error_from_body(status: int, body: bytes, retry_after: float | None) -> PushError:
    try:
        error = json.loads(body.decode("utf-8"))["error"]
        return PushError(status, str(error["code"]), str(error.get("message", "")), retry_after)
    except (ValueError, KeyError, TypeError):
        # Not the console's JSON (a proxy's HTML page, an empty body): report the start of it.
        text = body[:200].decode("utf-8", "replace").strip() or "no error body"
        return PushError(status, f"http_{status}", text, retry_after)


class IngestClient:
    """Pushes batches to one console over one kept-alive connection (thread-safe: pushes
    are serialised).

    ``console_url``: base URL (``http://host:8700``); ``token``: agent token;
    ``timeout``: seconds for connect and for each socket read.

    TLS (``https://`` URLs): the console's certificate and host name are always
    verified, against ``ca_file`` (PEM) when given, else the system trust store.
    ``client_cert``/``client_key`` (PEM files; the key may be inside the
    certificate file) are presented when the console asks for a client certificate.
    Raises ``ssl.SSLError``/``OSError`` at construction for unreadable files.
    """

    MAX_HEADER_LINE = 64 * 1024
    MAX_HEADERS = 100
    MAX_BODY = 16 * 1024 * 1024  # an answer is a small JSON object; more is not the console

    def __init__(self, console_url: str, token: str, timeout: float = 10.0, ca_file: str = "",
                 client_cert: str = "", client_key: str = "") -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._reader: Any = None  # buffered binary reader over _sock
        self.token = token
        self.timeout = timeout
        self.ssl_context = None  # ssl.SSLContext for https
        self.url = console_url.rstrip("/") + INGEST_PATH
        if self._tls:
            import ssl

            self.ssl_context = ssl.create_default_context(cafile=ca_file or None)
            if client_cert:
                self.ssl_context.load_cert_chain(client_cert, client_key or None)

    @property
    def url(self) -> str:
        """The full ingest URL; setting it closes the kept-alive connection."""
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        parts = urllib.parse.urlsplit(value)
        tls = parts.scheme == "https"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if tls else 80)
        host_header = f"[{host}]" if ":" in host else host
        with self._lock:
            self.close()
            self._url, self._tls, self._host, self._port = value, tls, host, port
            self._host_header = host_header if port == (443 if tls else 80) else f"{host_header}:{port}"
            self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            # A proxy from the environment (http_proxy, https_proxy, all_proxy, upper case too):
            # hand the request to urllib, which applies it and no_proxy as before.
            scheme = "https" if tls else "http"
            self._via_urllib = any(os.environ.get(name) for name in (
                f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"))

    @staticmethod
    def encode(batch: dict[str, Any]) -> bytes:
        """The request body for ``batch``: compact JSON, gzip level 6. Raises ``ValueError``
        if ``batch`` is not JSON-serialisable (NaN included)."""
        return gzip.compress(json.dumps(batch, separators=(",", ":"), allow_nan=False).encode("utf-8"), 6)

    def push(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Send one batch and return the console's decoded JSON answer.

        Raises :class:`PushError` on any non-2xx status, on a network failure
        or timeout, and on a 2xx answer that is not a JSON object. Raises
        ``ValueError`` if ``batch`` is not JSON-serialisable (NaN included).
        """
        return self.push_body(self.encode(batch))

    def push_body(self, body: bytes) -> dict[str, Any]:
        """Send an already encoded body (:meth:`encode`); answers and errors as :meth:`push`."""
        head = [f"POST {self._path} HTTP/1.1", f"Host: {self._host_header}",
                "Content-Type: application/json", "Content-Encoding: gzip", "Accept: application/json",
                f"User-Agent: fleetdeck-agent/{__version__}", f"Content-Length: {len(body)}"]
        if self.token:
            if any(c in self.token for c in "\r\n\0"):
                raise ValueError("the agent token contains a line break or NUL")
            head.append(f"Authorization: Bearer {self.token}")
        if self._via_urllib:
            status, headers, raw = self._urllib_exchange(head[2:], body)
            return self._answer(status, headers, raw)
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        with self._lock:
            try:
                status, headers, raw = self._exchange(request)
            except TimeoutError:
                self.close()
                raise PushError(None, "timeout", f"no answer within {self.timeout:g}s") from None
            except OSError as exc:
                self.close()
                raise PushError(None, "connection_failed", _describe(exc)) from None
        return self._answer(status, headers, raw)

    def _answer(self, status: int, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        if not 200 <= status < 300:
            raise _error_from_body(status, raw[:_MAX_ERROR_BODY], parse_retry_after(headers.get("retry-after")))
        try:
            answer = json.loads(raw.decode("utf-8"))
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PushError(status, "invalid_response", f"expected a JSON object from {self.url}, got {raw[:200]!r}")
        return answer

    def _urllib_exchange(self, head: list[str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request through urllib (only with a proxy in the environment; it loads
        ~10 MiB of modules). Returns (status, lower-case headers, body)."""
        import http.client
        import urllib.error
        import urllib.request

        headers = dict(line.split(": ", 1) for line in head if not line.startswith("Content-Length"))
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        # An opener of our own: urlopen() without a TLS context reuses a process-wide opener
        # whose ProxyHandler read the environment when it was first built.
        handlers: list = [urllib.request.ProxyHandler()]
        if self.ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self.ssl_context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read(_MAX_ERROR_BODY)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise PushError(None, "timeout", f"no answer within {self.timeout:g}s") from None
            raise PushError(None, "connection_failed", _describe(exc.reason)) from None
        except TimeoutError:
            raise PushError(None, "timeout", f"no answer within {self.timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise PushError(None, "connection_failed", _describe(exc)) from None

    def close(self) -> None:
        """Close the kept-alive connection (the next push opens a new one)."""
        sock, self._sock, self._reader = self._sock, None, None
        if sock is not None:
            try:
                sock.close()
            except OSError as exc:
                log.debug("closing the console connection: %s", exc)

    def _exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        sock = self._sock
        reused = sock is not None
        if sock is None:
            sock = self._connect()
        try:
            sock.sendall(request)
            status_line = self._reader.readline(self.MAX_HEADER_LINE)
            if not status_line and reused:
                raise ConnectionResetError("kept-alive connection closed by the console")
        except (ConnectionError, BrokenPipeError) as exc:
            if not reused:
                raise
            # The console (or a proxy) closed the idle connection: send again on a new one.
            # Ingest is idempotent by batch_id, so a batch that did arrive is not stored twice.
            log.debug("kept-alive connection lost (%s); reconnecting", exc)
            self.close()
            self._connect().sendall(request)
            status_line = self._reader.readline(self.MAX_HEADER_LINE)
        return self._read_response(status_line)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        self._sock, self._reader = sock, sock.makefile("rb")
        return sock

    def _read_response(self, status_line: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for _ in range(self.MAX_HEADERS + 1):
            line = self._reader.readline(self.MAX_HEADER_LINE)
            if not line:
                raise ConnectionError("connection closed inside the answer's headers")
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ConnectionError(f"malformed header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        else:
            raise ConnectionError(f"more than {self.MAX_HEADERS} header lines")
        if status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            length = headers["content-length"]
            if not (length.isascii() and length.isdigit()) or int(length) > self.MAX_BODY:
                raise ConnectionError(f"unusable Content-Length {length[:40]!r}")
            body = self._read_exact(int(length))
        else:  # the body runs to the end of the connection
            body = self._reader.read(self.MAX_BODY)
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close" or parts[0] == b"HTTP/1.0":
            self.close()
        return status, headers, body

    def _read_exact(self, n: int) -> bytes:
        data = self._reader.read(n)
        if len(data) != n:
            raise ConnectionError(f"connection closed after {len(data)} of {n} body bytes")
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self._reader.readline(self.MAX_HEADER_LINE).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ConnectionError(f"malformed chunk size {size_line[:40]!r}") from None
            total += size
            if size < 0 or total > self.MAX_BODY:
                raise ConnectionError("chunked answer too large")
            if size == 0:
                while self._reader.readline(self.MAX_HEADER_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields are not used
                return b"".join(chunks)
            chunks.append(self._read_exact(size))
            self._read_exact(2)  # CRLF after the chunk
