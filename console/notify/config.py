"""The notification configuration in Alertmanager's shape (``global``, ``route``,
``receivers``, ``inhibit_rules``, ``time_intervals``), so a team can paste the routing of
its ``alertmanager.yml`` under ``alerting.notifications`` in config.yaml, or name a file
holding it (``alerting.notifications: /etc/fleetdeck/alertmanager.yml``).

Validation follows prometheus/alertmanager ``config/config.go`` and is done at load and
at reload: the root route needs a receiver and no matchers or time intervals, every
receiver and time interval a route names must exist, receiver and interval names are
unique, ``group_by`` holds label names or ``...`` alone, ``group_interval`` and
``repeat_interval`` are not zero, matchers parse and their regexes compile (RE2). Unknown
keys are refused. Errors name the key and ``FILE line N``.

Durations are Prometheus durations (``30s``, ``5m``, ``4h``, ``1d``). Defaults as
Alertmanager: ``group_wait`` 30s, ``group_interval`` 5m, ``repeat_interval`` 4h,
``resolve_timeout`` 5m; child routes inherit what they do not set (except the time
interval lists).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, \
    model_validator

from console.i18n import TextLines, message_of, tx
from console.matchers import Matcher, MatcherError, parse_matchers, valid_label_name
from console.notify.receivers.config import Receiver, ReceiverGlobals
from console.notify import timeinterval as ti

DEFAULT_GROUP_WAIT_S = 30.0
DEFAULT_GROUP_INTERVAL_S = 300.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0
DEFAULT_RESOLVE_TIMEOUT_S = 300.0


def _duration(raw: Any) -> Any:
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)):
        raise ValueError(tx("must be a duration such as 30s, 5m or 4h, got {raw}", raw=repr(raw)))
    from console.alerting.rules import parse_duration

    try:
        return parse_duration(raw)
    except ValueError:
        raise ValueError(tx("must be a duration such as 30s, 5m or 4h, got {raw}", raw=repr(raw))) from None


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def _matcher_list(raw: Any) -> list[Matcher]:
    """``matchers:`` (a list of strings, each one or more matchers) -> matchers."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(tx("must be a list of matchers such as 'severity=\"critical\"'"))
    out: list[Matcher] = []
    for i, text in enumerate(raw):
        if not isinstance(text, str):
            raise ValueError(tx("entry {index} must be a string such as 'severity=\"critical\"', got {text}",
                                index=i, text=repr(text)))
        try:
            out.extend(parse_matchers(text))
        except MatcherError as exc:
            raise ValueError(tx("entry {index}: {reason}", index=i, reason=message_of(exc))) from None
    return out


