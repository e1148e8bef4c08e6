"""What each key role sees in the dashboard, on ``shipyard serve --api-keys --metrics-auth``:
an admin key controls models; an infer key uses the playground, and a load from the page shows
the server's 403 naming the admin role; a metrics key watches the Live page (its /metrics
polling carries the key) and is told which role the other pages need."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import expect

from shipyard.testing import ServeProcess
from tests.dashboard.conftest import Watched, key_of, sign_in

#: A valid request for ``simple`` (add_sub_model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = -).
SIMPLE = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16},
    ]
}


#: A positive number as the page writes it in data-value.
POSITIVE = re.compile(r"^(?:[1-9]|0\.\d*[1-9])")


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key_of(name)}"}


def _index(server: ServeProcess) -> dict[str, str]:
    answer = httpx.post(f"{server.url}/v2/repository/index", json={}, headers=_as("ops"))
    assert answer.status_code == 200, answer.text
    return {row["name"]: row["state"] for row in answer.json()}


def _authorization_of(page: Watched, path: str) -> list[str | None]:
    """Start recording the Authorization header of every request to ``path``."""
    seen: list[str | None] = []

    def record(request: Any) -> None:
        if urlsplit(request.url).path == path:
            seen.append(request.headers.get("authorization"))

    page.page.on("request", record)
    return seen


def test_an_admin_key_shows_the_models_and_can_unload_and_load(
    page: Watched, keyed: ServeProcess
) -> None:
    """With the admin key the controls appear; Unload on the page makes the model UNAVAILABLE
    in /v2/repository/index, and Load brings it back READY."""
    assert httpx.post(f"{keyed.url}/v2/repository/index", json={}).status_code == 401
    page.open(keyed.url, "models")
    sign_in(page, "ops")
    card = page.page.locator("section.model[data-model='simple']")
    assert "signed in as ops (admin)" in page.page.locator(".access").inner_text()
    card.get_by_role("button", name="Unload").click()
    card.locator("[data-state='UNAVAILABLE']").wait_for(timeout=15_000)
    assert _index(keyed) == {"other": "READY", "simple": "UNAVAILABLE"}
    assert "unload: done" in card.locator(".outcome").inner_text()
    card.get_by_role("button", name="Load").click()
    card.locator("[data-state='READY']").wait_for(timeout=15_000)
    assert _index(keyed) == {"other": "READY", "simple": "READY"}
    assert "load: done" in card.locator(".outcome").inner_text()
    page.assert_clean()


def test_an_infer_key_uses_the_playground(page: Watched, keyed: ServeProcess) -> None:
    """With the infer key the playground's request editor calls /infer with the key and shows
    the model's answer."""
    page.open(keyed.url, "playground", "?model=simple")
    sign_in(page, "ci-bot")
    sent = _authorization_of(page, "/v2/models/simple/infer")
    page.page.locator("#pg-request").fill(json.dumps(SIMPLE))
    page.page.locator("#pg-send").click()
    answer = page.page.locator("#pg-response pre")
    answer.wait_for(timeout=15_000)
    outputs = {o["name"]: o["data"] for o in json.loads(answer.inner_text())["outputs"]}
    assert outputs["OUTPUT0"] == [x + 1 for x in range(16)]
    assert sent == [f"Bearer {key_of('ci-bot')}"]
    assert page.page.locator("#key-status").inner_text() == "signed in as ci-bot (infer)"
    page.screenshot("playground-infer-key")
    page.assert_clean()


