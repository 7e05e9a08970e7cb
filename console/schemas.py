"""Request schemas of the HTTP API: the one definition of what each ``/api/v1/`` route takes.

Every request body and every query string of the API is a pydantic v2 model here. The
handlers validate through them (``ApiHandler.body`` / ``ApiHandler.query`` in
console/handlers.py) and ``/api/v1/openapi.json`` is generated from them
(console/openapi.py, with ``model_json_schema``), so the document and the validation
cannot disagree. Names, ranges and enums come from the constants the services check
(console/auth/users.py, console/deploy/apps.py, ...), never from copies.

Errors (see :func:`validation_error`): a body that breaks its model is answered
``400 missing_field`` / ``unknown_field`` / ``invalid_field`` with ``{"field": name}``
in ``details``; a query parameter ``400 invalid_parameter`` with ``{"parameter":
name}``. A model may map one of its fields to another status and code
(``field_errors``), as the deploy body does (``422 invalid_version``).

One exception: the ingest body (``POST /api/v1/ingest``) is validated by the fast
hand-written parser in console/ingest/batch.py; :class:`IngestBatch` only describes it,
and tests/api/test_openapi.py posts batches generated from this description to keep the
two in step.

Adding a route's request schema (a small local change):

1. Write its models below (a ``Body`` subclass for a JSON body, a ``Query`` subclass
   for its query string; constrained types such as :data:`HostName` are at the top).
2. Add one line to :data:`REQUESTS`: ``(route pattern, method): Request(body=...,
   query=..., path={"name": type})``; the route pattern is the one in console/app.py
   ROUTES, path parameters are named in order of the pattern's groups. For example
   ``(r"/api/v1/hosts/([^/]+)", "delete"): Request(path={"host": HostName})``. A body that
   is not JSON and has its own parser: ``Request(body={"type": "string", "format":
   "binary"}, media_type="application/x-protobuf")`` (the handler parses it).
3. In the handler, ``doc = self.body()`` / ``args = self.query()`` (the models are looked
   up by route and method) and use the validated attributes.
4. Describe the answers in console/openapi.py ``API_PATHS`` (summary and responses).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import re2

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StringConstraints, Tag, TypeAdapter,
                      ValidationError, WithJsonSchema, WrapValidator)
from pydantic_core import PydanticCustomError

from console.auth.tokens import HOST_NAME_RE, MAX_ENROL_SECONDS
from console.auth.users import APP_NAME_RE as ALLOWED_APP_RE, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, USERNAME_RE
from console.deploy.apps import APP_NAME_RE, VERSION_RE
from console.deploy.environments import ENVIRONMENT_RE
from console.deploy.service import MAX_REASON
from console.errors import ApiError
from console.i18n import N_, choices_text, message_of, tx
from console.ingest.batch import (BATCH_ID_RE, LABEL_NAME_RE, MAX_LABEL_VALUE, MAX_LABELS, MAX_LOG_LINE,
                                  METRIC_NAME_RE, MetricType)
from console.logs.levels import LEVELS, SPELLINGS as LEVEL_SPELLINGS, normalise_level
from console.maintenance.windows import MAX_LIST as WINDOW_MAX_LIST, NAME_RE as WINDOW_NAME_RE
from console.logs.service import MAX_LIMIT as MAX_LOG_LIMIT, MAX_TERM_CHARS, MAX_TERMS, MAX_TS_MS, WORD_CHAR
from console.params import INT32_MAX
from console.query.service import Function
from console.query.series_math import Aggregator
from console.secrets import MAX_SECRET_BYTES, SECRET_NAME_RE, SecretKind

# -- constrained types ----------------------------------------------------------------------
# Patterns are anchored with ^...$ (JSON Schema's are unanchored); pydantic's regex engine
# and JSON Schema's (ECMA 262) read $ as the end of the text, as the services' fullmatch does.

def anchored(rx: re.Pattern[str]) -> str:
    """A service's name pattern (matched with fullmatch there) anchored for a schema."""
    return f"^(?:{rx.pattern.removeprefix('^').removesuffix('$')})$"


NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL; refused on SQLite alike
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
Role = Literal["viewer", "deployer", "admin"]


