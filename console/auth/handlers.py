"""Admin API for users, tokens and secrets; agent enrolment; who-am-I.

Request shapes are models in console/schemas.py (the OpenAPI document is built from
them); handlers validate the body through them, then await the audited operations of
``services.auth`` / ``services.secrets``, whose errors (console/errors.py) are the answers.
"""
from __future__ import annotations

from typing import Any

from console.auth.tokens import EnrolError
from console.errors import ApiError, Conflict
from console.handlers import ApiHandler
from console.i18n import tx
from console.params import INT32_MAX, ascii_uint
from console.schemas import AgentToken, EnrolToken

SMALL_BODY = 64 * 1024  # account requests are small; secrets may be a kubeconfig (64 KiB + JSON)


class MeHandler(ApiHandler):
    """Who is calling; ``language`` is the dashboard language its user chose (null: the
    browser's, or no user: an agent or a token of no user). PATCH ``{"language"}`` keeps
    that choice for the user, applied at each of their logins (console/ui/handlers.py)."""

    max_body_bytes = SMALL_BODY

    async def get(self) -> None:
        p = self.principal
        language = await self.services.auth.language(p.owner) if p.owner is not None else None
        self.write_json({"kind": p.kind, "name": p.name, "role": p.role, "host": p.host,
                         "apps": None if p.apps is None else list(p.apps), "language": language})

    async def patch(self) -> None:
        change = self.body()
        owner = self.principal.owner
        if owner is None:
            raise Conflict(tx("{caller} acts for no user, so it has no language to keep", caller=self.principal.actor))
        language = await self.services.auth.set_language(owner, change.language)
        self.write_json({"language": language})


class UsersHandler(ApiHandler):
    max_body_bytes = SMALL_BODY

    async def get(self) -> None:
        self.write_json({"users": await self.services.auth.list_users()})

    async def post(self) -> None:
        new = self.body()
        user = await self.services.auth.acreate_user(self.principal.actor, self.client_ip, new.username,
                                                     new.password, new.role, new.apps)
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
        self.write_json(await self.services.auth.aupdate_user(self.principal.actor, self.client_ip, username,
                                                              password=change.password, **changes))

    async def delete(self, username: str) -> None:
        """Delete: the user is disabled and gone from the API (404 afterwards); the row is
        kept, so the name the audit log cites is never given to someone else."""
        self.write_json(await self.services.auth.adelete_user(self.principal.actor, self.client_ip, username))


class TokensHandler(ApiHandler):
    max_body_bytes = SMALL_BODY

    async def get(self) -> None:
        include = self.query().include_revoked
        self.write_json({"tokens": await self.services.auth.list_tokens(include)})

    async def post(self) -> None:
        new = self.body()
        auth, actor, ip = self.services.auth, self.principal.actor, self.client_ip
        if isinstance(new, AgentToken):
            created = await auth.acreate_agent_token(actor, ip, new.host)
        elif isinstance(new, EnrolToken):
            created = await auth.acreate_enrol_token(actor, ip, new.expires_in or 3600.0, new.host,
                                                     self.principal.owner)
        else:
            days = new.expires_in / 86400 if new.expires_in else None
            created = await auth.acreate_api_token(actor, ip, new.name, new.role, days, new.apps, self.principal.owner)
        self.set_header("Cache-Control", "no-store")
        self.write_json(created, 201)


class TokenHandler(ApiHandler):
    async def delete(self, token_id: str) -> None:
        tid = ascii_uint(token_id, INT32_MAX)
        if tid is None:
            raise ApiError(404, "token_not_found", tx("no token with id {id}", id=repr(token_id[:20])))
        self.write_json(await self.services.auth.arevoke_token(self.principal.actor, self.client_ip, tid))


class EnrolHandler(ApiHandler):
    """``POST /api/v1/enrol {"enrol_token", "host"}`` → ``201 {"host", "token"}``: a public
    route, so failures are counted per client address and answered 429 over the limit."""

    max_body_bytes = 4096

    async def post(self) -> None:
        limiter, key = self.services.auth.enrol_limit, f"ip:{self.client_ip}"
        wait = await limiter.retry_after(key)
        if wait:
            raise ApiError(429, "too_many_requests", tx("too many failed enrolments; retry in {wait} s", wait=wait),
                           {"retry_after": wait}, headers={"Retry-After": str(wait)})
        enrolment = self.body()
        enrol_token, host = enrolment.enrol_token, enrolment.host
        try:
            token = await self.services.auth.aenrol(enrol_token, host, self.client_ip)
        except EnrolError:
            await limiter.fail(key)  # counted against the address; the error itself is the answer
            raise
        self.set_header("Cache-Control", "no-store")
        self.write_json({"host": host, "token": token}, 201)


class SecretsHandler(ApiHandler):
    max_body_bytes = 2 * SMALL_BODY

    async def get(self) -> None:
        self.write_json({"secrets": await self.services.secrets.alist()})

    async def post(self) -> None:
        new = self.body()
        meta = await self.services.secrets.aput(new.name, new.kind, new.value, self.principal.actor, self.client_ip)
        self.write_json(meta, 201)


class SecretHandler(ApiHandler):
    async def delete(self, name: str) -> None:
        await self.services.secrets.adelete(name, self.principal.actor, self.client_ip)
        self.write_json({"name": name, "deleted": True})
