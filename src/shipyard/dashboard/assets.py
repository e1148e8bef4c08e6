"""The dashboard's static files: read once at startup, served with an ETag and cache headers.

Only the files that exist in the package's ``static/`` folder are served, looked up by exact
relative path, so no request path can reach anything else. Every answer carries a strong ETag
(a hash of the content) and ``Cache-Control: no-cache``: the browser keeps its copy and
revalidates it, getting ``304 Not Modified`` until the file changes with a new release.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import NotFoundError

__all__ = ["CONTENT_SECURITY_POLICY", "Asset", "Assets", "load_assets"]

#: Scripts, styles, images and requests only from this server: nothing from a CDN, no inline
#: script; canvas snapshots (``blob:``) and inline icons (``data:``) are allowed as images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, media type and ETag."""

    body: bytes
    media_type: str
    etag: str

    def response(self, request: Request) -> Response:
        """The file, or ``304 Not Modified`` when the client's copy is current."""
        headers = {
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        if self.media_type.startswith("text/html"):
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        if _matches(request.headers.get("if-none-match"), self.etag):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


@dataclass(frozen=True, slots=True)
class Assets:
    """The static files by their path relative to ``static/`` (``index.html``, ``js/app.js``)."""

    files: dict[str, Asset]

    def get(self, path: str) -> Asset:
        """The file at ``path``; NotFoundError for anything else."""
        asset = self.files.get(path)
        if asset is None:
            raise NotFoundError(f"the dashboard has no file {path!r}")
        return asset


def load_assets(folder: Traversable | None = None) -> Assets:
    """Read every servable file under ``folder`` (default: this package's ``static/``)."""
    root = folder if folder is not None else resources.files("shipyard.dashboard") / "static"
    files: dict[str, Asset] = {}
    pending: list[tuple[str, Traversable]] = [("", root)]
    while pending:
        prefix, node = pending.pop()
        for child in node.iterdir():
            path = f"{prefix}{child.name}"
            if child.is_dir():
                pending.append((f"{path}/", child))
                continue
            media_type = _TYPES.get(_suffix(child.name))
            if media_type is None:  # LICENSE files, editor leftovers: not served
                continue
            body = child.read_bytes()
            etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
            files[path] = Asset(body, media_type, etag)
    return Assets(files)


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak or strong) or is ``*``."""
    if not header:
        return False
    for candidate in header.split(","):
        value = candidate.strip().removeprefix("W/")
        if value in ("*", etag):
            return True
    return False
