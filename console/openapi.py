"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/v1/openapi.json``.

It is assembled from the one route table (console/app.py): every ``/api/`` route must
have an entry in :data:`API_PATHS` (a test enforces it), keyed by its route pattern,
giving its operations' summaries and answers. What each operation takes (path and
query parameters, request body) is generated from the pydantic models of
console/schemas.py ``REQUESTS``, the same models the handlers validate with; security
requirements and the common error answers come from the route's declared role. So the
document cannot disagree with what the route accepts or enforces.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

from console import __version__
from console.auth.roles import role_for
from console.schemas import REQUESTS, Request, adapter


def _obj(properties: dict, required: Iterable[str] = (), additional: bool = True) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(required)}
    if not schema["required"]:
        del schema["required"]
    if not additional:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


NUM = {"type": "number"}
NNUM = {"type": ["number", "null"]}
STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
BOOL = {"type": "boolean"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
# A console message in the request's language, split into its own words and the values it
# quotes as they are (console/i18n.py text_parts; docs/deploys.md).
MESSAGE_PARTS = {"type": "array", "items": _obj({"text": STR, "value": BOOL}, ["text", "value"])}
APPS = {"type": ["array", "null"], "items": {"type": "string"}}
ROLE = {"type": "string", "enum": ["viewer", "deployer", "admin"]}

SCHEMAS: dict[str, dict] = {
    "Error": _obj({"error": _obj({"code": STR, "message": STR, "details": {"type": "object"}},
                                 ["code", "message", "details"])}, ["error"]),
    "IngestResult": _obj({"accepted_samples": {"type": "integer"}, "accepted_logs": {"type": "integer"},
                          "duplicate": BOOL, "rejected_samples": {"type": "integer"},
                          "rejected_logs": {"type": "integer"},
                          "rejected": {"type": "object", "additionalProperties": {"type": "integer"}},
                          "rejected_examples": {"type": "object", "additionalProperties": STR}},
                         ["accepted_samples", "accepted_logs", "duplicate"]),
    "Host": _obj({"host": STR, "up": BOOL, "last_seen": NNUM, "agent_version": NSTR, "interval": NNUM,
                  "labels": LABELS,
                  "summary": _obj({"cpu_ratio": NNUM, "memory_ratio": NNUM, "disk_max_ratio": NNUM,
                                   "disk_max_mountpoint": NSTR, "load1": NNUM}),
                  "config_hash": NSTR, "drift": BOOL, "clock_skew_seconds": NNUM, "clock_skewed": BOOL,
                  "drift_fields": {"type": "array", "items": {"type": "string", "enum": ["agent_version", "config_hash"]}},
                  "drift_baseline": {"type": "object", "properties": {"agent_version": NSTR, "config_hash": NSTR}},
                  "rejected": {"type": "array", "items": _obj(
                      {"reason": STR, "count": {"type": "integer"}, "last_at": NUM, "example": STR, "metric": NSTR},
                      ["reason", "count", "last_at", "example", "metric"])}},
                 ["host", "up", "last_seen", "labels", "summary"]),
    "RangeResult": _obj({"metric": STR, "step": NNUM, "fn": STR, "resolution": {"type": "string",
                                                                                  "enum": ["raw", "1m", "1h"]},
                         "series": {"type": "array", "items": _obj({
                             "labels": LABELS,
                             "points": {"type": "array", "items": {"type": "array", "items": NNUM}}},
                             ["labels", "points"])}},
                        ["metric", "resolution", "series"]),
    "Me": _obj({"kind": STR, "name": STR, "role": STR, "host": NSTR, "apps": APPS, "language": NSTR},
               ["kind", "name", "role", "language"]),
    "User": _obj({"username": STR, "role": ROLE, "apps": APPS, "disabled": BOOL, "created_at": NUM},
                 ["username", "role", "apps", "disabled", "created_at"]),
    "Token": _obj({"id": {"type": "integer"}, "kind": {"type": "string", "enum": ["api", "agent", "enrol"]},
                   "name": STR, "role": NSTR, "host": NSTR, "apps": APPS, "created_at": NUM, "expires_at": NNUM,
                   "last_used_at": NNUM, "revoked_at": NNUM, "created_by": NSTR, "owner": NSTR},
                  ["id", "kind", "name", "created_at", "revoked_at"]),
    "AuditEntry": _obj({"id": {"type": "integer"}, "ts": NUM, "actor": STR, "action": STR, "target": STR,
                        "details": {"type": "object"}, "source": STR, "hash": STR},
                       ["id", "ts", "actor", "action", "target", "details", "source", "hash"]),
    "Window": _obj({"name": STR, "dtstart": STR, "duration": NUM, "rrule": STR, "timezone": STR,
                    "matchers": {"type": "array", "items": STR}, "hosts": {"type": "array", "items": STR},
                    "apps": {"type": "array", "items": STR}, "environments": {"type": "array", "items": STR},
                    "until": NNUM, "comment": STR, "created_by": STR, "created_at": NUM, "active": BOOL,
                    "next": {"anyOf": [{"type": "null"}, _obj({"start": NUM, "end": NUM, "start_local": STR,
                                                               "end_local": STR})]},
                    "occurrences": {"type": "array", "items": _obj({"start": NUM, "end": NUM})}},
                   ["name", "dtstart", "duration", "rrule", "timezone", "matchers", "hosts", "apps", "environments",
                    "until", "active", "next"]),
    "Secret": _obj({"name": STR, "kind": STR, "created_at": NUM, "updated_at": NUM, "updated_by": STR},
                   ["name", "kind", "created_at", "updated_at", "updated_by"], additional=False),
    "Deploy": _obj({"id": {"type": "integer"}, "app": STR, "environment": NSTR, "version": STR,
                    "previous_version": NSTR,
                    "kind": {"type": "string", "enum": ["deploy", "rollback", "promote"]},
                    "state": {"type": "string", "enum": ["awaiting_approval", "queued", "running", "succeeded",
                                                         "failed", "rolled_back", "cancelled", "rejected",
                                                         "expired"]},
                    "approval": {"anyOf": [{"type": "null"}, _obj({
                        "required": BOOL, "state": {"type": "string",
                                                    "enum": ["pending", "approved", "rejected", "expired"]},
                        "approver_role": STR, "requested_by": STR, "requested_at": NUM, "decided_by": NSTR,
                        "decided_at": NNUM, "expires_at": NUM, "reason": STR},
                        ["required", "state", "approver_role", "requested_by", "expires_at"])]},
                    "requested_by": STR, "reason": STR, "error": NSTR, "error_parts": MESSAGE_PARTS, "created_at": NUM,
                    "started_at": NNUM, "finished_at": NNUM, "duration_s": NNUM, "timeout_s": NUM,
                    "cleanup_pending": BOOL, "force": BOOL,
                    "steps": {"type": "array", "items": {"type": "object"}},
                    # GET /api/v1/deploys/{id} only (docs/deploys.md, "Canary analysis")
                    "canary": {"anyOf": [_obj({"state": STR, "verdict": STR, "message": STR}), {"type": "null"}]},
                    "analysis": {"type": "array", "items": _obj({
                        "check": STR, "query": NSTR, "op": NSTR, "threshold": NNUM,
                        "values": {"type": "array", "items": {"type": "array"}},
                        "passed": {"type": ["boolean", "null"]}})}},
                   ["id", "app", "version", "kind", "state", "requested_by", "created_at"]),
    "DeployEvents": _obj({"deploy_id": {"type": "integer"}, "state": STR, "finished": BOOL,
                          "last_seq": {"type": "integer"},
                          "events": {"type": "array", "items": _obj({
                              "seq": {"type": "integer"}, "ts": NUM, "kind": STR, "level": STR, "step": NSTR,
                              "message": STR, "message_parts": MESSAGE_PARTS, "data": {"type": "object"}},
                              ["seq", "ts", "kind", "message"])}},
                         ["deploy_id", "state", "finished", "events", "last_seq"]),
    "App": _obj({"name": STR, "driver": STR, "target": {"type": "object"},
                 "current": {"anyOf": [_ref("Deploy"), {"type": "null"}]},
                 "active": {"anyOf": [_ref("Deploy"), {"type": "null"}]}},
                ["name", "driver", "current", "active"]),
    "Notification": _obj({"id": {"type": "integer"}, "created_at": NUM, "receiver": STR, "integration": STR,
                          "group_key": STR, "status": {"type": "string", "enum": ["pending", "sent", "failed"]},
                          "attempts": {"type": "integer"}, "next_attempt_at": NNUM, "last_attempt_at": NNUM,
                          "last_status": {"type": ["integer", "null"]}, "last_error": NSTR, "answer": NSTR,
                          "sent_at": NNUM, "alert_status": NSTR, "alerts": {"type": "integer"},
                          "alertnames": {"type": "array", "items": STR}, "group_labels": {"type": "object"}},
                         ["id", "created_at", "receiver", "integration", "status", "attempts"]),
    "LogPage": _obj({"logs": {"type": "array", "items": _obj({
                         "id": {"type": "integer"}, "ts": {"type": "integer", "description": "Unix ms"},
                         "host": STR, "source": STR, "line": STR, "labels": LABELS, "level": NSTR},
                         ["id", "ts", "host", "source", "line", "labels"])},
                     "next": NSTR, "terms": {"type": "array", "items": STR}},
                    ["logs", "next"]),
}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ACCEPTED = {"202": _json(_ref("Deploy"), "Queued"), "409": _json(_ref("Error"), "A deploy of the app is active"),
             "422": _json(_ref("Error"), "Malformed version or app name, or a version that never succeeded")}
_RANGE = {"422": _json(_ref("Error"), "End before start, or too many steps (invalid_range, too_many_steps)")}

# Route pattern -> {method: operation (summary and answers)}. The OpenAPI path, the
# parameters and the request body come from console/schemas.py REQUESTS.
API_PATHS: dict[str, dict[str, dict]] = {
    r"/api/v1/apps": {"get": {
        "summary": "Configured apps with their current and active deploys",
        "responses": {"200": _json({"type": "array", "items": _ref("App")})}}},
    r"/api/v1/apps/([^/]+)": {"get": {
        "summary": "One app plus its running instances from the engine",
        "responses": {"200": _json(_ref("App"))}}},
    r"/api/v1/apps/([^/]+)/deploys": {"post": {
        "summary": "Deploy a version of the app (audited)", "responses": dict(_ACCEPTED)}},
    r"/api/v1/apps/([^/]+)/rollback": {"post": {
        "summary": "Roll back to the previous, or a chosen, successful version (audited)",
        "responses": dict(_ACCEPTED)}},
    r"/api/v1/deploys": {"get": {
        "summary": "Deploy history, newest first",
        "responses": {"200": _json(_obj({"deploys": {"type": "array", "items": _ref("Deploy")},
                                         "next": {"type": ["integer", "null"]}}, ["deploys", "next"]))}}},
    r"/api/v1/deploys/([^/]+)": {"get": {
        "summary": "One deploy with its steps", "responses": {"200": _json(_ref("Deploy"))}}},
    r"/api/v1/deploys/([^/]+)/events": {"get": {
        "summary": "The deploy's events after sequence number `after`",
        "responses": {"200": _json(_ref("DeployEvents"))}}},
    r"/api/v1/deploys/([^/]+)/cancel": {"post": {
        "summary": "Cancel a queued deploy, or stop and roll back a running one (audited)",
        "responses": {"202": _json(_ref("Deploy"), "Cancel requested"),
                      "409": _json(_ref("Error"), "Already finished")}}},
    r"/api/v1/deploys/([^/]+)/approve": {"post": {
        "summary": "Approve a deploy awaiting approval: it is queued (another user with the approver role; audited)",
        "responses": {"200": _json(_ref("Deploy")),
                      "403": _json(_ref("Error"), "The requester, or a role below the approver role"),
                      "409": _json(_ref("Error"), "Not awaiting approval, or the request expired")}}},
    r"/api/v1/deploys/([^/]+)/reject": {"post": {
        "summary": "Reject a deploy awaiting approval: it ends rejected (audited)",
        "responses": {"200": _json(_ref("Deploy")),
                      "403": _json(_ref("Error"), "The requester, or a role below the approver role"),
                      "409": _json(_ref("Error"), "Not awaiting approval, or the request expired")}}},
    r"/api/v1/apps/([^/]+)/promote": {"post": {
        "summary": "Deploy to one environment the version running in another (audited)",
        "responses": dict(_ACCEPTED)}},
    r"/api/v1/apps/reload": {
        "get": {"summary": "The app called reload (as /api/v1/apps/{app})", "responses": {"200": _json(_ref("App"))}},
        "post": {"summary": "Read the apps: section again; an invalid file is refused whole (audited)",
                 "responses": {"200": _json(_obj({k: {"type": "array", "items": STR} for k in
                                                  ("added", "removed", "changed", "unchanged")},
                                                 ["added", "removed", "changed", "unchanged"])),
                               "422": _json(_ref("Error"), "The file was refused; the apps in use stay")}}},
    r"/api/v1/logs": {"get": {
        "summary": "Search log records, newest first, with cursor pagination",
        "responses": {"200": _json(_ref("LogPage")), **_RANGE}}},
    r"/api/v1/ingest": {"post": {
        "summary": "Push one batch of samples and log records (agent token; gzip allowed)",
        "responses": {"200": _json(_ref("IngestResult"))}}},
    r"/api/v1/write": {"post": {
        "summary": "Prometheus remote write 1.0: a snappy-compressed prometheus.WriteRequest (agent token; "
                   "also at /prometheus/api/v1/write). Nothing is stored unless 204.",
        "responses": {"204": {"description": "Every sample stored"},
                      "400": _json(_ref("Error"), "Malformed snappy, protobuf or labels, or samples refused "
                                   "(time window, series cap); nothing stored, not to be retried"),
                      "415": _json(_ref("Error"), "Not snappy, or not remote write 1.0"),
                      "503": _json(_ref("Error"), "Database busy or unavailable; retry after Retry-After")}}},
    r"/api/v1/hosts": {"get": {
        "summary": "Every known host with its summary",
        "responses": {"200": _json({"type": "array", "items": _ref("Host")})}}},
    r"/api/v1/hosts/([^/]+)": {"delete": {
        "summary": "Retire a host: delete its series, samples, rollups and log records and revoke "
                   "its agent tokens (audited)",
        "responses": {"200": _json(_obj({"host": STR, "series": {"type": "integer"}, "samples": {"type": "integer"},
                                         "rollups": {"type": "integer"}, "logs": {"type": "integer"},
                                         "revoked_tokens": {"type": "integer"}},
                                        ["host", "series", "samples", "rollups", "logs", "revoked_tokens"])),
                      "404": _json(_ref("Error"), "No such host")}}},
    r"/api/v1/metrics/names": {"get": {
        "summary": "Metric names, optionally of one host",
        "responses": {"200": _json(_obj({"names": {"type": "array", "items": STR}}, ["names"])),
                      "422": _json(_ref("Error"), "End before start (invalid_range)")}}},
    r"/api/v1/metrics/range": {"get": {
        "summary": "Range query over one metric",
        "responses": {"200": _json(_ref("RangeResult")), **_RANGE}}},
    r"/api/v1/live": {"get": {
        "summary": "WebSocket of live updates: send {\"subscribe\": [topics]}, receive {topic, data}",
        "responses": {"101": {"description": "Switching to the WebSocket protocol"}}}},
    r"/api/v1/openapi.json": {"get": {
        "summary": "This document", "responses": {"200": _json({"type": "object"})}}},
    r"/api/v1/me": {
        "get": {"summary": "Who the credentials belong to, and the dashboard language its user chose",
                "responses": {"200": _json(_ref("Me"))}},
        "patch": {"summary": "Keep the dashboard language of the credentials' user (null: the browser's), "
                             "applied at each of their logins",
                  "responses": {"200": _json(_obj({"language": NSTR}, ["language"])),
                                "409": _json(_ref("Error"), "The credentials act for no user")}}},
    r"/api/v1/users": {
        "get": {"summary": "List users", "responses": {"200": _json(_obj({"users": {
            "type": "array", "items": _ref("User")}}, ["users"]))}},
        "post": {"summary": "Create a user (audited)",
                 "responses": {"201": _json(_ref("User"), "Created"), "409": _json(_ref("Error"), "Name taken")}}},
    r"/api/v1/users/([^/]+)": {
        "patch": {"summary": "Change role, app allow-list, disabled flag or password (audited)",
                  "responses": {"200": _json(_ref("User")),
                                "409": _json(_ref("Error"), "Last admin, or apps for a role other than deployer")}},
        "delete": {"summary": "Disable a user (audited; sessions end)",
                   "responses": {"200": _json(_ref("User")), "409": _json(_ref("Error"), "Last admin")}}},
    r"/api/v1/tokens": {
        "get": {"summary": "List tokens (never their secrets)",
                "responses": {"200": _json(_obj({"tokens": {"type": "array", "items": _ref("Token")}},
                                                ["tokens"]))}},
        "post": {"summary": "Create an API, agent or enrolment token; the secret is in this answer only",
                 "responses": {"201": _json({"allOf": [_ref("Token"), _obj({"token": STR}, ["token"])]},
                                            "Created")}}},
    r"/api/v1/tokens/([^/]+)": {
        "delete": {"summary": "Revoke a token (audited)", "responses": {"200": _json(_ref("Token"))}}},
    r"/api/v1/enrol": {"post": {
        "summary": "Exchange a one-time enrolment token for an agent token bound to host",
        "responses": {"201": _json(_obj({"host": STR, "token": STR}, ["host", "token"]), "Enrolled"),
                      "403": _json(_ref("Error"), "Enrolment refused")}}},
    r"/api/v1/audit": {"get": {
        "summary": "Audit log entries, newest first",
        "responses": {"200": _json(_obj({"entries": {"type": "array", "items": _ref("AuditEntry")},
                                         "next": {"type": ["integer", "null"]}}, ["entries", "next"]))}}},
    r"/api/v1/audit/verify": {"get": {
        "summary": "Check the whole hash chain",
        "responses": {"200": _json(_obj({"ok": BOOL, "entries": {"type": "integer"},
                                         "first_bad_id": {"type": ["integer", "null"]},
                                         "reason": NSTR, "anchored_id": {"type": ["integer", "null"]}},
                                        ["ok", "entries", "first_bad_id", "reason", "anchored_id"]))}}},
    r"/api/v1/settings": {"get": {
        "summary": "The effective configuration: every console key with its value, default and source "
                   "(file and line, environment, flag or default); credentials redacted",
        "responses": {"200": _json(_obj({"file": {"type": ["string", "null"]},
                                         "console": {"type": "array", "items": _obj(
                                             {"key": STR, "value": {}, "default": {}, "source": STR},
                                             ["key", "value", "default", "source"])},
                                         "sections": {"type": "array", "items": _obj(
                                             {"name": STR, "configured": {"type": "boolean"}, "source": STR},
                                             ["name", "configured", "source"])}},
                                        ["file", "console", "sections"]))}}},
    r"/api/v1/secrets": {
        "get": {"summary": "Names and kinds of stored secrets (never their values)",
                "responses": {"200": _json(_obj({"secrets": {"type": "array", "items": _ref("Secret")}},
                                                ["secrets"]))}},
        "post": {"summary": "Store or replace a secret, encrypted at rest (audited)",
                 "responses": {"201": _json(_ref("Secret"), "Stored")}}},
    r"/api/v1/secrets/([^/]+)": {
        "delete": {"summary": "Delete a secret (audited)",
                   "responses": {"200": _json(_obj({"name": STR, "deleted": BOOL}, ["name", "deleted"]))}}},
    r"/api/v1/maintenance/windows": {
        "get": {"summary": "Maintenance windows, open now or next; with start and end, their occurrences",
                "responses": {"200": _json(_obj({"windows": {"type": "array", "items": _ref("Window")}},
                                                ["windows"]))}},
        "post": {"summary": "Create a recurring maintenance window (deployer; audited)",
                 "responses": {"201": _json(_ref("Window"), "Created"),
                               "409": _json(_ref("Error"), "Name in use")}}},
    r"/api/v1/maintenance/windows/([^/]+)": {
        "get": {"summary": "One maintenance window with its next occurrences in its local time",
                "responses": {"200": _json(_ref("Window"))}},
        "delete": {"summary": "Delete a maintenance window (deployer; audited)",
                   "responses": {"200": _json(_obj({"name": STR, "deleted": BOOL}, ["name", "deleted"]))}}},
    r"/api/v1/alerts/history": {"get": {
        "summary": "Alert state transitions (pending, firing, resolved, inactive), newest first",
        "responses": {"200": _json(_obj({"transitions": {"type": "array", "items": _obj({
            "ts": NUM, "alertname": STR, "state": STR, "labels": {"type": "object"},
            "annotations": {"type": "object"}, "value": NNUM, "group": STR,
            "muted_by": {"type": "array", "items": STR}},
            ["ts", "alertname", "state", "labels", "annotations", "value", "group", "muted_by"])}}, ["transitions"]))}}},
    r"/api/v1/notifications": {"get": {
        "summary": "The notification log: each message to each receiver integration, newest first",
        "responses": {"200": _json(_obj({"notifications": {"type": "array", "items": _ref("Notification")},
                                         "next": {"type": ["integer", "null"]}}, ["notifications", "next"])),
                      "422": _json(_ref("Error"), "since after until (invalid_range)")}}},
    r"/api/v1/notifications/test": {"post": {
        "summary": "Send a test message to every integration of a receiver; answers with their log entries",
        "responses": {"200": _json(_obj({"notifications": {"type": "array", "items": _ref("Notification")}},
                                        ["notifications"])),
                      "404": _json(_ref("Error"), "No receiver of that name (unknown_receiver)")}}},
}

_ERRORS = {"400": "Invalid request", "401": "Credentials missing or invalid", "403": "Not allowed",
           "404": "Not found", "405": "Method not allowed", "413": "Body too large",
           "422": "Well-formed but unacceptable",
           "429": "Too many requests (see Retry-After)", "503": "Storage unavailable"}
_SECURITY: dict[str, list[dict[str, list[str]]]] = {"public": [], "agent": [{"agentToken": []}],
             "viewer": [{"apiToken": []}, {"session": []}], "deployer": [{"apiToken": []}, {"session": []}],
             "admin": [{"apiToken": []}, {"session": []}]}
_REF_TEMPLATE = "#/components/schemas/{model}"
_GROUP = "([^/]+)"


class _Schemas:
    """JSON Schemas of request types, their named parts collected as components."""

    def __init__(self) -> None:
        self.components: dict[str, dict] = {}

    def of(self, kind: object) -> dict:
        """The schema of ``kind`` (a model, or an annotated type such as a union); a model
        becomes a component and is referenced."""
        if isinstance(kind, dict):  # a JSON Schema as is (a body that is not JSON)
            return copy.deepcopy(kind)
        schema = adapter(kind).json_schema(ref_template=_REF_TEMPLATE)
        self.components.update(schema.pop("$defs", {}))
        name = getattr(kind, "__name__", None)
        if name and schema.get("type") == "object":
            self.components[name] = schema
            return _ref(name)
        return schema

    def parameter(self, name: str, where: str, schema: dict, required: bool) -> dict:
        schema = dict(schema)
        # A query value is present or absent, never null: drop pydantic's "or null" branch.
        options = schema.get("anyOf")
        if options and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del schema["anyOf"]
            schema = {**rest[0], **schema} if len(rest) == 1 else {**schema, "anyOf": rest}
        description = schema.pop("description", "")
        schema.pop("title", None)
        if schema.get("default", 0) is None:  # absent, not null
            del schema["default"]
        param = {"name": name, "in": where, "required": required, "schema": schema}
        if description:
            param["description"] = description
        return param

    def operation_inputs(self, request: Request) -> dict:
        """``parameters`` and ``requestBody`` of an operation."""
        params = [self.parameter(name, "path", adapter(kind).json_schema(), True)
                  for name, kind in request.path.items()]
        if request.query is not None:
            model = adapter(request.query).json_schema(ref_template=_REF_TEMPLATE)
            required = set(model.get("required", ()))
            for name, schema in model["properties"].items():
                param = self.parameter(name, "query", schema, name in required)
                if name in request.query.comma_separated:
                    param.update(style="form", explode=False)
                params.append(param)
        inputs: dict = {"parameters": params} if params else {}
        if request.body is not None:
            inputs["requestBody"] = {"required": True,
                                     "content": {request.media_type: {"schema": self.of(request.body)}}}
        return inputs


def openapi_path(pattern: str, names: list[str]) -> str:
    """``/api/v1/apps/([^/]+)/deploys`` with names ``["app"]`` -> ``/api/v1/apps/{app}/deploys``."""
    if pattern.count(_GROUP) != len(names):
        raise KeyError(f"route {pattern}: name its {pattern.count(_GROUP)} path parameters in "
                       "console/schemas.py REQUESTS")
    for name in names:
        pattern = pattern.replace(_GROUP, "{" + name + "}", 1)
    return pattern


def build_document(routes: Iterable[tuple], strict: bool = False) -> dict:
    """The OpenAPI document for the ``/api/`` routes of ``routes`` (the route table).
    A route without an :data:`API_PATHS` entry raises KeyError when ``strict`` (the test
    suite), else is listed under ``x-undocumented`` (a running console keeps serving)."""
    paths: dict[str, dict] = {}
    undocumented: list[str] = []
    schemas = _Schemas()
    for pattern, _handler, declared, *_ in routes:
        if not pattern.startswith("/api/"):
            continue
        if pattern not in API_PATHS:
            if strict:
                raise KeyError(f"route {pattern} has no entry in console/openapi.py API_PATHS")
            undocumented.append(pattern)
            continue
        path = None
        item: dict[str, Any] = {}
        for method, op in API_PATHS[pattern].items():
            role = role_for(declared, method.upper())
            request = REQUESTS.get((pattern, method), Request())
            path = openapi_path(pattern, list(request.path))
            op = {**copy.deepcopy(op), **schemas.operation_inputs(request)}
            op["x-fleetdeck-role"] = role
            op["security"] = _SECURITY[role]
            for status, description in _ERRORS.items():
                if status in ("401", "403") and role == "public" and status not in op["responses"]:
                    continue
                op["responses"].setdefault(status, _json(_ref("Error"), description))
            item[method] = op
        if path is not None:
            paths[path] = item
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Fleetdeck API", "version": __version__,
                 "description": "Errors are {\"error\": {\"code\", \"message\", \"details\"}}. "
                                "Timestamps of samples and log records are Unix ms; other times Unix s."},
        "paths": paths,
        "components": {
            "schemas": {**schemas.components, **copy.deepcopy(SCHEMAS)},
            "securitySchemes": {
                "apiToken": {"type": "http", "scheme": "bearer", "description": "API token (fdp_...)"},
                "agentToken": {"type": "http", "scheme": "bearer", "description": "agent token (fda_...)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "fleetdeck_session",
                            "description": "browser session; unsafe methods also need the _xsrf token"},
            },
        },
    }
    if undocumented:
        document["x-undocumented"] = undocumented
    return document
