"""``shipyard optimize`` from the command line: tables, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result

from shipyard.cli import main

FAST = ("--bench-seconds", "0.1")


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["optimize", *map(str, args)], catch_exceptions=False)


def test_cli_publishes_and_prints_the_table(cnn_repo: Path) -> None:
    """An accurate int8-dynamic candidate with --force: exit 0, the table, the folder."""
    result = _run(f"{cnn_repo}/cnn", "--quantize", "int8-dynamic", "--force", *FAST)
    assert result.exit_code == 0, result.output
    assert "accuracy guard: passed" in result.output
    assert "throughput (batch 32)" in result.output
    assert "published" in result.output
    assert (cnn_repo / "cnn" / "2" / "report.json").is_file()


def test_cli_refuses_a_candidate_not_better_at_the_objective(cnn_repo: Path) -> None:
    """Graph optimization keeps the file's size: for --objective size it is refused, exit 1,
    naming the objective and --force; nothing is published (no speed figure decides it)."""
    result = _run(f"{cnn_repo}/cnn", "--objective", "size", "--bench-rounds", "2", *FAST)
    assert result.exit_code == 1
    assert "speed guard (objective: size)" in result.output
    assert "not measurably better at size on this hardware: size" in result.output
    assert "--force" in result.output
    assert not (cnn_repo / "cnn" / "2").exists()


def test_cli_reduce_range_is_recorded_and_printed(cnn_repo: Path) -> None:
    """--reduce-range on: the report records 7-bit weights and the summary says why."""
    result = _run(
        f"{cnn_repo}/cnn", "--quantize", "int8-dynamic", "--reduce-range", "on", "--force", *FAST
    )
    assert result.exit_code == 0, result.output
    assert "int8 weights: 7-bit (reduce_range)" in result.output
    assert "as --reduce-range on asks" in result.output
    report = json.loads((cnn_repo / "cnn" / "2" / "report.json").read_text())
    assert report["optimization"]["int8"]["reduce_range"] is True
    assert report["optimization"]["int8"]["setting"] == "on"


def test_cli_json_and_rejection_exit_code(cnn_repo: Path) -> None:
    """A rejected candidate exits 1 with the figures in the JSON and publishes nothing."""
    result = _run(
        f"{cnn_repo}/cnn",
        "--quantize",
        "int8-dynamic",
        "--metric",
        "max-abs",
        "--max-drop",
        "0",
        "--json",
        *FAST,
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["published"] is False
    assert report["accuracy"]["max_abs_error"] > 0
    assert "error: rejected by the accuracy guard" in result.stderr
    assert not (cnn_repo / "cnn" / "2").exists()


def test_cli_errors_are_one_line(cnn_repo: Path, tmp_path: Path) -> None:
    """Unknown model, wrong calibration data, missing file, bad target: exit 2, no traceback."""
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, input=np.zeros((4, 28, 28), np.float32))
    cases = {
        (f"{cnn_repo}/nope",): "model 'nope' is not in the repository",
        (f"{cnn_repo}/cnn", "--quantize", "int8-static", "--calibration", str(wrong)): (
            "array 'input' has shape [4, 28, 28]"
        ),
        (f"{cnn_repo}/cnn", "--validation", str(tmp_path / "none.npz")): "does not exist",
        ("cnn",): "expected REPO/NAME",
    }
    for args, message in cases.items():
        result = _run(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ")
        assert message in lines[0]
        assert "Traceback" not in result.output