def test_an_infer_key_gets_the_admin_role_error_on_unload(
    page: Watched, keyed: ServeProcess
) -> None:
    """With the infer key the Models page says control needs the admin role; Unload shows the
    server's 403 naming that role and a pointer to the key form, and the model stays READY."""
    page.open(keyed.url, "models")
    sign_in(page, "ci-bot")
    note = page.page.locator(".access").inner_text()
    assert note.startswith("Read-only: signed in as ci-bot (infer)")
    assert "admin role" in note
    page.allow(403, "/v2/repository/models/simple/unload")
    card = page.page.locator("section.model[data-model='simple']")
    card.get_by_role("button", name="Unload").click()
    outcome = card.locator(".outcome")
    expect(outcome).to_contain_text("unload failed: 403")
    assert "API key 'ci-bot' (roles: infer) may not make this call: it needs role admin" in (
        outcome.inner_text()
    )
    assert "“API key” form" in outcome.inner_text()
    assert card.locator("[data-state='READY']").is_visible()
    assert _index(keyed)["simple"] == "READY"
    page.screenshot("models-infer-key")
    page.assert_clean()


def test_an_infer_key_is_told_the_server_page_needs_admin(
    page: Watched, keyed: ServeProcess
) -> None:
    """With the infer key, the Server page (admin only) shows the 403 with the role it needs
    instead of breaking; the key carries over from page to page in the tab."""
    page.open(keyed.url, "models")
    sign_in(page, "ci-bot")
    page.allow(403, "/ui/api/server")
    page.open(keyed.url, "server")
    error = page.page.locator(".page-server .error").inner_text()
    assert "403" in error
    assert "needs role admin" in error
    assert "“API key” form" in error
    assert "(403)" in page.page.locator("#key-status").inner_text()
    page.assert_clean()


def test_an_infer_key_is_told_the_live_page_needs_metrics(
    page: Watched, keyed: ServeProcess
) -> None:
    """With --metrics-auth, the infer key's Live page shows the 403 naming the metrics role
    and stops polling."""
    page.open(keyed.url, "models")
    sign_in(page, "ci-bot")
    page.allow(403, "/metrics")
    page.open(keyed.url, "live")
    alert = page.page.locator(".page-live [role='alert']")
    expect(alert).to_contain_text("Cannot read /metrics: 403")
    assert "needs role admin or metrics" in alert.inner_text()
    expect(page.page.locator("#live-status")).to_have_text("stopped")
    page.assert_clean()


def test_a_metrics_key_watches_the_live_page(page: Watched, keyed: ServeProcess) -> None:
    """With the metrics key the Live page polls /metrics with the key and shows a non-zero
    rate once requests arrive; the header skips server metadata (infer only), so nothing is
    refused."""
    page.open(keyed.url, "live")
    sign_in(page, "scraper")
    sent = _authorization_of(page, "/metrics")
    page.page.locator(".live-table tr[data-model='simple']").wait_for(timeout=15_000)
    for _ in range(20):
        answer = httpx.post(f"{keyed.url}/v2/models/simple/infer", json=SIMPLE, headers=_as("ops"))
        assert answer.status_code == 200, answer.text
    rate = page.page.locator(".live-table tr[data-model='simple'] td[data-field='rate']")
    expect(rate).to_have_attribute("data-value", POSITIVE, timeout=15_000)
    card = page.page.locator("section.live[data-model='simple']")
    assert card.locator("polyline").count() >= 1
    assert sent
    assert set(sent) == {f"Bearer {key_of('scraper')}"}
    assert page.page.locator("#key-status").inner_text() == "signed in as scraper (metrics)"
    assert page.page.locator("#server-badge").inner_text() == ""
    page.screenshot("live-metrics-key")
    page.assert_clean()


def test_a_metrics_key_is_told_the_models_page_needs_infer(
    page: Watched, keyed: ServeProcess
) -> None:
    """With the metrics key the Models page shows the 403 naming the roles it needs."""
    page.open(keyed.url, "live")
    sign_in(page, "scraper")
    page.allow(403, "/ui/api/models")
    page.open(keyed.url, "models")
    error = page.page.locator(".page-models .error")
    expect(error).to_contain_text("403")
    assert "API key 'scraper' (roles: metrics)" in error.inner_text()
    assert "needs role admin or infer" in error.inner_text()
    page.assert_clean()
