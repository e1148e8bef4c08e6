"""The dashboard's API key form on a server with keys (``shipyard serve --api-keys``): without a
key the pages show the form and fetch no data; a key the server does not know is refused by
the form, and a key it stops knowing brings the form back; the key stays in the tab's
sessionStorage, never in the URL, localStorage, a cookie, the page or the server's log; and
without ``--api-keys`` there is no form at all. What each role may see is in test_roles.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from shipyard.server.auth import hash_key
from shipyard.testing import (
    RunningServer,
    ServeProcess,
    add_sub_model,
    running_server,
    wait_until_blocking,
    write_model,
)
from tests.dashboard.conftest import (
    KEY_ITEM,
    PAGES,
    TUNE_REPORT,
    Watched,
    key_of,
    sign_in,
)


def _log(server: ServeProcess) -> str:
    return "".join(server.stdout) + "".join(server.stderr)


def _stored(page: Watched) -> str | None:
    return page.page.evaluate(f"sessionStorage.getItem('{KEY_ITEM}')")  # type: ignore[no-any-return]


def assert_key_kept_private(page: Watched, server: ServeProcess, name: str) -> None:
    """The key is in this tab's sessionStorage and nowhere else: not in the URL, localStorage,
    cookies or the page, nor in the server's log (which did log the page's requests)."""
    key = key_of(name)
    assert _stored(page) == key
    assert key not in page.page.url
    assert key not in page.page.evaluate("JSON.stringify(localStorage) + document.cookie")
    assert key not in page.page.content()
    wait_until_blocking(
        lambda: "GET /ui/api/models 200" in _log(server), "the server logged the page's requests"
    )
    assert key not in _log(server)
    assert hash_key(key) not in _log(server)


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server without ``--api-keys``, serving ``simple``."""
    repo = tmp_path_factory.mktemp("dashboard-keyless") / "repo"
    write_model(repo, "simple", add_sub_model())
    with running_server(repo, grpc=False) as running:
        yield running


@pytest.mark.parametrize("name", PAGES)
def test_without_a_key_a_page_shows_the_key_form_and_fetches_no_data(
    page: Watched, keyed: ServeProcess, name: str
) -> None:
    """Without a key, the page shows the key form and says a key is needed; it asks only for
    its own files and /ui/api/session, so no request is refused and no error is logged."""
    paths: list[str] = []
    page.page.on("request", lambda request: paths.append(urlsplit(request.url).path))
    page.open(keyed.url, name)
    assert page.page.get_by_label("API key", exact=True).is_visible()
    assert "needs an API key" in page.page.locator(".needs-key").inner_text()
    assert "no key" in page.page.locator("#key-status").inner_text()
    assert page.page.locator("#key-forget").is_hidden()
    data = [path for path in paths if path.startswith(("/v2", "/metrics", "/ui/api/"))]
    assert data == ["/ui/api/session"]
    if name == "models":
        page.screenshot("key-form")
    page.assert_clean()


def test_a_wrong_key_is_refused_and_the_form_asks_again(page: Watched, keyed: ServeProcess) -> None:
    """A key the server does not know is checked with /ui/api/session and refused by the form:
    it says why, keeps focus in the emptied field, stores nothing and loads no page."""
    page.open(keyed.url, "models")
    field = page.page.get_by_label("API key", exact=True)
    field.fill("sy_not-a-key-of-this-server")
    page.page.get_by_role("button", name="Use").click()
    expect(page.page.locator("#key-status")).to_contain_text(
        "key refused: the API key is not valid"
    )
    assert page.page.evaluate("document.activeElement.id") == "key-input"
    assert field.input_value() == ""
    assert _stored(page) is None
    assert page.page.locator(".needs-key").is_visible()
    assert page.page.locator("section.model").count() == 0
    page.assert_clean()  # the check is a 200 with key_error: nothing was refused


def test_a_malformed_key_is_refused_by_the_form(page: Watched, keyed: ServeProcess) -> None:
    """A key with a space is refused by the form itself: nothing is stored or sent."""
    paths: list[str] = []
    page.page.on("request", lambda request: paths.append(urlsplit(request.url).path))
    page.open(keyed.url, "models")
    page.page.get_by_label("API key", exact=True).fill("not a key")
    page.page.get_by_role("button", name="Use").click()
    expect(page.page.locator("#key-status")).to_contain_text("without spaces")
    assert _stored(page) is None
    assert paths.count("/ui/api/session") == 1  # the page's own; the key was not sent
    page.assert_clean()


