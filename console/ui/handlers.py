"""Pages: login/logout and the dashboard views. Data reaches pages through the JSON API."""
from __future__ import annotations

from console.auth.users import UserError
from console.handlers import SESSION_COOKIE, PageHandler


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything else (other hosts, ``//x``) becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class LoginHandler(PageHandler):
    def get(self) -> None:
        if self.current_user is not None:
            self.redirect(safe_next(self.get_argument("next", "/")))
            return
        self.render("login.html", error=None, next_url=safe_next(self.get_argument("next", "/")))

    async def post(self) -> None:
        username = self.get_argument("username", "", strip=True)
        password = self.get_argument("password", "", strip=False)
        next_url = safe_next(self.get_argument("next", "/"))
        try:
            principal = await self.services.db.write(self.services.users.authenticate, username, password)
        except UserError:
            principal = None
        if principal is None:
            self.set_status(401)
            self.render("login.html", error="Wrong user name or password.", next_url=next_url)
            return
        console = self.services.config.console
        self.set_signed_cookie(SESSION_COOKIE, principal.name, expires_days=console.session_days,
                               httponly=True, samesite="Lax", secure=console.cookie_secure)
        self.redirect(next_url)


class LogoutHandler(PageHandler):
    def post(self) -> None:
        self.clear_cookie(SESSION_COOKIE)
        self.redirect("/login")


class OverviewHandler(PageHandler):
    def get(self) -> None:
        self.render("overview.html")


class HostPageHandler(PageHandler):
    def get(self, host_name: str) -> None:
        self.render("host.html", host_name=host_name)
