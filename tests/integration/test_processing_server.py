"""Pre- and post-processing through a real server: /predict, V2 infer with BYTES, classification,
text models, bad inputs, and processing configs with mistakes."""

from __future__ import annotations

import base64
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shipyard.testing import RunningServer, identity_model, running_server, write_model
from shipyard.testing.processing import (
    digit_image,
    embedding_model,
    image_bytes,
    mean_bucket_model,
    train_tokenizer,
)
from tests.integration import transports as tp

SENTENCES = ["the cat sat on the mat", "a dog ran fast", "the dog sat on a log"]
IMAGE_STEPS = """steps = [
  {op = "decode_image", mode = "L"},
  {op = "resize", size = [28, 28]},
  {op = "scale", factor = 0.00392156862745098},
  {op = "normalize", mean = [0.0], std = [1.0]},
  {op = "layout", order = "NCHW"},
  {op = "cast", datatype = "FP32"},
]"""
DIGITS = f"""
[[preprocess]]
input = "image"
target = "input"
{IMAGE_STEPS}

[[postprocess]]
output = "probabilities"
labels = "labels.txt"
steps = [{{op = "softmax"}}]
"""
TOPK = DIGITS.replace(
    'steps = [{op = "softmax"}]', 'steps = [{op = "softmax"}, {op = "topk", k = 3}]'
)
BATCHED = (
    DIGITS + "\n[dynamic_batching]\nmax_queue_delay_us = 2000000\npreferred_batch_sizes = [4]\n"
)
TEXT = """
[[preprocess]]
input = "text"
steps = [{op = "tokenize", tokenizer = "tokenizer.json", max_length = 8, truncation = "%s"}]

[[postprocess]]
output = "last_hidden_state"
steps = [{op = "mean_pool", mask = "attention_mask"}, {op = "l2_normalize"}]
"""
LABELS = "".join(f"{i}\n" for i in range(10))

#: model name → (model.toml, labels file or None, expected reason in the repository index)
BROKEN = {
    "unknown_step": (
        DIGITS.replace('{op = "softmax"}', '{op = "sigmoid"}'),
        LABELS,
        "unknown step 'sigmoid'",
    ),
    "bad_resize": (
        DIGITS.replace("size = [28, 28]", "size = [32, 32]"),
        LABELS,
        "resize.size",
    ),
    "bad_resize_shape": (
        DIGITS.replace("size = [28, 28]", "size = [28]"),
        LABELS,
        "size must be [height, width]",
    ),
    "labels_missing": (DIGITS, None, "labels file 'labels.txt' not found"),
    "labels_count": (DIGITS, "a\nb\nc\n", "has 3 labels but output 'probabilities'"),
}


def _digits(repo: Path, name: str, config: str, labels: str | None = LABELS) -> None:
    write_model(repo, name, mean_bucket_model(output="probabilities"), config=config)
    if labels is not None:
        (repo / name / "labels.txt").write_text(labels, encoding="utf-8")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with image and text models, a plain model, and broken configs."""
    root = tmp_path_factory.mktemp("processing") / "repo"
    root.mkdir()
    _digits(root, "digits", DIGITS)
    _digits(root, "digits_topk", TOPK)
    _digits(root, "digits_batched", BATCHED)
    for name, (config, labels, _) in BROKEN.items():
        _digits(root, name, config, labels)
    write_model(root, "plain", identity_model())
    for name, truncation in (("text", "reject"), ("text_truncating", "true")):
        folder = root / name
        folder.mkdir()
        tokenizer = train_tokenizer(folder / "tokenizer.json", SENTENCES)
        model, table = embedding_model(tokenizer.get_vocab_size())
        np.save(folder / "table.npy", table)
        config = TEXT % truncation
        write_model(root, name, model, config=config.replace('"true"', "true"))
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    """One real server (HTTP and gRPC) for the module."""
    with running_server(repo) as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client of the server."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def png(mean: float) -> bytes:
    """A 28x28 grayscale PNG of mean intensity ``mean``."""
    return image_bytes(digit_image(mean))


def predict(http: httpx.Client, model: str, body: bytes, content_type: str, **params: Any) -> Any:
    """POST /predict and return the response."""
    return http.post(
        f"/v2/models/{model}/predict",
        content=body,
        headers={"content-type": content_type},
        params=params,
    )


def expected_embedding(repo: Path, model: str, text: str) -> np.ndarray[Any, Any]:
    """The pooled, normalized vector the text model should answer for ``text``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(repo / model / "tokenizer.json"))
    tokenizer.enable_truncation(8)  # the models' max_length, special tokens kept
    table = np.load(repo / model / "table.npy")
    vector = table[tokenizer.encode(text).ids].mean(axis=0)
    unit: np.ndarray[Any, Any] = vector / np.linalg.norm(vector)
    return unit


