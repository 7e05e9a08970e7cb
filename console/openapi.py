"""The OpenAPI 3.0 document of the HTTP API, served at ``/api/v1/openapi.json``.

It is assembled from the one route table (console/app.py): every ``/api/`` route must
have an entry in :data:`API_PATHS` (a test enforces it), keyed by its route pattern,
giving the templated path and its operations. Security requirements and the common
error responses are derived from the route's declared role, so the document cannot
disagree with what the route enforces.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

from console import __version__


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
NNUM = {"type": "number", "nullable": True}
STR = {"type": "string"}
NSTR = {"type": "string", "nullable": True}
BOOL = {"type": "boolean"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
APPS = {"type": "array", "items": {"type": "string"}, "nullable": True}
ROLE = {"type": "string", "enum": ["viewer", "deployer", "admin"]}

SCHEMAS: dict[str, dict] = {
    "Error": _obj({"error": _obj({"code": STR, "message": STR, "details": {"type": "object"}},
                                 ["code", "message", "details"])}, ["error"]),
    "IngestBatch": _obj({
        "host": STR, "batch_id": STR, "sent_at": NUM,
        "agent": _obj({"version": STR, "interval": NUM, "config_hash": STR}),
        "labels": LABELS,
        "metrics": {"type": "array", "items": _obj({
            "name": STR, "type": {"type": "string", "enum": ["gauge", "counter"]}, "labels": LABELS,
            "points": {"type": "array", "items": {"type": "array", "items": NUM, "minItems": 2, "maxItems": 2}}},
            ["name", "points"])},
        "logs": {"type": "array", "items": _obj({"ts": {"type": "integer"}, "source": STR, "line": STR,
                                                 "labels": LABELS}, ["ts", "line"])},
    }, ["host", "batch_id"]),
    "IngestResult": _obj({"accepted_samples": {"type": "integer"}, "accepted_logs": {"type": "integer"},
                          "duplicate": BOOL, "rejected_samples": {"type": "integer"},
                          "rejected": {"type": "object", "additionalProperties": {"type": "integer"}}},
                         ["accepted_samples", "accepted_logs", "duplicate"]),
    "Host": _obj({"host": STR, "up": BOOL, "last_seen": NNUM, "agent_version": NSTR, "interval": NNUM,
                  "labels": LABELS,
                  "summary": _obj({"cpu_ratio": NNUM, "memory_ratio": NNUM, "disk_max_ratio": NNUM,
                                   "load1": NNUM}),
                  "config_hash": NSTR, "drift": BOOL,
                  "drift_fields": {"type": "array", "items": {"type": "string", "enum": ["agent_version", "config_hash"]}}},
                 ["host", "up", "last_seen", "labels", "summary"]),
    "RangeResult": _obj({"metric": STR, "step": NNUM, "fn": STR, "resolution": {"type": "string",
                                                                                  "enum": ["raw", "1m", "1h"]},
                         "series": {"type": "array", "items": _obj({
                             "labels": LABELS,
                             "points": {"type": "array", "items": {"type": "array", "items": NNUM}}},
                             ["labels", "points"])}},
                        ["metric", "resolution", "series"]),
    "Me": _obj({"kind": STR, "name": STR, "role": STR, "host": NSTR, "apps": APPS}, ["kind", "name", "role"]),
    "User": _obj({"username": STR, "role": ROLE, "apps": APPS, "disabled": BOOL, "created_at": NUM},
                 ["username", "role", "apps", "disabled", "created_at"]),
    "NewUser": _obj({"username": {"type": "string", "maxLength": 64}, "password": {"type": "string", "maxLength": 1024},
                     "role": ROLE, "apps": APPS}, ["username", "password", "role"]),
    "UserChange": _obj({"role": ROLE, "apps": APPS, "disabled": BOOL, "password": {"type": "string"}},
                       additional=False),
    "Token": _obj({"id": {"type": "integer"}, "kind": {"type": "string", "enum": ["api", "agent", "enrol"]},
                   "name": STR, "role": NSTR, "host": NSTR, "apps": APPS, "created_at": NUM, "expires_at": NNUM,
                   "last_used_at": NNUM, "revoked_at": NNUM, "created_by": NSTR},
                  ["id", "kind", "name", "created_at", "revoked_at"]),
    "NewToken": _obj({"kind": {"type": "string", "enum": ["api", "agent", "enrol"], "default": "api"},
                      "name": STR, "role": ROLE, "apps": APPS, "host": STR,
                      "expires_in": {"type": "number", "description": "seconds"}}),
    "Enrolment": _obj({"enrol_token": STR, "host": STR}, ["enrol_token", "host"]),
    "AuditEntry": _obj({"id": {"type": "integer"}, "ts": NUM, "actor": STR, "action": STR, "target": STR,
                        "details": {"type": "object"}, "source": STR, "hash": STR},
                       ["id", "ts", "actor", "action", "target", "details", "source", "hash"]),
    "Secret": _obj({"name": STR, "kind": STR, "created_at": NUM, "updated_at": NUM, "updated_by": STR},
                   ["name", "kind", "created_at", "updated_at", "updated_by"], additional=False),
    "NewSecret": _obj({"name": STR, "kind": {"type": "string", "enum": ["ssh_key", "kubeconfig",
                                                                          "registry_password", "webhook_url",
                                                                          "generic"]},
                       "value": {"type": "string", "description": "the plaintext; never returned"}},
                      ["name", "kind", "value"]),
    "Deploy": _obj({"id": {"type": "integer"}, "app": STR, "version": STR, "previous_version": NSTR,
                    "kind": {"type": "string", "enum": ["deploy", "rollback"]},
                    "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed",
                                                         "rolled_back", "cancelled"]},
                    "requested_by": STR, "reason": STR, "error": NSTR, "created_at": NUM,
                    "started_at": NNUM, "finished_at": NNUM, "duration_s": NNUM, "timeout_s": NUM,
                    "cleanup_pending": BOOL,
                    "steps": {"type": "array", "items": {"type": "object"}}},
                   ["id", "app", "version", "kind", "state", "requested_by", "created_at"]),
    "DeployRequest": _obj({"version": {"type": "string", "maxLength": 128}, "reason": STR}, ["version"]),
    "RollbackRequest": _obj({"to": {"type": "string", "maxLength": 128}, "reason": STR}),
    "DeployEvents": _obj({"deploy_id": {"type": "integer"}, "state": STR, "finished": BOOL,
                          "last_seq": {"type": "integer"},
                          "events": {"type": "array", "items": _obj({
                              "seq": {"type": "integer"}, "ts": NUM, "kind": STR, "level": STR, "step": NSTR,
                              "message": STR, "data": {"type": "object"}}, ["seq", "ts", "kind", "message"])}},
                         ["deploy_id", "state", "finished", "events", "last_seq"]),
    "App": _obj({"name": STR, "driver": STR, "target": {"type": "object"},
                 "current": {"allOf": [_ref("Deploy")], "nullable": True},
                 "active": {"allOf": [_ref("Deploy")], "nullable": True}},
                ["name", "driver", "current", "active"]),
    "LogPage": _obj({"logs": {"type": "array", "items": _obj({
                         "id": {"type": "integer"}, "ts": {"type": "integer", "description": "Unix ms"},
                         "host": STR, "source": STR, "line": STR, "labels": LABELS, "level": NSTR},
                         ["id", "ts", "host", "source", "line", "labels"])},
                     "next": NSTR, "terms": {"type": "array", "items": STR}},
                    ["logs", "next"]),
}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or STR}


_DEPLOY_ID = [_path("deploy_id", {"type": "integer"})]
_ACCEPTED = {"202": _json(_ref("Deploy"), "Queued"), "409": _json(_ref("Error"), "A deploy of the app is active"),
             "422": _json(_ref("Error"), "Malformed version or app name")}

# Route pattern -> (OpenAPI path, path-level parameters, {method: operation}).
API_PATHS: dict[str, tuple[str, list, dict]] = {
    r"/api/v1/apps": ("/api/v1/apps", [], {"get": {
        "summary": "Configured apps with their current and active deploys",
        "responses": {"200": _json({"type": "array", "items": _ref("App")})}}}),
    r"/api/v1/apps/([^/]+)": ("/api/v1/apps/{app}", [_path("app")], {"get": {
        "summary": "One app plus its running instances from the engine",
        "responses": {"200": _json(_ref("App")), "422": _json(_ref("Error"), "Malformed app name")}}}),
    r"/api/v1/apps/([^/]+)/deploys": ("/api/v1/apps/{app}/deploys", [_path("app")], {"post": {
        "summary": "Deploy a version of the app (audited)", "requestBody": _body(_ref("DeployRequest")),
        "responses": dict(_ACCEPTED)}}),
    r"/api/v1/apps/([^/]+)/rollback": ("/api/v1/apps/{app}/rollback", [_path("app")], {"post": {
        "summary": "Roll back to the previous, or a chosen, successful version (audited)",
        "requestBody": _body(_ref("RollbackRequest")), "responses": dict(_ACCEPTED)}}),
    r"/api/v1/deploys": ("/api/v1/deploys", [], {"get": {
        "summary": "Deploy history, newest first",
        "parameters": [_query("app", STR), _query("host", STR), _query("since", NUM, "Unix s"),
                       _query("until", NUM, "Unix s"), _query("limit", {"type": "integer", "minimum": 1}),
                       _query("before", {"type": "integer"}, "cursor: a deploy id")],
        "responses": {"200": _json(_obj({"deploys": {"type": "array", "items": _ref("Deploy")},
                                         "next": {"type": "integer", "nullable": True}}, ["deploys", "next"]))}}}),
    r"/api/v1/deploys/([^/]+)": ("/api/v1/deploys/{deploy_id}", _DEPLOY_ID, {"get": {
        "summary": "One deploy with its steps", "responses": {"200": _json(_ref("Deploy"))}}}),
    r"/api/v1/deploys/([^/]+)/events": ("/api/v1/deploys/{deploy_id}/events", _DEPLOY_ID, {"get": {
        "summary": "The deploy's events after sequence number `after`",
        "parameters": [_query("after", {"type": "integer", "minimum": 0}),
                       _query("limit", {"type": "integer", "minimum": 1})],
        "responses": {"200": _json(_ref("DeployEvents"))}}}),
    r"/api/v1/deploys/([^/]+)/cancel": ("/api/v1/deploys/{deploy_id}/cancel", _DEPLOY_ID, {"post": {
        "summary": "Cancel a queued deploy, or stop and roll back a running one (audited)",
        "responses": {"202": _json(_ref("Deploy"), "Cancel requested"),
                      "409": _json(_ref("Error"), "Already finished")}}}),
    r"/api/v1/logs": ("/api/v1/logs", [], {"get": {
        "summary": "Search log records, newest first, with cursor pagination",
        "parameters": [_query("q", STR, "words, all must match"), _query("host", STR), _query("source", STR),
                       _query("level", STR), _query("start", NUM, "Unix s"), _query("end", NUM, "Unix s"),
                       _query("limit", {"type": "integer", "minimum": 1}), _query("cursor", STR)],
        "responses": {"200": _json(_ref("LogPage")), "422": _json(_ref("Error"), "Unacceptable range")}}}),
    r"/api/v1/ingest": ("/api/v1/ingest", [], {"post": {
        "summary": "Push one batch of samples and log records (agent token; gzip allowed)",
        "requestBody": _body(_ref("IngestBatch")),
        "responses": {"200": _json(_ref("IngestResult"))}}}),
    r"/api/v1/hosts": ("/api/v1/hosts", [], {"get": {
        "summary": "Every known host with its summary",
        "responses": {"200": _json({"type": "array", "items": _ref("Host")})}}}),
    r"/api/v1/metrics/names": ("/api/v1/metrics/names", [], {"get": {
        "summary": "Metric names, optionally of one host",
        "parameters": [_query("host", STR)],
        "responses": {"200": _json(_obj({"names": {"type": "array", "items": STR}}, ["names"]))}}}),
    r"/api/v1/metrics/range": ("/api/v1/metrics/range", [], {"get": {
        "summary": "Range query over one metric",
        "parameters": [{"name": "metric", "in": "query", "required": True, "schema": STR},
                       _query("host", STR), _query("start", NUM, "Unix s"), _query("end", NUM, "Unix s"),
                       _query("step", NUM, "seconds"),
                       _query("window", NUM, "rate/increase window, seconds (default: the step)"),
                       _query("fn", {"type": "string", "enum": ["raw", "rate", "increase", "avg", "min", "max"]}),
                       _query("group_by", STR), _query("agg", {"type": "string", "enum": ["sum", "avg", "min", "max"]})],
        "responses": {"200": _json(_ref("RangeResult")), "422": _json(_ref("Error"), "Unacceptable range")}}}),
    r"/api/v1/live": ("/api/v1/live", [], {"get": {
        "summary": "WebSocket of live updates: send {\"subscribe\": [topics]}, receive {topic, data}",
        "responses": {"101": {"description": "Switching to the WebSocket protocol"}}}}),
    r"/api/v1/openapi.json": ("/api/v1/openapi.json", [], {"get": {
        "summary": "This document", "responses": {"200": _json({"type": "object"})}}}),
    r"/api/v1/me": ("/api/v1/me", [], {"get": {
        "summary": "Who the credentials belong to", "responses": {"200": _json(_ref("Me"))}}}),
    r"/api/v1/users": ("/api/v1/users", [], {
        "get": {"summary": "List users", "responses": {"200": _json(_obj({"users": {
            "type": "array", "items": _ref("User")}}, ["users"]))}},
        "post": {"summary": "Create a user (audited)", "requestBody": _body(_ref("NewUser")),
                 "responses": {"201": _json(_ref("User"), "Created"), "409": _json(_ref("Error"), "Name taken")}}}),
    r"/api/v1/users/([^/]+)": ("/api/v1/users/{username}", [_path("username")], {
        "patch": {"summary": "Change role, app allow-list, disabled flag or password (audited)",
                  "requestBody": _body(_ref("UserChange")),
                  "responses": {"200": _json(_ref("User")), "409": _json(_ref("Error"), "Last admin")}},
        "delete": {"summary": "Disable a user (audited; sessions end)",
                   "responses": {"200": _json(_ref("User")), "409": _json(_ref("Error"), "Last admin")}}}),
    r"/api/v1/tokens": ("/api/v1/tokens", [], {
        "get": {"summary": "List tokens (never their secrets)",
                "parameters": [_query("include_revoked", {"type": "boolean"})],
                "responses": {"200": _json(_obj({"tokens": {"type": "array", "items": _ref("Token")}},
                                                ["tokens"]))}},
        "post": {"summary": "Create an API, agent or enrolment token; the secret is in this answer only",
                 "requestBody": _body(_ref("NewToken")),
                 "responses": {"201": _json({"allOf": [_ref("Token"), _obj({"token": STR}, ["token"])]},
                                            "Created")}}}),
    r"/api/v1/tokens/([^/]+)": ("/api/v1/tokens/{id}", [_path("id", {"type": "integer", "minimum": 1})], {
        "delete": {"summary": "Revoke a token (audited)", "responses": {"200": _json(_ref("Token"))}}}),
    r"/api/v1/enrol": ("/api/v1/enrol", [], {"post": {
        "summary": "Exchange a one-time enrolment token for an agent token bound to host",
        "requestBody": _body(_ref("Enrolment")),
        "responses": {"201": _json(_obj({"host": STR, "token": STR}, ["host", "token"]), "Enrolled"),
                      "403": _json(_ref("Error"), "Enrolment refused")}}}),
    r"/api/v1/audit": ("/api/v1/audit", [], {"get": {
        "summary": "Audit log entries, newest first",
        "parameters": [_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                       _query("before", {"type": "integer", "minimum": 1}, "entry id")],
        "responses": {"200": _json(_obj({"entries": {"type": "array", "items": _ref("AuditEntry")},
                                         "next": {"type": "integer", "nullable": True}}, ["entries", "next"]))}}}),
    r"/api/v1/audit/verify": ("/api/v1/audit/verify", [], {"get": {
        "summary": "Check the whole hash chain",
        "responses": {"200": _json(_obj({"ok": BOOL, "entries": {"type": "integer"},
                                         "first_bad_id": {"type": "integer", "nullable": True},
                                         "reason": NSTR}, ["ok", "entries", "first_bad_id", "reason"]))}}}),
    r"/api/v1/secrets": ("/api/v1/secrets", [], {
        "get": {"summary": "Names and kinds of stored secrets (never their values)",
                "responses": {"200": _json(_obj({"secrets": {"type": "array", "items": _ref("Secret")}},
                                                ["secrets"]))}},
        "post": {"summary": "Store or replace a secret, encrypted at rest (audited)",
                 "requestBody": _body(_ref("NewSecret")), "responses": {"201": _json(_ref("Secret"), "Stored")}}}),
    r"/api/v1/secrets/([^/]+)": ("/api/v1/secrets/{name}", [_path("name")], {
        "delete": {"summary": "Delete a secret (audited)",
                   "responses": {"200": _json(_obj({"name": STR, "deleted": BOOL}, ["name", "deleted"]))}}}),
    r"/api/v1/alerts/history": ("/api/v1/alerts/history", [], {"get": {
        "summary": "Alert state transitions (pending, firing, resolved, inactive), newest first",
        "parameters": [_query("since", STR, "Unix s or RFC 3339 (default: until - 24 h)"),
                       _query("until", STR, "Unix s or RFC 3339 (default: now)"), _query("alertname", STR),
                       _query("instance", STR), _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000})],
        "responses": {"200": _json(_obj({"transitions": {"type": "array", "items": _obj({
            "ts": NUM, "alertname": STR, "state": STR, "labels": {"type": "object"},
            "annotations": {"type": "object"}, "value": {"type": "number", "nullable": True}, "group": STR},
            ["ts", "alertname", "state", "labels", "annotations", "value", "group"])}}, ["transitions"]))}}}),
}

_ERRORS = {"400": "Invalid request", "401": "Credentials missing or invalid", "403": "Not allowed",
           "404": "Not found", "405": "Method not allowed", "413": "Body too large",
           "422": "Well-formed but unacceptable",
           "429": "Too many requests (see Retry-After)", "503": "Storage unavailable"}
_SECURITY = {"public": [], "agent": [{"agentToken": []}],
             "viewer": [{"apiToken": []}, {"session": []}], "deployer": [{"apiToken": []}, {"session": []}],
             "admin": [{"apiToken": []}, {"session": []}]}


def build_document(routes: Iterable[tuple], strict: bool = False) -> dict:
    """The OpenAPI document for the ``/api/`` routes of ``routes`` (the route table).
    A route without an :data:`API_PATHS` entry raises KeyError when ``strict`` (the test
    suite), else is listed under ``x-undocumented`` (a running console keeps serving)."""
    paths: dict[str, dict] = {}
    undocumented: list[str] = []
    for pattern, _handler, role, *_ in routes:
        if not pattern.startswith("/api/"):
            continue
        if pattern not in API_PATHS:
            if strict:
                raise KeyError(f"route {pattern} has no entry in console/openapi.py API_PATHS")
            undocumented.append(pattern)
            continue
        path, params, operations = API_PATHS[pattern]
        item: dict[str, Any] = {}
        if params:
            item["parameters"] = copy.deepcopy(params)
        for method, op in operations.items():
            op = copy.deepcopy(op)
            op["x-fleetdeck-role"] = role
            op["security"] = _SECURITY[role]
            for status, description in _ERRORS.items():
                if status in ("401", "403") and role == "public" and status not in op["responses"]:
                    continue
                op["responses"].setdefault(status, _json(_ref("Error"), description))
            item[method] = op
        paths[path] = item
    document = {
        "openapi": "3.0.3",
        "info": {"title": "Fleetdeck API", "version": __version__,
                 "description": "Errors are {\"error\": {\"code\", \"message\", \"details\"}}. "
                                "Timestamps of samples and log records are Unix ms; other times Unix s."},
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
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
