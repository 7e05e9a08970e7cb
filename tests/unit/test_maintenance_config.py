"""``alerting.deploy_settle`` and ``alerting.deploy_watch`` are validated at load, naming
the key and its line; a watch of an app that is not configured refuses to start."""
from __future__ import annotations

import pytest

from console.config import ConfigError, load_config
from console.services import build_services


def load(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path=str(path), env={"FLEETDECK_DATA_DIR": str(tmp_path / "data")}, overrides={}), path


def test_a_valid_watch_loads_with_durations_in_seconds(tmp_path):
    config, _ = load(tmp_path, """alerting:
  deploy_settle: 2m
  deploy_watch:
    web:
      window: 15m
      signals:
        - {name: error_rate, expr: 'sum(rate(http_errors_total{app="web"}[1m]))', ratio: 0.5}
        - {name: restarts, expr: sum(app_restarts), absolute: 1}
""")
    watch = config.alerting.deploy_watch["web"]
    assert (config.alerting.deploy_settle, watch.window) == (120.0, 900.0)
    assert [(s.name, s.ratio, s.absolute) for s in watch.signals] == [("error_rate", 0.5, None), ("restarts", None, 1.0)]


@pytest.mark.parametrize(("body", "message"), [
    ("  deploy_settle: -5\n", "alerting.deploy_settle: must be greater than or equal to 0"),
    ("  deploy_settle: soon\n", "alerting.deploy_settle: must be seconds or a duration"),
    ("  deploy_watch:\n    web:\n      signals:\n        - {name: e, expr: 'sum((', ratio: 1}\n",
     "alerting.deploy_watch.web.signals[0].expr: not a PromQL expression"),
    ("  deploy_watch:\n    web:\n      signals:\n        - {name: e, expr: up}\n",
     "give ratio (a relative increase"),
    ("  deploy_watch:\n    web:\n      signals: []\n", "alerting.deploy_watch.web.signals"),
    ("  deploy_watch:\n    web:\n      signals:\n        - {name: e, expr: up, ratio: 1, colour: red}\n",
     "alerting.deploy_watch.web.signals[0].colour: unknown key"),
])
def test_bad_deploy_settings_refuse_to_load_naming_the_key_and_line(tmp_path, body, message):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "alerting:\n" + body)
    assert message in str(caught.value)
    assert "c.yaml line" in str(caught.value)


def test_a_watch_of_an_app_that_is_not_configured_refuses_to_start(tmp_path):
    config, path = load(tmp_path, """apps:
  web:
    driver: docker
    target: {image: registry.example.com/web}
alerting:
  deploy_watch:
    shop:
      signals: [{name: e, expr: up, ratio: 1}]
""")
    with pytest.raises(ConfigError) as caught:
        build_services(config)
    assert str(caught.value) == f"alerting.deploy_watch.shop: no app 'shop' in the apps: section ({path} line 7)"
