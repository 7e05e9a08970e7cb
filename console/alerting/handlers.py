"""Alerting endpoints. Prometheus' shapes (``web/api/v1/api.go``) for
``/prometheus/api/v1/rules`` and ``/prometheus/api/v1/alerts`` (so Grafana lists them);
Fleetdeck's JSON for the history and reload (docs/alerting.md, "API")."""
from __future__ import annotations

from datetime import datetime, timezone

from console.alerting.rules import threshold_split
from console.alerting.state import FIRING, INACTIVE, PENDING, Alert
from console.alerting.templates import go_float_e
from console.errors import ApiError
from console.handlers import ApiHandler, PageHandler
from console.i18n import TextLines, list_separator, tx
from console.promql.handlers import PrometheusHandler
from console.promql.service import bad_data



def rfc3339(ts: float | None) -> str:
    """Unix seconds -> RFC 3339 in UTC as Go's time.Time marshals (``0001-01-01T00:00:00Z``
    for no time)."""
    if ts is None:
        return "0001-01-01T00:00:00Z"
    text = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "")
    return text.rstrip("0").rstrip(".") + "Z"


def alert_json(a: Alert, muted_by: list[str]) -> dict:
    """Prometheus' alert object; with ``mutedBy`` (an extension, present only when not
    empty) the reasons its notifications are muted now, ``KIND:ID`` as the history's
    ``muted_by`` (``silence:<id>``, ``inhibited:<fingerprint>``, ``maintenance:<name>``, ...)."""
    out = {"labels": dict(a.labels), "annotations": a.annotations, "state": a.state,
           "activeAt": rfc3339(a.active_at), "value": go_float_e(a.value)}
    if a.keep_firing_since is not None:
        out["keepFiringSince"] = rfc3339(a.keep_firing_since)
    if muted_by:
        out["mutedBy"] = muted_by
    return out


def rules_json(services, kind: str | None) -> dict:  # noqa: ANN001 - Services
    now = services.clock()
    groups = []
    for group, rules, last_eval, seconds in services.alerting.snapshot():
        rules_out = []
        for state, alerts in rules:
            rule = state.rule
            if rule.record:
                if kind in (None, "record"):
                    entry = {"name": rule.name, "query": rule.expr.strip(), "labels": rule.labels,
                             "health": state.health, "evaluationTime": state.evaluation_seconds,
                             "lastEvaluation": rfc3339(state.last_evaluation), "type": "recording"}
                    if state.last_error:
                        entry["lastError"] = state.last_error
                    rules_out.append(entry)
                continue
            if kind in (None, "alert"):
                active = [a for a in alerts if a.state != INACTIVE]
                states = {a.state for a in active}
                entry = {
                    "state": FIRING if FIRING in states else PENDING if PENDING in states else INACTIVE,
                    "name": rule.name, "query": rule.expr.strip(), "duration": rule.hold_s,
                    "keepFiringFor": rule.keep_firing_for_s, "labels": rule.labels,
                    "annotations": rule.annotations,
                    "alerts": [alert_json(a, services.muting.muted_by(dict(a.labels), now))
                               for a in sorted(active, key=lambda a: a.labels)],
                    "health": state.health, "evaluationTime": state.evaluation_seconds,
                    "lastEvaluation": rfc3339(state.last_evaluation), "type": "alerting",
                }
                if state.last_error:
                    entry["lastError"] = state.last_error
                if rule.recover_expr is not None:
                    entry["recoverQuery"] = rule.recover_expr.strip()
                if rule.for_resolved_s:
                    entry["forResolved"] = rule.for_resolved_s
                rules_out.append(entry)
        groups.append({"name": group.name, "file": group.file, "rules": rules_out, "interval": group.interval_s,
                       "limit": group.limit, "evaluationTime": seconds, "lastEvaluation": rfc3339(last_eval)})
    errors = [{"file": f, "error": e} for f, e in sorted(services.alerting.file_errors.items())]
    return {"groups": groups, "fileErrors": errors}


class PromRulesHandler(PrometheusHandler):
    """``/prometheus/api/v1/rules?type=alert|record``: ``{"groups": [...]}`` as Prometheus,
    plus ``fileErrors``: ``[{"file", "error"}]`` of rule files refused at the last load."""

    async def get(self) -> None:
        kind = self.arg("type")
        if kind not in (None, "alert", "record"):
            raise bad_data(f'invalid parameter "type": unknown rule type {kind!r}')
        self.success(rules_json(self.services, kind))


