"""config.yaml documents every console option with its default; precedence and errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from console.config import ConfigError, ConsoleConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def test_config_yaml_documents_every_console_option_with_its_default():
    document = yaml.safe_load((REPO / "config.yaml").read_text())
    fields = {f.name: f.default for f in dataclasses.fields(ConsoleConfig)}
    assert set(document["console"]) == set(fields)
    for name, default in fields.items():
        assert document["console"][name] == default, name
    text = (REPO / "config.yaml").read_text()
    for name in fields:
        assert f"FLEETDECK_{name.upper()}" in text, f"env variable of {name} undocumented"


def test_the_shipped_file_loads_to_the_defaults():
    assert load_config(REPO / "config.yaml", env={}).console == ConsoleConfig()


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  listen: 0.0.0.0:9000\n  max_body_bytes: 100\n")
    config = load_config(path, env={"FLEETDECK_LISTEN": "127.0.0.1:9100"})
    assert config.console.listen == "127.0.0.1:9100"
    assert config.console.max_body_bytes == 100
    config = load_config(path, env={"FLEETDECK_LISTEN": "127.0.0.1:9100"}, overrides={"listen": "127.0.0.1:9200"})
    assert config.console.listen == "127.0.0.1:9200"


@pytest.mark.parametrize("text, message", [
    ("console:\n  nope: 1\n", "unknown key"),
    ("consol: {}\n", "unknown top-level"),
    ("console:\n  max_body_bytes: lots\n", "expected int"),
    ("console:\n  listen: nowhere\n", "HOST:PORT"),
    ("- a list\n", "mapping"),
])
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env={})


@pytest.mark.parametrize("raw", ["0", "-5", "86401", "nan"])
def test_clock_skew_max_seconds_is_range_checked(raw):
    with pytest.raises(ConfigError, match=r"clock_skew_max_seconds must be in \(0, 86400\]"):
        load_config(env={"FLEETDECK_CLOCK_SKEW_MAX_SECONDS": raw})
    assert load_config(env={"FLEETDECK_CLOCK_SKEW_MAX_SECONDS": "120"}).console.clock_skew_max_seconds == 120.0
