"""Admin API for users, tokens and secrets; agent enrolment; who-am-I.

Request shapes are models in console/schemas.py (the OpenAPI document is built from
them); handlers validate the body through them, then call the audited operations of ``services.auth`` / ``services.secrets`` in
one write transaction.
"""
from __future__ import annotations

import functools
from typing import Any

from console.auth.passwords import PasswordsBusy
from console.auth.tokens import EnrolError, TokenError, TokenNotFound
from console.auth.users import UNCHANGED, AppsNeedDeployer, LastAdmin, UserError, UserExists, UserNotFound
from console.errors import ApiError
from console.handlers import ApiHandler
from console.params import INT32_MAX, ascii_uint
from console.schemas import AgentToken, EnrolToken
from console.secrets import SecretError

SMALL_BODY = 64 * 1024  # account requests are small; secrets may be a kubeconfig (64 KiB + JSON)


def _user_error(exc: UserError) -> ApiError:
    if isinstance(exc, UserExists):
        return ApiError(409, "user_exists", str(exc))
    if isinstance(exc, UserNotFound):
        return ApiError(404, "user_not_found", str(exc))
    if isinstance(exc, LastAdmin):
        return ApiError(409, "last_admin", str(exc))
    if isinstance(exc, AppsNeedDeployer):  # the user's role (kept or changed) is not deployer
        return ApiError(409, "apps_need_deployer", str(exc))
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
        new = self.body()
        try:
            hashed = await _hash(self.services, new.password)
            user = await self.services.db.write(self.services.auth.create_user, self.principal.actor,
                                                self.client_ip, new.username, new.password, new.role, new.apps, hashed)
        except UserError as exc:
            raise _user_error(exc) from None
        self.write_json(user, 201)


class UserHandler(ApiHandler):
    max_body_bytes = SMALL_BODY

    async def patch(self, username: str) -> None:
        change = self.body()
        given = change.model_fields_set
        changes: dict[str, Any] = {}
        if change.role is not None:
            changes["role"] = change.role
        if "apps" in given:
            changes["apps"] = change.apps
        if change.disabled is not None:
            changes["disabled"] = change.disabled
        await self._update(username, password=change.password, **changes)

    async def delete(self, username: str) -> None:
        """Delete: the user is disabled and gone from the API (404 afterwards); the row is
        kept, so the name the audit log cites is never given to someone else."""
        try:
            user = await self.services.db.write(self.services.auth.delete_user, self.principal.actor,
                                                self.client_ip, username)
        except UserError as exc:
            raise _user_error(exc) from None
        self.write_json(user)

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
        include = self.query().include_revoked
        self.write_json({"tokens": await self.services.db.read(self.services.tokens.list, include)})

    async def post(self) -> None:
        new = self.body()
        auth, actor, ip = self.services.auth, self.principal.actor, self.client_ip
        try:
            if isinstance(new, AgentToken):
                created = await self.services.db.write(auth.create_agent_token, actor, ip, new.host)
            elif isinstance(new, EnrolToken):
                created = await self.services.db.write(auth.create_enrol_token, actor, ip,
                                                       new.expires_in or 3600.0, new.host, self.principal.owner)
            else:
                days = new.expires_in / 86400 if new.expires_in else None
                created = await self.services.db.write(auth.create_api_token, actor, ip, new.name, new.role, days,
                                                       new.apps, self.principal.owner)
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
        enrolment = self.body()
        enrol_token, host = enrolment.enrol_token, enrolment.host
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
        new = self.body()
        try:
            meta = await self.services.db.write(self.services.secrets.put, new.name, new.kind, new.value,
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
