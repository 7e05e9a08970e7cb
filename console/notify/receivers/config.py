"""The configuration of each receiver integration type, in Alertmanager's shape
(``<type>_configs`` lists under a receiver; prometheus/alertmanager ``config/notifiers.go``).
``RECEIVER_CONFIGS`` maps the type (``webhook`` for ``webhook_configs``) to its model;
:class:`Receiver` is one entry of ``receivers:``; :class:`ReceiverGlobals` the keys of
``global:`` that receivers default from; :class:`DeliveryConfig` the ``alerting.delivery``
section (retries and timeouts of the delivery worker).

Credentials never sit in the configuration: where Alertmanager takes ``auth_password``,
``api_url``, ``routing_key`` or their ``*_file`` variants, Fleetdeck takes the *name* of a
secret of the encrypted store (``fleetdeck secrets set``; console/secrets.py) in a
``*_secret`` key. Writing the plaintext key is refused with that advice.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import GenericAlias
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from console.i18n import tx

Language = Literal["en", "zh-CN"]
SecretRef = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
Seconds = Annotated[float, Field(gt=0, le=3600)]


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(tx("must be an IANA time zone such as UTC or Asia/Shanghai, got {value}",
                            value=repr(value))) from None
    return value


TimeZone = Annotated[str, AfterValidator(_time_zone)]


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(tx("must be an http:// or https:// URL, got {value}", value=repr(value)))
    return value


HttpUrl = Annotated[str, Field(min_length=8, max_length=2048), AfterValidator(_http_url)]


class IntegrationConfig(BaseModel):
    """Fields every integration has. Unknown keys are refused; a key that would put a
    credential in the file (``INLINE_SECRETS``) is refused naming its ``*_secret`` form.
    ``language``: the message templates' language (default: the receiver's)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    INLINE_SECRETS: ClassVar[dict[str, str]] = {}
    send_resolved: bool = True
    language: Language | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping):
            for key, instead in cls.INLINE_SECRETS.items():
                if key in raw:
                    raise ValueError(tx("{key}: credentials are not written in the configuration; store it with "
                                        "`fleetdeck secrets set NAME --kind generic` and name it in {instead}",
                                        key=key, instead=instead))
        return raw


class HttpIntegration(IntegrationConfig):
    """An integration that POSTs to a URL: ``url`` in full, or ``url_secret`` naming a
    stored secret that holds the whole URL (for URLs that carry a token, as Slack's).
    ``proxy_url``: send through this HTTP proxy (the environment's proxy variables are
    not used)."""

    INLINE_SECRETS: ClassVar[dict[str, str]] = {"url_file": "url_secret"}
    url: HttpUrl | None = None
    url_secret: SecretRef | None = None
    proxy_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _one_url(self) -> "HttpIntegration":
        if self.url is not None and self.url_secret is not None:
            raise ValueError(tx("give url or url_secret, not both"))
        if self.url is None and self.url_secret is None and not self.DEFAULT_URL:
            raise ValueError(tx("url or url_secret is required"))
        return self

    DEFAULT_URL: ClassVar[str] = ""


class WebhookConfig(HttpIntegration):
    """``webhook_configs``: POST Alertmanager's version-4 JSON payload to ``url``;
    ``max_alerts`` 0 sends all (the rest counted in ``truncatedAlerts``)."""

    max_alerts: int = Field(0, ge=0)


class TlsConfig(BaseModel):
    """Verification of an SMTP server's certificate (always on): ``ca_file`` (PEM) to
    trust instead of the system's CAs."""

    model_config = ConfigDict(extra="forbid")
    ca_file: str | None = None


class EmailConfig(IntegrationConfig):
    """``email_configs``: a text and an HTML body by SMTP. ``smarthost`` ``HOST:PORT``
    (port 465: TLS from the first byte; otherwise STARTTLS when ``require_tls``, the
    default), ``auth_username`` with the password in secret ``auth_password_secret``
    (PLAIN or LOGIN, as the server offers). Unset ``from``, ``smarthost``, ``hello``,
    ``auth_*`` and ``require_tls`` come from ``global.smtp_*``. Alertmanager's default
    ``send_resolved: false``."""

    INLINE_SECRETS: ClassVar[dict[str, str]] = {"auth_password": "auth_password_secret",
                                               "auth_password_file": "auth_password_secret",
                                               "auth_secret": "auth_password_secret"}
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    send_resolved: bool = False
    to: Annotated[str, Field(min_length=3)]
    from_: str | None = Field(None, alias="from")
    smarthost: str | None = None
    hello: str | None = None
    auth_username: str | None = None
    auth_password_secret: SecretRef | None = None
    require_tls: bool | None = None
    tls_config: TlsConfig = TlsConfig()
    headers: dict[str, str] = {}

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, value: str | None) -> str | None:
        if value is not None:
            smarthost(value)
        return value


