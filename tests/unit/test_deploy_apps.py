"""App definitions from config.yaml: defaults, validation errors, the shipped example."""
from __future__ import annotations

from pathlib import Path

import pytest

from console.config import ConfigError, load_config
from console.deploy.apps import Strategy, image_reference, parse_apps
from console.deploy.inventory import parse_inventory

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
    ({"web": app(colour="blue")}, "apps.web.target.colour: unknown key"),
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


@pytest.mark.parametrize("raw, message", [
    ({"web": {**app(), "timeout": float("nan")}}, "apps.web.timeout: must be a finite number, got nan"),
    ({"web": app(api_timeout=float("inf"))}, "apps.web.target.api_timeout: must be a finite number, got inf"),
    ({"web": {**app(), "health_check": {"interval": "1"}}},
     "apps.web.health_check.interval: expected a number of seconds, got '1'"),
    ({"web": app(replicas=2.0)}, "apps.web.target.replicas: must be a valid integer, got 2.0"),
    ({"web": app(restart=False)}, "apps.web.target.restart: must be 'no', 'on-failure', 'always' or 'unless-stopped'"),
    ({"web": app(tls={"client_cert": "/c.pem"}, engine="tcp://10.0.0.5:2376")},
     "apps.web.target.tls: client_cert and client_key go together"),
    ({"web": app(ports=[{"container": 80, "hostport": 8080}])}, "apps.web.target.ports[0]: unknown key(s) hostport"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["web"], "deploy_to": "/srv/x", "steps": [["make", "{nope}"]]}}},
     "apps.web.target.steps[0].run: unknown parameter {nope}"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["web"], "deploy_to": "/srv/x",
                                          "steps": [{"run": ["a"], "script": "b.sh"}]}}},
     "apps.web.target.steps[0]: give either run (an argv list) or script (a local file), not both"),
    ({"web": {"driver": "ssh", "target": {"hosts": [], "deploy_to": "/srv/x"}}},
     "apps.web.target.hosts: required (inventory host or group names)"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/srv/x", "batches": {"type": "percent",
                                                                                              "size": 150}}}},
     "apps.web.target.batches.size: must be a percentage from 1 to 100 with type percent, got 150"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/srv/x"}, "health_check": {"type": "docker"}}},
     "apps.web.health_check.type: 'docker' does not apply to the ssh driver"),
    ({"web": {"driver": "kubernetes", "target": {"image": "r/shop", "deployment": "Shop_1"}}},
     "apps.web.target.deployment: 'Shop_1' is not a Kubernetes name"),
    ({"web": {"driver": "kubernetes", "target": {"image": "r/shop", "in_cluster": True, "context": "prod"}}},
     "apps.web.target.in_cluster: cannot be combined with kubeconfig, kubeconfig_secret or context"),
    ({"web": {"driver": "kubernetes", "target": {"deployment": "shop"}}},
     "apps.web.target.image: required, an image repository without a tag, got ''"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "internal_timeout": 0}}},
     "apps.web.target.internal_timeout: must be greater than or equal to 0.1, got 0"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "command_timeout": "5m"}}},
     "apps.web.target.command_timeout: expected a number of seconds, got '5m'"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "health_timeout": float("inf")}}},
     "apps.web.target.health_timeout: must be a finite number, got inf"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "connect_timeout": 3600}}},
     "apps.web.target.connect_timeout: must be less than or equal to 600, got 3600"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "retry": {"attempts": 0}}}},
     "apps.web.target.retry.attempts: must be greater than or equal to 1, got 0"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "retry": {"tries": 2}}}},
     "apps.web.target.retry.tries: unknown key"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "min_free_disk_mb": -1}}},
     "apps.web.target.min_free_disk_mb: must be greater than or equal to 0, got -1"),
    ({"web": {"driver": "ssh", "target": {"hosts": ["a"], "deploy_to": "/x", "steps": [{"run": ["a"], "timeout": 0}]}}},
     "apps.web.target.steps[0].timeout: must be greater than or equal to 0.1, got 0"),
    ({"web": {"driver": "kubernetes", "target": {"image": "r/shop", "fail_on": ["OOMKilled"]}}},
     "apps.web.target.fail_on[0]: must be 'ImagePullBackOff'"),
])
def test_errors_name_the_key_path(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_apps(raw)
    assert message in str(info.value).splitlines()[0]


def test_every_problem_of_every_app_is_reported():
    with pytest.raises(ConfigError) as info:
        parse_apps({"web": app(replicas=-1, pull="sometimes"), "api": {**app(), "on_conflict": "wait"}})
    assert sorted(line.split(":")[0] for line in str(info.value).splitlines()) == [
        "apps.api.on_conflict", "apps.web.target.pull", "apps.web.target.replicas"]


def test_null_takes_the_default_and_defaults_follow_the_app_and_driver():
    web = parse_apps({"web_1": {**app(replicas=None, network="backend"), "health_check": None}})["web_1"]
    assert (web.target.replicas, web.target.name_prefix, web.target.network_alias) == (1, "web_1", "web_1")
    assert web.health_check.type == "docker"
    api = parse_apps({"api": {"driver": "ssh", "target": {"hosts": ["web"], "deploy_to": "/srv/api/",
                                                         "steps": [["make", "{version}"]],
                                                         "batches": {"type": "percent"}}}})["api"]
    assert api.health_check.type == "none" and api.target.batches.size == 25 and api.target.deploy_to == "/srv/api"
    assert api.target.steps[0].name == "make #1" and api.target.steps[0].argv == ("make", "{version}")
    # a step without its own timeout takes the target's command_timeout
    assert api.target.steps[0].timeout is None and api.target.command_timeout == 300.0
    assert (api.target.internal_timeout, api.target.health_timeout, api.target.connect_timeout) == (60.0, 300.0, 10.0)
    assert (api.target.retry.attempts, api.target.retry.backoff, api.target.min_free_disk_mb) == (3, 1.0, 100)
    shop = parse_apps({"shop_eu": {"driver": "kubernetes", "target": {"image": "r/shop"}}})["shop_eu"]
    assert shop.target.deployment == "shop-eu"


def test_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "fleetdeck.yaml"
    path.write_text("apps:\n  web:\n    target:\n      image: fleetdeck-test/web\n      replicas: -1\n"
                    "    strategy: {max_surge: lots}\n"
                    "inventory:\n  hosts:\n    web-1: {address: 10.0.0.1, port: 70000}\n")
    config = load_config(path, env={})
    with pytest.raises(ConfigError) as info:
        parse_apps(config.apps, config.source_of("apps"))
    assert str(info.value).splitlines() == [
        f"apps.web.target.replicas: must be greater than or equal to 0, got -1 (from {path} line 5)",
        f"apps.web.strategy.max_surge: expected a replica count >= 0 or a percentage like \"25%\", got 'lots' "
        f"(from {path} line 6)"]
    with pytest.raises(ConfigError, match=rf"^inventory\.hosts\.web-1\.port: must be less than or equal to 65535, "
                                          rf"got 70000 \(from {path} line 9\)$"):
        parse_inventory(config.inventory, config.source_of("inventory"))


@pytest.mark.parametrize("raw, message", [
    ({"hosts": {"web-1": {"address": "10.0.0.1", "colour": "blue"}}}, "inventory.hosts.web-1.colour: unknown key"),
    ({"hosts": {"web-1": {"name": "x"}}}, "web-1.name: unknown key"),
    ({"hosts": {"web 1": {}}}, "inventory.hosts.web 1: 'web 1' is not a host name"),
    ({"hosts": {"web-1": {}}, "groups": {"web-1": ["web-1"]}}, "'web-1' is not a group name (or is also a host name)"),
    ({"defaults": {"user": "Root!"}}, "inventory.defaults.user: 'Root!' is not a user name"),
    ({"defaults": {"key": "-----BEGIN"}}, "inventory.defaults.key: '-----BEGIN' is not a secret name"),
    ({"hosts": {"web-1": {"port": True}}}, "inventory.hosts.web-1.port: must be a valid integer"),
    ({"hosts": []}, "inventory.hosts: must be a valid dictionary"),
    ({"group": {}}, "inventory.group: unknown key"),
])
def test_inventory_errors_name_the_key_path(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_inventory(raw)
    assert message in str(info.value)


def test_inventory_hosts_take_the_defaults():
    inventory = parse_inventory({"defaults": {"user": "deploy", "port": 2222, "key": "k", "labels": {"dc": "a"}},
                                 "hosts": {"web-1": {"address": "10.0.0.11", "port": 22}, "web-2": None},
                                 "groups": {"web": ["web-1", "web-2"]}})
    one, two, other = inventory.resolve(["web", "db_1"])
    assert (one.address, one.port, one.user, one.key, one.labels) == ("10.0.0.11", 22, "deploy", "k", (("dc", "a"),))
    assert (two.name, two.address, two.port) == ("web-2", "web-2", 2222)
    assert (other.name, other.address, other.user) == ("db_1", "db_1", "deploy")


def test_deploy_modules_import_each_other_at_module_level_only():
    """apps -> targets -> schema, inventory -> schema: no import hidden in a function."""
    import ast

    for name in ("apps", "targets", "inventory", "schema"):
        tree = ast.parse((REPO / "console" / "deploy" / f"{name}.py").read_text())
        hidden = [node.lineno for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert hidden == [], f"console/deploy/{name}.py imports inside functions on lines {hidden}"
    targets = (REPO / "console" / "deploy" / "targets.py").read_text()
    assert "console.deploy.apps" not in targets
