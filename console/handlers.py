"""Base request handlers: authentication, the route's required role, JSON errors, body caps.

Every handler is constructed from the route table with ``services``, ``role`` and
``route``; ``prepare`` authenticates (bearer token or signed session cookie) and
enforces the role before any handler method runs. Deny by default: a handler without a
role cannot be constructed.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import orjson
import tornado.iostream
import tornado.locale
import tornado.web
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from console.answers import accepts_gzip, json_bytes
from console.auth.roles import ROUTE_ROLES, Principal, RouteRole, declared_roles, role_for
from console.errors import STATUS_CODES, ApiError, FleetdeckError
from console.i18n import ENGLISH, LANG_COOKIE, TRANSLATE_HEADER, choose_language, script_block, tx
from console.schemas import REQUESTS, parse_body, parse_query

if TYPE_CHECKING:  # console.services imports every service; handlers only need the type
    from console.services import Services

SESSION_COOKIE = "fleetdeck_session"
log = logging.getLogger(__name__)


def _within(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def nul_free(value: Any) -> bool:
    """True when no string in a decoded JSON value (keys included) holds a NUL character.
    Walks with a stack, not recursion: orjson decodes 1,024 levels of nesting."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def set_security_headers(handler: tornado.web.RequestHandler) -> None:
    """The headers every answer carries (pages, API, static files, errors): no MIME
    sniffing, no framing, no referrer to other sites, and a CSP allowing only this origin."""
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "same-origin")
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("Content-Security-Policy",
                       "default-src 'self'; script-src 'self'; style-src 'self'; "
                       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")


class BaseHandler(tornado.web.RequestHandler):
    """Shared by pages, API and sockets: who is calling and may they."""

    services: Services

    def initialize(self, services: Services, role: RouteRole, route: str) -> None:
        if any(r not in ROUTE_ROLES for r in declared_roles(role)):
            raise ValueError(f"route {route} declares unknown role {role!r}")
        self.services = services
        self.required_role = role_for(role, self.request.method or "GET")
        self.route = route

    @property
    def language(self) -> str:
        """The BCP 47 tag of this request's language (console/i18n.py: cookie, else
        Accept-Language, else English)."""
        return choose_language(self.get_cookie(LANG_COOKIE), self.request.headers.get("Accept-Language"))

    # Set by the Prometheus- and Alertmanager-compatible APIs and remote write, whose clients
    # read the message: those answer in English, except to the console's own clients (a page
    # signed in with the session cookie, such as the explore page, or the CLI, which sends
    # TRANSLATE_HEADER).
    machine_api = False

    def error_text(self, message: object) -> str:
        """An error ``message`` (console/i18n.py ``Text``) in this request's language; English
        on a ``machine_api`` route unless the caller is a signed-in page session or sends
        ``Fleetdeck-Translate-Errors: 1``."""
        credential = getattr(self, "credential", (None, None))
        own_client = ((credential[1] is not None and self.current_user is not None)
                      or self.request.headers.get(TRANSLATE_HEADER) == "1")
        lang = ENGLISH if self.machine_api and not own_client else self.language
        return self.settings["i18n"].error_message(lang, message)

    def get_user_locale(self) -> tornado.locale.Locale:
        # Tornado's hook: its translate() is the templates' _().
        return self.settings["i18n"].locale(self.language)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace["lang"] = self.language
        namespace["i18n_scripts"] = script_block(self.settings["i18n"].scripts(self.language))
        return namespace

    @property
    def principal(self) -> Principal:
        """Who is calling, on a route that needs a role (``prepare`` refused anyone else)."""
        if self.current_user is None:
            self.deny_unauthenticated()
        return self.current_user

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def check_xsrf_cookie(self) -> None:
        # CSRF abuses ambient credentials (the session cookie). A bearer-token call, or one
        # with no session cookie at all, has none; it is then authenticated (or refused
        # with 401) in prepare().
        if self.bearer_token() is not None or not self.get_cookie(SESSION_COOKIE):
            return
        super().check_xsrf_cookie()

    async def authenticate(self) -> Principal | None:
        token = self.bearer_token()
        session_id = None if token is not None else self.session_id()
        self.credential = (token, session_id)  # kept, so a long-lived socket can be rechecked
        return await self.principal_for(token, session_id)

    async def principal_for(self, token: str | None, session_id: str | None) -> Principal | None:
        """The principal of a bearer token (when not None) or else a session id; None when
        neither is valid now."""
        return await self.services.auth.principal(token, session_id)

    def session_id(self) -> str | None:
        """The server-side session id from the signed session cookie, or None."""
        max_age = self.services.config.console.session_days
        cookie = self.get_signed_cookie(SESSION_COOKIE, max_age_days=max_age)
        return cookie.decode("utf-8") if cookie else None

    @property
    def client_ip(self) -> str:
        """The client's address: the peer's, unless the peer is one of
        ``console.trusted_proxies``; then the right-most ``X-Forwarded-For`` hop that is not
        a trusted proxy (hops left of it could be written by the client itself)."""
        peer = self.request.remote_ip or ""
        networks = self.services.config.trusted_proxy_networks
        if not networks or not _within(peer, networks):
            return peer
        hops = [h.strip() for h in ",".join(self.request.headers.get_list("X-Forwarded-For")).split(",")]
        client = peer
        for hop in reversed(hops):
            try:
                client = str(ipaddress.ip_address(hop))
            except ValueError:  # garbage (or empty) from here on: the last good hop answers
                break
            if not _within(client, networks):
                break
        return client

    # Body cap of this handler in bytes; None: the console's api_max_body_bytes. Handlers
    # that take only small bodies (login, enrolment) set a smaller one.
    max_body_bytes: int | None = None

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Query, form and path arguments as text. Bytes that are not UTF-8, or a NUL
        (which PostgreSQL text cannot hold), are the client's error, answered like any
        other bad parameter (Tornado's own 400 has no code)."""
        what = name or "the path"
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_parameter", tx("{parameter} is not valid UTF-8", parameter=what),
                           {"parameter": what}) from None
        if "\x00" in text:
            raise ApiError(400, "invalid_parameter", tx("{parameter} must not contain NUL", parameter=what),
                           {"parameter": what})
        return text

    def query_arguments(self) -> dict[str, list[str]]:
        """Every query argument as sent: ``{name: [value, ...]}`` (:meth:`decode_argument`:
        400 for bytes not UTF-8 or a NUL), for the route's query model to validate.
        Tornado's ``get_query_arguments`` turns control characters into spaces, so a value
        the model refuses (``level=%1F%07``, two control characters) was validated as two
        spaces and answered 200."""
        return {name: [self.decode_argument(v, name) for v in values]
                for name, values in self.request.query_arguments.items()}

    def prepare_body_cap(self) -> None:
        cap = self.max_body_bytes or self.services.config.console.api_max_body_bytes
        if len(self.request.body or b"") > cap:
            raise ApiError(413, "body_too_large", tx("body exceeds {limit} bytes", limit=cap), {"limit_bytes": cap})

    async def prepare(self) -> None:
        if not getattr(self, "_streaming", False):
            self.prepare_body_cap()
        self.current_user = await self.authenticate()
        if self.required_role == "public":
            return
        if self.current_user is None:
            self.deny_unauthenticated()
        elif not self.current_user.allows(self.required_role):
            raise ApiError(403, "forbidden", tx("this needs the {role} role", role=self.required_role))

    def deny_unauthenticated(self) -> NoReturn:
        raise ApiError(401, "unauthorized", tx("credentials are missing or invalid"),
                       headers={"WWW-Authenticate": 'Bearer realm="fleetdeck"'})

    def set_default_headers(self) -> None:
        set_security_headers(self)

    def allowed_methods(self) -> list[str]:
        """The HTTP methods this handler implements (its class defines them)."""
        base = tornado.web.RequestHandler
        return [m for m in self.SUPPORTED_METHODS
                if getattr(type(self), m.lower(), None) is not getattr(base, m.lower(), None)]

    def write_allow(self, status: int) -> None:
        # RFC 9110 section 15.5.6: a 405 answer lists the methods the resource supports.
        if status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))

    def log_exception(self, typ, value, tb) -> None:  # noqa: ANN001 - tornado's signature
        if isinstance(value, FleetdeckError):
            return
        if isinstance(value, SQLAlchemyError):
            self.services.metrics.storage_errors.labels(self.route).inc()
        if isinstance(value, OperationalError):
            # Answered 503: one line, without the statement's parameters (they can be megabytes).
            log.warning("%s %s: database unavailable: %s", self.request.method, self.route, value.orig)
            return
        super().log_exception(typ, value, tb)


