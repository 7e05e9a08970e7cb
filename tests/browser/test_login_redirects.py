"""Login in real Chromium: the form carries its _xsrf token and works, and a ``next``
target that a browser would follow to another host (tabs and newlines it drops,
backslashes it reads as slashes, schemes, ``//host``) ends on the console instead."""
from __future__ import annotations

import urllib.parse

import pytest

HOSTILE_NEXT = ["/\t/evil.example/phish", "/\n/evil.example/phish", "//evil.example/phish", "///evil.example/phish",
                "/\\evil.example/phish", "\\\\evil.example/phish", "https://evil.example/phish",
                "\t//evil.example/phish", "javascript:document.title='pwned'", "http:evil.example/phish"]


def log_in_with_next(browser, console, next_value: str) -> tuple[str, list[str]]:  # noqa: ANN001
    """Open /login?next=..., submit the form, and return the final URL and every URL the
    page asked for off the console (each refused, so nothing leaves the machine)."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    elsewhere: list[str] = []

    def guard(route) -> None:  # noqa: ANN001
        if route.request.url.startswith(console.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", guard)
        page = context.new_page()
        page.goto(console.url + "/login?next=" + urllib.parse.quote(next_value, safe=""))
        assert page.locator("input[name=_xsrf]").count() == 1
        page.fill("#username", console.admin_user)
        page.fill("#password", console.admin_password)
        with page.expect_navigation():
            page.click("#login-submit")
        page.wait_for_load_state("load")
        return page.url, elsewhere
    finally:
        context.close()


@pytest.mark.parametrize("next_value", HOSTILE_NEXT)
def test_login_never_redirects_off_the_console(console, browser, next_value):  # noqa: ANN001
    url, elsewhere = log_in_with_next(browser, console, next_value)
    assert elsewhere == [] and url == console.url + "/", (url, elsewhere)


def test_login_follows_a_next_path_on_the_console(console, browser):  # noqa: ANN001
    url, elsewhere = log_in_with_next(browser, console, "/logs?q=error%20timeout&host=web-1")
    assert elsewhere == [] and url == console.url + "/logs?q=error%20timeout&host=web-1"
