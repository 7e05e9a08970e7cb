"""The admin pages in a real headless Chromium against a real console: users created,
re-roled, disabled and given a new password; tokens created (shown once, working) and
revoked (refused at once); an enrolment token an agent can trade; secrets listed by name
and kind, never by value; the effective settings with their sources. Every action goes
through the admin API, so each lands in the audit log; the pages fit a 390 px phone."""
from __future__ import annotations

import secrets

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import NETWORK_CHANGED, log_in
from tests.harness import ConsoleHarness, CookieSession


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    harness = ConsoleHarness(tmp_path_factory.mktemp("admin-pages")).start()
    yield harness
    harness.close()


class Dialogs:
    """Accepts every confirm (and answers prompts with ``answer``), recording each message;
    collects console errors and uncaught exceptions."""

    def __init__(self, page) -> None:  # noqa: ANN001
        self.messages: list[str] = []
        self.errors: list[str] = []
        self.answer = ""
        page.on("dialog", self._dialog)
        page.on("console", lambda msg: self.errors.append(msg.text)
                if msg.type == "error" and NETWORK_CHANGED not in msg.text else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog) -> None:  # noqa: ANN001
        self.messages.append(dialog.message)
        dialog.accept(self.answer) if dialog.type == "prompt" else dialog.accept()


def users(console) -> dict:  # noqa: ANN001
    resp = console.request("GET", "/api/v1/users", token=console.api_token("admin"))
    return {u["username"]: u for u in resp.json()["users"]}


def test_users_are_created_re_roled_disabled_and_given_a_new_password(console, page):  # noqa: ANN001
    dialogs = Dialogs(page)
    name = f"ops-{secrets.token_hex(3)}"
    log_in(page, console)
    page.goto(console.url + "/users")
    page.fill("#user-name", name)
    page.fill("#user-password", "first-password-1")
    page.select_option("#user-role", "deployer")
    page.fill("#user-apps", "shop, blog")
    page.click("#create-user")
    row = page.locator(f'#users-table tr[data-user="{name}"]')
    expect(row.locator("td").nth(2)).to_have_text("blog, shop")  # sorted, as stored
    assert users(console)[name] | {"created_at": 0} == {"username": name, "role": "deployer",
                                                        "apps": ["blog", "shop"], "disabled": False,
                                                        "created_at": 0}
    row.locator(".user-role-select").select_option("viewer")
    expect(row.locator("td").nth(2)).to_have_text("all")
    assert users(console)[name]["role"] == "viewer"
    row.locator(".user-toggle").click()
    expect(row.locator("td").nth(3)).to_have_text("disabled")
    assert users(console)[name]["disabled"] is True
    assert CookieSession(console.url).login(name, "first-password-1").status == 401
    row.locator(".user-toggle").click()
    expect(row.locator("td").nth(3)).to_have_text("active")
    dialogs.answer = "second-password-2"
    row.locator(".user-password").click()
    expect(page.locator("#admin-message")).to_have_text(f"Password of {name} changed.")
    assert CookieSession(console.url).login(name, "first-password-1").status == 401
    assert CookieSession(console.url).login(name, "second-password-2").status == 302
    # A refused change shows the API's message and changes nothing.
    page.fill("#user-name", name)
    page.fill("#user-password", "another-password-3")
    page.click("#create-user")
    expect(page.locator("#admin-form-error")).to_contain_text("409")
    row.locator(".user-delete").click()
    expect(row).to_have_count(0)
    assert name not in users(console)
    assert any(m.startswith(f"Delete user {name}?") for m in dialogs.messages)
    assert any(m.startswith(f"Change the role of {name} to viewer") for m in dialogs.messages)
    actions = [e["action"] for e in console.request("GET", "/api/v1/audit?limit=50",
                                                      token=console.api_token("admin")).json()["entries"]
               if e["target"] == f"user:{name}"]
    assert {"user.create", "user.update", "user.delete"} <= set(actions), actions
    # The browser logs the refused request itself; nothing else went wrong.
    assert dialogs.errors == ["Failed to load resource: the server responded with a status of 409 (Conflict)"]


