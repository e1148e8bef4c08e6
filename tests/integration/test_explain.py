"""``POST /v2/models/{name}/explain`` on a real server: attributions checked against models whose
answer is known in closed form, batching proven by the statistics, and every bad request a 4xx.

(The real MNIST CNN and MiniLM are explained in tests/examples/test_explain.py.)
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from shipyard.testing import RunningServer, running_server, write_model
from shipyard.testing.processing import (
    digit_image,
    embedding_model,
    image_bytes,
    mean_bucket_model,
    train_tokenizer,
)

#: y = W x: occluding feature i with baseline b changes output t by W[t, i] * (x_i - b).
WEIGHTS = np.arange(24, dtype=np.float32).reshape(3, 8) / 10 - 1
IMAGE = """
[[preprocess]]
input = "image"
target = "input"
steps = [
  {op = "decode_image", mode = "L"},
  {op = "scale", factor = 0.00392156862745098},
  {op = "layout", order = "NCHW"},
]

[[postprocess]]
output = "logits"
labels = "labels.txt"
steps = [{op = "softmax"}]

[explain]
max_perturbations = 200
"""
#: Sentiment words: "great" pushes class "positive" (index 1), "awful" class "negative".
SENTENCES = ["the movie was great", "the movie was awful", "a film and a plot"]
TEXT = """
[[preprocess]]
input = "text"
steps = [{op = "tokenize", tokenizer = "tokenizer.json", max_length = 16}]

[[postprocess]]
output = "last_hidden_state"
labels = "labels.txt"
steps = [{op = "mean_pool", mask = "attention_mask"}, {op = "softmax"}]
"""


def _linear(batching: bool) -> onnx.ModelProto:
    batch: list[int | str] = ["batch", 8] if batching else [1, 8]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, batch)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch[0], 3])],
        initializer=[numpy_helper.from_array(WEIGHTS.T.copy(), "wt")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Linear models (batched, unbatched), an image classifier, and a text classifier."""
    repo = tmp_path_factory.mktemp("explain")
    write_model(repo, "linear", _linear(True), config="[explain]\nmax_perturbations = 64\n")
    write_model(repo, "linear1", _linear(False), config="max_batch_size = 0\n")
    write_model(repo, "digits", mean_bucket_model(), config=IMAGE)
    (repo / "digits" / "labels.txt").write_text("\n".join(map(str, range(10))) + "\n")
    tokenizer = train_tokenizer(repo / "tokenizer.json", SENTENCES)
    model, _ = embedding_model(tokenizer.get_vocab_size(), dims=2)
    table = np.zeros((tokenizer.get_vocab_size(), 2), np.float32)
    table[tokenizer.token_to_id("great")] = [0.0, 8.0]
    table[tokenizer.token_to_id("awful")] = [8.0, 0.0]
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(table, "table"))
    write_model(repo, "sentiment", model, config=TEXT)
    (repo / "tokenizer.json").rename(repo / "sentiment" / "tokenizer.json")
    (repo / "sentiment" / "labels.txt").write_text("negative\npositive\n")
    with running_server(repo, grpc=False) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client on the module's server."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def _v2(
    name: str, datatype: str, shape: list[int], data: list[Any], **params: Any
) -> dict[str, Any]:
    return {
        "inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}],
        "parameters": params,
    }


def _executions(client: httpx.Client, model: str) -> int:
    stats = client.get(f"/v2/models/{model}/stats").json()["model_stats"][0]
    return int(stats["execution_count"])


