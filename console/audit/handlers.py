"""Audit log API (``GET /api/v1/audit``, ``GET /api/v1/audit/verify``) and page (``/audit``)."""
from __future__ import annotations

from console.errors import ApiError
from console.handlers import ApiHandler, PageHandler
from console.params import INT32_MAX, ascii_uint

MAX_LIMIT = 1000


def _paging(handler) -> tuple[int, int | None]:  # noqa: ANN001 - any BaseHandler
    raw_limit, raw_before = handler.get_argument("limit", "100"), handler.get_argument("before", "")
    limit = ascii_uint(raw_limit, MAX_LIMIT)
    if not limit:
        raise ApiError(400, "invalid_parameter", f"limit must be 1 to {MAX_LIMIT}", {"parameter": "limit"})
    before = ascii_uint(raw_before, INT32_MAX) if raw_before else None
    if raw_before and before is None:
        raise ApiError(400, "invalid_parameter", "before must be an entry id", {"parameter": "before"})
    return limit, before


async def _page(handler, limit: int, before: int | None) -> dict:  # noqa: ANN001
    entries = await handler.services.db.read(handler.services.audit.entries, limit + 1, before)
    more = len(entries) > limit
    entries = entries[:limit]
    return {"entries": entries, "next": entries[-1]["id"] if more else None}


class AuditHandler(ApiHandler):
    """Newest first: ``{"entries": [{"id", "ts", "actor", "action", "target", "details",
    "source", "hash"}], "next": id to pass as ``before`` or null}``."""

    async def get(self) -> None:
        self.write_json(await _page(self, *_paging(self)))


class AuditVerifyHandler(ApiHandler):
    async def get(self) -> None:
        result = await self.services.db.read(self.services.audit.verify)
        self.write_json({"ok": result.ok, "entries": result.entries, "first_bad_id": result.first_bad_id,
                         "reason": result.reason, "anchored_id": result.anchored_id})


class AuditPageHandler(PageHandler):
    async def get(self) -> None:
        limit, before = _paging(self)
        page = await _page(self, limit, before)
        self.render("audit.html", entries=page["entries"], next_before=page["next"], limit=limit)