def _any_role(value: Any) -> Any:
    """A role outside the union member's own (``role`` picks the member) is refused naming
    every role, not only that member's."""
    if value not in get_args(Role):
        raise PydanticCustomError("literal_error", "Input should be {expected}",
                                  {"expected": "'viewer', 'deployer' or 'admin'"})
    return value


def _deployers_only(value: Any) -> Any:
    if value is not None:
        raise ValueError(tx("an app allow-list applies to the deployer role only"))
    return value


# The role and app list of the viewer-or-admin members of the user and token unions.
OtherRole = Annotated[Literal["viewer", "admin"], BeforeValidator(_any_role)]
NoApps = Annotated[None, BeforeValidator(_deployers_only)]
UserName = Annotated[str, StringConstraints(pattern=anchored(USERNAME_RE))]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH,
                                            pattern=NO_NUL)]
HostName = Annotated[str, StringConstraints(pattern=anchored(HOST_NAME_RE))]
AllowedApp = Annotated[str, StringConstraints(pattern=anchored(ALLOWED_APP_RE))]
AppList = Annotated[list[AllowedApp], Field(max_length=1000, description="app names a deployer may deploy")]
AppName = Annotated[str, StringConstraints(pattern=anchored(APP_NAME_RE))]
Version = Annotated[str, StringConstraints(pattern=anchored(VERSION_RE))]
SecretName = Annotated[str, StringConstraints(pattern=anchored(SECRET_NAME_RE))]
MetricName = Annotated[str, StringConstraints(pattern=anchored(METRIC_NAME_RE))]
LabelName = Annotated[str, StringConstraints(pattern=anchored(LABEL_NAME_RE))]
# A token name is 1 to 128 characters, the first one visible (not a space or control).
TokenName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x20\x7f-\xa0\s][^\x00]*$")]


def _decimal_digits(value: Any) -> Any:
    # Query integers are ASCII decimal digits: pydantic alone would also take " 5", "+5", "1_0".
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,20}", value):
        raise ValueError(tx("must be an integer in decimal digits"))
    return value


# Integer query parameters: decimal digits only, within bounds.
Id32 = Annotated[int, Field(ge=0, le=INT32_MAX), BeforeValidator(_decimal_digits)]  # an id or count in a 32-bit column
Positive32 = Annotated[int, Field(ge=1, le=INT32_MAX), BeforeValidator(_decimal_digits)]
AuditLimit = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_decimal_digits)]
LogLimit = Annotated[int, Field(ge=1, le=MAX_LOG_LIMIT), BeforeValidator(_decimal_digits)]
HistoryLimit = Annotated[int, Field(ge=1, le=10000), BeforeValidator(_decimal_digits)]
OccurrenceCount = Annotated[int, Field(ge=1, le=100), BeforeValidator(_decimal_digits)]
Positive64 = Annotated[int, Field(ge=1, le=2**63 - 1), BeforeValidator(_decimal_digits)]  # a 64-bit id
MAX_SECONDS = 2**53 / 1000  # Unix seconds a 64-bit integer of ms (and a JSON number) holds exactly


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


_LEVEL = "[ \t]*(?:" + "|".join(_any_case(w) for w in sorted(LEVEL_SPELLINGS, key=len, reverse=True)) + ")?[ \t]*"


def _levels(value: Any, handler: Any) -> Any:
    """The pattern's refusal (its text is the whole pattern) said as the level not known."""
    try:
        return handler(value)
    except ValidationError:
        if not isinstance(value, str):
            raise
        bad = next((w.strip() for w in value.split(",") if w.strip() and normalise_level(w) is None), value)
        raise ValueError(tx("{value} is not a log level: one of {levels}, in any usual spelling (WARNING, err, crit)",
                            value=repr(bad), levels=", ".join(LEVELS))) from None


