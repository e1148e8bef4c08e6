"""The tuner's search logic on synthetic measurements: scores, Pareto front, coordinate descent."""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib

import pytest

from shipyard.tuning.search import (
    Candidate,
    CoordinateSearch,
    Objective,
    Point,
    Space,
    merge_rounds,
    pareto_front,
)

SPACE = Space(
    variants=("fp32", "optimized", "int8-dynamic"),
    providers=dict.fromkeys(("fp32", "optimized", "int8-dynamic"), ("CPUExecutionProvider",)),
    instance_count=(1, 2, 3, 4),
    intra_op_threads=(1, 2),
    max_batch_size=(0, 2, 4, 8, 16, 32),
    max_queue_delay_us=(0, 100, 500, 1000),
)
START = Candidate("fp32", "CPUExecutionProvider", 1, 1, 32, 0, ())


def synthetic(candidate: Candidate) -> list[Point]:
    """A made-up server: 2 instances and batch 8 are best, int8-dynamic is 5x slower."""
    rps = 1000.0 * (1 + 0.5 * (candidate.instance_count == 2))
    rps *= 1 + 0.3 * (candidate.max_batch_size == 8) - 0.2 * (candidate.max_batch_size == 0)
    rps *= 1.1 if candidate.variant == "optimized" else 1.0
    rps /= 5 if candidate.variant == "int8-dynamic" else 1
    rps *= 1 - candidate.max_queue_delay_us / 5000
    return [Point(c, rps * min(c, 4) / 4, 1.0, 1000 * c / rps) for c in (1, 8)]


def run_search(objective: Objective) -> tuple[CoordinateSearch, list[Candidate]]:
    """Drive a search with :func:`synthetic` to the end; return it and what it measured."""
    search = CoordinateSearch(SPACE, objective, START)
    measured: list[Candidate] = []
    for _ in range(1000):
        proposal = search.propose()
        if proposal is None:
            break
        measured.append(proposal.candidate)
        search.record(proposal.candidate, objective.score(synthetic(proposal.candidate)))
    return search, measured


def test_pareto_front_keeps_only_undominated_points() -> None:
    """A point with less throughput and more latency than another is off the front."""
    items = [("a", 100.0, 1.0), ("b", 200.0, 2.0), ("c", 150.0, 3.0), ("d", 300.0, 2.0)]
    assert pareto_front(items) == ["a", "d"]
    assert pareto_front([("x", 10.0, 5.0)]) == ["x"]
    assert pareto_front([]) == []


def test_slo_score_is_the_best_throughput_within_the_slo() -> None:
    """With an SLO the score is the highest rps among points whose p99 meets it, error-free."""
    points = [Point(1, 100, 1, 2.0), Point(8, 500, 4, 9.0), Point(64, 900, 20, 40.0)]
    score = Objective(10.0).score(points)
    assert (score.tier, score.rps, score.concurrency) == (1, 500, 8)
    errored = [Point(1, 100, 1, 2.0), Point(8, 700, 4, 5.0, errors=3)]
    assert Objective(10.0).score(errored).rps == 100


def test_impossible_slo_ranks_by_the_lowest_p99() -> None:
    """Nothing meets the SLO: tier 0, and the lower p99 ranks higher."""
    objective = Objective(0.001)
    fast = objective.score([Point(1, 100, 1, 2.0)])
    slow = objective.score([Point(1, 900, 1, 3.0)])
    assert fast.tier == slow.tier == 0
    assert objective.better(fast, slow)
    assert not objective.better(slow, fast)
    assert objective.score(None).tier == -1


def test_without_slo_the_geometric_mean_of_p99_ranks() -> None:
    """No SLO: lower geometric-mean p99 wins; p99 needs twice the margin to count."""
    objective = Objective()
    a = objective.score([Point(1, 10, 1, 1.0), Point(8, 10, 1, 4.0)])
    assert math.isclose(a.p99_ms, 2.0)
    b = objective.score([Point(1, 10, 1, 1.0), Point(8, 10, 1, 5.0)])  # geomean 2.236
    assert objective.better(a, b, margin=0.05)  # 11.8% better > 2 x 5%
    assert not objective.better(a, b, margin=0.06)  # 11.8% < 2 x 6%


def test_merge_rounds_averages_per_concurrency() -> None:
    """Two rounds of one candidate become one point per concurrency with mean figures."""
    merged = merge_rounds([[Point(1, 100, 1, 2)], [Point(1, 300, 3, 4, errors=1)]])
    assert merged == [Point(1, 200, 2, 3, 1)]