def smarthost(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(tx("must be HOST:PORT, got {value}", value=repr(value)))
    return host.strip("[]"), int(port)


class SlackConfig(HttpIntegration):
    """``slack_configs``: an incoming webhook (its URL, which holds the token, in
    ``url_secret``; default ``global.slack_api_url_secret``). ``channel`` and
    ``username`` override the webhook's defaults where Slack allows it."""

    INLINE_SECRETS: ClassVar[dict[str, str]] = {"api_url": "url_secret", "api_url_file": "url_secret"}
    send_resolved: bool = False
    channel: str | None = None
    username: str | None = None
    DEFAULT_URL: ClassVar[str] = "global"  # global.slack_api_url_secret


class DingTalkConfig(HttpIntegration):
    """``dingtalk_configs``: a DingTalk custom robot (``url``:
    ``https://oapi.dingtalk.com/robot/send?access_token=...``, usually as ``url_secret``);
    ``secret``: the stored robot signing secret (``SEC...``), which signs each message;
    ``at_mobiles``: phone numbers to @ in the group; ``at_all``."""

    INLINE_SECRETS: ClassVar[dict[str, str]] = {"access_token": "url_secret", "sign_secret": "secret"}
    secret: SecretRef | None = None
    at_mobiles: list[Annotated[str, Field(min_length=1, max_length=32)]] = []
    at_all: bool = False


class WeComConfig(HttpIntegration):
    """``wecom_configs``: a WeCom (WeChat Work) group robot
    (``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...``, usually as
    ``url_secret``); markdown messages (at most 4096 bytes, longer ones are cut)."""

    INLINE_SECRETS: ClassVar[dict[str, str]] = {"key": "url_secret"}


class FeishuConfig(HttpIntegration):
    """``feishu_configs``: a Feishu (Lark) custom bot
    (``https://open.feishu.cn/open-apis/bot/v2/hook/...``, usually as ``url_secret``);
    ``secret``: the stored signature secret, which signs each message."""

    INLINE_SECRETS: ClassVar[dict[str, str]] = {"sign_secret": "secret"}
    secret: SecretRef | None = None


class PagerDutyConfig(HttpIntegration):
    """``pagerduty_configs``: PagerDuty Events API v2. ``routing_key_secret``: the stored
    integration key; ``url`` default ``global.pagerduty_url``
    (``https://events.pagerduty.com/v2/enqueue``); ``severity`` one of critical, error,
    warning, info (default: the common ``severity`` label when it is one of them, else
    error); ``source``, ``component``, ``group``, ``class`` of the event."""

    INLINE_SECRETS: ClassVar[dict[str, str]] = {"routing_key": "routing_key_secret",
                                               "routing_key_file": "routing_key_secret",
                                               "service_key": "routing_key_secret"}
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    routing_key_secret: SecretRef
    severity: Literal["critical", "error", "warning", "info"] | None = None
    source: str | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(None, alias="class")
    DEFAULT_URL: ClassVar[str] = "global"  # global.pagerduty_url


class AlertmanagerConfig(HttpIntegration):
    """``alertmanager_configs``: forward the alerts to another Alertmanager:
    ``url`` is its alerts endpoint in full (``http://am:9093/api/v2/alerts``)."""


RECEIVER_CONFIGS: dict[str, type[IntegrationConfig]] = {
    "webhook": WebhookConfig, "email": EmailConfig, "slack": SlackConfig, "dingtalk": DingTalkConfig,
    "wecom": WeComConfig, "feishu": FeishuConfig, "pagerduty": PagerDutyConfig, "alertmanager": AlertmanagerConfig,
}


class ReceiverGlobals(BaseModel):
    """The keys of Alertmanager's ``global:`` that receivers default from (the
    ``global`` model of ``alerting.notifications`` carries these fields):
    ``smtp_from``, ``smtp_smarthost``, ``smtp_hello`` (default ``localhost``),
    ``smtp_auth_username``, ``smtp_auth_password_secret``, ``smtp_require_tls``
    (default true), ``slack_api_url_secret``, ``pagerduty_url``."""

    model_config = ConfigDict(extra="forbid")
    smtp_from: str | None = None
    smtp_smarthost: str | None = None
    smtp_hello: str = "localhost"
    smtp_auth_username: str | None = None
    smtp_auth_password_secret: SecretRef | None = None
    smtp_require_tls: bool = True
    slack_api_url_secret: SecretRef | None = None
    pagerduty_url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"

    @field_validator("smtp_smarthost")
    @classmethod
    def _smarthost(cls, value: str | None) -> str | None:
        if value is not None:
            smarthost(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping):
            for key, instead in (("smtp_auth_password", "smtp_auth_password_secret"),
                                 ("smtp_auth_password_file", "smtp_auth_password_secret"),
                                 ("slack_api_url", "slack_api_url_secret")):
                if key in raw:
                    raise ValueError(tx("{key}: credentials are not written in the configuration; store it with "
                                        "`fleetdeck secrets set NAME --kind generic` and name it in {instead}",
                                        key=key, instead=instead))
        return raw


# One receiver of ``receivers:``: a name, the language of its messages and the IANA time
# zone they show times in, and a list per integration type (``webhook_configs``, ...).
class ReceiverBase(BaseModel):
    """What every receiver has besides its integration lists."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=255)]
    language: Language = "en"
    time_zone: TimeZone = "UTC"


if TYPE_CHECKING:  # the checker sees the common fields; pydantic validates with the built model
    Receiver = ReceiverBase
else:
    # GenericAlias(list, model) is list[model], spelt so that a class held in a variable is accepted
    Receiver = create_model("Receiver", __base__=ReceiverBase,
                            **{f"{kind}_configs": (GenericAlias(list, model), [])
                               for kind, model in RECEIVER_CONFIGS.items()})


class DeliveryConfig(BaseModel):
    """``alerting.delivery``: how the outbox is sent (docs/alerting.md "Receivers").
    ``timeout``: seconds one attempt may take; a failed attempt that may succeed later
    (timeout, connection error, 5xx, 429, SMTP 4xx) is retried after ``backoff_initial``
    seconds, doubling up to ``backoff_max`` (a longer Retry-After is honoured up to
    ``retry_after_max``), until the notification is ``give_up_after`` seconds old;
    ``concurrency``: sends in flight at once."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    timeout: Seconds = 10.0
    backoff_initial: Annotated[float, Field(gt=0, le=3600)] = 1.0
    backoff_max: Annotated[float, Field(gt=0, le=86400)] = 300.0
    retry_after_max: Annotated[float, Field(gt=0, le=86400)] = 3600.0
    give_up_after: Annotated[float, Field(gt=0, le=7 * 86400)] = 6 * 3600.0
    concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.5

    @model_validator(mode="after")
    def _order(self) -> "DeliveryConfig":
        if self.backoff_max < self.backoff_initial:
            raise ValueError(tx("backoff_max must be at least backoff_initial"))
        return self


@dataclass(frozen=True)
class Integration:
    """One integration of a receiver: ``name`` as in the outbox (``dingtalk[0]``),
    ``kind`` (``dingtalk``), its ``config``, the receiver's ``language`` unless the
    integration sets its own, the ``globals`` it defaults from, and the receiver's
    ``time_zone`` (IANA) that messages show times in."""

    receiver: str
    name: str
    kind: str
    config: IntegrationConfig
    language: str
    globals: ReceiverGlobals
    time_zone: str = "UTC"


def notification_globals(notifications: Any) -> ReceiverGlobals:
    """The :class:`ReceiverGlobals` fields of ``notifications.global_`` (defaults when
    there is no ``global:``)."""
    glob = getattr(notifications, "global_", None)
    if glob is None:
        return ReceiverGlobals()
    if isinstance(glob, ReceiverGlobals):
        return glob
    return ReceiverGlobals.model_validate({k: getattr(glob, k) for k in ReceiverGlobals.model_fields
                                           if getattr(glob, k, None) is not None})


def receiver_integrations(notifications: Any, name: str) -> list[Integration]:
    """The integrations of receiver ``name`` in ``notifications`` (the loaded
    ``alerting.notifications``: anything with ``receivers``, a list of objects with
    ``name``, optional ``language``, ``time_zone`` and ``<type>_configs`` lists, and optional
    ``global_``), in Alertmanager's order and naming (``webhook[0]``, ``email[0]``, ...).
    Raises KeyError when no receiver has that name."""
    for receiver in getattr(notifications, "receivers", None) or ():
        if receiver.name != name:
            continue
        glob = notification_globals(notifications)
        language = getattr(receiver, "language", "en") or "en"
        out = []
        for kind in RECEIVER_CONFIGS:
            for index, config in enumerate(getattr(receiver, f"{kind}_configs", None) or ()):
                out.append(Integration(name, f"{kind}[{index}]", kind, config, config.language or language, glob,
                                       getattr(receiver, "time_zone", "UTC") or "UTC"))
        return out
    raise KeyError(name)