_LABEL_ITEM = "[ ]*(?:" + LABEL_NAME_RE.pattern.strip("^$") + ")?[ ]*"
# A log search text (console/logs/service.py parse_terms) is refused for a word longer than
# MAX_TERM_CHARS, more than MAX_TERMS words, or no word at all in a text that is not blank
# (str.strip's whitespace, spelled out). Each rule is one unanchored RE2/Rust/ECMA pattern:
# the document says "not any of these", the model runs the same patterns with RE2.
_NOT_WORD = r"[^\p{L}\p{N}]"
_BLANK = "\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SEARCH_REFUSED = {
    rf"{WORD_CHAR}{{{MAX_TERM_CHARS + 1}}}": f"a search word is longer than {MAX_TERM_CHARS} characters",
    rf"(?:{WORD_CHAR}+{_NOT_WORD}+){{{MAX_TERMS}}}{WORD_CHAR}": f"at most {MAX_TERMS} search words",
    rf"^{_NOT_WORD}*[^\p{{L}}\p{{N}}{_BLANK}]{_NOT_WORD}*$": "no word to search for (words are letters and digits)",
}
_WORDS = re2.compile(f"{WORD_CHAR}+")


def _search_text(value: str) -> str:
    # The rules of SEARCH_REFUSED, counted rather than matched (RE2 would build a large
    # automaton for a class repeated 65 times); _BLANK is exactly str.isspace's set.
    words = _WORDS.findall(value)
    if any(len(word) > MAX_TERM_CHARS for word in words):
        raise ValueError(tx("a search word is longer than {most} characters", most=MAX_TERM_CHARS))
    if len(words) > MAX_TERMS:
        raise ValueError(tx("at most {most} search words", most=MAX_TERMS))
    if not words and value.strip():
        raise ValueError(tx("no word to search for (words are letters and digits)"))
    return value


SearchText = Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL), AfterValidator(_search_text),
                       WithJsonSchema({"type": "string", "maxLength": 1024, "pattern": NO_NUL,
                                       "not": {"anyOf": [{"pattern": p} for p in SEARCH_REFUSED]}})]


# -- bases ----------------------------------------------------------------------------------

class Body(BaseModel):
    """A JSON request body: unknown fields are refused (nothing is accepted and dropped),
    and values are taken strictly (``"true"`` is not a boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # field -> (status, code) for errors on that field, instead of 400 invalid_field
    field_errors: ClassVar[dict[str, tuple[int, str]]] = {}


class Query(BaseModel):
    """A query string: every parameter is optional unless typed without a default;
    values arrive as text and are converted (``"5"`` -> 5, ``"true"`` -> True)."""

    model_config = ConfigDict(extra="ignore")
    # parameters sent comma-separated (OpenAPI style form, explode false)
    comma_separated: ClassVar[tuple[str, ...]] = ()


# -- users, tokens, secrets, enrolment (console/auth/handlers.py) ---------------------------

class _NewUser(Body):
    username: UserName
    password: Password


class NewDeployer(_NewUser):
    """A deployer, optionally limited to ``apps`` (null: every app)."""

    role: Literal["deployer"]
    apps: AppList | None = None


class NewViewerOrAdmin(_NewUser):
    """A viewer or an admin (an app allow-list applies to deployers only)."""

    role: OtherRole
    apps: NoApps = None


NewUser = Annotated[Union[Annotated[NewDeployer, Tag("deployer")], Annotated[NewViewerOrAdmin, Tag("other")]],
                    Discriminator(lambda v: "deployer" if isinstance(v, dict) and v.get("role") == "deployer"
                                  else "other")]


class UserChange(Body):
    """Fields to change; absent fields keep their value. ``apps`` applies to a user whose
    resulting role is deployer (409 ``apps_need_deployer`` otherwise)."""

    role: Role | None = None
    apps: AppList | None = None
    disabled: bool | None = None
    password: Password | None = None


class MyChange(Body):
    """The caller's own settings: ``language``, the dashboard's language for its user
    (a BCP 47 tag the console offers; null: follow the browser's)."""

    language: Literal["en", "zh-CN"] | None


class TokensQuery(Query):
    include_revoked: bool = Field(False, description="list revoked tokens too")


# At least a second: a shorter life is no use, and its days would underflow to 0.
EXPIRES_API = Field(None, ge=1, le=3650 * 86400, allow_inf_nan=False, description="seconds; null: never")


class ApiTokenForDeployer(Body):
    """An API token capped at the deployer role, optionally limited to ``apps``."""

    kind: Literal["api"] = "api"
    name: TokenName
    role: Literal["deployer"]
    apps: AppList | None = None
    expires_in: float | None = EXPIRES_API


class ApiToken(Body):
    """An API token capped at the viewer or admin role."""

    kind: Literal["api"] = "api"
    name: TokenName
    role: OtherRole
    apps: NoApps = None
    expires_in: float | None = EXPIRES_API


class AgentToken(Body):
    """An agent token bound to ``host``."""

    kind: Literal["agent"]
    host: HostName


class EnrolToken(Body):
    """A one-time enrolment token, for ``host`` only when given."""

    kind: Literal["enrol"]
    host: HostName | None = None
    expires_in: float | None = Field(None, ge=1, le=MAX_ENROL_SECONDS, allow_inf_nan=False,
                                     description="seconds (default 3600)")


def _token_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("kind", "api")
    if kind == "api":
        return "api-deployer" if value.get("role") == "deployer" else "api"
    return kind if kind in ("agent", "enrol") else None


NewToken = Annotated[Union[Annotated[ApiTokenForDeployer, Tag("api-deployer")], Annotated[ApiToken, Tag("api")],
                           Annotated[AgentToken, Tag("agent")], Annotated[EnrolToken, Tag("enrol")]],
                     Discriminator(_token_kind, custom_error_type="invalid_kind",
                                   custom_error_message="kind must be api, agent or enrol")]


class Enrolment(Body):
    enrol_token: Text
    host: HostName


class NewSecret(Body):
    name: SecretName
    kind: SecretKind
    value: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SECRET_BYTES, pattern=NO_NUL)] = Field(
        description=f"the plaintext, at most {MAX_SECRET_BYTES} bytes of UTF-8; never returned")


