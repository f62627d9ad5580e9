"""Browser fixtures for the H5 pages: Playwright driving Debian's chromium (`/usr/bin/chromium`,
or $CHROMIUM; a browser is never downloaded) against the app served over real HTTP, with the
sandbox playing WeCom's authorize page. Without chromium the tests are skipped outside CI;
with CI=true they fail, as a missing MariaDB or Redis does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.live import live_app

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _browser_problem() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[dev]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium; `make test` does it)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    problem = _browser_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true but the browser tests cannot run: {problem}", pytrace=False)
        pytest.skip(f"needs chromium: {problem} (runs in CI)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def live(app: Any, monkeypatch: Any) -> Iterator[str]:
    """The app on 127.0.0.1; the WeCom cards it sends link here."""
    with live_app(app) as base:
        monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", base)
        yield base


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A new phone-sized browser (its own sessionStorage), as a WeCom WebView opening a card;
    `phone()` opens another one."""
    contexts: list[Any] = []

    def open_page() -> Any:
        context = browser.new_context(
            locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 390, "height": 844}, is_mobile=True
        )
        context.set_default_timeout(20_000)  # a wait for the page, not a speed assertion
        contexts.append(context)
        page = context.new_page()
        page.requested = []  # every URL the page asked for, to check where codes and tokens went
        page.on("request", lambda request: page.requested.append(request.url))
        return page

    yield open_page
    for context in contexts:
        context.close()
