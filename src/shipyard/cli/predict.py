"""``shipyard predict URL FILE...``: send files to a model's ``/predict`` route, print answers."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from shipyard.cli.common import console, fail
from shipyard.errors import LoadGeneratorError

__all__ = ["PREDICT_CONTENT_TYPES", "predict_command"]

#: Content type sent by ``shipyard predict``, by file extension (others: octet-stream).
PREDICT_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
}


@click.command("predict")
@click.argument("url")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", required=True, help="Model name.")
@click.option("--version", "model_version", help="Model version [default: the latest served].")
# The flag's name before every command took a model version as --version; kept working.
@click.option("--model-version", "legacy_version", hidden=True)
@click.option("--top-k", type=click.IntRange(1), help="Classes per answer [default: server's].")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per file.")
def predict_command(
    url: str,
    files: tuple[Path, ...],
    model: str,
    model_version: str | None,
    legacy_version: str | None,
    top_k: int | None,
    timeout: float,
) -> None:
    """Send each FILE (image, .txt, .json) to URL's /predict route and print the answers."""
    from shipyard.loadgen.http import HttpTarget, send

    if model_version is not None and legacy_version not in (None, model_version):
        fail("--version and --model-version (its old name) disagree; pass only --version")
    model_version = model_version or legacy_version
    try:
        target = HttpTarget(url, tls=True)
    except LoadGeneratorError as exc:
        fail(exc.message)
    route = f"{target.model_path(model, model_version)}/predict"
    if top_k is not None:
        route += f"?top_k={top_k}"
    table = Table(title=f"{model} predictions", title_justify="left")
    for column in ("file", "#", "label", "score", "top-k / output"):
        table.add_column(column)
    for path in files:
        try:
            body = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}")
        content_type = PREDICT_CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        try:
            status, data = send(
                target, "POST", route, body, {"Content-Type": content_type}, timeout_s=timeout
            )
        except LoadGeneratorError as exc:
            fail(f"{exc.message}; is `shipyard serve` running there?")
        answer = _json(data)
        if not 200 <= status < 300:
            reason = http.client.responses.get(status, "")
            message = answer.get("error", reason) if isinstance(answer, dict) else reason
            fail(f"{path}: server answered {status}: {message}")
        if not isinstance(answer, dict):
            fail(f"{path}: the server's answer is not a JSON object")
        _add_rows(table, path, answer)
    console.print(table)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _add_rows(table: Table, path: Path, answer: dict[str, Any]) -> None:
    """One row per prediction: a label and its score, an embedding's head, or the raw item."""
    for i, item in enumerate(answer.get("predictions", [])):
        if "label" in item:
            others = ", ".join(f"{t['label']} {t['score']:.4f}" for t in item.get("top_k", [])[1:])
            score = item.get("score")
            shown = "-" if score is None else f"{score:.4f}"
            table.add_row(str(path), str(i), str(item["label"]), shown, others)
        elif "embedding" in item:
            vector = item["embedding"]
            head = ", ".join(f"{v:.4f}" for v in vector[:4])
            table.add_row(str(path), str(i), "-", "-", f"embedding[{len(vector)}] {head}, ...")
        else:
            table.add_row(str(path), str(i), "-", "-", json.dumps(item)[:120])