class AuditQuery(Query):
    limit: AuditLimit = 100
    before: Positive32 | None = Field(None, description="entry id: older entries only")


# -- deploys (console/deploy/handlers.py) ---------------------------------------------------

EnvironmentName = Annotated[str, StringConstraints(pattern=anchored(ENVIRONMENT_RE))]
Reason = Annotated[str, StringConstraints(max_length=MAX_REASON, pattern=NO_NUL)]


class DeployRequest(Body):
    field_errors: ClassVar[dict[str, tuple[int, str]]] = {"version": (422, "invalid_version"),
                                                          "reason": (422, "invalid_reason"),
                                                          "environment": (422, "invalid_environment")}
    version: Version
    reason: Reason | None = None
    environment: EnvironmentName | None = Field(None, description="required for an app with environments")
    force: bool = Field(False, description="ssh apps: build the release again on every host, even where complete")


class RollbackRequest(Body):
    field_errors: ClassVar[dict[str, tuple[int, str]]] = {"to": (422, "invalid_version"),
                                                          "reason": (422, "invalid_reason"),
                                                          "environment": (422, "invalid_environment")}
    to: Version | None = Field(None, description="a version that succeeded before; default: the previous one")
    reason: Reason | None = None
    environment: EnvironmentName | None = Field(None, description="required for an app with environments")


class PromoteRequest(Body):
    """Deploy to ``to`` the version that runs in ``from`` now."""

    field_errors: ClassVar[dict[str, tuple[int, str]]] = {"from": (422, "invalid_environment"),
                                                          "to": (422, "invalid_environment"),
                                                          "reason": (422, "invalid_reason")}
    source: EnvironmentName = Field(alias="from", description="the environment whose version is promoted")
    to: EnvironmentName = Field(description="the environment deployed to")
    reason: Reason | None = None


class ApprovalDecision(Body):
    field_errors: ClassVar[dict[str, tuple[int, str]]] = {"reason": (422, "invalid_reason")}
    reason: Reason | None = None


UnixSeconds = Annotated[float, Field(allow_inf_nan=False, description="Unix s")]


class DeploysQuery(Query):
    app: AppName | None = None
    host: Text | None = None
    since: UnixSeconds | None = None
    until: UnixSeconds | None = None
    limit: Positive32 = 50
    before: Id32 | None = Field(None, description="cursor: a deploy id")


class DeployEventsQuery(Query):
    after: Id32 = Field(0, description="sequence number: later events only")
    limit: Positive32 = Field(1000, description="at most 5000 are answered")


# -- metrics, hosts, logs (console/query/handlers.py, console/logs/handlers.py) -------------

Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]