def test_feature_occlusion_is_exact_on_a_linear_model(client: httpx.Client) -> None:
    """Each feature's attribution is W[target, i] * (x_i - baseline), the target is the top
    output by default, and the 8 perturbations plus the instance ran as one batch each."""
    x = np.linspace(-1, 2, 8, dtype=np.float32)
    before = _executions(client, "linear")
    response = client.post(
        "/v2/models/linear/explain", json=_v2("x", "FP32", [1, 8], x.tolist(), baseline=0.5)
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    y = WEIGHTS @ x
    target = int(np.argmax(y))
    assert answer["kind"] == "tensor"
    assert answer["method"] == "feature occlusion"
    assert answer["target"]["index"] == target
    assert answer["target"]["score"] == pytest.approx(float(y[target]), rel=1e-5)
    assert answer["shape"] == [8]
    np.testing.assert_allclose(answer["attributions"], WEIGHTS[target] * (x - 0.5), atol=1e-5)
    assert answer["perturbations"] == 8
    assert answer["batches"] == 2  # the instance, then all 8 perturbations in one batch
    assert _executions(client, "linear") - before == 2


def test_target_can_be_chosen(client: httpx.Client) -> None:
    """``target`` picks the output index explained instead of the top one."""
    x = np.ones(8, dtype=np.float32)
    answer = client.post(
        "/v2/models/linear/explain", json=_v2("x", "FP32", [1, 8], x.tolist(), target=0)
    ).json()
    assert answer["target"]["index"] == 0
    np.testing.assert_allclose(answer["attributions"], WEIGHTS[0] * x, atol=1e-5)


def test_a_model_without_batching_runs_one_perturbation_per_execution(
    client: httpx.Client,
) -> None:
    """With max_batch_size = 0 the explanation still works, one row per request."""
    x = np.ones(8, dtype=np.float32)
    before = _executions(client, "linear1")
    response = client.post("/v2/models/linear1/explain", json=_v2("x", "FP32", [1, 8], x.tolist()))
    assert response.status_code == 200, response.text
    answer = response.json()
    target = int(np.argmax(WEIGHTS @ x))
    np.testing.assert_allclose(answer["attributions"], [WEIGHTS[target] * x], atol=1e-5)
    assert answer["batches"] == 9
    assert _executions(client, "linear1") - before == 9


def test_image_occlusion_finds_the_bright_square(client: httpx.Client) -> None:
    """On a classifier of mean brightness (the square puts the mean at class 1's centre),
    hiding part of the one bright square lowers the winning class's score, so the heatmap's
    positive mass sits on that square; the explanation ran in a handful of executions."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[8:20, 12:24] = 204  # 144 px at 0.8: mean 0.147, just under class 1's centre 0.15
    before = _executions(client, "digits")
    response = client.post(
        "/v2/models/digits/explain",
        content=image_bytes(pixels),
        headers={"Content-Type": "image/png"},
        params={"patch": 4, "stride": 4},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    heat = np.array(answer["attributions"])
    assert heat.shape == (28, 28)
    assert answer["perturbations"] == 49
    positive = np.clip(heat, 0, None)
    assert answer["target"]["index"] == 1
    assert positive.sum() > 0
    assert positive[8:20, 12:24].sum() / positive.sum() > 0.99
    assert _executions(client, "digits") - before == answer["batches"] == 3


def test_v2_json_request_gives_the_raw_body_answer(client: httpx.Client) -> None:
    """The same image as a base64 BYTES tensor in a V2 JSON request, with the parameters in
    the request, gives the same attributions as the raw PNG body."""
    png = image_bytes(digit_image(0.3))
    raw = client.post(
        "/v2/models/digits/explain",
        content=png,
        headers={"Content-Type": "image/png"},
        params={"patch": 7, "stride": 7},
    ).json()
    body = _v2("image", "BYTES", [1], [base64.b64encode(png).decode()], patch=7, stride=7)
    v2 = client.post("/v2/models/digits/versions/1/explain", json=body)
    assert v2.status_code == 200, v2.text
    assert v2.json()["attributions"] == raw["attributions"]
    assert v2.json()["target"] == raw["target"]


def test_rise_masks_explain_an_image(client: httpx.Client) -> None:
    """RISE with a seed is reproducible, counts its masks as perturbations, and rates the
    bright square above the dark background."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:18, 4:18] = 255
    params = {"method": "rise", "masks": 120, "cells": 4, "seed": 3}

    def ask() -> dict[str, Any]:
        response = client.post(
            "/v2/models/digits/explain",
            content=image_bytes(pixels),
            headers={"Content-Type": "image/png"},
            params=params,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    first = ask()
    assert first == ask()
    assert first["method"] == "rise"
    assert first["perturbations"] == 120
    heat = np.array(first["attributions"])
    inside = heat[4:18, 4:18].mean()
    outside = np.concatenate([heat[20:].ravel(), heat[:, 20:].ravel()]).mean()
    assert inside > outside


def test_png_overlay_is_returned_on_request(client: httpx.Client) -> None:
    """``Accept: image/png`` answers a PNG overlay at least 224 pixels wide."""
    from PIL import Image

    response = client.post(
        "/v2/models/digits/explain",
        content=image_bytes(digit_image(0.5)),
        headers={"Content-Type": "image/png", "Accept": "image/png"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.size == (224, 224)
    assert picture.mode == "RGB"


def test_word_occlusion_finds_the_word_that_decides(client: httpx.Client) -> None:
    """On the sentiment classifier, "great" carries the positive score: removing it lowers
    the top score most, and the other words matter (almost) nothing."""
    response = client.post(
        "/v2/models/sentiment/explain",
        content=b"the movie was great",
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["kind"] == "text"
    assert answer["target"]["label"] == "positive"
    words = {w["word"]: w["importance"] for w in answer["words"]}
    assert max(words, key=lambda w: words[w]) == "great"
    assert words["great"] > 0.1
    assert answer["perturbations"] == 4
    by_label = client.post(
        "/v2/models/sentiment/explain",
        content=b"the movie was great",
        headers={"Content-Type": "text/plain"},
        params={"target": "negative"},
    ).json()
    assert by_label["target"]["index"] == 0
    assert min(by_label["words"], key=lambda w: w["importance"])["word"] == "great"


@pytest.mark.parametrize(
    ("model", "params", "status", "message"),
    [
        ("digits", {"patch": 0}, 400, "patch must be an integer >= 1"),
        ("digits", {"patch": 40}, 400, "larger than the image"),
        ("digits", {"patch": 1, "stride": 1}, 400, "784 perturbations"),
        ("digits", {"method": "rise", "masks": 500}, 400, "max_perturbations"),
        ("digits", {"method": "lime"}, 400, "method must be occlusion or rise"),
        ("digits", {"target": 10}, 400, "target 10 is out of range"),
        ("digits", {"target": "cat"}, 400, "target 'cat' is not a label"),
        ("digits", {"colour": "red"}, 400, "unknown explain parameter(s) colour"),
        ("digits", {"probability": 1.5}, 400, "probability must be in (0, 1)"),
        ("digits", {"output": "nope"}, 400, "unknown output 'nope'"),
        ("digits", {"reference": "a text"}, 400, "reference is for embedding models only"),
        ("nosuch", {}, 404, "unknown model 'nosuch'"),
    ],
)
def test_bad_image_explanations_are_refused(
    client: httpx.Client, model: str, params: dict[str, Any], status: int, message: str
) -> None:
    """Each bad parameter (or a limit passed) is a 4xx naming the model and the problem."""
    response = client.post(
        f"/v2/models/{model}/explain",
        content=image_bytes(digit_image(0.5)),
        headers={"Content-Type": "image/png"},
        params=params,
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    if status == 400:
        assert "'digits'" in response.json()["error"]


def test_bad_bodies_are_refused(client: httpx.Client) -> None:
    """Two instances, a wrong content type, an empty body, a one-word text, a PNG of a text
    explanation and too many features are each a 400 naming the model."""
    x = np.ones((2, 8), np.float32)
    cases = [
        ("linear", {"json": _v2("x", "FP32", [2, 8], x.ravel().tolist())}, "one instance"),
        (
            "digits",
            {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
            "the model takes images",
        ),
        ("digits", {"content": b"", "headers": {"Content-Type": "image/png"}}, "body is empty"),
        (
            "sentiment",
            {"content": b"great", "headers": {"Content-Type": "text/plain"}},
            "two words or more",
        ),
        (
            "sentiment",
            {
                "content": b"the movie was great",
                "headers": {"Content-Type": "text/plain", "Accept": "image/png"},
            },
            "PNG heatmap is drawn for image inputs only",
        ),
        (
            "linear",
            {"content": b"\x00" * 32, "headers": {"Content-Type": "application/octet-stream"}},
            "send a V2 inference request as JSON",
        ),
    ]
    for model, request, message in cases:
        response = client.post(f"/v2/models/{model}/explain", **request)
        assert response.status_code == 400, (model, response.text)
        assert message in response.json()["error"], response.json()
        assert f"'{model}'" in response.json()["error"]


def test_feature_count_past_the_limit_is_refused(tmp_path: Path) -> None:
    """A model whose ``[explain] max_perturbations`` is below its feature count refuses the
    explanation with 400 naming the limit's key; the server keeps serving."""
    write_model(tmp_path, "small", _linear(True), config="[explain]\nmax_perturbations = 4\n")
    with (
        running_server(tmp_path, grpc=False) as running,
        httpx.Client(base_url=running.url) as http,
    ):
        response = http.post("/v2/models/small/explain", json=_v2("x", "FP32", [1, 8], [1.0] * 8))
        assert response.status_code == 400
        error = response.json()["error"]
        assert "8 perturbations (8 features)" in error
        assert "[explain] max_perturbations" in error
        assert http.get("/v2/health/ready").status_code == 200
