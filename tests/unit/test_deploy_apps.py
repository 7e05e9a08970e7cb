"""App definitions from config.yaml: defaults, validation errors, the shipped example."""
from __future__ import annotations

from pathlib import Path

import pytest

from console.config import ConfigError, load_config
from console.deploy.apps import Strategy, image_reference, parse_apps

REPO = Path(__file__).resolve().parents[2]


def app(**target) -> dict:
    return {"target": {"image": "fleetdeck-test/web", **target}}


def test_defaults():
    web = parse_apps({"web": app()})["web"]
    assert web.driver == "docker" and web.target.engine == "unix:///var/run/docker.sock"
    assert web.target.replicas == 1 and web.target.name_prefix == "web" and web.target.restart == "unless-stopped"
    assert web.health_check.type == "docker" and web.strategy == Strategy("rolling", 0, 1)
    assert web.timeout == 600.0 and web.on_conflict == "reject"


def test_ports_short_and_long_forms():
    web = parse_apps({"web": app(replicas=2, ports=["127.0.0.1:8080-8082:80", {"container": 53, "protocol": "udp"},
                                                    {"container": 9000, "host": "9100-9103"}])})["web"]
    p = web.target.ports
    assert (p[0].host_ip, p[0].host_first, p[0].host_last, p[0].container) == ("127.0.0.1", 8080, 8082, 80)
    assert not p[1].published and p[1].protocol == "udp"
    assert web.target.slots == 3


def test_percentages_resolve_like_kubernetes():
    assert Strategy("rolling", "25%", "25%").resolve(10) == (2, 3)


@pytest.mark.parametrize("raw, message", [
    ({"Web": app()}, "app name 'Web'"),
    ({"web": {}}, "apps.web.target: required"),
    ({"web": app(image="nginx:1.25")}, "is not an image repository"),
    ({"web": app(image="x;rm -rf /")}, "is not an image repository"),
    ({"web": app(replicas=-1)}, "apps.web.target.replicas"),
    ({"web": app(ports=["80:80"], replicas=2)}, "need 3 host ports"),
    ({"web": app(ports=["nonsense"])}, "apps.web.target.ports[0]"),
    ({"web": app(volumes=["/data"])}, "SOURCE:TARGET"),
    ({"web": app(env={"BAD-NAME": "x"})}, "not a valid variable name"),
    ({"web": app(labels={"fleetdeck.app": "x"})}, "reserved"),
    ({"web": app(engine="ftp://x")}, "apps.web.target.engine"),
    ({"web": app(tls={"ca_cert": "/ca.pem"})}, "TLS applies to tcp://"),
    ({"web": app(colour="blue")}, "unknown key(s) colour"),
    ({"web": {**app(), "strategy": {"max_surge": 0, "max_unavailable": 0}}}, "cannot both be 0"),
    ({"web": {**app(), "strategy": {"max_surge": "150%"}}}, "percentage"),
    ({"web": {**app(), "health_check": {"type": "http"}}}, "required for http health checks"),
    ({"web": {**app(engine="tcp://10.0.0.5:2376"), "health_check": {"type": "tcp", "port": 80}}},
     "must be published"),
    ({"web": {**app(), "on_conflict": "wait"}}, "apps.web.on_conflict"),
])
def test_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_apps(raw)
    assert message in str(info.value)


def test_image_reference_tags_and_digests():
    assert image_reference("registry:5000/team/web", "1.4.2") == "registry:5000/team/web:1.4.2"
    digest = "sha256:" + "a" * 64
    assert image_reference("web", digest) == f"web@{digest}"
    with pytest.raises(ValueError):
        image_reference("web", "$(id)")


def test_the_shipped_config_yaml_documents_an_app_that_parses():
    import yaml

    config = load_config(REPO / "config.yaml", env={})
    assert parse_apps(config.apps) == {}  # the example is commented out
    block = (REPO / "config.yaml").read_text().split("\napps: {}\n", 1)[1].split("\n\n", 1)[0]
    example = "\n".join(line[1:] for line in block.splitlines())
    web = parse_apps(yaml.safe_load(example))["web"]
    assert web.target.replicas == 3 and web.health_check.type == "http"
    for option in ("engine", "tls", "image", "replicas", "name_prefix", "ports", "env", "volumes", "network",
                   "network_alias", "command", "labels", "restart", "stop_timeout", "pull", "api_timeout",
                   "health_host", "health_check", "path", "expect_status", "interval", "retries",
                   "start_period", "strategy", "max_unavailable", "max_surge", "timeout", "on_conflict", "hosts"):
        assert f"{option}:" in example, f"config.yaml does not document {option}"
