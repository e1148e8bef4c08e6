"""``shipyard tune`` on the MNIST-shaped CNN with a tiny budget: real servers, real load.

Figures on a shared 2-core machine are noisy, so these tests check that the tuner measured,
reported and wrote something valid, never which candidate won.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import httpx
import numpy as np
from click.testing import CliRunner, Result

from shipyard.cli import main
from shipyard.config import parse_model_config
from shipyard.testing import running_server

TINY = ("--budget-minutes", "0.3", "--duration", "0.3", "--concurrency", "1,4")


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["tune", *map(str, args)], catch_exceptions=False)


def test_tune_writes_a_config_the_server_loads(cnn_repo: Path) -> None:
    """The tuned model.toml is valid, the server loads the result, and the report is complete."""
    variants = ("--variants", "fp32,optimized,int8-dynamic")
    result = _run(f"{cnn_repo}/cnn", *TINY, *variants, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    measured = [c for c in report["candidates"] if c["status"] == "measured"]
    assert len(measured) >= 2
    for row in measured:
        assert [p["concurrency"] for p in row["points"]] == [1, 4]
        assert all(p["rps"] > 0 and p["p99_ms"] > 0 for p in row["points"])
    assert report["pareto_front"]
    assert {f["candidate"] for f in report["pareto_front"]} <= {c["id"] for c in measured}
    assert sum(c["winner"] for c in report["candidates"]) == 1
    assert report["winner"]["why"]
    assert report["budget"]["used_s"] < 0.3 * 60 + 15  # the budget, plus one candidate's overrun
    saved = json.loads((cnn_repo / "cnn" / "tune-report.json").read_text(encoding="utf-8"))
    assert saved["candidates"] == report["candidates"]
    page = (cnn_repo / "cnn" / "tune-report.html").read_text(encoding="utf-8")
    assert "<svg" in page
    assert "<circle" in page
    assert not re.search(r"<(script|link)\b|src=", page), "the page must be self-contained"
    text = (cnn_repo / "cnn" / "model.toml").read_text(encoding="utf-8")
    assert "# Tuned by hand; optimize must keep this comment" in text
    parse_model_config("cnn", tomllib.loads(text))
    with running_server(cnn_repo, grpc=False) as server:
        body = {
            "inputs": [
                {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.5] * 784}
            ]
        }
        answer = httpx.post(f"{server.url}/v2/models/cnn/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        served = answer.json()["model_version"]
    expected = report["written"]["version"] or 1
    assert served == str(expected)


def test_an_impossible_slo_is_reported_and_nothing_is_written(cnn_repo: Path) -> None:
    """p99 <= 0.001 ms: exit 1, the plain reason and the best found; model.toml untouched."""
    before = (cnn_repo / "cnn" / "model.toml").read_text(encoding="utf-8")
    reports = cnn_repo.parent / "reports"
    result = _run(
        f"{cnn_repo}/cnn",
        "--budget-minutes",
        "0.12",
        "--duration",
        "0.25",
        "--concurrency",
        "1",
        "--variants",
        "fp32",
        "--slo-p99-ms",
        "0.001",
        "--report-dir",
        reports,
    )
    assert result.exit_code == 1, result.output
    assert "SLO not met" in result.stdout
    assert "No candidate met p99 <= 0.001 ms" in result.stderr
    assert "The closest is #" in result.stderr
    assert "nothing was written" in result.stdout
    assert (cnn_repo / "cnn" / "model.toml").read_text(encoding="utf-8") == before
    assert sorted(p.name for p in (cnn_repo / "cnn").iterdir()) == ["1", "model.toml"]
    report = json.loads((reports / "tune-report.json").read_text(encoding="utf-8"))
    assert report["met_slo"] is False
    assert report["written"] == {"model_toml": False, "settings": {}, "version": None}
    assert report["winner"]["score"]["p99_ms"] > 0.001


def test_errors_are_one_line(cnn_repo: Path, tmp_path: Path) -> None:
    """Unknown model, bad flags, wrong calibration data: exit 2, one line, nothing measured."""
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, input=np.zeros((4, 28, 28), np.float32))
    cases = {
        (f"{cnn_repo}/nope",): "model 'nope' is not in the repository",
        (f"{cnn_repo}/cnn", "--calibration", str(wrong)): "array 'input' has shape [4, 28, 28]",
        (f"{cnn_repo}/cnn", "--variants", "fp32,int4"): "--variants: unknown int4",
        (f"{cnn_repo}/cnn", "--concurrency", "0"): "--concurrency takes positive integers",
        (f"{cnn_repo}/cnn", "--slo-p99-ms", "-1"): "--slo-p99-ms must be positive",
        ("cnn",): "expected REPO/NAME",
    }
    for args, message in cases.items():
        result = _run(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ")
        assert message in lines[0]
    assert not (cnn_repo / "cnn" / "tune-report.json").exists()
