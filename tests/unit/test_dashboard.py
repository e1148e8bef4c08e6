"""The dashboard's server-side decisions, in process: who is offered model control (with and
without API keys), which settings are shown, and how static files are found and revalidated."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from shipyard.config import ServerConfig
from shipyard.dashboard import control_access
from shipyard.dashboard.assets import load_assets
from shipyard.dashboard.server_info import public_settings
from shipyard.errors import NotFoundError
from shipyard.server.auth import ApiKey, AuthPolicy, Role, hash_key, http_access

#: A server without a key file; one with an infer, an admin and a metrics key, /metrics closed.
OPEN = AuthPolicy(None)
KEYS = {"ci-bot": "sy_ci-bot-key", "ops": "sy_ops-key", "scraper": "sy_scraper-key"}
ROLES = {"ci-bot": Role.INFER, "ops": Role.ADMIN, "scraper": Role.METRICS}
KEYED = AuthPolicy(
    [
        ApiKey(name, bytes.fromhex(hash_key(KEYS[name])), frozenset({role}))
        for name, role in ROLES.items()
    ],
    metrics_auth=True,
)

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
    """Without API keys, only a loopback client address is offered model control."""
    access = control_access(_request((host, 5000)), OPEN)
    assert access.can_control is allowed
    assert access.to_dict() == {
        "can_control": allowed,
        "reason": access.reason,
        "keys": False,
        "key": None,
        "key_error": None,
        "allows": {"infer": True, "metrics": True, "admin": True, "control": allowed},
    }
    assert access.reason


def test_a_request_without_a_client_address_gets_no_control() -> None:
    """A request whose client is unknown (a Unix socket) is not offered control."""
    assert control_access(_request(None), OPEN).can_control is False


def test_forwarded_headers_do_not_grant_control() -> None:
    """A remote client cannot claim to be local with X-Forwarded-For or Host."""
    request = _request(("203.0.113.5", 443), {"X-Forwarded-For": "127.0.0.1", "Host": "localhost"})
    assert control_access(request, OPEN).can_control is False


def _session(policy: AuthPolicy, host: str, authorization: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": authorization} if authorization is not None else None
    return control_access(_request((host, 5000), headers), policy).to_dict()


@pytest.mark.parametrize("host", ["127.0.0.1", "203.0.113.5"])
def test_with_keys_an_admin_key_is_offered_control_from_anywhere(host: str) -> None:
    """With API keys, an admin key is offered control, local or not, and the answer names the
    key and its roles but never holds the key."""
    answer = _session(KEYED, host, f"Bearer {KEYS['ops']}")
    assert answer["can_control"] is True
    assert (answer["keys"], answer["key"], answer["key_error"]) == (
        True,
        {"name": "ops", "roles": ["admin"]},
        None,
    )
    assert answer["allows"] == {"infer": True, "metrics": True, "admin": True, "control": True}
    assert answer["reason"] == "signed in as ops (admin)"
    assert KEYS["ops"] not in repr(answer)


@pytest.mark.parametrize(
    ("name", "allows"),
    [
        ("ci-bot", {"infer": True, "metrics": False, "admin": False, "control": False}),
        ("scraper", {"infer": False, "metrics": True, "admin": False, "control": False}),
    ],
)
def test_with_keys_each_role_allows_its_calls_only(name: str, allows: dict[str, bool]) -> None:
    """An infer key may infer, a metrics key may read /metrics (closed here), neither may
    control models, from loopback either; the reason names the admin role control needs."""
    answer = _session(KEYED, "127.0.0.1", f"Bearer {KEYS[name]}")
    assert answer["allows"] == allows
    assert answer["can_control"] is False
    assert answer["key"] == {"name": name, "roles": [ROLES[name].value]}
    assert answer["reason"].startswith(f"signed in as {name} ({ROLES[name].value}); ")
    assert "admin role" in answer["reason"]
    assert KEYS[name] not in repr(answer)


def test_the_session_answer_follows_the_servers_own_rules() -> None:
    """For every key and none, on loopback or not, ``allows`` is what the server's
    AuthPolicy decides for the routes the pages call (one rule, not a copy of it)."""
    routes = {
        "infer": "/v2/models/simple/infer",
        "metrics": "/metrics",
        "admin": "/ui/api/server",
        "control": "/v2/repository/models/simple/load",
    }
    for policy in (OPEN, KEYED, AuthPolicy(list(KEYED.keys or ()), metrics_auth=False)):
        for host in ("127.0.0.1", "203.0.113.5"):
            for key in (None, *KEYS.values(), "sy_unknown"):
                authorization = None if key is None else f"Bearer {key}"
                answer = _session(policy, host, authorization)
                expected = {
                    kind: policy.allows(http_access(path), authorization, host == "127.0.0.1")
                    for kind, path in routes.items()
                }
                assert answer["allows"] == expected, (host, key)
                assert answer["can_control"] is expected["control"]


def test_with_keys_open_metrics_need_no_key() -> None:
    """Without --metrics-auth, /metrics stays open with keys: allowed with no key at all."""
    policy = AuthPolicy(list(KEYED.keys or ()), metrics_auth=False)
    answer = _session(policy, "203.0.113.5")
    assert answer["allows"] == {"infer": False, "metrics": True, "admin": False, "control": False}


def test_with_keys_loopback_without_a_key_gets_nothing() -> None:
    """With API keys, being on loopback grants nothing: no key, no call but the open ones,
    and the answer says the server needs a key."""
    answer = _session(KEYED, "127.0.0.1")
    assert answer == {
        "can_control": False,
        "reason": answer["reason"],
        "keys": True,
        "key": None,
        "key_error": None,
        "allows": {"infer": False, "metrics": False, "admin": False, "control": False},
    }
    assert "needs an API key" in answer["reason"]


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        ("Bearer sy_not-a-key", "not valid"),
        ("Basic b3BzOnB3", "needs an API key"),
        ("Bearer ", "needs an API key"),
    ],
)
def test_with_keys_a_bad_key_is_reported_not_offered_control(
    authorization: str, error: str
) -> None:
    """An unknown key or a header that holds none gives no control and says why."""
    answer = _session(KEYED, "127.0.0.1", authorization)
    assert (answer["can_control"], answer["keys"], answer["key"]) == (False, True, None)
    assert error in answer["key_error"]
    assert not any(answer["allows"].values())


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
