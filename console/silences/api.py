"""Alertmanager's HTTP API v2 under ``/alertmanager/api/v2/`` (docs/alerting.md,
"Alertmanager API"), so that Prometheus can send its alerts here (``alerting.alertmanagers``
with ``path_prefix: /alertmanager``) and ``amtool --alertmanager.url=URL/alertmanager``
can query alerts and add, query and expire silences.

Shapes: prometheus/alertmanager ``api/v2/openapi.yaml`` (times RFC 3339; errors are a
JSON string with the HTTP status, as Alertmanager answers them, so its clients print the
message). Every route needs a bearer token or a session: reading needs ``viewer``;
creating or expiring silences ``deployer``; posting alerts an agent token (the
credential Prometheus already uses for remote write) or ``deployer``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import tornado.web
import yaml

from console import __version__
from console.alerting.handlers import rfc3339
from console.errors import ApiError, FleetdeckError, InvalidInput
from console.handlers import ApiHandler, json_bytes, nul_free
from console.i18n import tx
from console.notify.model import NotifyAlert
from console.regex import RegexError, compile_re2
from console.matchers import Matcher, matches_all, parse_matchers, valid_label_name
from console.silences.service import EXPIRED, PENDING, Silence



def silence_json(sil: Silence, now: float) -> dict:
    """``gettableSilence``."""
    return {"id": sil.id, "status": {"state": sil.state(now)}, "updatedAt": rfc3339(sil.updated_at),
            "matchers": [m.to_json() for m in sil.matchers], "startsAt": rfc3339(sil.starts_at),
            "endsAt": rfc3339(sil.ends_at), "createdBy": sil.created_by, "comment": sil.comment,
            "annotations": dict(sil.annotations)}


def alert_status(reasons: list[str]) -> dict:
    """``alertStatus`` from the muting reasons (``KIND:ID``): ``silence:`` ids go to
    ``silencedBy``, ``inhibited:`` fingerprints to ``inhibitedBy``, every other reason
    (maintenance windows, deploy holds, time intervals) whole to ``mutedBy``."""
    silenced = [r.split(":", 1)[1] for r in reasons if r.startswith("silence:")]
    inhibited = [r.split(":", 1)[1] for r in reasons if r.startswith("inhibited:")]
    muted = [r for r in reasons if not r.startswith(("silence:", "inhibited:"))]
    return {"state": "suppressed" if reasons else "active", "silencedBy": silenced,
            "inhibitedBy": inhibited, "mutedBy": muted}


def parse_time(name: str, raw: Any) -> float | None:
    """RFC 3339 -> Unix seconds; None for absent, empty or Go's zero time. Raises InvalidInput."""
    if raw is None or raw == "" or raw == "0001-01-01T00:00:00Z":
        return None
    if not isinstance(raw, str):
        raise InvalidInput(tx("{field} must be an RFC 3339 time string", field=name), {"field": name})
    try:
        when = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(tx("{field}: {value} is not an RFC 3339 time", field=name, value=repr(raw)), {"field": name}) from None
    if when.tzinfo is None:
        raise InvalidInput(tx("{field}: {value} has no time zone offset", field=name, value=repr(raw)), {"field": name})
    return when.timestamp()


class AlertmanagerHandler(ApiHandler):
    """Base: Alertmanager's error shape (a JSON string). The roles per method are the
    route table's (console/app.py ROUTES); ``roles`` lets a handler accept more."""

    machine_api = True  # Alertmanager clients (amtool) read the message: English (console/handlers.py)

    async def prepare(self) -> None:
        self.prepare_body_cap()
        self.current_user = await self.authenticate()
        if self.current_user is None:
            self.deny_unauthenticated()
        roles = self.roles()
        if not any(self.current_user.allows(r) for r in roles):
            raise ApiError(403, "forbidden", tx("this needs the {role} role", role=" or ".join(roles)))

    def roles(self) -> tuple[str, ...]:
        return (self.required_role,)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FleetdeckError):
            status, message = exc.status, self.error_text(exc.message)
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, tornado.web.HTTPError):
            status, message = exc.status_code, exc.log_message or self._reason
        else:
            status, message = 500, "internal error"
        self.set_status(status)
        self.write_allow(status)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json")
        self.finish(json_bytes(message))

    def answer(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json_bytes(value))

    def flag(self, name: str, default: bool = True) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        # Go's strconv.ParseBool, which Alertmanager's API uses.
        if raw in ("1", "t", "T", "true", "TRUE", "True"):
            return True
        if raw in ("0", "f", "F", "false", "FALSE", "False"):
            return False
        raise InvalidInput(f"{name} must be true or false, got {raw!r}", {"parameter": name})

    def filter_matchers(self) -> list[Matcher]:
        out: list[Matcher] = []
        for text in self.get_query_arguments("filter"):
            out.extend(parse_matchers(text))
        return out

    def body_value(self) -> Any:
        try:
            doc = orjson.loads(self.request.body or b"")
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}") from None
        if not nul_free(doc):
            raise InvalidInput("strings must not contain NUL (\\u0000)")
        return doc


