"""The Playground, in a real browser, through the public routes: a real MNIST digit drawn on
the canvas is classified correctly, sentences give a similarity matrix with 1 on the diagonal,
and the request editor sends a working ``/infer`` request prefilled from the metadata."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from shipyard.testing import RunningServer
from tests.dashboard.conftest import SENTENCES, Watched
from tests.examples.conftest import load_example

#: How many real test digits are drawn, one of each of these classes.
DRAWN_CLASSES = (0, 3, 7)


def _png(image: npt.NDArray[np.uint8]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits(served: RunningServer) -> list[tuple[int, npt.NDArray[np.uint8]]]:
    """For each class of DRAWN_CLASSES, the first test digit that the served model itself
    classifies correctly when sent as a PNG (the oracle that the model is right)."""
    (_, _), (images, labels) = load_example("dataset").load_split()
    chosen = []
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for wanted in DRAWN_CLASSES:
            for image in images[labels == wanted][:20]:
                answer = client.post(
                    "/v2/models/mnist/predict",
                    content=_png(image),
                    headers={"Content-Type": "image/png"},
                ).json()
                if answer["predictions"][0]["label"] == str(wanted):
                    chosen.append((wanted, image))
                    break
            else:
                pytest.fail(f"the model misclassified the first 20 test digits of class {wanted}")
    return chosen


def _draw(page: Any, image: npt.NDArray[np.uint8]) -> int:
    """Trace the digit's bright pixels (>= 128) as horizontal strokes, row by row, with the
    mouse; return the number of strokes."""
    box = page.locator("canvas.pad").bounding_box()
    assert box is not None
    scale = box["width"] / image.shape[1]
    strokes = 0
    for y, row in enumerate(image >= 128):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            end = x
            while end + 1 < len(row) and row[end + 1]:
                end += 1
            top = box["y"] + (y + 0.5) * scale
            page.mouse.move(box["x"] + (x + 0.5) * scale, top)
            page.mouse.down()
            page.mouse.move(box["x"] + (end + 0.5) * scale, top, steps=2)
            page.mouse.up()
            strokes += 1
            x = end + 1
    return strokes


def test_a_real_mnist_digit_drawn_on_the_canvas_is_classified_correctly(
    page: Watched, served: RunningServer, digits: list[tuple[int, npt.NDArray[np.uint8]]]
) -> None:
    """Real test digits, traced stroke by stroke on the drawing pad, come back from
    ``/predict`` (the demo's MNIST model and processing) with their true labels and scores."""
    page.open(served.url, "playground", "?model=mnist")
    for label, image in digits:
        page.page.get_by_role("button", name="Clear").click()
        assert _draw(page.page, image) > 5
        page.page.locator("#pg-classify").click()
        top = page.page.locator(".top-label")
        top.wait_for(timeout=15_000)
        assert top.get_attribute("data-label") == str(label)
        scores = page.page.locator(".scores .score").all_inner_texts()
        assert len(scores) == 3  # the demo's topk k=3
        assert float(scores[0]) > 0.5
        page.screenshot(f"playground-digit-{label}")
    page.assert_clean()


def test_an_uploaded_image_is_classified(
    page: Watched, served: RunningServer, digits: list[tuple[int, npt.NDArray[np.uint8]]]
) -> None:
    """A PNG chosen with the file input goes to ``/predict`` as it is and gets its label."""
    label, image = digits[-1]
    page.open(served.url, "playground", "?model=mnist")
    page.page.locator("#pg-upload").set_input_files(
        files=[{"name": "digit.png", "mimeType": "image/png", "buffer": _png(image)}]
    )
    top = page.page.locator(".top-label")
    top.wait_for(timeout=15_000)
    assert top.get_attribute("data-label") == str(label)
    page.assert_clean()


def test_sentences_give_a_similarity_matrix_with_ones_on_the_diagonal(
    page: Watched, served: RunningServer
) -> None:
    """The text playground shows the cosine similarity of the sentence embeddings: 1 on the
    diagonal, symmetric, and equal to what the embeddings from ``/predict`` give."""
    sentences = SENTENCES[:4]
    page.open(served.url, "playground", "?model=sentences")
    page.page.locator("#pg-text").fill("\n".join(sentences))
    page.page.locator("#pg-send-text").click()
    page.page.locator("table.similarity").wait_for(timeout=15_000)
    shown = np.zeros((len(sentences), len(sentences)))
    for cell in page.page.locator("table.similarity td[data-value]").all():
        row, col = (
            int(cell.get_attribute("data-row") or ""),
            int(cell.get_attribute("data-col") or ""),
        )
        shown[row, col] = float(cell.get_attribute("data-value") or "nan")
    answer = httpx.post(
        f"{served.url}/v2/models/sentences/predict",
        content="\n".join(sentences).encode(),
        headers={"Content-Type": "text/plain"},
    ).json()
    vectors = np.array([p["embedding"] for p in answer["predictions"]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(np.diag(shown), 1.0, atol=1e-5)
    np.testing.assert_allclose(shown, shown.T, atol=1e-6)
    np.testing.assert_allclose(shown, vectors @ vectors.T, atol=1e-5)
    assert shown[0, 3] < 0.999  # different sentences are not the same point
    page.screenshot("playground-text")
    page.assert_clean()


def test_request_editor_is_prefilled_from_metadata_and_sends_infer(
    page: Watched, served: RunningServer
) -> None:
    """For a plain tensor model the editor holds a valid request built from the metadata
    (-1 dimensions as 1); edited and sent, it shows the model's answer and the latency."""
    page.open(served.url, "playground", "?model=simple")
    editor = page.page.locator("#pg-request")
    request = json.loads(editor.input_value())
    assert [(x["name"], x["datatype"], x["shape"]) for x in request["inputs"]] == [
        ("INPUT0", "FP32", [1, 16]),
        ("INPUT1", "FP32", [1, 16]),
    ]
    assert request["inputs"][0]["data"] == [0] * 16
    request["inputs"][0]["data"] = list(range(16))
    request["inputs"][1]["data"] = [1] * 16
    editor.fill(json.dumps(request))
    page.page.locator("#pg-send").click()
    page.page.locator("#pg-response pre").wait_for(timeout=15_000)
    response = json.loads(page.page.locator("#pg-response pre").inner_text())
    outputs = {o["name"]: o["data"] for o in response["outputs"]}
    assert outputs["OUTPUT0"] == [x + 1 for x in range(16)]
    assert outputs["OUTPUT1"] == [x - 1 for x in range(16)]
    assert float(page.page.locator("#pg-response [data-ms]").get_attribute("data-ms") or "0") > 0
    page.screenshot("playground-editor")
    page.assert_clean()


def test_a_bad_request_in_the_editor_shows_the_servers_error(
    page: Watched, served: RunningServer
) -> None:
    """A request the server refuses shows its 400 message on the page, not a broken page."""
    page.open(served.url, "playground", "?model=simple")
    page.page.locator("#pg-request").fill(
        '{"inputs": [{"name": "NOPE", "shape": [1], "datatype": "FP32", "data": [1]}]}'
    )
    page.page.locator("#pg-send").click()
    error = page.page.locator("#pg-response .error")
    error.wait_for(timeout=15_000)
    assert "400" in error.inner_text()
    assert "NOPE" in error.inner_text()
    # The browser reports the refused request (and logs it); nothing else went wrong.
    assert f"HTTP 400: {served.url}/v2/models/simple/infer" in page.problems
    assert all("400" in problem for problem in page.problems), page.problems
