"""Model control from the Models page: offered to allowed clients only, and it acts through
the public repository routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.testing import RunningServer, add_sub_model, running_server, write_model
from tests.dashboard.conftest import Watched


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of its own (the tests unload its model), serving ``simple`` and ``other``."""
    repo = tmp_path / "repo"
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "other", add_sub_model())
    with running_server(repo, grpc=False) as running:
        yield running


def _index(url: str) -> dict[str, str]:
    rows = httpx.post(f"{url}/v2/repository/index", json={}).json()
    return {row["name"]: row["state"] for row in rows}


def test_unload_then_load_from_the_ui(page: Watched, own_server: RunningServer) -> None:
    """Unload on the page makes the model UNAVAILABLE in /v2/repository/index (the other
    model stays READY) and the page says so; Load brings it back READY."""
    page.open(own_server.url, "models")
    card = page.page.locator("section.model[data-model='simple']")
    card.get_by_role("button", name="Unload").click()
    card.locator("[data-state='UNAVAILABLE']").wait_for(timeout=15_000)
    assert _index(own_server.url) == {"other": "READY", "simple": "UNAVAILABLE"}
    assert "unload: done" in card.locator(".outcome").inner_text()
    page.screenshot("models-after-unload")
    card.get_by_role("button", name="Load").click()
    card.locator("[data-state='READY']").wait_for(timeout=15_000)
    assert _index(own_server.url) == {"other": "READY", "simple": "READY"}
    assert "load: done" in card.locator(".outcome").inner_text()
    page.assert_clean()


def test_the_controls_are_keyboard_operable(page: Watched, own_server: RunningServer) -> None:
    """Reload is a real button: focused and pressed with Enter it reloads the model, and
    focus comes back to the model's heading."""
    page.open(own_server.url, "models")
    card = page.page.locator("section.model[data-model='other']")
    card.get_by_role("button", name="Reload").focus()
    page.page.keyboard.press("Enter")
    card.locator(".outcome", has_text="reload: done").wait_for(timeout=15_000)
    assert page.page.evaluate("document.activeElement.id") == "model-other"
    page.assert_clean()


def test_no_controls_when_the_server_does_not_allow_them(
    page: Watched, own_server: RunningServer
) -> None:
    """When /ui/api/session answers can_control false (a remote client of a server without API
    keys), the page shows no control and says why.

    Every test client is on loopback, so the browser's copy of the session answer is
    replaced (Playwright's route); the server's own decision is tested in
    tests/unit/test_dashboard.py."""

    def remote(route: Any) -> None:
        route.fulfill(json={"can_control": False, "reason": "you are not on loopback"})

    page.page.route("**/ui/api/session", remote)
    page.open(own_server.url, "models")
    page.page.locator("section.model[data-model='simple']").wait_for()
    assert page.page.get_by_role("button", name="Unload").count() == 0
    assert page.page.get_by_role("button", name="Reload").count() == 0
    assert "Read-only: you are not on loopback" in page.page.locator(".access").inner_text()
    page.assert_clean()
