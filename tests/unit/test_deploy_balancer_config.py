"""``load_balancer:`` of an app: the keys of each type, refusals naming the key path."""
from __future__ import annotations

import pytest

from console.config import ConfigError
from console.deploy.apps import parse_apps

HAPROXY = {"type": "haproxy", "socket": "/run/haproxy/admin.sock", "backend": "web", "server_prefix": "web"}
NGINX = {"type": "nginx", "upstream_file": "/etc/nginx/conf.d/web-upstream.conf", "upstream": "web"}


def app(lb, **extra) -> dict:
    return {"web": {"target": {"image": "fleetdeck-test/web", "ports": ["127.0.0.1:8080-8081:80"]},
                    "health_check": {"type": "http", "port": 80}, "load_balancer": lb, **extra}}


def test_defaults_of_each_type():
    h = parse_apps(app(HAPROXY))["web"].load_balancer
    assert (h.type, h.socket, h.backend, h.server_prefix, h.drain_timeout, h.api_timeout) == (
        "haproxy", "/run/haproxy/admin.sock", "web", "web", 30.0, 5.0)
    n = parse_apps(app({**NGINX, "reload_command": ["nginx", "-s", "reload"]}))["web"].load_balancer
    assert (n.pid_file, n.reload_command, n.reload_timeout) == ("/run/nginx.pid", ("nginx", "-s", "reload"), 10.0)
    assert parse_apps(app(None))["web"].load_balancer is None
    assert parse_apps(app(None))["web"].summary()["load_balancer"] is None
    assert parse_apps(app(NGINX))["web"].summary()["load_balancer"] == {
        "type": "nginx", "upstream_file": "/etc/nginx/conf.d/web-upstream.conf", "upstream": "web"}
    assert parse_apps(app({**HAPROXY, "socket": "127.0.0.1:9999"}))["web"].load_balancer.socket == "127.0.0.1:9999"


@pytest.mark.parametrize("lb, extra, message", [
    ({**HAPROXY, "servers": 4}, {}, "apps.web.load_balancer.servers: unknown key"),
    ({**HAPROXY, "upstream": "web"}, {}, "apps.web.load_balancer.upstream: applies to type nginx only"),
    ({**NGINX, "socket": "/x.sock"}, {}, "apps.web.load_balancer.socket: applies to type haproxy only"),
    ({"type": "haproxy", "socket": "/x.sock", "backend": "web"}, {},
     "apps.web.load_balancer.server_prefix: required for type haproxy"),
    ({"type": "nginx", "upstream": "web"}, {}, "apps.web.load_balancer.upstream_file: required for type nginx"),
    ({"type": "f5"}, {}, "apps.web.load_balancer.type: must be 'haproxy' or 'nginx'"),
    ({**NGINX, "upstream_file": "conf.d/web.conf"}, {}, "apps.web.load_balancer.upstream_file: expected an absolute"),
    ({**HAPROXY, "backend": "web app"}, {}, "apps.web.load_balancer.backend: expected an HAProxy name"),
    ({**HAPROXY, "socket": "localhost"}, {}, "apps.web.load_balancer.socket: expected a unix socket path or HOST:PORT"),
    ({**HAPROXY, "drain_timeout": -1}, {}, "apps.web.load_balancer.drain_timeout: must be greater than or equal to 0"),
    ({**NGINX, "reload_command": "nginx -s reload"}, {}, "apps.web.load_balancer.reload_command: must be a list"),
    (HAPROXY, {"health_check": {"type": "docker"}},
     "apps.web.load_balancer.port: required: the container port the balancer sends traffic to"),
])
def test_refusals_name_the_key(lb, extra, message):
    with pytest.raises(ConfigError) as info:
        parse_apps(app(lb, **extra))
    assert message in str(info.value).splitlines()[0]


def test_only_docker_apps_drive_a_balancer():
    raw = {"web": {"driver": "ssh", "target": {"hosts": ["web-1"], "deploy_to": "/srv/web"}, "load_balancer": NGINX}}
    with pytest.raises(ConfigError) as info:
        parse_apps(raw)
    assert "apps.web.load_balancer: only Docker apps drive a load balancer" in str(info.value)
