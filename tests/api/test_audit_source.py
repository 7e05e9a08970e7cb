"""Behind a trusted reverse proxy, the audit log's ``source`` of a deploy and of a
maintenance window change is the client its X-Forwarded-For names (``client_ip``), as for
logins and every other audited change (docs/security.md), not the proxy's address."""
from __future__ import annotations

from tests.api.test_deploys_api import APPS
from tests.api.test_maintenance import PATH, window
from tests.harness import ConsoleHarness

CLIENT = "203.0.113.7"


def test_deploy_and_window_changes_behind_a_trusted_proxy_name_the_client(tmp_path):
    console = ConsoleHarness(tmp_path, apps=APPS, trusted_proxies="127.0.0.1").start()
    try:
        deployer = console.api_token("deployer", "ci")
        via_proxy = {"X-Forwarded-For": f"{CLIENT}, 127.0.0.1"}  # the right-most untrusted hop is the client
        created = console.request("POST", PATH, window("audit-source"), token=deployer, headers=via_proxy)
        assert created.status == 201, created.body
        deleted = console.request("DELETE", f"{PATH}/audit-source", token=deployer, headers=via_proxy)
        assert deleted.status == 200, deleted.body
        deploy = console.request("POST", "/api/v1/apps/web/deploys", {"version": "1.0"}, token=deployer,
                                 headers=via_proxy)
        assert deploy.status == 202, deploy.body

        entries = console.services.db.run(console.services.audit.entries, 50)
        sources = {e["action"]: e["source"] for e in entries
                   if e["action"] in ("maintenance.create", "maintenance.delete", "deploy.create")}
        assert sources == {"maintenance.create": CLIENT, "maintenance.delete": CLIENT, "deploy.create": CLIENT}
    finally:
        console.close()