class MetricNamesQuery(Query):
    """Names of series with samples; with ``start``/``end``, only of series with data in
    that window (by their first and last sample time). 422 ``invalid_range`` when end is
    before start."""

    host: Text | None = None
    start: Seconds | None = Field(None, description="Unix s")
    end: Seconds | None = Field(None, description="Unix s")


class RangeQueryArgs(Query):
    """Also ``label.NAME=value`` (``label.NAME!``, ``label.NAME~``, ``label.NAME!~`` for !=,
    =~, !~) matchers, any number of them; ``end`` defaults to now, ``start`` to an hour
    before. 422 ``invalid_range`` when end is before start or the range has too many steps."""

    comma_separated: ClassVar[tuple[str, ...]] = ("group_by",)
    metric: MetricName
    host: Text | None = None
    start: Seconds | None = Field(None, description="Unix s")
    end: Seconds | None = Field(None, description="Unix s")
    # Samples are stamped in ms: a step or window under 1 ms would be 0 ms.
    step: Annotated[float, Field(ge=0.001, le=MAX_SECONDS, allow_inf_nan=False)] | None = Field(
        None, description="seconds")
    window: Annotated[float, Field(ge=0.001, le=86400 * 31, allow_inf_nan=False)] | None = Field(
        None, description="rate/increase window, seconds (default: the step)")
    fn: Function = "raw"
    group_by: Annotated[str, StringConstraints(pattern=f"^{_LABEL_ITEM}(?:,{_LABEL_ITEM})*$")] | None = Field(
        None, description="label names, comma-separated")
    agg: Aggregator = "sum"


def _unix_or_rfc3339(raw: Any) -> Any:
    # Prometheus' time parameters: Unix seconds or RFC 3339 (console/promql/handlers.py).
    if isinstance(raw, str):
        from console.promql.handlers import parse_time
        from console.promql.service import PromError

        try:
            return parse_time("time", raw)
        except PromError:
            raise ValueError(tx("must be Unix seconds or an RFC 3339 time with a zone")) from None
    return raw


Timestamp = Annotated[float, BeforeValidator(_unix_or_rfc3339),
                      WithJsonSchema({"anyOf": [{"type": "number", "minimum": -MAX_SECONDS, "maximum": MAX_SECONDS},
                                                {"type": "string", "format": "date-time"}]})]


class AlertHistoryQuery(Query):
    """422 ``invalid_range`` when since is after until."""

    since: Timestamp | None = Field(None, description="Unix seconds or RFC 3339 (default: until - 24 h)")
    until: Timestamp | None = Field(None, description="Unix seconds or RFC 3339 (default: now)")
    alertname: Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)] | None = None
    instance: Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL)] | None = None
    limit: HistoryLimit = 1000


# -- maintenance windows (console/maintenance/handlers.py) ----------------------------------

WindowName = Annotated[str, StringConstraints(pattern=anchored(WINDOW_NAME_RE))]
ScopeList = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=NO_NUL)]],
                      Field(max_length=WINDOW_MAX_LIST)]


class NewWindow(Body):
    """400 ``invalid_field`` with ``details.field`` for a rule, zone, time or matcher the
    window refuses (console/maintenance/windows.py)."""

    name: WindowName
    dtstart: Annotated[str, StringConstraints(max_length=32, pattern=NO_NUL)] = Field(
        description="local wall-clock time in `timezone`, ISO 8601 without offset, e.g. 2026-11-28T02:00:00")
    duration: Union[Annotated[float, Field(gt=0, le=31 * 86400)],
                    Annotated[str, StringConstraints(max_length=32, pattern=NO_NUL)]] = Field(
        description="seconds, or a duration such as 2h or 90m")
    rrule: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=NO_NUL)] = Field(
        description="RFC 5545 recurrence rule, e.g. FREQ=WEEKLY;BYDAY=SA;BYHOUR=2")
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)] = Field(
        description="IANA time zone, e.g. Asia/Shanghai")
    matchers: ScopeList = Field([], description='Alertmanager matchers, e.g. severity="warning" (regex: RE2)')
    hosts: ScopeList = []
    apps: ScopeList = []
    environments: ScopeList = []
    until: Annotated[float, Field(ge=0, le=MAX_SECONDS)] | None = Field(None, description="Unix s: no occurrence "
                                                                                               "after it")
    comment: Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)] = ""