def test_a_key_the_server_stops_knowing_brings_the_form_back(
    page: Watched, keyed: ServeProcess
) -> None:
    """A key the server refuses while the page is open (as after a revocation) makes Refresh
    show the 401 with a pointer to the key form; the key is dropped and the form asks for
    another; reopened, the page fetches nothing until it gets one."""
    page.open(keyed.url, "models")
    sign_in(page, "ci-bot")
    page.page.locator("section.model[data-model='simple']").wait_for()
    page.page.evaluate(f"sessionStorage.setItem('{KEY_ITEM}', 'sy_revoked')")
    page.allow(401, "/ui/api/models")
    page.page.get_by_role("button", name="Refresh").click()
    alert = page.page.locator(".access [role='alert']")
    expect(alert).to_contain_text("401: the API key is not valid")
    assert "“API key” form" in alert.inner_text()
    assert _stored(page) is None
    assert "key refused (401)" in page.page.locator("#key-status").inner_text()
    assert page.page.locator("#key-forget").is_hidden()
    page.open(keyed.url, "models")
    assert "needs an API key" in page.page.locator(".needs-key").inner_text()
    assert page.page.locator("section.model").count() == 0
    page.assert_clean()


def test_a_stored_key_the_server_refuses_is_dropped_on_load(
    page: Watched, keyed: ServeProcess
) -> None:
    """A page opened with a stored key the server refuses says so, drops the key, and mounts
    nothing (the only request with the key is /ui/api/session's, which answers 200)."""
    page.open(keyed.url, "models")
    page.page.evaluate(f"sessionStorage.setItem('{KEY_ITEM}', 'sy_revoked')")
    page.open(keyed.url, "live")
    needs = page.page.locator(".needs-key").inner_text()
    assert "was refused (the API key is not valid)" in needs
    assert "key refused" in page.page.locator("#key-status").inner_text()
    assert _stored(page) is None
    assert page.page.locator(".live-table").count() == 0
    page.assert_clean()


def test_the_key_is_sent_as_a_bearer_header_and_kept_private(
    page: Watched, keyed: ServeProcess
) -> None:
    """Once signed in, every data request carries ``Authorization: Bearer KEY`` (main's auth
    header) and the key appears nowhere else, not even in the server's debug log."""
    page.open(keyed.url, "models")
    sign_in(page, "ops")
    headers: dict[str, str | None] = {}
    page.page.on(
        "request",
        lambda request: headers.setdefault(
            urlsplit(request.url).path, request.headers.get("authorization")
        ),
    )
    page.open(keyed.url, "models")
    page.page.locator("section.model[data-model='simple']").wait_for()
    sent = {path: value for path, value in headers.items() if path.startswith(("/v2", "/ui/api/"))}
    assert {"/v2", "/ui/api/models", "/ui/api/session"} <= set(sent)
    assert set(sent.values()) == {f"Bearer {key_of('ops')}"}
    static = {path: value for path, value in headers.items() if path not in sent}
    assert {"/ui/models", "/ui/js/app.js", "/ui/app.css"} <= set(static)
    assert set(static.values()) == {None}  # the static files are open: no key sent for them
    assert_key_kept_private(page, keyed, "ops")
    page.assert_clean()


def test_the_tuning_report_is_fetched_with_the_key(
    page: Watched, keyed: ServeProcess, tmp_path: Path
) -> None:
    """With a key, the tuning report (which a plain link could not fetch) downloads with it."""
    page.open(keyed.url, "models")
    sign_in(page, "ci-bot")
    button = page.page.get_by_role("button", name="download tune-report.html")
    with page.page.expect_download() as download:
        button.click()
    saved = tmp_path / "report.html"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "other-tune-report.html"
    assert saved.read_text(encoding="utf-8") == TUNE_REPORT
    page.assert_clean()


def test_the_key_form_fits_a_phone(phone_page: Watched, keyed: ServeProcess) -> None:
    """At 390 px the key form, signed in, fits without scrolling sideways."""
    phone_page.open(keyed.url, "models")
    sign_in(phone_page, "ci-bot")
    phone_page.page.locator("section.model[data-model='simple']").wait_for()
    assert phone_page.page.locator("#key-forget").is_visible()
    overflow = phone_page.page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the page is {overflow} px wider than the window"
    phone_page.screenshot("models-infer-key-phone")
    phone_page.assert_clean()


def test_forget_drops_the_key(page: Watched, keyed: ServeProcess) -> None:
    """Forget removes the key from the tab: the page is back to asking for one."""
    page.open(keyed.url, "models")
    sign_in(page, "ops")
    with page.page.expect_navigation():
        page.page.get_by_role("button", name="Forget").click()
    page.page.wait_for_selector("body[data-ready='models']")
    assert _stored(page) is None
    assert page.page.locator(".needs-key").is_visible()
    assert page.page.locator("section.model").count() == 0
    page.assert_clean()


@pytest.mark.parametrize("name", PAGES)
def test_without_api_keys_there_is_no_key_form(
    page: Watched, keyless: RunningServer, name: str
) -> None:
    """Without --api-keys the page has no key form and sends no Authorization header."""
    sent: list[str] = []
    page.page.on(
        "request",
        lambda request: sent.append(request.url) if "authorization" in request.headers else None,
    )
    page.open(keyless.url, name)
    assert page.page.locator("#key-form").is_hidden()
    assert page.page.locator(".needs-key").count() == 0
    assert sent == []
    page.assert_clean()
