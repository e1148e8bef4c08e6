"""``shipyard explain URL --model NAME FILE...``: ask a served model why it answered as it did.

Each FILE goes to ``POST /v2/models/NAME[/versions/V]/explain`` as its body: an image (by
extension) or a ``.txt`` file (one text) for a model with processing, or a ``.json`` V2
inference request for any model. The explanation's parameters (docs/explain.md) are options
here and travel in the query string. ``--out heat.png`` also fetches the PNG overlay of an
image explanation (``heat-2.png``, ... for the second file on).
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click
from rich.table import Table

from shipyard.cli.common import console, fail
from shipyard.cli.predict import PREDICT_CONTENT_TYPES
from shipyard.errors import LoadGeneratorError

__all__ = ["explain_command"]

#: Options sent as explanation parameters, when given.
_PARAMETERS = ("method", "patch", "stride", "masks", "target", "baseline", "output", "reference")


@click.command("explain")
@click.argument("url")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", required=True, help="Model name.")
@click.option("--version", "model_version", help="Model version [default: the latest served].")
@click.option("--method", type=click.Choice(["occlusion", "rise"]), help="Images [occlusion].")
@click.option("--patch", type=click.IntRange(1), help="Occlusion patch side in pixels.")
@click.option("--stride", type=click.IntRange(1), help="Occlusion step in pixels.")
@click.option("--masks", type=click.IntRange(1), help="RISE masks [1000].")
@click.option("--target", help="Class index or label explained [default: the top one].")
@click.option("--baseline", type=float, help="Value of hidden pixels or features [0].")
@click.option("--output", help="Model output explained [default: the first].")
@click.option("--reference", help="Embedding models: a text to compare with.")
@click.option("--out", type=click.Path(path_type=Path), help="Write the PNG heatmap here.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per file.")
def explain_command(
    url: str,
    files: tuple[Path, ...],
    model: str,
    model_version: str | None,
    out: Path | None,
    timeout: float,
    **options: Any,
) -> None:
    """Explain the model's answer for each FILE (image, .txt, .json) and print it."""
    from shipyard.loadgen.http import HttpTarget, send

    try:
        target = HttpTarget(url, tls=True)
    except LoadGeneratorError as exc:
        fail(exc.message)
    query = {k: str(v) for k, v in options.items() if k in _PARAMETERS and v is not None}
    route = f"{target.model_path(model, model_version)}/explain"
    if query:
        route += f"?{urlencode(query)}"

    def ask(path: Path, body: bytes, accept: str) -> bytes:
        content_type = PREDICT_CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        headers = {"Content-Type": content_type, "Accept": accept}
        try:
            status, data = send(target, "POST", route, body, headers, timeout_s=timeout)
        except LoadGeneratorError as exc:
            fail(f"{exc.message}; is `shipyard serve` running there?")
        if not 200 <= status < 300:
            answer = _json(data)
            reason = http.client.responses.get(status, "")
            message = answer.get("error", reason) if isinstance(answer, dict) else reason
            fail(f"{path}: server answered {status}: {message}")
        return data

    for number, path in enumerate(files, start=1):
        try:
            body = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}")
        answer = _json(ask(path, body, "application/json"))
        if not isinstance(answer, dict):
            fail(f"{path}: the server's answer is not a JSON object")
        _print(path, answer)
        if out is not None and answer.get("kind") == "image":
            where = out if number == 1 else out.with_name(f"{out.stem}-{number}{out.suffix}")
            where.write_bytes(ask(path, body, "image/png"))
            console.print(f"wrote {where}")


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _print(path: Path, answer: dict[str, Any]) -> None:
    """The target and how it was explained, then the strongest attributions."""
    target = answer.get("target", {})
    what = target.get("label") or target.get("index", target.get("measure", ""))
    console.print(
        f"[bold]{path}[/]: {answer.get('kind')} explained by {answer.get('method')} for"
        f" {what} (score {target.get('score', 0):.4f}); {answer.get('perturbations')}"
        f" perturbations in {answer.get('batches')} batches"
    )
    table = Table(title_justify="left")
    if answer.get("kind") == "text":
        table.add_column("word")
        table.add_column("importance", justify="right")
        for entry in answer.get("words", []):
            table.add_row(str(entry["word"]), f"{entry['importance']:+.4f}")
        console.print(table)
        return
    values: Any = answer.get("attributions", [])
    flat: list[tuple[tuple[int, ...], float]] = []
    _walk(values, (), flat)
    flat.sort(key=lambda item: -abs(item[1]))
    table.add_column("row, column" if answer.get("kind") == "image" else "index")
    table.add_column("attribution", justify="right")
    for index, value in flat[:10]:
        table.add_row(", ".join(map(str, index)), f"{value:+.4f}")
    console.print(table)


def _walk(values: Any, index: tuple[int, ...], out: list[tuple[tuple[int, ...], float]]) -> None:
    if isinstance(values, list):
        for i, value in enumerate(values):
            _walk(value, (*index, i), out)
    else:
        out.append((index, float(values)))