# -- configs with mistakes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_processing_config_mistakes_fail_the_load_with_a_reason(
    http: httpx.Client, name: str
) -> None:
    """A bad processing config leaves the model UNAVAILABLE with a clear reason in the index."""
    rows = {row["name"]: row for row in http.post("/v2/repository/index").json()}
    assert rows[name]["state"] == "UNAVAILABLE"
    assert BROKEN[name][2] in rows[name]["reason"]
    assert http.get(f"/v2/models/{name}/ready").status_code == 503


def test_good_models_are_ready(http: httpx.Client) -> None:
    """The correctly configured processed models load."""
    rows = {row["name"]: row["state"] for row in http.post("/v2/repository/index").json()}
    for name in ("digits", "digits_topk", "digits_batched", "text", "text_truncating", "plain"):
        assert rows[name] == "READY", name


# -- images ------------------------------------------------------------------------------------


def test_metadata_shows_the_client_facing_signature(http: httpx.Client) -> None:
    """Model metadata shows the BYTES image input and the post-processed outputs."""
    metadata = http.get("/v2/models/digits_topk").json()
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [
        {"name": "labels", "datatype": "BYTES", "shape": [-1, 3]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
    ]


@pytest.mark.parametrize(("mean", "label"), [(0.02, "0"), (0.33, "3"), (0.73, "7"), (0.97, "9")])
def test_png_to_label_through_predict(http: httpx.Client, mean: float, label: str) -> None:
    """A PNG posted to /predict comes back with the right label and a probability."""
    response = predict(http, "digits", png(mean), "image/png")
    assert response.status_code == 200, response.text
    (answer,) = response.json()["predictions"]
    assert answer["label"] == label
    assert 0.0 < answer["score"] <= 1.0
    assert answer["top_k"] == [{"label": label, "score": answer["score"]}]


def test_predict_top_k_and_json_instances(http: httpx.Client) -> None:
    """JSON instances of base64 images give one answer each, with top_k classes."""
    body = {
        "instances": [
            {"b64": base64.b64encode(png(0.15)).decode()},
            base64.b64encode(png(0.55)).decode(),
        ]
    }
    response = http.post("/v2/models/digits_topk/predict", json=body, params={"top_k": 2})
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert [a["label"] for a in answers] == ["1", "5"]
    assert all(len(a["top_k"]) == 2 for a in answers)


def test_v2_infer_json_with_a_base64_bytes_input(http: httpx.Client) -> None:
    """V2 JSON carries the image as a base64 BYTES string; the output is the softmax."""
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(png(0.45)).decode()],
            }
        ],
    }
    response = http.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "probabilities"
    assert output["shape"] == [1, 10]
    assert int(np.argmax(output["data"])) == 4
    assert sum(output["data"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("transport", tp.TRANSPORTS)
def test_tritonclient_sends_raw_png_bytes(server: RunningServer, transport: str) -> None:
    """tritonclient (HTTP binary and gRPC raw) sends PNG bytes; a batch of 2 gets 2 answers."""
    client = tp.make_client(transport, server)
    images = np.array([png(0.25), png(0.85)], dtype=np.object_)
    result = client.infer(
        "digits_topk",
        [tp.infer_input(transport, "image", images, binary=True)],
        outputs=[
            tp.requested_output(transport, "labels"),
            tp.requested_output(transport, "scores"),
        ],
    )
    labels = tp.output_array(transport, result, "labels")
    assert labels is not None
    assert labels[:, 0].tolist() == [b"2", b"8"]
    scores = result.as_numpy("scores")
    assert scores.shape == (2, 3)
    assert (scores[:, 0] >= scores[:, 1]).all()


@pytest.mark.parametrize("transport", tp.TRANSPORTS)
def test_classification_parameter_with_labels(server: RunningServer, transport: str) -> None:
    """The classification parameter returns Triton's "value:index:label" strings."""
    client = tp.make_client(transport, server)
    module = tp.client_module(transport)
    images = np.array([png(0.65)], dtype=np.object_)
    result = client.infer(
        "digits",
        [tp.infer_input(transport, "image", images)],
        outputs=[module.InferRequestedOutput("probabilities", class_count=3)],
    )
    classes = tp.output_array(transport, result, "probabilities")
    assert classes is not None
    assert classes.shape == (1, 3)
    value, index, label = classes[0, 0].decode().split(":")
    assert (index, label) == ("6", "6")
    assert 0.0 < float(value) <= 1.0
    assert len(value.split(".")[1]) == 6  # C's %f, as Triton prints it


@pytest.mark.parametrize("transport", tp.TRANSPORTS)
def test_classification_parameter_without_processing(server: RunningServer, transport: str) -> None:
    """A model without processing gets "value:index" strings for any FP output."""
    client = tp.make_client(transport, server)
    module = tp.client_module(transport)
    values = np.array([[0.5, 3.0, -1.0, 2.0]], np.float32)
    result = client.infer(
        "plain",
        [tp.infer_input(transport, "INPUT0", values)],
        outputs=[module.InferRequestedOutput("OUTPUT0", class_count=2)],
    )
    classes = tp.output_array(transport, result, "OUTPUT0")
    assert classes is not None
    assert classes.tolist() == [[b"3.000000:1", b"2.000000:3"]]


def test_processed_requests_batch_together(server: RunningServer, http: httpx.Client) -> None:
    """Four concurrent /predict requests run as one batch of 4 after pre-processing."""
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(predict, http, "digits_batched", png(m), "image/png")
            for m in (0.05, 0.15, 0.25, 0.35)
        ]
        labels = [f.result(timeout=30).json()["predictions"][0]["label"] for f in futures]
    assert labels == ["0", "1", "2", "3"]
    (stats,) = http.get("/v2/models/digits_batched/stats").json()["model_stats"]
    assert [b["batch_size"] for b in stats["batch_stats"]] == [4]


# -- text --------------------------------------------------------------------------------------


def test_text_to_embeddings_through_predict(http: httpx.Client, repo: Path) -> None:
    """text/plain (one sentence per line) gives one unit-length embedding per line."""
    lines = ["the cat sat", "a dog ran fast"]
    response = predict(http, "text", "\n".join(lines).encode(), "text/plain")
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    for line, answer in zip(lines, answers, strict=True):
        expected = expected_embedding(repo, "text", line)
        assert np.asarray(answer["embedding"]) == pytest.approx(expected, abs=1e-5)


def test_text_through_v2_infer(http: httpx.Client, repo: Path) -> None:
    """V2 infer with a BYTES text input returns the pooled embedding."""
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["the mat"]}]}
    response = http.post("/v2/models/text/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [1, 8]
    expected = expected_embedding(repo, "text", "the mat")
    assert np.asarray(output["data"]) == pytest.approx(expected, abs=1e-5)


def test_long_text_is_truncated_when_configured(http: httpx.Client, repo: Path) -> None:
    """With truncation = true, a text over max_length is cut, not refused."""
    text = "the cat sat on the mat and the dog sat on a log"
    response = predict(http, "text_truncating", text.encode(), "text/plain")
    assert response.status_code == 200, response.text
    (answer,) = response.json()["predictions"]
    assert np.asarray(answer["embedding"]) == pytest.approx(
        expected_embedding(repo, "text_truncating", text), abs=1e-5
    )


# -- bad inputs --------------------------------------------------------------------------------

_NOISE = image_bytes(np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8))


