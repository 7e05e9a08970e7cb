"""Admin API for users, tokens and secrets; agent enrolment; who-am-I.

Shapes are in the OpenAPI document (console/openapi.py). Handlers parse and check the
body, then call the audited operations of ``services.auth`` / ``services.secrets`` in
one write transaction.
"""
from __future__ import annotations

import functools
import math
from typing import Any

from console.auth.passwords import PasswordsBusy
from console.auth.tokens import EnrolError, TokenError, TokenNotFound
from console.auth.users import UNCHANGED, LastAdmin, UserError, UserExists, UserNotFound
from console.errors import ApiError
from console.handlers import ApiHandler
from console.params import INT32_MAX, ascii_uint
from console.secrets import SecretError

SMALL_BODY = 64 * 1024  # account requests are small; secrets may be a kubeconfig (64 KiB + JSON)


def _field(doc: dict, key: str, kinds: type | tuple, required: bool = False, default: Any = None) -> Any:
    """``doc[key]`` checked against ``kinds``; ApiError 400 when missing (if required) or mistyped."""
    if key not in doc or doc[key] is None:
        if required:
            raise ApiError(400, "missing_field", f"{key} is required", {"field": key})
        return default
    value = doc[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ApiError(400, "invalid_field", f"{key} has the wrong type", {"field": key})
    if not isinstance(value, kinds):
        raise ApiError(400, "invalid_field", f"{key} has the wrong type", {"field": key})
    return value


def _user_error(exc: UserError) -> ApiError:
    if isinstance(exc, UserExists):
        return ApiError(409, "user_exists", str(exc))
    if isinstance(exc, UserNotFound):
        return ApiError(404, "user_not_found", str(exc))
    if isinstance(exc, LastAdmin):
        return ApiError(409, "last_admin", str(exc))
    return ApiError(400, "invalid_user", str(exc))


async def _hash(services: Any, password: str) -> str:
    """argon2 on the password pool, never on the database writer. Raises UserError for a
    password outside the length limits, ApiError 503 when the pool is full."""
    try:
        return await services.users.hash_off_thread(password)
    except PasswordsBusy:
        raise ApiError(503, "busy", "password hashing is busy; retry shortly", headers={"Retry-After": "1"}) from None


class MeHandler(ApiHandler):
    def get(self) -> None:
        p = self.principal
        self.write_json({"kind": p.kind, "name": p.name, "role": p.role, "host": p.host,
                         "apps": None if p.apps is None else list(p.apps)})


class UsersHandler(ApiHandler):
    max_body_bytes = SMALL_BODY

    async def get(self) -> None:
        self.write_json({"users": await self.services.db.read(self.services.users.list)})

    async def post(self) -> None:
        doc = self.json_body()
        username = _field(doc, "username", str, required=True)
        password = _field(doc, "password", str, required=True)
        role = _field(doc, "role", str, required=True)
        apps = _field(doc, "apps", list)
        try:
            hashed = await _hash(self.services, password)
            user = await self.services.db.write(self.services.auth.create_user, self.principal.actor,
                                                self.client_ip, username, password, role, apps, hashed)
        except UserError as exc:
            raise _user_error(exc) from None
        self.write_json(user, 201)


class UserHandler(ApiHandler):
    max_body_bytes = SMALL_BODY

    async def patch(self, username: str) -> None:
        doc = self.json_body()
        unknown = sorted(set(doc) - {"role", "apps", "disabled", "password"})
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field {unknown[0]!r}", {"field": unknown[0]})
        changes: dict[str, Any] = {}
        if "role" in doc:
            changes["role"] = _field(doc, "role", str, required=True)
        if "apps" in doc:
            changes["apps"] = _field(doc, "apps", list)
        if "disabled" in doc:
            changes["disabled"] = _field(doc, "disabled", bool, required=True)
        password = _field(doc, "password", str)
        await self._update(username, password=password, **changes)

    async def delete(self, username: str) -> None:
        """Disable (users are kept: the audit log names them)."""
        await self._update(username, disabled=True)

    async def _update(self, username: str, password: str | None = None, role: Any = UNCHANGED,
                      apps: Any = UNCHANGED, disabled: Any = UNCHANGED) -> None:
        try:
            hashed = None if password is None else await _hash(self.services, password)
            update = functools.partial(self.services.auth.update_user, role=role, apps=apps,
                                       disabled=disabled, password=password, password_hash=hashed)
            user = await self.services.db.write(update, self.principal.actor, self.client_ip, username)
        except UserError as exc:
            raise _user_error(exc) from None
        self.write_json(user)


class TokensHandler(ApiHandler):
    max_body_bytes = SMALL_BODY

    async def get(self) -> None:
        include = self.get_argument("include_revoked", "false").lower() in ("1", "true", "yes")
        self.write_json({"tokens": await self.services.db.read(self.services.tokens.list, include)})

    async def post(self) -> None:
        doc = self.json_body()
        kind = _field(doc, "kind", str, default="api")
        expires_in = _field(doc, "expires_in", (int, float))
        if expires_in is not None and (not math.isfinite(expires_in) or expires_in <= 0):
            raise ApiError(400, "invalid_field", "expires_in must be a positive number of seconds",
                           {"field": "expires_in"})
        auth, actor, ip = self.services.auth, self.principal.actor, self.client_ip
        try:
            if kind == "api":
                name = _field(doc, "name", str, required=True)
                role = _field(doc, "role", str, required=True)
                days = expires_in / 86400 if expires_in else None
                created = await self.services.db.write(auth.create_api_token, actor, ip, name, role, days,
                                                       _field(doc, "apps", list), self.principal.owner)
            elif kind == "agent":
                host = _field(doc, "host", str, required=True)
                created = await self.services.db.write(auth.create_agent_token, actor, ip, host)
            elif kind == "enrol":
                host = _field(doc, "host", str)
                created = await self.services.db.write(auth.create_enrol_token, actor, ip,
                                                       expires_in or 3600.0, host, self.principal.owner)
            else:
                raise ApiError(400, "invalid_field", "kind must be api, agent or enrol", {"field": "kind"})
        except TokenError as exc:
            raise ApiError(400, "invalid_token_request", str(exc)) from None
        self.set_header("Cache-Control", "no-store")
        self.write_json(created, 201)


class TokenHandler(ApiHandler):
    async def delete(self, token_id: str) -> None:
        tid = ascii_uint(token_id, INT32_MAX)
        if tid is None:
            raise ApiError(404, "token_not_found", f"no token with id {token_id[:20]!r}")
        try:
            revoked = await self.services.db.write(self.services.auth.revoke_token, self.principal.actor,
                                                   self.client_ip, tid)
        except TokenNotFound as exc:
            raise ApiError(404, "token_not_found", str(exc)) from None
        self.write_json(revoked)


class EnrolHandler(ApiHandler):
    """``POST /api/v1/enrol {"enrol_token", "host"}`` → ``201 {"host", "token"}``: a public
    route, so failures are counted per client address and answered 429 over the limit."""

    max_body_bytes = 4096

    async def post(self) -> None:
        limiter, key = self.services.auth.enrol_limit, f"ip:{self.client_ip}"
        wait = limiter.retry_after(key)
        if wait:
            raise ApiError(429, "too_many_requests", f"too many failed enrolments; retry in {wait} s",
                           {"retry_after": wait}, headers={"Retry-After": str(wait)})
        doc = self.json_body()
        enrol_token = _field(doc, "enrol_token", str, required=True)
        host = _field(doc, "host", str, required=True)
        try:
            token = await self.services.db.write(self.services.auth.enrol, enrol_token, host, self.client_ip)
        except TokenError as exc:
            raise ApiError(400, "invalid_host", str(exc)) from None
        except EnrolError as exc:
            limiter.fail(key)
            raise ApiError(403, "enrolment_refused", str(exc)) from None
        self.set_header("Cache-Control", "no-store")
        self.write_json({"host": host, "token": token}, 201)


class SecretsHandler(ApiHandler):
    max_body_bytes = 2 * SMALL_BODY

    async def get(self) -> None:
        self.write_json({"secrets": await self.services.db.read(self.services.secrets.list)})

    async def post(self) -> None:
        doc = self.json_body()
        name = _field(doc, "name", str, required=True)
        kind = _field(doc, "kind", str, required=True)
        value = _field(doc, "value", str, required=True)
        try:
            meta = await self.services.db.write(self.services.secrets.put, name, kind, value,
                                                self.principal.actor, self.client_ip)
        except SecretError as exc:
            if exc.field is not None:  # well-formed, but content the console refuses to keep
                raise ApiError(422, f"secret_{exc.code}", str(exc), {"field": exc.field}) from None
            raise ApiError(400, f"secret_{exc.code}", str(exc)) from None
        self.write_json(meta, 201)


class SecretHandler(ApiHandler):
    async def delete(self, name: str) -> None:
        try:
            await self.services.db.write(self.services.secrets.delete, name, self.principal.actor, self.client_ip)
        except SecretError as exc:
            raise ApiError(404, "secret_not_found", str(exc)) from None
        self.write_json({"name": name, "deleted": True})