class WindowsQuery(Query):
    """400 when only one of start and end is given, or they are more than a year apart."""

    host: Text | None = Field(None, description="only windows that can cover this host")
    start: Timestamp | None = Field(None, description="with end: list each window's occurrences in [start, end]")
    end: Timestamp | None = None


class WindowQuery(Query):
    count: OccurrenceCount = 5


class NotificationsQuery(Query):
    """422 ``invalid_range`` when since is after until."""

    since: Timestamp | None = Field(None, description="Unix seconds or RFC 3339 (default: until - 24 h)")
    until: Timestamp | None = Field(None, description="Unix seconds or RFC 3339 (default: now)")
    receiver: Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)] | None = None
    status: Literal["pending", "sent", "failed"] | None = None
    limit: HistoryLimit = 100
    before: Positive64 | None = Field(None, description="the `next` of the previous page")


class NotificationTest(Body):
    receiver: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]


class LogsQuery(Query):
    """422 ``invalid_range`` when end is before start."""

    q: SearchText | None = Field(
        None, description=f"words (letters and digits; up to {MAX_TERMS} of up to {MAX_TERM_CHARS} characters), "
                          "all must match; a trailing * matches a prefix; a word in Chinese or Japanese script matches "
                          "any part of a line's word")
    host: Text | None = Field(None, description="host names, comma-separated")
    source: Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL)] | None = None
    level: Annotated[str, StringConstraints(pattern=f"^{_LEVEL}(?:,{_LEVEL})*$"), WrapValidator(_levels)] | None = Field(
        None, description="levels, comma-separated")
    start: Annotated[float, Field(ge=0, lt=MAX_TS_MS / 1000, allow_inf_nan=False)] | None = Field(
        None, description="Unix s")
    end: Annotated[float, Field(ge=0, lt=MAX_TS_MS / 1000, allow_inf_nan=False)] | None = Field(
        None, description="Unix s")
    limit: LogLimit = 100
    cursor: Annotated[str, StringConstraints(pattern=r"^(?:[0-9]{1,15}_[0-9]{1,18})?$")] | None = Field(
        None, description="a previous answer's next")


# -- ingest (described only; console/ingest/batch.py validates) ------------------------------

# Every key a label name (pydantic would write patternProperties, which lets other keys through).
Labels = Annotated[dict[LabelName, Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]],
                   Field(max_length=MAX_LABELS),
                   WithJsonSchema({"type": "object", "maxProperties": MAX_LABELS,
                                   "propertyNames": {"pattern": anchored(LABEL_NAME_RE)},
                                   "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE}})]
Stamp = Annotated[int, Field(ge=0, lt=2**53, description="Unix ms")]


class IngestAgent(BaseModel):
    version: Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)] | None = None
    interval: Annotated[float, Field(gt=0, le=86400)] | None = Field(None, description="seconds")
    config_hash: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)] | None = None


class IngestMetric(BaseModel):
    name: Annotated[str, StringConstraints(max_length=255, pattern=anchored(METRIC_NAME_RE))]
    type: MetricType = "gauge"
    labels: Labels | None = None
    points: list[Annotated[tuple[Stamp, Union[float, Literal["NaN", "Inf", "+Inf", "-Inf"]]],
                           Field(description="[Unix ms, value]; a NaN/Inf string is dropped and counted")]]


class IngestLog(BaseModel):
    ts: Stamp
    source: Annotated[str, StringConstraints(max_length=1024)] = ""
    line: Annotated[str, StringConstraints(max_length=MAX_LOG_LINE)]
    labels: Labels | None = None


class IngestBatch(BaseModel):
    """One push of an agent (see console/ingest/batch.py, which validates it)."""

    host: Annotated[str, StringConstraints(pattern=anchored(HOST_NAME_RE))]
    batch_id: Annotated[str, StringConstraints(pattern=anchored(BATCH_ID_RE))]
    sent_at: float | None = Field(None, description="Unix s")
    agent: IngestAgent | None = None
    labels: Labels | None = None
    metrics: list[IngestMetric] = []
    logs: list[IngestLog] = []