class ApiHandler(BaseHandler):
    """JSON in, JSON out; every error is a JSON error body, never HTML or a traceback."""

    def json_body(self) -> dict:
        """The request body as a JSON object; raises ApiError 400 otherwise."""
        try:
            doc = orjson.loads(self.request.body or b"")
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "invalid_json", tx("body is not valid JSON: {reason}", reason=str(exc))) from None
        if not isinstance(doc, dict):
            raise ApiError(400, "invalid_json", tx("body must be a JSON object"))
        if not nul_free(doc):  # PostgreSQL text cannot hold it; refused on SQLite alike
            raise ApiError(400, "invalid_json", tx("strings must not contain NUL (\\u0000)"))
        return doc

    def body(self) -> Any:
        """The JSON body validated by this route and method's model (console/schemas.py
        REQUESTS); raises ApiError 400 (or the model's own status for a field)."""
        return parse_body(REQUESTS[(self.route, self.request.method.lower())].body, self.json_body())

    def query(self) -> Any:
        """The query string validated by this route and method's model (console/schemas.py
        REQUESTS); raises ApiError 400 ``invalid_parameter``."""
        model = REQUESTS[(self.route, self.request.method.lower())].query
        if model is None:
            raise LookupError(f"{self.request.method} {self.route} declares no query model in console/schemas.py")
        return parse_query(model, self.query_arguments())

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json_bytes(value))

    async def write_large_json(self, value: Any, content_type: str = "application/json; charset=utf-8") -> None:
        """:meth:`write_json` (status 200) for an answer that grows with the data asked for
        (range queries, PromQL, log searches): its JSON, and its gzip stream when the client
        takes gzip, written chunk by chunk on the answer pool (console/answers.py), not on
        the event loop, each chunk sent while the next is written. A client that leaves
        mid-answer ends the writing."""
        accepts = self.settings.get("compress_response") and accepts_gzip(self.request.headers.get("Accept-Encoding", ""))
        answers = self.services.answers
        stream = answers.stream(value, bool(accepts))
        chunk = await answers.run(stream.first)  # an error here is still an error answer
        self.set_status(200)
        self.set_header("Content-Type", content_type)
        if stream.encoding is not None:
            self.set_header("Content-Encoding", stream.encoding)  # Tornado's own gzip then leaves the body alone
        try:
            while not stream.done:
                self.write(chunk)
                following = answers.run(stream.next)
                try:
                    await self.flush()
                finally:
                    chunk = await following  # never left running on the pool
        except tornado.iostream.StreamClosedError:
            return  # the client went away: nobody to answer
        self.finish(chunk)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FleetdeckError):
            status, code, message, details = exc.status, exc.code, exc.message, exc.details
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, OperationalError):
            # Disk full, locked, or the server down: transient, so clients are told when to retry.
            status, code, message, details = 503, "storage_unavailable", tx("the database is unavailable"), {}
            self.set_header("Retry-After", str(self.services.config.console.storage_retry_after))
        elif isinstance(exc, tornado.web.HTTPError):
            status = exc.status_code
            code = STATUS_CODES.get(status, "error")
            message = exc.log_message or self._reason
            if status == 403 and "xsrf" in (exc.log_message or "").lower():
                code, message = "xsrf_invalid", tx("missing or invalid _xsrf token")
            details = {}
        else:
            status, code, message, details = 500, "internal_error", tx("internal error"), {}
        message = self.error_text(message)
        self.set_status(status)
        self.write_allow(status)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        try:
            body = json_bytes({"error": {"code": code, "message": message, "details": details}})
        except TypeError:  # details orjson cannot encode (an int beyond 64 bits): drop them
            body = json_bytes({"error": {"code": code, "message": message, "details": {}}})
        self.finish(body)


