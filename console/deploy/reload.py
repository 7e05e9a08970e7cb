"""Reading ``apps:`` again without a restart (SIGHUP, ``POST /-/reload``, ``POST
/api/v1/apps/reload``, ``fleetdeck apps reload``).

The whole configuration file is read and checked as at start-up; any problem refuses
the reload whole (ConfigError naming each key and its file and line) and the apps in
use stay. The deploy service then swaps its apps (DeployService.replace_apps).
"""
from __future__ import annotations

from console.config import Config, ConfigError, _read_file, file_where
from console.i18n import tx
from console.deploy.apps import AppDefinition, parse_apps
from console.maintenance.deploys import check_watch


def read_apps(config: Config) -> tuple[dict, dict[str, AppDefinition]]:
    """``(raw apps section, parsed apps)`` as ``config.path`` says now (without a file:
    the apps in memory). Blocking (reads the file); raises ConfigError."""
    if config.path is None:
        raw, source_of = dict(config.apps), None
    else:
        document = _read_file(config.path)
        section = document.data.get("apps")
        if section is not None and not isinstance(section, dict):
            raise ConfigError(tx("{key} ({source}): must be a mapping of app name to definition", key="apps",
                                 source=file_where(document, ("apps",))))
        raw = dict(section or {})

        def source_of(loc: tuple) -> str | None:
            return file_where(document, ("apps",) + tuple(loc))
    apps = parse_apps(raw, source_of)
    check_watch(config.alerting.deploy_watch, apps, config.source_of("alerting"))
    return raw, apps


__all__ = ["ConfigError", "read_apps"]
