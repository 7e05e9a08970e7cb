"""Pluggable collectors and the name -> class mapping used by the agent.

Collector modules are imported only when their name is requested, so that an
optional collector's library (docker, a Prometheus parser, ...) is loaded only
on hosts that enable it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from collectors.base import Collector, Sample

__all__ = ["Collector", "Sample", "build_collectors", "available_collectors"]

# name -> "module:Class"; strings keep the imports lazy. Read-only on purpose.
_COLLECTOR_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "host": "collectors.host:HostCollector",
        "prometheus": "collectors.prometheus:PrometheusCollector",
        "textfile": "collectors.textfile:TextfileCollector",
    }
)


def available_collectors() -> list[str]:
    """Names accepted by :func:`build_collectors`, sorted."""
    return sorted(_COLLECTOR_PATHS)


def _load_class(name: str) -> type[Collector]:
    module_name, _, class_name = _COLLECTOR_PATHS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def option_problem(name: str, option: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the option ``option`` of collector ``name`` (a key of
    ``collector_options.<name>``), as a phrase to follow the key; None when nothing, and for
    a collector without options of that kind (``prometheus`` and ``textfile`` have sections
    of their own) or an unknown one (refused by name elsewhere). The collector's module
    holds the check (``option_problem(option, value)``), so its constructor and the agent's
    configuration refuse the same values."""
    if name not in _COLLECTOR_PATHS:
        return None
    module = importlib.import_module(_COLLECTOR_PATHS[name].partition(":")[0])
    check = getattr(module, "option_problem", None)
    return check(option, value) if check is not None else None


def build_collectors(names: list[str], options: dict[str, dict[str, Any]] | None = None) -> list[Collector]:
    """Instantiate the collectors called ``names``, in that order.

    ``options`` maps a collector name to the keyword arguments of its class,
    e.g. ``{"host": {"proc_root": "/host/proc", "sys_root": "/host/sys"}}``.

    Raises ``ValueError`` for an unknown or duplicated name, for options given
    for a collector that is not enabled, and for options the collector class
    does not accept (the message names the collector).
    """
    options = options or {}
    unknown = [n for n in names if n not in _COLLECTOR_PATHS]
    if unknown:
        raise ValueError(
            f"unknown collector {unknown[0]!r}; available: {', '.join(available_collectors())}"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"collector {duplicates[0]!r} is listed more than once")
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"options given for collector {stray[0]!r}, which is not enabled")

    built: list[Collector] = []
    for name in names:
        opts = options.get(name) or {}
        if not isinstance(opts, dict):
            raise ValueError(f"options for collector {name!r} must be a mapping, got {type(opts).__name__}")
        cls = _load_class(name)
        try:
            built.append(cls(**opts))
        except TypeError as exc:
            raise ValueError(f"invalid options for collector {name!r}: {exc}") from exc
    return built