class StatusHandler(AlertmanagerHandler):
    """``GET /alertmanager/api/v2/status``: ``alertmanagerStatus`` (a single, unclustered
    instance: cluster ``disabled``; ``versionInfo.version`` is the console's;
    ``config.original`` the ``alerting.notifications`` section as YAML when the console
    has one, else empty; it names secrets, never holds them)."""

    async def get(self) -> None:
        notifications = getattr(self.services.config.alerting, "notifications", None)
        original = ""
        if notifications is not None:
            dump = notifications.model_dump(mode="json", by_alias=True, exclude_none=True) \
                if hasattr(notifications, "model_dump") else notifications
            original = yaml.safe_dump(dump, sort_keys=False)
        self.answer({
            "cluster": {"name": "", "status": "disabled", "peers": []},
            "versionInfo": {"version": __version__, "revision": "", "branch": "", "buildUser": "",
                            "buildDate": "", "goVersion": ""},
            "config": {"original": original},
            "uptime": rfc3339(self.settings.get("started_at", 0)),
        })


class AlertsHandler(AlertmanagerHandler):
    """``GET /alertmanager/api/v2/alerts?filter&active&silenced&inhibited&unprocessed&receiver``:
    the alerts not yet resolved, by fingerprint, each with its ``status`` from the console's
    muters and the ``receivers`` its routing sends it to (``receiver``: an anchored regex one
    of them matches, as Alertmanager's). ``POST``: a JSON array of ``postableAlert`` into the alert store, through the
    database so that every console of it has them (console/notify/posted.py); an alert
    without ``endsAt`` ends ``global.resolve_timeout`` (default 5m) after it was received
    unless posted again;
    one without ``startsAt`` starts at ``endsAt`` or now. Any invalid alert refuses the whole
    batch (400 naming it), so nothing is half-accepted."""

    def roles(self) -> tuple[str, ...]:
        # A Prometheus posts its alerts with the agent token it already uses for remote write.
        return ("agent", self.required_role) if self.request.method == "POST" else (self.required_role,)

    async def get(self) -> None:
        matchers = self.filter_matchers()
        active, silenced = self.flag("active"), self.flag("silenced")
        inhibited, unprocessed = self.flag("inhibited"), self.flag("unprocessed")
        receiver = self.get_query_argument("receiver", "") or ""
        wanted = None  # Alertmanager: a regex, anchored, that one of the alert's receivers matches
        if receiver:
            try:
                wanted = compile_re2(receiver, "^(?:", ")$")
            except RegexError as exc:
                raise InvalidInput(f"failed to parse receiver param: {exc}") from None
        now = self.services.clock()
        out: list[dict[str, Any]] = []
        for alert in self.services.alert_store.snapshot():
            if alert.resolved(now) or not matches_all(matchers, alert.labels):
                continue
            receivers = self.services.dispatcher.receivers_of(alert.labels)
            if wanted is not None and not any(wanted.search(name) for name in receivers):
                continue
            status = alert_status(self.services.muting.muted_by(alert.labels, now))
            if (not active and status["state"] == "active") or (not silenced and status["silencedBy"]) \
                    or (not inhibited and status["inhibitedBy"]) \
                    or (not unprocessed and status["state"] == "unprocessed"):
                continue
            doc = {"labels": alert.labels, "annotations": alert.annotations,
                   "receivers": [{"name": name} for name in receivers],
                   "fingerprint": alert.fingerprint, "startsAt": rfc3339(alert.starts_at),
                   "updatedAt": rfc3339(alert.updated_at),
                   "endsAt": rfc3339(alert.ends_at), "status": status}
            if alert.generator_url:
                doc["generatorURL"] = alert.generator_url
            out.append(doc)
        out.sort(key=lambda a: a["fingerprint"])
        self.answer(out)

    async def post(self) -> None:
        doc = self.body_value()
        if not isinstance(doc, list):
            raise InvalidInput("body must be a JSON array of alerts")
        now = self.services.clock()
        resolve_timeout_s = self.services.dispatcher.resolve_timeout_s  # Alertmanager's global.resolve_timeout
        alerts = [self._alert(i, item, now, resolve_timeout_s) for i, item in enumerate(doc)]
        await self.services.posted_alerts.post(alerts, now)  # stored: the leader notifies, whichever console got it
        self.answer(None)

    @staticmethod
    def _alert(i: int, item: Any, now: float, resolve_timeout_s: float) -> NotifyAlert:
        where = f"alert {i}"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: must be an object")
        labels, annotations = item.get("labels"), item.get("annotations") or {}
        for what, value in (("labels", labels), ("annotations", annotations)):
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise InvalidInput(f"{where}: {what} must be an object of strings", {"alert": i})
            bad = next((k for k in value if not valid_label_name(k)), None)
            if bad is not None:
                raise InvalidInput(f"{where}: invalid {what[:-1]} name {bad!r}", {"alert": i})
        if not labels:
            raise InvalidInput(f"{where}: at least one label pair required", {"alert": i})
        url = item.get("generatorURL") or ""
        if not isinstance(url, str):
            raise InvalidInput(f"{where}: generatorURL must be a string", {"alert": i})
        starts_at, ends_at = parse_time("startsAt", item.get("startsAt")), parse_time("endsAt", item.get("endsAt"))
        if starts_at is None:
            starts_at = ends_at if ends_at is not None else now
        if ends_at is None:
            ends_at = now + resolve_timeout_s
        if ends_at < starts_at:
            raise InvalidInput(f"{where}: start time must be before end time", {"alert": i})
        return NotifyAlert(labels=dict(labels), annotations=dict(annotations), starts_at=starts_at,
                           ends_at=ends_at, generator_url=url, source="api")


