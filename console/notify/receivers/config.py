"""The configuration of each receiver integration type, in Alertmanager's shape
(``<type>_configs`` lists under a receiver; prometheus/alertmanager ``config/notifiers.go``).
``RECEIVER_CONFIGS`` maps the type (``webhook`` for ``webhook_configs``) to its model."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IntegrationConfig(BaseModel):
    """Fields every integration has. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    send_resolved: bool = True


class WebhookConfig(IntegrationConfig):
    """``webhook_configs``: POST the version-4 JSON payload to ``url``; ``max_alerts``
    0 sends all (the rest counted in ``truncatedAlerts``)."""

    url: str
    max_alerts: int = Field(0, ge=0)


RECEIVER_CONFIGS: dict[str, type[IntegrationConfig]] = {"webhook": WebhookConfig}