def _equal_map(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(tx("must be a mapping of label names to values"))
    for name, value in raw.items():
        if not isinstance(name, str) or not valid_label_name(name):
            raise ValueError(tx("invalid label name {name}", name=repr(name)))
        if not isinstance(value, str):
            raise ValueError(tx("the value of {name} must be a string, got {value}", name=name, value=repr(value)))
    return dict(raw)


def _regex_map(raw: Any) -> dict[str, str]:
    out = _equal_map(raw)
    for name, value in out.items():
        try:
            Matcher.make(name, "=~", value)
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
    return out


Matchers = Annotated[list, BeforeValidator(_matcher_list)]
EqualMap = Annotated[dict, BeforeValidator(_equal_map)]
RegexMap = Annotated[dict, BeforeValidator(_regex_map)]


class _Strict(BaseModel):
    """Unknown keys are refused everywhere in the document."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True,
                              arbitrary_types_allowed=True)


class GlobalConfig(_Strict, ReceiverGlobals):
    """``global``: ``resolve_timeout``, the ``endsAt`` given to alerts posted through the
    API without one, and the receivers' defaults (ReceiverGlobals: ``smtp_*``,
    ``slack_api_url_secret``, ``pagerduty_url``)."""

    resolve_timeout: Duration = DEFAULT_RESOLVE_TIMEOUT_S


class RouteConfig(_Strict):
    """One node of the routing tree (Alertmanager's ``route``)."""

    receiver: str | None = None
    group_by: list[str] | None = None
    match: EqualMap = {}  # deprecated in Alertmanager, still read
    match_re: RegexMap = {}  # deprecated in Alertmanager, still read
    matchers: Matchers = []
    mute_time_intervals: list[str] = []
    active_time_intervals: list[str] = []
    continue_: bool = Field(False, alias="continue")
    routes: list["RouteConfig"] = []
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        seen: set[str] = set()
        for name in value:
            if name != "..." and not valid_label_name(name):
                raise ValueError(tx("invalid label name {name} in group_by list", name=repr(name)))
            if name in seen:
                raise ValueError(tx("duplicated label {name} in group_by", name=repr(name)))
            seen.add(name)
        if "..." in seen and len(seen) > 1:
            raise ValueError(tx("cannot have wildcard group_by (`...`) and other labels at the same time"))
        return value

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _not_zero(cls, value: float | None) -> float | None:
        if value == 0:
            raise ValueError(tx("cannot be zero"))
        return value

    def all_matchers(self) -> list[Matcher]:
        """``match``, ``match_re`` and ``matchers`` together, as Alertmanager's NewRoute."""
        return ([Matcher.make(n, "=", v) for n, v in self.match.items()]
                + [Matcher.make(n, "=~", v) for n, v in self.match_re.items()] + list(self.matchers))


RouteConfig.model_rebuild()


# ``receivers[]``: ``name``, ``language``, ``time_zone`` and one ``<type>_configs`` list per
# integration type of RECEIVER_CONFIGS (console/notify/receivers/config.py).
ReceiverConfig = Receiver


class InhibitRuleConfig(_Strict):
    """``inhibit_rules[]``: while an alert matching the source matchers fires, alerts
    matching the target matchers with the same values of the ``equal`` labels are muted."""

    name: str = ""
    source_match: EqualMap = {}
    source_match_re: RegexMap = {}
    source_matchers: Matchers = []
    target_match: EqualMap = {}
    target_match_re: RegexMap = {}
    target_matchers: Matchers = []
    equal: list[str] = []

    @field_validator("equal")
    @classmethod
    def _equal(cls, value: list[str]) -> list[str]:
        for name in value:
            if not valid_label_name(name):
                raise ValueError(tx("invalid label name {name}", name=repr(name)))
        return value

    def sources(self) -> list[Matcher]:
        return ([Matcher.make(n, "=", v) for n, v in self.source_match.items()]
                + [Matcher.make(n, "=~", v) for n, v in self.source_match_re.items()] + list(self.source_matchers))

    def targets(self) -> list[Matcher]:
        return ([Matcher.make(n, "=", v) for n, v in self.target_match.items()]
                + [Matcher.make(n, "=~", v) for n, v in self.target_match_re.items()] + list(self.target_matchers))


def _ranges(parse):
    def check(raw: Any) -> Any:
        if raw is None:
            return None
        if not isinstance(raw, list):
            raise ValueError(tx("must be a list"))
        return tuple(parse(item) for item in raw)
    return check


class TimeRangeSpec(_Strict):
    """One ``time_intervals[].time_intervals[]`` entry (Alertmanager's TimeInterval)."""

    times: Annotated[Any, BeforeValidator(_ranges(ti.parse_times))] = None
    weekdays: Annotated[Any, BeforeValidator(_ranges(ti.parse_weekdays))] = None
    days_of_month: Annotated[Any, BeforeValidator(_ranges(ti.parse_days_of_month))] = None
    months: Annotated[Any, BeforeValidator(_ranges(ti.parse_months))] = None
    years: Annotated[Any, BeforeValidator(_ranges(ti.parse_years))] = None
    location: Annotated[str | None, BeforeValidator(lambda v: None if v is None else ti.parse_location(v))] = None

    def interval(self) -> ti.TimeInterval:
        return ti.TimeInterval(self.times, self.weekdays, self.days_of_month, self.months, self.years, self.location)


class TimeIntervalConfig(_Strict):
    """``time_intervals[]``: a name and the intervals it covers (any of them)."""

    name: str = Field(min_length=1)
    time_intervals: list[TimeRangeSpec] = []


class NotificationsConfig(_Strict):
    """The whole document (Alertmanager's ``Config``, the parts Fleetdeck routes with)."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    route: RouteConfig
    receivers: list[ReceiverConfig] = []
    inhibit_rules: list[InhibitRuleConfig] = []
    time_intervals: list[TimeIntervalConfig] = []
    mute_time_intervals: list[TimeIntervalConfig] = []  # Alertmanager's older name, still read
    templates: list[str] = []  # Alertmanager's Go template files: refused, not ignored

    @field_validator("templates")
    @classmethod
    def _no_templates(cls, value: list[str]) -> list[str]:
        if value:
            raise ValueError(tx("Alertmanager's Go template files are not read: messages use Fleetdeck's templates "
                                "(docs/alerting.md, \"Templates\"); remove this key"))
        return value

    @model_validator(mode="after")
    def _references(self) -> "NotificationsConfig":
        from console.config import ConfigError

        names: set[str] = set()
        for i, receiver in enumerate(self.receivers):
            if receiver.name in names:
                raise ConfigError(tx("notification config name {name} is not unique", name=repr(receiver.name)),
                                  (("receivers", i, "name"),))
            names.add(receiver.name)
        root = self.route
        if not root.receiver:
            raise ConfigError(tx("root route must specify a default receiver"), (("route",),))
        if root.match or root.match_re or root.matchers:
            raise ConfigError(tx("root route must not have any matchers"), (("route",),))
        if root.mute_time_intervals:
            raise ConfigError(tx("root route must not have any mute time intervals"),
                              (("route", "mute_time_intervals"),))
        if root.active_time_intervals:
            raise ConfigError(tx("root route must not have any active time intervals"),
                              (("route", "active_time_intervals"),))
        intervals: set[str] = set()
        for section in ("mute_time_intervals", "time_intervals"):
            for i, interval in enumerate(getattr(self, section)):
                if interval.name in intervals:
                    raise ConfigError(tx("time interval {name} is not unique", name=repr(interval.name)),
                                      ((section, i, "name"),))
                intervals.add(interval.name)

        def check(route: RouteConfig, path: tuple) -> None:
            for i, child in enumerate(route.routes):
                check(child, path + ("routes", i))
            if route.receiver and route.receiver not in names:
                raise ConfigError(tx("undefined receiver {name} used in route", name=repr(route.receiver)),
                                  (path + ("receiver",),))
            for key in ("active_time_intervals", "mute_time_intervals"):
                for j, name in enumerate(getattr(route, key)):
                    if name not in intervals:
                        raise ConfigError(tx("undefined time interval {name} used in route", name=repr(name)),
                                          (path + (key, j),))
        check(root, ("route",))
        self._integration_defaults()
        return self

    def _integration_defaults(self) -> None:
        """What Alertmanager refuses at load and an integration could not do without: an
        email config with neither its own ``smarthost`` / ``from`` nor the global one, a
        Slack config with no URL and no global one (Alertmanager's ``config.Load``)."""
        from console.config import ConfigError

        glob = self.global_
        for i, receiver in enumerate(self.receivers):
            for j, email in enumerate(getattr(receiver, "email_configs", [])):
                at = ("receivers", i, "email_configs", j)
                if not (email.smarthost or glob.smtp_smarthost):
                    raise ConfigError(tx("no global SMTP smarthost set: give smarthost here or global.smtp_smarthost"),
                                      (at,))
                if not (email.from_ or glob.smtp_from):
                    raise ConfigError(tx("no global SMTP from set: give from here or global.smtp_from"), (at,))
            for j, slack in enumerate(getattr(receiver, "slack_configs", [])):
                if slack.url is None and slack.url_secret is None and glob.slack_api_url_secret is None:
                    raise ConfigError(tx("no global Slack API URL set: give url_secret here or "
                                         "global.slack_api_url_secret"), (("receivers", i, "slack_configs", j),))

    def intervals(self) -> dict[str, list[ti.TimeInterval]]:
        """Time interval name -> its intervals."""
        return {t.name: [spec.interval() for spec in t.time_intervals]
                for t in self.mute_time_intervals + self.time_intervals}


def parse_notifications(raw: Any, where, prefix: str) -> NotificationsConfig:
    """Validate the document ``raw``; ``where(loc)`` names the source of the value at
    ``loc`` (``FILE line N``) or None. Raises console.config.ConfigError listing each
    problem on its own line."""
    from console.config import ConfigError, validation_messages

    if not isinstance(raw, dict):
        raise ConfigError(tx("{key}: must be a mapping in Alertmanager's configuration shape (route, receivers, "
                             "...), got {type}", key=prefix, type=type(raw).__name__))
    try:
        return NotificationsConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(TextLines(validation_messages(exc, prefix, where))) from None


def load_notifications(value: Any, document, base_dir: Path | None) -> NotificationsConfig | None:
    """``alerting.notifications`` of the configuration: None (no notifications), the
    document inline, or the path of a YAML file holding it (relative to the config
    file's folder). ``document``: the config file's YamlDocument (for line numbers), or
    None. Raises console.config.ConfigError."""
    from agents.yamlfile import YamlFileError, read_yaml
    from console.config import ConfigError, file_where

    if value is None:
        return None
    if isinstance(value, str):
        path = value if os.path.isabs(value) or base_dir is None else str(base_dir / value)
        try:
            doc = read_yaml(path)
        except YamlFileError as exc:
            raise ConfigError(tx("{key}: {problem}", key="alerting.notifications", problem=str(exc))) from None
        return parse_notifications(doc.data, lambda loc: file_where(doc, tuple(loc)), "alerting.notifications")
    where = (lambda loc: file_where(document, ("alerting", "notifications") + tuple(loc))) if document is not None \
        else (lambda loc: None)
    return parse_notifications(value, where, "alerting.notifications")


def read_current(config) -> tuple[NotificationsConfig | None, bool]:
    """``(notifications, default_inhibit_rules)`` as the configuration file says now (for
    a reload: the file is read again; without a file, the configuration in memory).
    ``config``: console.config.Config. Raises console.config.ConfigError."""
    from console.config import _alerting_from, _read_file

    if config.path is None:
        return load_notifications(config.alerting.notifications, None, None), config.alerting.default_inhibit_rules
    document = _read_file(config.path)
    alerting = _alerting_from(document, Path(config.path).resolve().parent)
    return load_notifications(alerting.notifications, document, Path(config.path).resolve().parent), \
        alerting.default_inhibit_rules