class PromAlertsHandler(PrometheusHandler):
    """``/prometheus/api/v1/alerts``: ``{"alerts": [...]}`` (pending and firing; each with
    ``mutedBy`` while its notifications are muted, see :func:`alert_json`)."""

    async def get(self) -> None:
        alerts = [a for _, rules, _, _ in self.services.alerting.snapshot() for _, alerts in rules
                  for a in alerts if a.state != INACTIVE]
        now, muting = self.services.clock(), self.services.muting
        self.success({"alerts": [alert_json(a, muting.muted_by(dict(a.labels), now))
                                 for a in sorted(alerts, key=lambda a: a.labels)]})


class AlertHistoryHandler(ApiHandler):
    """``GET /api/v1/alerts/history?since&until&alertname&instance&limit``: transitions,
    newest first: ``{"transitions": [{"ts", "alertname", "state", "labels",
    "annotations", "value", "group", "muted_by"}]}`` (``muted_by``: the reasons
    the transition was muted when it happened, ``KIND:ID`` as ``silence:<id>``). ``since``/``until`` are Unix seconds or RFC 3339
    (default: the last 24 hours); ``limit`` at most 10,000 (default 1,000)."""

    async def get(self) -> None:
        args = self.query()  # console/schemas.py AlertHistoryQuery
        until = self.services.clock() if args.until is None else args.until
        since = until - 86400 if args.since is None else args.since
        if since > until:
            raise ApiError(422, "invalid_range", tx("since must not be after until"), {"parameter": "since"})
        rows = await self.services.alerting.ahistory(since, until, args.alertname or None, args.instance or None,
                                                     args.limit)
        self.write_json({"transitions": rows})


class ReloadHandler(ApiHandler):
    """``POST /-/reload``: re-read the rule files, ``alerting.notifications`` and the apps.
    200 ``{"status": "success"}``; 422 with ``details.errors`` ``{file: "FILE:LINE:
    message"}`` when any file was refused (those files' previous rules keep running; the
    others are applied), the key ``alerting.notifications`` naming a refused notification
    configuration and ``apps`` refused apps (the previous ones keep running). The code is
    ``rule_files_refused`` when a rule file is among them, else ``config_refused``."""

    async def post(self) -> None:
        errors = await self.services.reload()
        if errors:
            files = [key for key in errors if key not in ("alerting.notifications", "apps")]
            said = [tx("{count} rule file(s) refused; their previous rules keep running", count=len(files))] \
                if files else []
            if "alerting.notifications" in errors:  # no file list shows it: the message carries it
                said.append(tx("the notification routing was refused, the previous one keeps running: {problem}",
                               problem=errors["alerting.notifications"]))
            if "apps" in errors:  # console/deploy/reload.py: the apps in use stay
                said.append(tx("{problem}; the apps in use stay", problem=errors["apps"]))
            raise ApiError(422, "rule_files_refused" if files else "config_refused", TextLines(said, list_separator()),
                           {"errors": errors})
        self.write_json({"status": "success"})


class AlertsPageHandler(PageHandler):
    """``/alerts``: firing, pending and recently resolved alerts, rule load errors; its data
    comes from ``/prometheus/api/v1/rules`` and ``/api/v1/alerts/history``."""

    def get(self) -> None:
        self.render("alerts.html")


class RulePageHandler(PageHandler):
    """``/alerts/rules/GROUP/NAME``: one rule (the first named NAME in the first group
    named GROUP): its expression, settings, state and active alerts (from
    ``/prometheus/api/v1/rules``), its PromQL expression over the last 6 hours (from
    ``/prometheus/api/v1/query_range``; for ``X > 0.9`` the page charts ``X`` and draws
    0.9 as a line, see :func:`threshold_split`) and its transitions (from
    ``/api/v1/alerts/history?alertname=NAME``). 404 page for an unknown rule."""

    def get(self, group_name: str, rule_name: str) -> None:
        found = next(((g, s.rule) for g, rules, _, _ in self.services.alerting.snapshot() if g.name == group_name
                      for s, _ in rules if s.rule.name == rule_name), None)
        if found is None:
            raise ApiError(404, "not_found", tx("no rule {rule} in group {group}", rule=repr(rule_name),
                                                  group=repr(group_name)))
        group, rule = found
        split = None if rule.logs is not None else threshold_split(rule.expr)
        chart_query = None if rule.logs is not None else split[0] if split else rule.expr.strip()
        self.render("rule.html", group=group, rule=rule, chart_query=chart_query,
                    threshold_op=split[1] if split else None,
                    threshold=repr(split[2]).removesuffix(".0") if split else None)
