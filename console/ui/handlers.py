"""Pages: login/logout and the dashboard views. Data reaches pages through the JSON API."""
from __future__ import annotations

from urllib.parse import urlsplit

import tornado.web

from console.auth.passwords import PasswordsBusy
from console.errors import NotFound
from console.handlers import SESSION_COOKIE, PageHandler
from console.i18n import LANG_COOKIE, tx


def safe_next(target: str | None) -> str:
    """A path on this console to go to after login; anything else becomes ``/``.

    Browsers drop tabs and newlines anywhere in a URL, strip leading control characters
    and read ``\\`` as ``/`` (WHATWG URL Standard, "basic URL parser"), so
    ``/\\t/evil.example`` is followed as ``//evil.example``, another host. Only printable
    ASCII without spaces or backslashes is kept, and only when it starts with exactly
    one ``/`` (``//x`` and ``///x`` name a host) and, parsed (``urllib.parse.urlsplit``,
    RFC 3986), has no scheme and no host. The login page's own links always qualify:
    ``PageHandler`` sends ``request.uri``, already percent-encoded."""
    if (not target or not target.isascii() or not target.isprintable() or " " in target or "\\" in target
            or not target.startswith("/") or target.startswith("//")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return target


class LoginHandler(PageHandler):
    """The login form. Failed logins are counted per (user name, client address) and per
    client address (``login_failures_per_user``/``_per_ip`` within
    ``login_window_seconds``; the address honours ``trusted_proxies``); over either
    limit the answer is 429 with ``Retry-After``, before the password is even checked.
    Every attempt is audited (``login.success``/``login.failure``)."""

    max_body_bytes = 16 * 1024

    def check_xsrf_cookie(self) -> None:
        # Login CSRF: a foreign page posting its own credentials here would log the victim
        # into the attacker's account. There is no session cookie yet, so the base class's
        # exemption for cookie-less calls must not apply: the form's _xsrf is always needed.
        tornado.web.RequestHandler.check_xsrf_cookie(self)

    def get(self) -> None:
        if self.current_user is not None:
            self.redirect(safe_next(self.get_argument("next", "/")))
            return
        self.render("login.html", error=None, next_url=safe_next(self.get_argument("next", "/")))

    async def post(self) -> None:
        username = self.get_argument("username", "", strip=True)
        password = self.get_argument("password", "", strip=False)
        next_url = safe_next(self.get_argument("next", "/"))
        auth = self.services.auth
        _ = self.locale.translate
        # Per (user, address): wrong guesses from one address never lock the user out elsewhere.
        user_key, ip_key = f"user:{username.lower()}@{self.client_ip}", f"ip:{self.client_ip}"
        wait = max(await auth.login_limit_user.retry_after(user_key) or 0,
                   await auth.login_limit_ip.retry_after(ip_key) or 0)
        if wait:
            self.set_status(429)
            self.set_header("Retry-After", str(wait))
            self.render("login.html", error=_("Too many failed logins. Try again in %(wait)s s.") % {"wait": wait}, next_url=next_url)
            return
        try:
            result = await auth.login(username, password, self.client_ip)
        except PasswordsBusy:
            self.set_status(503)
            self.set_header("Retry-After", "1")
            self.render("login.html", error=_("The console is busy checking other logins. Try again."),
                        next_url=next_url)
            return
        if result.session_id is None:  # refused: no principal, no session
            await auth.login_limit_user.fail(user_key)
            await auth.login_limit_ip.fail(ip_key)
            self.set_status(401)
            self.render("login.html", error=_("Wrong user name or password."), next_url=next_url)
            return
        await auth.login_limit_user.reset(user_key)
        console = self.services.config.console
        secure = console.cookie_secure or self.request.protocol == "https"
        # Lax, not Strict: a link to the dashboard from a chat message should arrive logged in;
        # state changes are still guarded by the _xsrf token.
        self.set_signed_cookie(SESSION_COOKIE, result.session_id, expires_days=console.session_days,
                               httponly=True, samesite="Lax", secure=secure)
        if result.language is not None:  # the user's own choice wins over this browser's
            self.set_cookie(LANG_COOKIE, result.language, expires_days=365, samesite="Lax", secure=secure)
        self.redirect(next_url)


class LogoutHandler(PageHandler):
    """Ends the server-side session, so the cookie is worthless even if it was copied."""

    async def post(self) -> None:
        session_id = self.session_id()
        if session_id:
            await self.services.auth.alogout(session_id, self.principal.actor, self.client_ip)
        self.clear_cookie(SESSION_COOKIE)
        self.redirect("/login")


class OverviewHandler(PageHandler):
    def get(self) -> None:
        self.render("overview.html")


class HostPageHandler(PageHandler):
    async def get(self, host_name: str) -> None:
        if not await self.services.query.ahost_exists(host_name):
            raise NotFound(tx("no host named {host} has reported to this console", host=repr(host_name)))
        self.render("host.html", host_name=host_name)


class ExplorePageHandler(PageHandler):
    """Any stored metric, or a PromQL expression, over a time range as a chart or a table.
    The page reads the Prometheus API (/prometheus/api/v1/: labels, label values, series,
    query_range, query); its state (query, range, view) lives in the URL."""

    def get(self) -> None:
        self.render("explore.html")
