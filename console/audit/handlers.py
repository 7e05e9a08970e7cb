"""Audit log API (``GET /api/v1/audit``, ``GET /api/v1/audit/verify``) and page (``/audit``)."""
from __future__ import annotations

from console.handlers import ApiHandler, PageHandler
from console.schemas import AuditQuery, parse_query


def _paging(handler) -> tuple[int, int | None]:  # noqa: ANN001 - any BaseHandler
    """``limit`` and ``before`` of the API's (and the page's) query: console/schemas.py AuditQuery."""
    args = parse_query(AuditQuery, handler.query_arguments())
    return args.limit, args.before


async def _page(handler, limit: int, before: int | None) -> dict:  # noqa: ANN001
    entries = await handler.services.audit.aentries(limit + 1, before)
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
        result = await self.services.audit.averify()
        self.write_json({"ok": result.ok, "entries": result.entries, "first_bad_id": result.first_bad_id,
                         "reason": result.reason, "anchored_id": result.anchored_id})


class AuditPageHandler(PageHandler):
    async def get(self) -> None:
        limit, before = _paging(self)
        page = await _page(self, limit, before)
        self.render("audit.html", entries=page["entries"], next_before=page["next"], limit=limit)