def test_a_new_token_is_shown_once_works_and_stops_working_when_revoked(console, page):  # noqa: ANN001
    dialogs = Dialogs(page)
    name = f"grafana-{secrets.token_hex(3)}"
    log_in(page, console)
    page.goto(console.url + "/tokens")
    expect(page.locator("#token-host")).to_be_hidden()
    page.fill("#token-name", name)
    page.select_option("#token-role", "viewer")
    page.click("#create-token")
    expect(page.locator("#token-secret")).to_be_visible()
    value = page.locator("#token-value").text_content()
    assert value and console.request("GET", "/api/v1/me", token=value).json()["name"] == name
    row = page.locator("#tokens-table tr", has_text=name)
    expect(row.locator("td").nth(7)).to_have_text("active")
    page.reload()
    assert name not in (page.locator("#token-value").text_content() or "")  # shown once
    assert value not in page.content()
    page.locator("#tokens-table tr", has_text=name).locator(".token-revoke").click()
    expect(page.locator("#tokens-table tr", has_text=name)).to_have_count(0)
    assert console.request("GET", "/api/v1/me", token=value).status == 401
    page.check("#show-revoked")
    expect(page.locator("#tokens-table tr", has_text=name).locator("td").nth(7)).to_contain_text("revoked")
    # An enrolment token for one host, traded by an agent for its own token.
    host = f"enrol-{secrets.token_hex(3)}"
    page.select_option("#token-kind", "enrol")
    expect(page.locator("#token-name")).to_be_hidden()
    page.fill("#token-host", host)
    page.click("#create-token")
    expect(page.locator("#token-secret")).to_be_visible()
    enrol = page.locator("#token-value").text_content()
    answer = console.request("POST", "/api/v1/enrol", {"enrol_token": enrol, "host": host})
    assert answer.status == 201 and answer.json()["host"] == host
    assert dialogs.errors == []


def test_secrets_are_listed_by_name_and_kind_never_by_value(console, page):  # noqa: ANN001
    dialogs = Dialogs(page)
    name = f"hook-{secrets.token_hex(3)}"
    value = f"https://hooks.example.invalid/{secrets.token_hex(8)}"
    log_in(page, console)
    page.goto(console.url + "/secrets")
    page.fill("#secret-name", name)
    page.select_option("#secret-kind", "webhook_url")
    page.fill("#secret-value", value)
    page.click("#save-secret")
    row = page.locator(f'#secrets-table tr[data-secret="{name}"]')
    expect(row.locator("td").nth(1)).to_have_text("webhook_url")
    expect(row.locator("td").nth(3)).to_have_text(f"user:{console.admin_user}")
    page.reload()
    expect(row).to_have_count(1)
    assert value not in page.content()
    # Saving the name again replaces the value, after a confirmation.
    page.fill("#secret-name", name)
    page.fill("#secret-value", value + "/2")
    page.click("#save-secret")
    expect(page.locator("#admin-message")).to_have_text(f"Secret {name} saved.")
    assert dialogs.messages[-1] == f"Replace the value of secret {name}?"
    assert console.services.db.run(console.services.secrets.reveal, name) == value + "/2"
    row.locator(".secret-delete").click()
    expect(row).to_have_count(0)
    listed = console.request("GET", "/api/v1/secrets", token=console.api_token("admin")).json()["secrets"]
    assert name not in [s["name"] for s in listed]
    assert dialogs.errors == []


def test_settings_show_each_value_with_its_source(console, page):  # noqa: ANN001
    dialogs = Dialogs(page)
    log_in(page, console)
    page.goto(console.url + "/settings")
    data_dir = page.locator('#settings-table tr[data-key="data_dir"] td')
    expect(data_dir).to_have_text(["data_dir", console.config.console.data_dir, "./var",
                                   "environment FLEETDECK_DATA_DIR"])
    expect(page.locator('#settings-table tr[data-key="ingest_rate_per_host"] td').nth(3)).to_have_text(
        "command-line flag --ingest-rate-per-host")
    expect(page.locator('#settings-table tr[data-key="session_days"] td')).to_have_text(
        ["session_days", "7", "7", "default"])
    expect(page.locator("#settings-file")).to_have_text("none (defaults and environment)")
    expect(page.locator('#sections-table tr td').first).to_have_text("apps:")
    assert dialogs.errors == []


def test_admin_pages_refuse_viewers_and_fit_a_phone(console, browser):  # noqa: ANN001
    viewer = CookieSession(console.url)
    name = f"view-{secrets.token_hex(3)}"
    console.services.db.run(console.services.users.create, name, "viewer-password-1", "viewer")
    assert viewer.login(name, "viewer-password-1").status == 302
    for path in ("/users", "/tokens", "/secrets", "/settings", "/api/v1/settings"):
        assert viewer.request("GET", path).status == 403, path
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        log_in(page, console)
        for path in ("/users", "/tokens", "/secrets", "/settings"):
            page.goto(console.url + path)
            expect(page.locator("table.data-table tbody tr").first).not_to_have_text("Loading…")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
    finally:
        context.close()