class PageHandler(BaseHandler):
    """Server-rendered pages: an unauthenticated visitor is sent to the login page."""

    def deny_unauthenticated(self) -> NoReturn:
        target = self.request.uri or "/"
        self.redirect(f"/login?next={quote(target, safe='')}")
        raise tornado.web.Finish()

    def get_template_path(self) -> str:
        return self.settings["template_path"]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self.error_text(exc.message) if isinstance(exc, FleetdeckError) else self.locale.translate(self._reason)
        if isinstance(exc, FleetdeckError):
            self.set_status(exc.status)
            for name, value in exc.headers.items():
                self.set_header(name, value)
        self.write_allow(self.get_status())
        self.render("error.html", status=self.get_status(), message=message)


class NotFoundHandler(ApiHandler):
    """Default handler: JSON 404 under /api/, /prometheus/api/ and /alertmanager/api/, a page elsewhere."""

    def initialize(self, services: Services, role: RouteRole = "public", route: str = "*") -> None:
        super().initialize(services, role, route)

    async def prepare(self) -> None:
        raise ApiError(404, "not_found", tx("no route for {path}", path=self.request.path))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if self.request.path.startswith(("/api/", "/prometheus/api/", "/alertmanager/api/")):
            super().write_error(status_code, **kwargs)
        else:
            self.set_status(404)
            self.render("error.html", status=404, message=self.locale.translate("Page not found"))


class OpenApiHandler(ApiHandler):
    """``GET /api/v1/openapi.json``: the document built from the route table at startup."""

    def get(self) -> None:
        self.write_json(self.settings["openapi"])


class StaticFilesHandler(tornado.web.StaticFileHandler):
    """``/static/``: Tornado's file handler with the security headers of every answer. A
    path no file can have (a NUL, which the OS file functions refuse with ValueError, a
    500 and a logged traceback) is 404 at once."""

    def set_default_headers(self) -> None:
        set_security_headers(self)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if "\x00" in absolute_path:
            raise tornado.web.HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)
