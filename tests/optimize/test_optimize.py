"""Tests for shipyard.optimize.optimize: real quantization, both guards, publication, errors."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from shipyard.config import ModelConfig
from shipyard.errors import InvalidInputError, NotFoundError, UnsupportedError
from shipyard.hardware import HardwareReport, probe
from shipyard.optimize import BenchmarkSettings, Timer, optimize
from shipyard.optimize.benchmark import LatencyStats, Measurement, ThroughputStats
from shipyard.testing import cnn_model, running_server, write_model
from tests.cpus import AVX2_EPYC, VNNI_XEON
from tests.optimize.conftest import CONFIG, FAST, cnn_outputs

#: The int8 paths whose accuracy holds on every CPU: 7-bit weights (what an x86 CPU without
#: VNNI gets, forced here through the probe) and whatever this machine's CPU chooses.
#: Without saturation int8 arithmetic is exact, so both compute the same on any kernel.
INT8_PATHS = [
    pytest.param(lambda: probe(cpuinfo_text=AVX2_EPYC), id="no-vnni-probe"),
    pytest.param(lambda: None, id="this-cpu"),
]

PREPROCESS = """\
[[preprocess]]
input = "image"
target = "input"
steps = [
  {op = "decode_image", mode = "L"},
  {op = "scale", factor = 0.00392156862745098},
  {op = "layout", order = "NCHW"},
  {op = "cast", datatype = "FP32"},
]
"""


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _timer(before: tuple[float, float], after: tuple[float, float], rounds: int = 3) -> Timer:
    """A timer that reports fixed (p50 ms, samples/s) for the source and the candidate."""

    def timed(
        models: Mapping[str, Path], config: ModelConfig, settings: BenchmarkSettings, *_: object
    ) -> dict[str, list[Measurement]]:
        source, candidate = models
        figures = {source: before, candidate: after}
        return {
            key: [
                Measurement(
                    LatencyStats(1, 50, p50, p50, p50, p50, p50),
                    ThroughputStats(settings.throughput_batch, 10, 1.0, per_s),
                )
                for _ in range(rounds)
            ]
            for key, (p50, per_s) in figures.items()
        }

    return timed


def test_a_slower_candidate_is_not_published_and_the_refusal_has_the_figures(
    cnn_repo: Path,
) -> None:
    """Measured 1.26x slower at latency (timer injected), int8 is not published; the
    decision gives the figures and the way to publish it for its size."""
    result = optimize(
        cnn_repo, "cnn", method="int8-dynamic", timer=_timer((1.0, 1000), (1.26, 800))
    )
    assert not result.published
    assert result.report["accuracy"]["passed"] is True
    guard = result.report["speed_guard"]
    assert guard["objective"] == "latency"
    assert guard["slower_latency"] is True
    assert result.report["decision"].startswith(
        "not published: slower at latency on this hardware: latency 1.26x slower,"
        " throughput 1.25x lower (noise margin ±0.0% latency, ±0.0% throughput over 3 rounds)"
    )
    assert "--objective size would publish it" in result.report["decision"]
    assert len(result.report["speed"]["rounds"]) == 3
    assert not (cnn_repo / "cnn" / "2").exists()


def test_objective_size_publishes_the_smaller_slower_candidate(cnn_repo: Path) -> None:
    """--objective size publishes the same measured-slower int8 model, saying it is slower."""
    result = optimize(
        cnn_repo,
        "cnn",
        method="int8-dynamic",
        objective="size",
        timer=_timer((1.0, 1000), (1.26, 800)),
    )
    assert result.published
    assert result.report["speed_guard"]["verdict"].startswith("better at size: ")
    assert "but latency 1.26x slower" in result.report["speed_guard"]["verdict"]


def test_a_faster_candidate_is_published_for_latency(cnn_repo: Path) -> None:
    """Measured 1.3x faster at latency (timer injected) beyond the noise: published."""
    result = optimize(cnn_repo, "cnn", method="none", timer=_timer((1.3, 1000), (1.0, 1000)))
    assert result.published, result.report["decision"]
    assert result.report["speed_guard"]["verdict"] == "better at latency: latency 1.30x faster"


@pytest.mark.parametrize(
    ("cpuinfo", "reduce_range", "family"),
    [(AVX2_EPYC, True, "x86-no-vnni"), (VNNI_XEON, False, "x86-vnni")],
    ids=["avx2", "vnni"],
)
def test_int8_weights_follow_the_probed_cpu(
    cnn_repo: Path, cpuinfo: str, reduce_range: bool, family: str
) -> None:
    """--reduce-range auto takes 7-bit weights on x86 without VNNI, the full range with VNNI;
    report.json records the choice and the CPU it was made for."""
    hardware: HardwareReport = probe(cpuinfo_text=cpuinfo)
    result = optimize(
        cnn_repo, "cnn", method="int8-dynamic", hardware=hardware, timer=_timer((1, 1), (1, 1))
    )
    int8 = result.report["optimization"]["int8"]
    assert int8["reduce_range"] is reduce_range
    assert (int8["setting"], int8["family"]) == ("auto", family)
    assert result.report["optimization"]["weights"] == (
        "int8 (7-bit range)" if reduce_range else "int8"
    )
    assert result.report["hardware"]["int8_kernels"] == family
    forced = optimize(
        cnn_repo,
        "cnn",
        method="int8-dynamic",
        hardware=hardware,
        reduce_range="off" if reduce_range else "on",
        timer=_timer((1, 1), (1, 1)),
    )
    assert forced.report["optimization"]["int8"]["reduce_range"] is not reduce_range


def test_int8_dynamic_passes_the_accuracy_guard_and_is_forced(cnn_repo: Path) -> None:
    """int8-dynamic (per-channel) of the CNN agrees on top-1, is 3x+ smaller, --force: v2."""
    result = optimize(cnn_repo, "cnn", method="int8-dynamic", force=True, benchmark=FAST)
    assert result.published
    assert result.version == 2
    assert result.path == cnn_repo / "cnn" / "2"
    model = cnn_repo / "cnn" / "2" / "model.onnx"
    assert {"DynamicQuantizeLinear", "ConvInteger"} & _ops(model)
    report = json.loads((result.path / "report.json").read_text())
    assert report["version"] == 2
    assert report["optimization"]["method"] == "int8-dynamic"
    assert report["optimization"]["per_channel"] is True
    assert report["accuracy"]["metric"] == "top1-agreement"
    assert report["accuracy"]["passed"] is True
    assert report["size"]["ratio"] < 0.35
    assert report["speed_guard"]["smaller"] is True
    assert report["speed"]["before"]["latency"]["runs"] > 0
    assert report["speed"]["after"]["throughput"]["batch"] == FAST.throughput_batch
    assert report["hardware"]["providers"]
    assert any("random inputs" in note for note in report["notes"])


def test_model_toml_keeps_its_settings(cnn_repo: Path) -> None:
    """Publishing keeps model.toml's comment and settings, adding only the signature."""
    optimize(cnn_repo, "cnn", method="int8-dynamic", force=True, benchmark=FAST)
    text = (cnn_repo / "cnn" / "model.toml").read_text()
    assert text.startswith(CONFIG.splitlines()[0])
    table = tomllib.loads(text)
    assert table["instance_count"] == 2
    assert table["onnxruntime"] == {"intra_op_threads": 1, "graph_optimization_level": "all"}
    assert table["inputs"][0]["name"] == "input"


