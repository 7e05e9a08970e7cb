"""The ``approval:`` and ``environments:`` keys of an app are validated; a bad one
refuses the configuration naming the key (docs/deploys.md, "Approvals and environments")."""
from __future__ import annotations

import pytest

from console.config import ConfigError
from console.deploy.apps import parse_apps
from console.deploy.environments import lanes_of

IMAGE = {"image": "registry.example.com/shop"}


def test_environments_get_their_own_target_approval_and_driver_name():
    apps = parse_apps({"shop": {"approval": {"approver_role": "deployer", "timeout": 60},
                                "strategy": {"type": "recreate"},
                                "environments": {"staging": {"target": IMAGE, "approval": {"required": False}},
                                                 "production": {"target": {**IMAGE, "replicas": 3},
                                                                "hosts": ["web-1"]}}},
                       "plain": {"target": IMAGE}})
    lanes = lanes_of(apps)
    assert sorted(lanes) == ["plain", "shop-production", "shop-staging"]
    assert lanes["shop-staging"].approval is None
    production = lanes["shop-production"]
    assert (production.app, production.environment) == ("shop", "production")
    assert production.approval is not None and production.approval.approver_role == "deployer"
    assert production.definition.target.replicas == 3 and production.definition.target.name_prefix == "shop-production"
    assert production.definition.strategy.type == "recreate"
    assert apps["shop"].hosts == ("web-1",) and apps["shop"].target is None
    assert lanes["plain"].approval is None and lanes["plain"].environment is None


@pytest.mark.parametrize("raw, message", [
    ({"shop": {"target": IMAGE, "approval": {"approver_role": "viewer"}}},
     "apps.shop.approval.approver_role: must be 'deployer' or 'admin', got 'viewer'"),
    ({"shop": {"target": IMAGE, "approval": {"timeout": 0}}},
     "apps.shop.approval.timeout: must be greater than or equal to 1"),
    ({"shop": {"target": IMAGE, "approval": {"required": "yes"}}}, "apps.shop.approval.required"),
    ({"shop": {"target": IMAGE, "approval": {"approvers": 2}}}, "apps.shop.approval.approvers"),
    ({"shop": {"target": IMAGE, "environments": {"staging": {"target": IMAGE}}}},
     "apps.shop.target: an app with environments has no target of its own"),
    ({"shop": {"environments": {"Staging": {"target": IMAGE}}}}, "environment name 'Staging' must match"),
    ({"shop": {"environments": {"staging": {}}}}, "apps.shop.environments.staging.target: required"),
    ({"shop": {"environments": {"staging": {"target": IMAGE, "replicas": 2}}}},
     "apps.shop.environments.staging.replicas: unknown key"),
    ({"shop": {"environments": {"staging": {"target": {**IMAGE, "replicas": -1}}}}},
     "apps.shop.environments.staging.target.replicas: must be greater than or equal to 0"),
    ({"shop": {"environments": []}}, "apps.shop.environments: expected a mapping"),
    ({"shop": {"environments": {"a": {"target": IMAGE}}}, "shop-a": {"target": IMAGE}},
     "apps.shop.environments.a: its containers are named shop-a, as the app shop-a"),
])
def test_bad_approval_or_environments_name_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_apps(raw)
    assert message in str(info.value)
