"""Playwright's sync API for the browser test modules, importable without Playwright.

Without it the modules still import, and every browser test goes through
``need("browser", ...)`` (the autouse fixture in tests/browser/conftest.py and the
``browser`` fixture in tests/conftest.py): skipped, or failed when ``browser`` is named in
``FLEETDECK_REQUIRE``, instead of the whole module skipping at import.
"""
from __future__ import annotations

from typing import Any

try:
    from playwright.sync_api import Page, expect
    MISSING: str | None = None
except ImportError as exc:
    MISSING = f"playwright is not installed ({exc})"
    Page = Any  # type: ignore[misc,assignment]

    def expect(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        raise RuntimeError(MISSING)

__all__ = ["MISSING", "Page", "expect"]