def test_bad_candidate_is_rejected_and_nothing_published(cnn_repo: Path) -> None:
    """max-abs with a tolerance of 0 must reject any int8 model, with the figures in the report."""
    result = optimize(
        cnn_repo, "cnn", method="int8-dynamic", metric="max-abs", max_drop=0.0, benchmark=FAST
    )
    assert not result.published
    assert result.report["accuracy"]["passed"] is False
    assert result.report["accuracy"]["drop"] == result.report["accuracy"]["max_abs_error"] > 0
    assert "rejected by the accuracy guard" in result.report["decision"]
    assert sorted(p.name for p in (cnn_repo / "cnn").iterdir()) == ["1", "model.toml"]


@pytest.mark.parametrize("hardware", INT8_PATHS)
def test_int8_static_with_calibration_and_labels(
    cnn_repo: Path,
    calibration: Path,
    validation: Path,
    hardware: Callable[[], HardwareReport | None],
) -> None:
    """Static QDQ int8 calibrated on .npz data keeps accuracy vs labels within 1 point, with
    7-bit weights and with this CPU's choice (published for size: speed is not tested here)."""
    result = optimize(
        cnn_repo,
        "cnn",
        method="int8-static",
        calibration=calibration,
        validation=validation,
        benchmark=FAST,
        objective="size",
        hardware=hardware(),
    )
    assert result.published, result.report["decision"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(cnn_repo / "cnn" / "2" / "model.onnx")
    accuracy = result.report["accuracy"]
    assert accuracy["metric"] == "accuracy"
    assert accuracy["baseline_accuracy"] == 1.0
    assert accuracy["drop"] == pytest.approx(1.0 - accuracy["candidate_accuracy"])
    assert accuracy["drop"] <= 0.01
    calibrated = result.report["optimization"]["calibration"]
    assert calibrated["samples"] == 64
    assert calibrated["from"] == str(calibration)


@pytest.mark.parametrize("hardware", INT8_PATHS)
def test_published_version_is_served_close_to_the_original(
    cnn_repo: Path,
    calibration: Path,
    validation: Path,
    images: np.ndarray,
    hardware: Callable[[], HardwareReport | None],
) -> None:
    """The int8-static version is what the server answers with, and it is close to fp32."""
    result = optimize(
        cnn_repo,
        "cnn",
        method="int8-static",
        calibration=calibration,
        validation=validation,
        benchmark=FAST,
        objective="size",
        hardware=hardware(),
    )
    assert result.version == 2
    batch = images[64:72]
    expected = cnn_outputs(cnn_repo / "cnn" / "1" / "model.onnx", batch)
    quantized = cnn_outputs(cnn_repo / "cnn" / "2" / "model.onnx", batch)
    with running_server(cnn_repo, grpc=False) as server:
        meta = httpx.get(f"{server.url}/v2/models/cnn", timeout=10).json()
        assert meta["versions"] == ["2"]
        body = {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(batch.shape),
                    "data": batch.ravel().tolist(),
                }
            ]
        }
        response = httpx.post(f"{server.url}/v2/models/cnn/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["shape"] == [8, 10]
    got = np.asarray(output["data"], dtype=np.float32).reshape(8, 10)
    np.testing.assert_allclose(got, quantized, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=0.1)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.875


def test_fp16_keeps_the_signature_and_warns_on_cpu(cnn_repo: Path) -> None:
    """fp16 halves the weights, keeps FP32 inputs/outputs, and says it is meant for GPUs."""
    result = optimize(cnn_repo, "cnn", method="fp16", metric="cosine", benchmark=FAST)
    assert result.report["inputs"][0]["datatype"] == "FP32"
    assert result.report["outputs"][0]["datatype"] == "FP32"
    assert 0.45 < result.report["size"]["ratio"] < 0.6
    assert result.report["accuracy"]["cosine"] > 0.999
    assert any("GPU" in note for note in result.report["notes"])
    assert result.published == result.report["speed_guard"]["passed"]


def test_graph_optimization_only_is_forced_past_the_speed_guard(cnn_repo: Path) -> None:
    """--quantize none at level basic is identical in outputs; --force publishes it whatever
    the speed guard said, and the report records whether it was forced."""
    result = optimize(
        cnn_repo, "cnn", method="none", graph_level="basic", force=True, benchmark=FAST
    )
    assert result.published
    assert result.report["accuracy"]["max_abs_error"] < 1e-5
    assert result.report["optimization"]["graph_optimization_level"] == "basic"
    assert result.report["forced"] is (not result.report["speed_guard"]["passed"])


def test_chained_optimization_guards_against_the_unoptimized_version(
    cnn_repo: Path, calibration: Path
) -> None:
    """Optimizing an optimized version compares accuracy with v1, the unoptimized ancestor."""
    optimize(cnn_repo, "cnn", method="int8-dynamic", force=True, benchmark=FAST)
    second = optimize(cnn_repo, "cnn", version=2, method="none", force=True, benchmark=FAST)
    assert second.report["optimization"]["source_version"] == 2
    assert second.report["optimization"]["baseline_version"] == 1
    assert second.report["accuracy"]["max_abs_error"] > 0  # int8 vs fp32, not int8 vs int8


def test_wrong_calibration_shape_is_a_clear_error(cnn_repo: Path, tmp_path: Path) -> None:
    """Calibration arrays of the wrong shape fail before quantization, naming both shapes."""
    bad = tmp_path / "bad.npz"
    np.savez(bad, input=np.zeros((8, 3, 28, 28), np.float32))
    with pytest.raises(InvalidInputError, match=r"shape \[8, 3, 28, 28\], the input is \[-1, 1"):
        optimize(cnn_repo, "cnn", method="int8-static", calibration=bad, benchmark=FAST)
    assert not (cnn_repo / "cnn" / "2").exists()


def test_wrong_calibration_names_and_missing_file(cnn_repo: Path, tmp_path: Path) -> None:
    """Arrays not named after the inputs, a missing file, or no file at all are one-line errors."""
    misnamed = tmp_path / "misnamed.npz"
    np.savez(misnamed, images=np.zeros((8, 1, 28, 28), np.float32))
    with pytest.raises(InvalidInputError, match="no array named 'input' \\(it has 'images'\\)"):
        optimize(cnn_repo, "cnn", method="int8-static", calibration=misnamed)
    with pytest.raises(InvalidInputError, match="does not exist"):
        optimize(cnn_repo, "cnn", method="int8-static", calibration=tmp_path / "nope.npz")
    with pytest.raises(InvalidInputError, match="needs --calibration"):
        optimize(cnn_repo, "cnn", method="int8-static")


def test_model_or_version_not_in_repository(cnn_repo: Path) -> None:
    """An unknown model or version is NotFoundError; an invalid name is refused."""
    with pytest.raises(NotFoundError, match="'resnet' is not in the repository"):
        optimize(cnn_repo, "resnet")
    with pytest.raises(NotFoundError, match="no version 7 \\(versions: 1\\)"):
        optimize(cnn_repo, "cnn", version=7)
    with pytest.raises(InvalidInputError, match="invalid model name"):
        optimize(cnn_repo, "../cnn")


def test_image_folder_without_preprocessing_is_refused(cnn_repo: Path, tmp_path: Path) -> None:
    """A folder of images for a model without a [[preprocess]] image entry is refused."""
    folder = tmp_path / "images"
    folder.mkdir()
    with pytest.raises(UnsupportedError, match=r"folder of images .* needs a model with one input"):
        optimize(cnn_repo, "cnn", method="int8-static", calibration=folder)


@pytest.mark.parametrize("hardware", INT8_PATHS)
def test_image_folder_calibration_through_the_preprocessing(
    tmp_path: Path, images: np.ndarray, hardware: Callable[[], HardwareReport | None]
) -> None:
    """PNG files are decoded by the model's [[preprocess]] entry and calibrate int8-static."""
    image_module = pytest.importorskip("PIL.Image")
    repo = tmp_path / "repo"
    write_model(repo, "cnn", cnn_model(), config=PREPROCESS)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(images[:20]):
        pixels = (np.clip(image[0], 0, 1) * 255).astype(np.uint8)
        image_module.fromarray(pixels).save(folder / f"{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    result = optimize(
        repo,
        "cnn",
        method="int8-static",
        calibration=folder,
        benchmark=FAST,
        objective="size",
        hardware=hardware(),
    )
    assert result.published, result.report["decision"]
    assert result.report["optimization"]["calibration"] == {
        "from": str(folder),
        "samples": 20,
        "method": "MinMax",
    }
    assert result.report["accuracy"]["samples"] == 20
    assert "[[preprocess]]" in (repo / "cnn" / "model.toml").read_text()
