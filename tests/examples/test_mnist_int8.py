"""Int8 on the real MNIST CNN, on every CPU: the weight range follows the (injected) probe.

ONNX Runtime's x86 int8 kernels without VNNI/AMX add pairs of u8 x s8 products into 16 bits,
which saturates with full-range weights (an AVX2-only EPYC lost 3 points of accuracy that
way). ``shipyard optimize`` chooses 7-bit weights there. Without saturation, int8 arithmetic
is exact on every kernel, so the 7-bit model computes the same here as on such a machine: the
test forces the probe to an AVX2-only CPU and checks the accuracy guard on 1,500 real test
digits. Measured on the reference machine (AMD EPYC with AVX-512 VNNI): fp32 98.33%; 7-bit
int8-static 98.40%; full-range int8-static 98.33%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shipyard.hardware import probe
from shipyard.optimize import BenchmarkSettings, optimize
from tests.cpus import AVX2_EPYC
from tests.examples.conftest import load_example

pytest.importorskip("torch", reason="the MNIST example needs torch (the [torch] extra)")

#: Short benchmark phases: speed is not what this test checks (objective "size").
QUICK = BenchmarkSettings(warmup_runs=2, latency_seconds=0.1, throughput_seconds=0.1, rounds=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Calibration (512 training digits) and validation (1,500 labelled test digits) files."""
    dataset = load_example("dataset")
    (train_images, _), (test_images, test_labels) = dataset.load_split()
    folder = tmp_path_factory.mktemp("mnist-data")
    calibration, validation = folder / "calibration.npz", folder / "validation.npz"
    np.savez(calibration, input=dataset.to_input(train_images[:512]))
    np.savez(validation, input=dataset.to_input(test_images), labels=test_labels)
    return calibration, validation


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_no_vnni_probe_takes_7_bit_weights_and_passes_the_guard(
    mnist_repo: Path, data: tuple[Path, Path]
) -> None:
    """With the probe forced to an AVX2-only CPU, int8-static takes the reduce-range path and
    the accuracy guard passes on 1,500 real test digits (drop <= 1 point, >= 97.5%)."""
    calibration, validation = data
    result = optimize(
        mnist_repo,
        "mnist",
        version=1,
        method="int8-static",
        calibration=calibration,
        validation=validation,
        objective="size",
        benchmark=QUICK,
        hardware=probe(cpuinfo_text=AVX2_EPYC),
    )
    int8 = result.report["optimization"]["int8"]
    assert int8["reduce_range"] is True
    assert int8["family"] == "x86-no-vnni"
    assert "saturates with full-range weights" in int8["reason"]
    accuracy = result.report["accuracy"]
    assert accuracy["metric"] == "accuracy"
    assert accuracy["samples"] == 1500
    assert accuracy["passed"], accuracy
    assert accuracy["drop"] <= 0.01
    assert accuracy["candidate_accuracy"] >= 0.975
    assert result.published
    stored = json.loads((mnist_repo / "mnist" / str(result.version) / "report.json").read_text())
    assert stored["optimization"]["int8"] == int8


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_this_cpus_choice_passes_the_guard(mnist_repo: Path, data: tuple[Path, Path]) -> None:
    """Whatever this machine's CPU, --reduce-range auto gives an int8 model within 1 point."""
    calibration, validation = data
    result = optimize(
        mnist_repo,
        "mnist",
        version=1,
        method="int8-static",
        calibration=calibration,
        validation=validation,
        objective="size",
        benchmark=QUICK,
    )
    assert result.report["accuracy"]["passed"], result.report["accuracy"]
    assert result.report["accuracy"]["candidate_accuracy"] >= 0.975
