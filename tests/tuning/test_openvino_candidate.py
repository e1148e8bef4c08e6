"""OpenVINO as a backend candidate of ``shipyard tune``, beside ONNX Runtime's providers."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from shipyard.cli import main
from shipyard.config import ModelConfig, parse_model_config
from shipyard.hardware import probe
from shipyard.tuning.baseline import Baseline, settings_changes
from shipyard.tuning.search import Candidate
from shipyard.tuning.variants import OPENVINO, suitable_providers
from tests.cpus import AVX2_EPYC

CPU = "CPUExecutionProvider"


def test_openvino_is_a_candidate_for_the_fp32_version_only() -> None:
    """With OpenVINO installed (it reports a CPU device), the version as it is may run on
    OpenVINO; variants holding ONNX Runtime's own operators or its int8 stay on ONNX Runtime."""
    hardware = probe(cpuinfo_text=AVX2_EPYC, providers=[CPU], gpu_probe=lambda: ([], "none"))
    assert any(d.startswith("CPU") for d in hardware.openvino_devices)
    assert suitable_providers(hardware, "fp32") == (CPU, OPENVINO)
    assert OPENVINO not in suitable_providers(hardware, "optimized")
    assert OPENVINO not in suitable_providers(hardware, "int8-static")


def test_switching_engines_writes_backend_and_that_engines_threads() -> None:
    """Choosing OpenVINO writes backend = "openvino" and its own intra_op_threads; going back
    writes backend = "onnxruntime" with ONNX Runtime's; inter-op settings never reach OpenVINO."""
    hardware = probe(cpuinfo_text=AVX2_EPYC, providers=[CPU], gpu_probe=lambda: ([], "none"))
    ort = Baseline.resolve(ModelConfig("m"), True, hardware)
    assert ort.provider == CPU
    to_openvino = Candidate("fp32", OPENVINO, max_batch_size=32, inter_op_threads=2)
    assert settings_changes(to_openvino, ort) == {
        "backend": "openvino",
        "openvino.intra_op_threads": 1,
    }
    ov = Baseline.resolve(
        parse_model_config("m", {"backend": "openvino", "openvino": {"intra_op_threads": 2}}),
        True,
        hardware,
    )
    assert ov.provider == OPENVINO
    assert ov.candidate.intra_op_threads == 2
    back = Candidate("fp32", CPU, intra_op_threads=2, max_batch_size=32)
    assert settings_changes(back, ov) == {
        "backend": "onnxruntime",
        "onnxruntime.intra_op_threads": 2,
        "onnxruntime.providers": [CPU],
    }


def test_tune_measures_both_engines_and_reports_the_best_of_each(cnn_repo: Path) -> None:
    """A real tuning run of the CNN serves it on ONNX Runtime and on OpenVINO; the report
    names the best candidate of each engine, and what it wrote loads."""
    args = ["tune", f"{cnn_repo}/cnn", "--budget-minutes", "0.4", "--duration", "0.3"]
    args += ["--concurrency", "1,4", "--variants", "fp32", "--json"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    measured = [c for c in report["candidates"] if c["status"] == "measured"]
    assert {c["candidate"]["provider"] for c in measured} >= {CPU, OPENVINO}
    engines = {e["engine"]: e for e in report["engines"]}
    assert set(engines) == {"ONNX Runtime", "OpenVINO"}
    for engine in engines.values():
        assert engine["score"]["rps"] > 0
    text = (cnn_repo / "cnn" / "model.toml").read_text(encoding="utf-8")
    config = parse_model_config("cnn", tomllib.loads(text))
    winner = report["winner"]["candidate"]["provider"]
    assert (config.backend == "openvino") == (winner == OPENVINO)