@pytest.mark.parametrize("slo", [None, 50.0])
def test_search_finds_the_optimum_without_the_full_grid(slo: float | None) -> None:
    """Coordinate descent reaches the synthetic optimum measuring far fewer than the grid."""
    search, measured = run_search(Objective(slo))
    assert search.converged
    assert search.best.instance_count == 2
    assert search.best.max_batch_size == 8
    assert search.best.variant == "optimized"
    assert search.best.max_queue_delay_us == 0
    assert len(measured) == len(set(measured)), "a candidate was measured twice"
    grid = len(SPACE.variants) * 4 * 2 * 6 * 4
    assert len(measured) < grid / 10


def test_search_prunes_a_far_slower_variant() -> None:
    """int8-dynamic (5x slower at the same settings) is dropped after the variant comparison."""
    search, measured = run_search(Objective(50.0))
    assert "int8-dynamic" in search.pruned
    first_pass = [c for c in measured if c.variant == "int8-dynamic"]
    assert len(first_pass) == 1


def test_no_batching_skips_queue_delay_and_preferred_sizes() -> None:
    """Without batching the delay and preferred sizes cannot matter and are never varied."""
    space = dataclasses.replace(SPACE, max_batch_size=(0,))
    start = dataclasses.replace(START, max_batch_size=0)
    search = CoordinateSearch(space, Objective(), start)
    dims = set()
    for _ in range(200):
        proposal = search.propose()
        if proposal is None:
            break
        dims.add(proposal.dimension)
        search.record(proposal.candidate, Objective().score(synthetic(proposal.candidate)))
    assert dims.isdisjoint({"max_queue_delay_us", "preferred_batch_sizes", "max_batch_size"})
    assert "instance_count" in dims


def test_noise_below_the_margin_keeps_the_current_settings() -> None:
    """A candidate 2% better than the start does not replace it (margin 5%)."""
    objective = Objective(100.0)
    search = CoordinateSearch(SPACE, objective, START, margin=0.05)
    for _ in range(500):
        proposal = search.propose()
        if proposal is None:
            break
        bonus = 1.02 if proposal.candidate != START else 1.0
        points = [Point(1, 1000 * bonus, 1, 2)]
        search.record(proposal.candidate, objective.score(points))
    assert search.best == START
    assert search.converged


def test_propose_requires_a_record_first() -> None:
    """Asking twice without recording is a programming error, not a silent skip."""
    search = CoordinateSearch(SPACE, Objective(), START)
    assert search.propose() is not None
    with pytest.raises(RuntimeError):
        search.propose()


def test_preferred_sizes_never_exceed_max_batch_size() -> None:
    """Every preferred-size option offered fits under the candidate's max_batch_size."""
    for top in (2, 4, 8, 32):
        around = dataclasses.replace(START, max_batch_size=top)
        options = SPACE.values("preferred_batch_sizes", around)
        assert () in options
        assert all(b <= top for b in itertools.chain.from_iterable(options))


def test_search_explores_parallel_execution_on_inter_op_threads() -> None:
    """A model that gains from ONNX Runtime's parallel mode: the search finds inter-op 2."""
    space = dataclasses.replace(SPACE, variants=("fp32",), inter_op_threads=(1, 2, 4))
    search = CoordinateSearch(space, Objective(), START)
    for _ in range(1000):
        proposal = search.propose()
        if proposal is None:
            break
        candidate = proposal.candidate
        p99 = 2.0 if candidate.inter_op_threads == 2 else 4.0
        search.record(candidate, Objective().score([Point(1, 100, 1, p99)]))
    assert search.converged
    assert search.best.inter_op_threads == 2
    assert " i2" in search.best.label()
    assert START.inter_op_threads == 1
    assert " i" not in START.label()


def test_parallel_winner_is_written_as_execution_mode_and_inter_op_threads() -> None:
    """Inter-op 2 becomes execution_mode = "parallel" + inter_op_threads = 2 in model.toml."""
    from shipyard.config import ModelConfig, parse_model_config
    from shipyard.hardware import probe
    from shipyard.repository.settings import update_settings
    from shipyard.tuning.baseline import Baseline, settings_changes

    base = Baseline.resolve(ModelConfig(name="m"), True, probe())
    assert base.candidate.inter_op_threads == 1
    winner = dataclasses.replace(base.candidate, inter_op_threads=2)
    changes = settings_changes(winner, base)
    assert changes == {"onnxruntime.execution_mode": "parallel", "onnxruntime.inter_op_threads": 2}
    text = update_settings("", "m", changes)
    config = parse_model_config("m", tomllib.loads(text))
    assert config.onnxruntime.execution_mode == "parallel"
    assert config.onnxruntime.inter_op_threads == 2
    parallel = Baseline.resolve(config, True, probe())
    assert parallel.candidate.inter_op_threads == 2
    back = settings_changes(dataclasses.replace(parallel.candidate, inter_op_threads=1), parallel)
    assert back == {"onnxruntime.execution_mode": "sequential"}
