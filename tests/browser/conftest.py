"""The headless Chromium page every browser test starts from (the ``browser`` fixture is
in tests/conftest.py): a fresh context, a desktop viewport and a default timeout a
module may raise by overriding ``page_timeout_ms``."""
from __future__ import annotations

import pytest

from tests.browser.playwright_api import MISSING
from tests.conftest import need


@pytest.fixture(autouse=True)
def _playwright() -> None:
    """Every browser test needs Playwright: skip, or fail when the browser is required."""
    if MISSING:
        need("browser", MISSING)


@pytest.fixture
def page_timeout_ms() -> int:
    return 15_000


@pytest.fixture
def page(browser, page_timeout_ms):  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(page_timeout_ms)
    pg = context.new_page()
    yield pg
    context.close()
