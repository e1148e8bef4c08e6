"""Every dashboard page renders in a real browser, on a laptop and a phone, with no console
error and no failed request, and can be used from the keyboard."""

from __future__ import annotations

import pytest

from shipyard.testing import RunningServer
from tests.dashboard.conftest import PAGES, Watched

#: What each page shows once it has its data: a selector that must be visible.
CONTENT = {
    "models": "section.model[data-model='mnist'] [data-state='READY']",
    "live": ".live-table tr[data-model='simple']",
    "playground": "#pg-model",
    "server": "#uptime",
}


def _check_page(watched: Watched, served: RunningServer, name: str, shot: str) -> None:
    watched.open(served.url, name)
    watched.page.wait_for_selector(CONTENT[name], state="visible", timeout=15_000)
    overflow = watched.page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{name}: the page is {overflow} px wider than the window"
    watched.screenshot(shot)
    watched.assert_clean()


def test_a_model_that_failed_to_load_shows_its_reason(page: Watched, served: RunningServer) -> None:
    """A model whose load failed is listed UNAVAILABLE with the reason, and can be loaded."""
    page.open(served.url, "models")
    card = page.page.locator("section.model[data-model='broken']")
    assert card.locator("[data-state='UNAVAILABLE']").is_visible()
    assert "bogus" in card.locator(".reason").inner_text()
    assert card.get_by_role("button", name="Load").is_visible()
    page.assert_clean()


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_on_a_laptop(page: Watched, served: RunningServer, name: str) -> None:
    """The page shows its content at 1280 px, with no console error or failed request."""
    _check_page(page, served, name, name)


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_on_a_phone(phone_page: Watched, served: RunningServer, name: str) -> None:
    """The page shows its content at 390 px without scrolling sideways, and no error."""
    _check_page(phone_page, served, name, f"{name}-phone")


def test_root_and_ui_open_the_models_page(page: Watched, served: RunningServer) -> None:
    """``/`` redirects to ``/ui/``, which is the Models page, marked current in the nav."""
    page.page.goto(served.url + "/")
    page.page.wait_for_selector("body[data-ready='models']")
    assert page.page.url == served.url + "/ui/"
    current = page.page.locator("nav a[aria-current='page']")
    assert current.inner_text() == "Models"
    page.assert_clean()


def test_keyboard_reaches_every_page_and_the_skip_link(
    page: Watched, served: RunningServer
) -> None:
    """Tab reaches the skip link (which moves focus to the content) and each nav link; Enter
    on a link opens its page."""
    page.open(served.url, "models")
    keyboard = page.page.keyboard
    keyboard.press("Tab")
    assert page.page.evaluate("document.activeElement.id") == "skip"
    keyboard.press("Enter")
    assert page.page.evaluate("document.activeElement.id") == "main"
    for name in ("live", "playground", "server", "models"):
        page.page.locator("a.brand").focus()
        for _ in range(8):
            keyboard.press("Tab")
            if page.page.evaluate("document.activeElement.dataset.page") == name:
                break
        else:
            pytest.fail(f"Tab never reached the {name} link")
        keyboard.press("Enter")
        page.page.wait_for_selector(f"body[data-ready='{name}']")
    page.assert_clean()
