"""Hostile strings render as text in real Chromium under the production CSP: a failed
login's user name and a deploy reason in the audit page, labels and log-ish values on
the host pages, and a hostile host name in a URL."""
from __future__ import annotations

import time
import urllib.parse

import pytest

XSS = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'


@pytest.fixture
def page(browser):  # noqa: ANN001
    context = browser.new_context()
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: (errors.append(d.message), d.dismiss()))
    pg.errors = errors
    yield pg
    context.close()


def log_in(page, console) -> None:  # noqa: ANN001
    page.goto(console.url + "/login")
    page.fill("#username", console.admin_user)
    page.fill("#password", console.admin_password)
    page.click("#login-submit")
    page.wait_for_url(console.url + "/")


def test_audit_page_shows_hostile_strings_as_text(console, page):  # noqa: ANN001
    page.goto(console.url + "/login")
    page.fill("#username", XSS)
    page.fill("#password", "wrong-password-1")
    page.click("#login-submit")
    services = console.services
    services.db.run(services.audit.record, "user:admin", "deploy.create", "app:web",
                    {"version": "1.2", "reason": XSS}, "127.0.0.1")
    log_in(page, console)
    page.click("#nav-audit")
    page.wait_for_selector("#audit-table")
    assert page.locator(".audit-target", has_text="onerror").count() >= 1
    assert XSS[:40] in page.inner_text("#audit-table")
    assert page.locator("#audit-table img, #audit-table script").count() == 0
    assert page.title() != "pwned" and page.errors == []


def test_host_labels_and_hostile_host_url_render_as_text(console, page):  # noqa: ANN001
    token = console.agent_token("xss-host")
    now_ms = int(time.time() * 1000)
    status, _ = console.push("xss-host", token, [{"name": "node_load1", "type": "gauge", "labels": {"note": XSS},
                                                  "points": [[now_ms, 1.0]]}],
                             logs=[{"ts": now_ms, "source": XSS, "line": XSS, "labels": {}}])
    assert status == 200
    log_in(page, console)
    page.goto(console.url + "/hosts/xss-host")
    page.wait_for_load_state("networkidle")
    page.goto(console.url + "/hosts/" + urllib.parse.quote(XSS, safe=""))
    page.wait_for_load_state("networkidle")
    assert page.locator("main img[src='x'], main script").count() == 0
    assert page.title() != "pwned" and page.errors == []