@pytest.mark.parametrize(
    ("model", "body", "content_type", "status", "message"),
    [
        ("digits", b"GIF89a? not really", "image/png", 400, "not an image"),
        ("digits", b"hello", "application/octet-stream", 400, "not an image"),
        ("digits", _NOISE[: len(_NOISE) // 2], "image/png", 400, "truncated or corrupt"),
        (
            "digits",
            image_bytes(np.zeros((4100, 4100), np.uint8)),
            "image/png",
            413,
            "over the limit of 16777216",
        ),
        ("digits", b"", "image/png", 400, "body is empty"),
        ("digits", b"a cat", "text/plain", 400, "takes images"),
        ("text", b"\n  \n", "text/plain", 400, "text is empty"),
        ("text", b'{"instances": [""]}', "application/json", 400, "text is empty"),
        (
            "text",
            b"the cat sat on the mat and the dog sat on a log",
            "text/plain",
            400,
            "over the limit of 8",
        ),
        ("text", b"\xff\xfe", "text/plain", 400, "UTF-8"),
        ("plain", b"x", "application/octet-stream", 400, "use /infer"),
        ("nope", b"x", "image/png", 404, "unknown model"),
        ("unknown_step", png(0.5), "image/png", 503, "not ready"),
    ],
)
def test_bad_inputs_get_a_clear_4xx_and_the_server_keeps_working(
    http: httpx.Client, model: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    """Each bad input is answered with its status and {"error"}; the next request works."""
    response = predict(http, model, body, content_type)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    again = predict(http, "digits", png(0.5), "image/png")
    assert again.json()["predictions"][0]["label"] == "5"


def test_bad_top_k_is_400(http: httpx.Client) -> None:
    """top_k must be a positive integer."""
    for value in ("0", "x", "-1"):
        response = predict(http, "digits", png(0.5), "image/png", top_k=value)
        assert response.status_code == 400
        assert "top_k" in response.json()["error"]


def test_bad_image_through_v2_infer_is_400(http: httpx.Client) -> None:
    """V2 infer with a BYTES element that is not an image is refused, naming the input."""
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["nope"]}]}
    response = http.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 400
    assert "input 'image', element 0: not an image" in response.json()["error"]


def test_model_inputs_are_not_accepted_by_a_processed_model(http: httpx.Client) -> None:
    """Once processed, the model takes its client-facing input only."""
    data = [0.0] * 784
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": data}]
    }
    response = http.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 400
    assert "unknown input 'input'" in response.json()["error"]
