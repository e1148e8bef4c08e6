"""The dashboard's server-side decisions, in process: who is offered model control, which
settings are shown, and how static files are found and revalidated."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from shipyard.config import ServerConfig
from shipyard.dashboard import control_access
from shipyard.dashboard.access import is_loopback
from shipyard.dashboard.assets import load_assets
from shipyard.dashboard.server_info import public_settings
from shipyard.errors import NotFoundError

STATIC = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "dashboard" / "static"


def _request(client: tuple[str, int] | None, headers: dict[str, str] | None = None) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/ui/api/session",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": client,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.7", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.7", False),
        ("2001:db8::1", False),
        ("localhost", False),  # not an address: never trusted by name
        ("", False),
    ],
)
def test_control_is_offered_to_loopback_clients_only(host: str, allowed: bool) -> None:
    """Until API keys exist, only a loopback client address is offered model control."""
    access = control_access(_request((host, 5000)))
    assert access.can_control is allowed
    assert access.to_dict() == {"can_control": allowed, "reason": access.reason}
    assert access.reason


def test_a_request_without_a_client_address_gets_no_control() -> None:
    """A request whose client is unknown (a Unix socket) is not offered control."""
    assert control_access(_request(None)).can_control is False
    assert is_loopback(None) is False


def test_forwarded_headers_do_not_grant_control() -> None:
    """A remote client cannot claim to be local with X-Forwarded-For or Host."""
    request = _request(("203.0.113.5", 443), {"X-Forwarded-For": "127.0.0.1", "Host": "localhost"})
    assert control_access(request).can_control is False


def test_settings_shown_are_every_field_with_secrets_replaced() -> None:
    """Every ServerConfig field is shown JSON-ready; a field named like a secret is only
    said to be set, never shown."""
    shown = public_settings(ServerConfig(models=("a", "b")))
    assert set(shown) == {f.name for f in dataclasses.fields(ServerConfig)}
    assert shown["models"] == ["a", "b"]
    assert shown["repository"] == "model-repository"
    assert shown["ui"] is True
    secretive = dataclasses.make_dataclass(
        "Secretive",
        [("api_keys", str), ("tls_key", str), ("token", str | None), ("http_port", int)],
        frozen=True,
    )
    shown = public_settings(secretive("keys.toml", "/etc/key.pem", None, 80))  # type: ignore[arg-type]
    assert shown == {"api_keys": "(set)", "tls_key": "(set)", "token": None, "http_port": 80}


def test_every_static_file_is_served_and_nothing_else(tmp_path: Path) -> None:
    """The assets are the static folder's web files by relative path; others are 404."""
    assets = load_assets()
    expected = {
        str(p.relative_to(STATIC))
        for p in STATIC.rglob("*")
        if p.is_file() and p.suffix in (".html", ".js", ".css", ".svg")
    }
    assert set(assets.files) == expected
    assert {"index.html", "app.css", "icon.svg", "js/app.js", "js/metrics.js"} <= expected
    for missing in ("nope.js", "../routes.py", "/etc/passwd", "js", ""):
        with pytest.raises(NotFoundError):
            assets.get(missing)
    (tmp_path / "LICENSE").write_text("not served", encoding="utf-8")
    (tmp_path / "a.js").write_text("export {};", encoding="utf-8")
    assert set(load_assets(tmp_path).files) == {"a.js"}


def test_etag_matching_accepts_lists_weak_tags_and_star() -> None:
    """If-None-Match with the tag (also weak, or in a list) or * gets 304; others 200."""
    asset = load_assets().get("js/app.js")
    for header, status in (
        (asset.etag, 304),
        (f'"other", W/{asset.etag}', 304),
        ("*", 304),
        ('"other"', 200),
        ("", 200),
    ):
        response = asset.response(_request(("127.0.0.1", 1), {"If-None-Match": header}))
        assert response.status_code == status, header
        assert response.headers["etag"] == asset.etag
        assert response.headers["cache-control"] == "no-cache"