# -- the table ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """What one operation takes: a JSON ``body`` type, a ``query`` model, ``path``
    parameter types (by name, in the order of the route pattern's groups)."""

    body: Any = None
    query: type[Query] | None = None
    path: dict[str, Any] = field(default_factory=dict)
    # A body that is not JSON: its media type, with ``body`` a JSON Schema dict describing it
    # (e.g. {"type": "string", "format": "binary"} for application/x-protobuf).
    media_type: str = "application/json"


DeployId = Id32
TokenId = Positive32

# (route pattern of console/app.py ROUTES, method) -> Request
REQUESTS: dict[tuple[str, str], Request] = {
    (r"/api/v1/ingest", "post"): Request(body=IngestBatch),  # described only: batch.py validates
    (r"/api/v1/write", "post"): Request(body={"type": "string", "format": "binary"},
                                        media_type="application/x-protobuf"),  # remote_write.py parses it
    (r"/api/v1/hosts/([^/]+)", "delete"): Request(path={"host": HostName}),
    (r"/api/v1/metrics/names", "get"): Request(query=MetricNamesQuery),
    (r"/api/v1/metrics/range", "get"): Request(query=RangeQueryArgs),
    (r"/api/v1/apps/([^/]+)", "get"): Request(path={"app": AppName}),
    (r"/api/v1/apps/([^/]+)/deploys", "post"): Request(body=DeployRequest, path={"app": AppName}),
    (r"/api/v1/apps/([^/]+)/rollback", "post"): Request(body=RollbackRequest, path={"app": AppName}),
    (r"/api/v1/deploys", "get"): Request(query=DeploysQuery),
    (r"/api/v1/deploys/([^/]+)", "get"): Request(path={"deploy_id": DeployId}),
    (r"/api/v1/deploys/([^/]+)/events", "get"): Request(query=DeployEventsQuery, path={"deploy_id": DeployId}),
    (r"/api/v1/deploys/([^/]+)/cancel", "post"): Request(path={"deploy_id": DeployId}),
    (r"/api/v1/deploys/([^/]+)/approve", "post"): Request(body=ApprovalDecision, path={"deploy_id": DeployId}),
    (r"/api/v1/deploys/([^/]+)/reject", "post"): Request(body=ApprovalDecision, path={"deploy_id": DeployId}),
    (r"/api/v1/apps/([^/]+)/promote", "post"): Request(body=PromoteRequest, path={"app": AppName}),
    (r"/api/v1/apps/reload", "post"): Request(),
    (r"/api/v1/apps/reload", "get"): Request(),
    (r"/api/v1/logs", "get"): Request(query=LogsQuery),
    (r"/api/v1/alerts/history", "get"): Request(query=AlertHistoryQuery),
    (r"/api/v1/notifications", "get"): Request(query=NotificationsQuery),
    (r"/api/v1/notifications/test", "post"): Request(body=NotificationTest),
    (r"/api/v1/me", "patch"): Request(body=MyChange),
    (r"/api/v1/users", "post"): Request(body=NewUser),
    (r"/api/v1/users/([^/]+)", "patch"): Request(body=UserChange, path={"username": UserName}),
    (r"/api/v1/users/([^/]+)", "delete"): Request(path={"username": UserName}),
    (r"/api/v1/tokens", "get"): Request(query=TokensQuery),
    (r"/api/v1/tokens", "post"): Request(body=NewToken),
    (r"/api/v1/tokens/([^/]+)", "delete"): Request(path={"id": TokenId}),
    (r"/api/v1/enrol", "post"): Request(body=Enrolment),
    (r"/api/v1/audit", "get"): Request(query=AuditQuery),
    (r"/api/v1/secrets", "post"): Request(body=NewSecret),
    (r"/api/v1/secrets/([^/]+)", "delete"): Request(path={"name": SecretName}),
    (r"/api/v1/maintenance/windows", "get"): Request(query=WindowsQuery),
    (r"/api/v1/maintenance/windows", "post"): Request(body=NewWindow),
    (r"/api/v1/maintenance/windows/([^/]+)", "get"): Request(query=WindowQuery, path={"name": WindowName}),
    (r"/api/v1/maintenance/windows/([^/]+)", "delete"): Request(path={"name": WindowName}),
}


def adapter(kind: Any) -> TypeAdapter:
    """A (cached) TypeAdapter of a model or an annotated union."""
    cached = _ADAPTERS.get(id(kind))
    if cached is None:
        cached = _ADAPTERS[id(kind)] = TypeAdapter(kind)
    return cached


_ADAPTERS: dict[int, TypeAdapter] = {}  # filled once per type; the types above never change


# pydantic's messages of the common problems, as translatable templates filled from the
# problem's ``ctx`` (pydantic_core's own English text, which the English rendering keeps;
# N_ marks them for `make messages`).
_PROBLEMS = {
    "string_too_short": N_("String should have at least {min_length} characters"),
    "string_too_long": N_("String should have at most {max_length} characters"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "literal_error": N_("Input should be {expected}"),
    "enum": N_("Input should be {expected}"),
    "too_short": N_("List should have at least {min_length} items after validation, not {actual_length}"),
    "too_long": N_("List should have at most {max_length} items after validation, not {actual_length}"),
    "string_type": N_("Input should be a valid string"),
    "int_type": N_("Input should be a valid integer"),
    "float_type": N_("Input should be a valid number"),
    "bool_type": N_("Input should be a valid boolean"),
    "list_type": N_("Input should be a valid list"),
    "dict_type": N_("Input should be a valid dictionary"),
    "model_type": N_("Input should be a valid dictionary or instance of {class_name}"),
}


def problem_text(problem: Any) -> str:
    """pydantic's message of one problem, translatable (console/i18n.py ``Text``) when it is
    one of :data:`_PROBLEMS` or a validator's ``ValueError(tx(...))``; otherwise pydantic's
    English as it is (a template that would not reproduce it is not used)."""
    ctx = problem.get("ctx") or {}
    english = problem["msg"]
    if problem["type"] == "value_error" and isinstance(ctx.get("error"), Exception):
        reason = message_of(ctx["error"])
        text = tx("Value error, {reason}", reason=reason)
        return text if text == english else english
    template = _PROBLEMS.get(problem["type"])
    if template is None:
        return english
    values = {k: str(v) for k, v in ctx.items()}
    if "expected" in values and problem["type"] in ("literal_error", "enum"):
        values["expected"] = choices_text(values["expected"])
    try:
        text = tx(template, **values)
    except (KeyError, IndexError, ValueError):
        return english
    return text if text == english else english


def validation_error(exc: ValidationError, where: str, model: Any = None) -> ApiError:
    """The first problem of ``exc`` as the API's error: ``where`` is ``"body"`` or
    ``"query"``; ``model`` is the body's type (see the module docstring for the codes)."""
    problem = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(part) for part in problem["loc"] if not isinstance(part, int)]
    is_union = not (isinstance(model, type) and issubclass(model, BaseModel))
    if where == "body" and is_union and loc:
        loc = loc[1:]  # the union member's tag comes first
    name = loc[0] if loc else ("kind" if problem["type"] == "invalid_kind" else "")
    said = problem_text(problem)
    message = tx("{name}: {problem}", name=name, problem=said) if name else said
    if where == "query":
        return ApiError(400, "invalid_parameter", message, {"parameter": name})
    overrides = getattr(model, "field_errors", {})
    if name in overrides:
        status, code = overrides[name]
        return ApiError(status, code, message, {"field": name})
    if problem["type"] == "missing":
        return ApiError(400, "missing_field", tx("{name} is required", name=name), {"field": name})
    if problem["type"] == "extra_forbidden":
        return ApiError(400, "unknown_field", tx("unknown field {name}", name=repr(name)), {"field": name})
    return ApiError(400, "invalid_field", message, {"field": name})


def parse_body(kind: Any, doc: dict) -> Any:
    """``doc`` (a decoded JSON object) validated as ``kind``; raises ApiError."""
    try:
        return adapter(kind).validate_python(doc, strict=True)
    except ValidationError as exc:
        raise validation_error(exc, "body", kind) from None


def parse_query(model: type[Query], arguments: dict[str, list[str]]) -> Any:
    """Query ``arguments`` (name -> values, as Tornado holds them) validated as ``model``;
    the last value of a repeated parameter counts. Raises ApiError."""
    values = {name: found[-1] for name, found in arguments.items() if found and name in model.model_fields}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc, "query") from None