class SilencesHandler(AlertmanagerHandler):
    """``GET /alertmanager/api/v2/silences?filter&active&pending&expired``: silences whose
    matchers include every filter matcher (same name, type and value), active ones first
    (by end), then pending (by start), then expired (latest first). ``POST`` a
    ``postableSilence``: ``{"silenceID"}``; with an ``id``, updates that silence (in
    place, or by expiring it and creating a new one, see SilenceService.set)."""

    async def get(self) -> None:
        filters = self.filter_matchers()
        wanted = {state for state, on in (("active", self.flag("active")), (PENDING, self.flag("pending")),
                                          (EXPIRED, self.flag("expired"))) if on}
        now = self.services.clock()
        out = [silence_json(s, now) for s in self.services.silences.list(now)
               if s.state(now) in wanted and all(f in s.matchers for f in filters)]
        self.answer(out)

    async def post(self) -> None:
        doc = self.body_value()
        if not isinstance(doc, dict):
            raise InvalidInput(tx("body must be a JSON object (postableSilence)"))
        missing = [k for k in ("matchers", "startsAt", "endsAt", "createdBy", "comment") if k not in doc]
        if missing:
            raise InvalidInput(tx("missing {fields}", fields=", ".join(missing)), {"missing": missing})
        raw = doc["matchers"]
        if not isinstance(raw, list):
            raise InvalidInput(tx("matchers must be an array of matcher objects"))
        matchers = tuple(Matcher.from_json(m) for m in raw)
        for name in ("createdBy", "comment"):
            if not isinstance(doc[name], str):
                raise InvalidInput(tx("{field} must be a string", field=name), {"field": name})
        annotations = doc.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise InvalidInput("annotations must be an object of strings", {"field": "annotations"})
        silence_id = doc.get("id") or None
        if silence_id is not None and not isinstance(silence_id, str):
            raise InvalidInput("id must be a string", {"field": "id"})
        starts_at, ends_at = parse_time("startsAt", doc["startsAt"]), parse_time("endsAt", doc["endsAt"])
        if ends_at is None:
            raise InvalidInput(tx("{name} is required", name="endsAt"), {"field": "endsAt"})
        now = self.services.clock()
        if starts_at is not None and starts_at >= ends_at:
            raise InvalidInput(tx("Failed to create silence: start time must be before end time"))
        if ends_at < now:
            raise InvalidInput(tx("Failed to create silence: end time can't be in the past"))
        new_id = await self.services.silences.set(matchers, starts_at, ends_at, doc["createdBy"], doc["comment"],
                                                  silence_id, actor=self.principal.actor, source=self.client_ip,
                                                  annotations=annotations)
        self.answer({"silenceID": new_id})


class SilenceHandler(AlertmanagerHandler):
    """``GET /alertmanager/api/v2/silence/{id}``: one ``gettableSilence``;
    ``DELETE``: expire it (200, empty). 404 for an unknown id."""

    async def get(self, silence_id: str) -> None:
        self.answer(silence_json(self.services.silences.get(silence_id), self.services.clock()))

    async def delete(self, silence_id: str) -> None:
        await self.services.silences.expire(silence_id, actor=self.principal.actor, source=self.client_ip)
        self.set_status(200)
        self.finish()
