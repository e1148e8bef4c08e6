"""Tests for shipyard.repository.registry.ModelRegistry on a temporary model repository."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from shipyard.config import DEFAULT_MAX_BATCH_SIZE
from shipyard.errors import (
    ConfigError,
    InvalidInputError,
    ModelLoadError,
    ModelNotReadyError,
    NotFoundError,
)
from shipyard.hardware import parse_cpuinfo
from shipyard.protocol.rest import encode_repository_index
from shipyard.repository.registry import ModelRegistry, ModelState
from shipyard.testing.models import add_sub_model, identity_model, write_model
from shipyard.types import DataType, RepositoryEntry, TensorSpec
from tests.cpus import AVX2_EPYC, VNNI_XEON

T = TypeVar("T")

BROKEN = b"this is not an onnx model"


def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


async def loaded(repository: Path, *names: str) -> ModelRegistry:
    """A registry over ``repository`` after load_all(names)."""
    registry = ModelRegistry(repository, drain_timeout_s=1.0)
    await registry.load_all(names)
    return registry


def rows_of(registry: ModelRegistry, name: str) -> list[dict[str, Any]]:
    """The repository index rows of ``name``, as the REST API shows them."""
    return [row for row in encode_repository_index(registry.index()) if row["name"] == name]


def test_load_all_loads_every_model(repository: Path) -> None:
    """load_all() with no names loads every model folder; each is READY at version 1."""
    write_model(repository, "simple", add_sub_model())
    write_model(repository, "ident", identity_model(DataType.INT32))

    async def body() -> None:
        registry = await loaded(repository)
        assert registry.all_ready()
        assert [(s.name, s.version) for s in registry.served()] == [("ident", 1), ("simple", 1)]
        served = registry.get("simple")
        assert served.platform == "onnx_onnxv1"
        assert [s.name for s in served.inputs] == ["INPUT0", "INPUT1"]
        assert [s.name for s in served.outputs] == ["OUTPUT0", "OUTPUT1"]
        assert registry.index() == [
            RepositoryEntry("ident", ModelState.READY, "", "1"),
            RepositoryEntry("simple", ModelState.READY, "", "1"),
        ]
        await registry.close()

    arun(body())


def test_loaded_model_serves_requests(repository: Path) -> None:
    """A loaded version's batcher runs the model (add/sub) end to end."""
    write_model(repository, "simple", add_sub_model())

    async def body() -> None:
        registry = await loaded(repository)
        a = np.arange(16, dtype=np.float32).reshape(1, 16)
        b = np.ones((1, 16), np.float32)
        out = await registry.get("simple").batcher.submit(
            {"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"]
        )
        np.testing.assert_array_equal(out["OUTPUT0"], a + b)
        np.testing.assert_array_equal(out["OUTPUT1"], a - b)
        await registry.close()

    arun(body())


def test_load_all_with_names_loads_only_those(repository: Path) -> None:
    """load_all(names) leaves other models on disk unloaded (index says 'not loaded')."""
    write_model(repository, "a", identity_model())
    write_model(repository, "b", identity_model())

    async def body() -> None:
        registry = await loaded(repository, "a")
        assert registry.known("a")
        assert not registry.known("b")
        assert rows_of(registry, "b") == [
            {"name": "b", "state": "UNAVAILABLE", "reason": "not loaded"}
        ]
        assert registry.all_ready()  # never-requested models do not count
        await registry.close()

    arun(body())


def test_failed_model_is_unavailable_with_reason_and_others_serve(repository: Path) -> None:
    """A model that cannot load is UNAVAILABLE with the reason; the others still load."""
    write_model(repository, "bad", BROKEN)
    write_model(repository, "good", identity_model())

    async def body() -> None:
        registry = await loaded(repository)
        assert registry.get("good").version == 1
        (row,) = rows_of(registry, "bad")
        assert row["state"] == "UNAVAILABLE"
        assert "ONNX Runtime cannot load model.onnx" in row["reason"]
        assert not registry.all_ready()
        with pytest.raises(ModelNotReadyError, match="UNAVAILABLE"):
            registry.get("bad")
        with pytest.raises(ModelNotReadyError):
            registry.get("bad", "1")
        await registry.close()

    arun(body())


def test_load_raises_model_load_error(repository: Path) -> None:
    """load() of a broken model raises ModelLoadError naming the model."""
    write_model(repository, "bad", BROKEN)

    async def body() -> None:
        registry = ModelRegistry(repository)
        with pytest.raises(ModelLoadError, match="failed to load model 'bad'"):
            await registry.load("bad")

    arun(body())


def test_model_without_versions(repository: Path) -> None:
    """A model folder with no version folder fails with a message showing the layout."""
    (repository / "empty").mkdir()
    (repository / "empty" / ".tmp-2").mkdir()  # unpublished versions are ignored

    async def body() -> None:
        registry = ModelRegistry(repository)
        with pytest.raises(ModelLoadError, match=r"no version folder in .*empty/1/model.onnx"):
            await registry.load("empty")

    arun(body())


def test_version_folder_without_model_file(repository: Path) -> None:
    """A version folder without model.onnx fails with the expected path in the message."""
    (repository / "m" / "1").mkdir(parents=True)

    async def body() -> None:
        registry = ModelRegistry(repository)
        with pytest.raises(ModelLoadError, match=r"no model\.onnx in"):
            await registry.load("m")

    arun(body())


def test_load_unknown_and_invalid_names(repository: Path) -> None:
    """Loading a model not in the repository is NotFound; a path-like name is invalid."""

    async def body() -> None:
        registry = ModelRegistry(repository)
        with pytest.raises(NotFoundError, match="not in the repository"):
            await registry.load("ghost")
        for name in ("../etc", "a/b", "..", ""):
            with pytest.raises(InvalidInputError, match="invalid model name"):
                await registry.load(name)

    arun(body())


def test_reload_failure_keeps_the_old_version_serving(repository: Path) -> None:
    """A failed reload leaves the old version READY, and the reason says so."""
    write_model(repository, "m", identity_model())

    async def body() -> None:
        registry = await loaded(repository)
        old = registry.get("m")
        write_model(repository, "m", BROKEN, version=2)
        with pytest.raises(ModelLoadError):
            await registry.load("m")
        assert registry.get("m") is old
        x = np.zeros((1, 4), np.float32)
        assert (await old.batcher.submit({"INPUT0": x}, ["OUTPUT0"]))["OUTPUT0"].shape == (1, 4)
        (row,) = rows_of(registry, "m")
        assert row["state"] == "READY"
        assert row["version"] == "1"
        assert "reload failed, still serving version(s) 1" in row["reason"]
        assert "ONNX Runtime cannot load" in row["reason"]
        assert registry.all_ready()
        await registry.close()

    arun(body())


def test_successful_reload_swaps_versions(repository: Path) -> None:
    """A reload that finds a new version serves it and retires the old one."""
    write_model(repository, "m", identity_model())

    async def body() -> None:
        registry = await loaded(repository)
        old = registry.get("m")
        write_model(repository, "m", identity_model(), version=2)
        await registry.load("m")
        assert registry.get("m").version == 2
        with pytest.raises(NotFoundError, match=r"no version 1 loaded \(loaded: 2\)"):
            registry.get("m", "1")
        with pytest.raises(ModelNotReadyError):  # the old batcher was closed
            await old.batcher.submit({"INPUT0": np.zeros((1, 4), np.float32)}, ["OUTPUT0"])
        assert rows_of(registry, "m") == [
            {"name": "m", "version": "2", "state": "READY", "reason": ""}
        ]
        await registry.close()

    arun(body())


def test_reload_after_failure_clears_the_reason(repository: Path) -> None:
    """Once a failing model is fixed, loading it again makes it READY with no reason."""
    write_model(repository, "m", BROKEN)

    async def body() -> None:
        registry = await loaded(repository)
        assert rows_of(registry, "m")[0]["state"] == "UNAVAILABLE"
        write_model(repository, "m", identity_model())
        await registry.load("m")
        assert rows_of(registry, "m") == [
            {"name": "m", "version": "1", "state": "READY", "reason": ""}
        ]
        await registry.close()

    arun(body())


@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ("", [3]),
        ("[version_policy]\nlatest = 2\n", [3, 2]),
        ("[version_policy]\nall = true\n", [3, 2, 1]),
        ("[version_policy]\nspecific = [1, 3]\n", [3, 1]),
    ],
)
def test_version_policy(repository: Path, policy: str, served: list[int]) -> None:
    """The version policy in model.toml selects which versions are loaded."""
    for version in (1, 2, 3):
        write_model(repository, "m", identity_model(), version=version, config=policy)

    async def body() -> None:
        registry = await loaded(repository)
        assert [v.version for v in registry.versions("m")] == served
        assert registry.get("m").version == served[0]
        for version in served:
            assert registry.get("m", str(version)).version == version
        await registry.close()

    arun(body())


def test_version_policy_selecting_nothing(repository: Path) -> None:
    """A specific policy naming no version on disk is a load error listing what exists."""
    write_model(repository, "m", identity_model(), config="[version_policy]\nspecific = [7]\n")

    async def body() -> None:
        registry = ModelRegistry(repository)
        with pytest.raises(ModelLoadError, match=r"selects none of the versions on disk \(1\)"):
            await registry.load("m")

    arun(body())


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.0"])
def test_get_with_malformed_version(repository: Path, version: str) -> None:
    """Versions are positive integers; anything else is NotFound."""
    write_model(repository, "m", identity_model())

    async def body() -> None:
        registry = await loaded(repository)
        with pytest.raises(NotFoundError, match=r"versions are positive integers|no version"):
            registry.get("m", version)
        await registry.close()

    arun(body())


def test_get_unknown_model(repository: Path) -> None:
    """get() of a model the registry never saw is NotFound."""
    with pytest.raises(NotFoundError, match="unknown model 'nope'"):
        ModelRegistry(repository).get("nope")


def test_unload(repository: Path) -> None:
    """unload() stops serving, reports UNAVAILABLE 'unloaded', and no longer counts for ready."""
    write_model(repository, "a", identity_model())
    write_model(repository, "b", BROKEN)

    async def body() -> None:
        registry = await loaded(repository)
        assert not registry.all_ready()
        served = registry.get("a")
        await registry.unload("a")
        await registry.unload("b")
        with pytest.raises(ModelNotReadyError, match="unloaded"):
            registry.get("a")
        assert registry.versions("a") == []
        assert rows_of(registry, "a") == [
            {"name": "a", "state": "UNAVAILABLE", "reason": "unloaded"}
        ]
        assert registry.all_ready()
        with pytest.raises(ModelNotReadyError):
            await served.batcher.submit({"INPUT0": np.zeros((1, 4), np.float32)}, ["OUTPUT0"])
        await registry.load("a")
        assert registry.get("a").version == 1
        await registry.close()

    arun(body())


def test_unload_of_model_never_loaded(repository: Path) -> None:
    """Unloading an on-disk model that was never loaded marks it unloaded; unknown is 404."""
    write_model(repository, "m", identity_model())

    async def body() -> None:
        registry = ModelRegistry(repository)
        await registry.unload("m")
        assert rows_of(registry, "m")[0]["reason"] == "unloaded"
        with pytest.raises(NotFoundError):
            await registry.unload("ghost")

    arun(body())


def test_index_ready_only(repository: Path) -> None:
    """index(ready_only=True) lists only READY versions."""
    write_model(repository, "good", identity_model())
    write_model(repository, "bad", BROKEN)
    write_model(repository, "idle", identity_model())

    async def body() -> None:
        registry = await loaded(repository, "good", "bad")
        assert {row.name for row in registry.index()} == {"good", "bad", "idle"}
        assert registry.index(ready_only=True) == [
            RepositoryEntry("good", ModelState.READY, "", "1")
        ]
        await registry.close()

    arun(body())


def test_close_unloads_everything(repository: Path) -> None:
    """close() retires every version and marks models as shutting down."""
    write_model(repository, "m", identity_model())

    async def body() -> None:
        registry = await loaded(repository)
        await registry.close()
        assert registry.served() == []
        assert rows_of(registry, "m")[0]["reason"] == "server shutting down"

    arun(body())


# -- batching resolution and model.toml overrides ----------------------------------------------


def test_max_batch_size_inferred_from_dynamic_dim0(repository: Path) -> None:
    """A model whose inputs and outputs all have a dynamic dim 0 batches by default."""
    write_model(repository, "m", identity_model(shape=["batch", 4]))

    async def body() -> None:
        registry = await loaded(repository)
        served = registry.get("m")
        assert served.max_batch_size == DEFAULT_MAX_BATCH_SIZE
        assert served.config.max_batch_size == DEFAULT_MAX_BATCH_SIZE
        assert served.inputs == (TensorSpec("INPUT0", DataType.FP32, (-1, 4)),)
        await registry.close()

    arun(body())


def test_max_batch_size_zero_for_fixed_dim0(repository: Path) -> None:
    """A model with a fixed first dimension does not batch."""
    write_model(repository, "m", identity_model(shape=[2, 4]))

    async def body() -> None:
        registry = await loaded(repository)
        assert registry.get("m").max_batch_size == 0
        await registry.close()

    arun(body())


def test_explicit_max_batch_size_is_kept(repository: Path) -> None:
    """max_batch_size from model.toml wins over the inferred default."""
    write_model(repository, "m", identity_model(), config="max_batch_size = 4\n")

    async def body() -> None:
        registry = await loaded(repository)
        assert registry.get("m").max_batch_size == 4
        assert registry.get("m").batcher.max_batch_size == 4
        await registry.close()

    arun(body())


def test_positive_max_batch_size_with_fixed_dim0_is_an_error(repository: Path) -> None:
    """max_batch_size > 0 on a model with a fixed dim 0 fails, naming the tensor and the fix."""
    write_model(repository, "m", identity_model(shape=[2, 4]), config="max_batch_size = 4\n")

    async def body() -> None:
        registry = await loaded(repository)
        (row,) = rows_of(registry, "m")
        assert row["state"] == "UNAVAILABLE"
        assert "max_batch_size = 4 needs a variable first dimension" in row["reason"]
        assert "INPUT0" in row["reason"]
        assert "set max_batch_size = 0" in row["reason"]

    arun(body())


def test_bad_model_toml_makes_the_model_unavailable(repository: Path) -> None:
    """A model.toml with an unknown key fails the load with the ConfigError's message."""
    write_model(repository, "m", identity_model(), config="colour = 'red'\n")

    async def body() -> None:
        registry = await loaded(repository)
        reason = rows_of(registry, "m")[0]["reason"]
        assert "unknown key(s) colour" in reason
        assert "model.toml" in reason

    arun(body())


def test_valid_override_replaces_the_signature(repository: Path) -> None:
    """An input override that narrows a variable dim replaces the model's spec."""
    config = '[[inputs]]\nname = "INPUT0"\ndatatype = "FP32"\nshape = [-1, 4]\n'
    write_model(repository, "m", identity_model(shape=["batch", "n"]), config=config)

    async def body() -> None:
        registry = await loaded(repository)
        served = registry.get("m")
        assert served.inputs == (TensorSpec("INPUT0", DataType.FP32, (-1, 4)),)
        assert served.outputs == (TensorSpec("OUTPUT0", DataType.FP32, (-1, -1)),)
        await registry.close()

    arun(body())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            '[[inputs]]\nname = "NOPE"\ndatatype = "FP32"\nshape = [-1, 4]\n',
            "model.toml inputs: the model has no input 'NOPE' (it has INPUT0)",
        ),
        (
            '[[inputs]]\nname = "INPUT0"\ndatatype = "INT32"\nshape = [-1, 4]\n',
            "model.toml input 'INPUT0': datatype INT32 differs from the model's FP32",
        ),
        (
            '[[inputs]]\nname = "INPUT0"\ndatatype = "FP32"\nshape = [-1, 5]\n',
            "shape [-1, 5] does not fit the model's [-1, 4]",
        ),
        (
            '[[outputs]]\nname = "OUTPUT0"\ndatatype = "FP32"\nshape = [-1]\n',
            "model.toml output 'OUTPUT0': shape [-1] does not fit",
        ),
    ],
)
def test_override_that_does_not_fit_the_model(
    repository: Path, override: str, message: str
) -> None:
    """Overrides must name a real tensor with the same datatype and a compatible shape."""
    write_model(repository, "m", identity_model(shape=["batch", 4]), config=override)

    async def body() -> None:
        registry = ModelRegistry(repository)
        with pytest.raises(ModelLoadError) as info:
            await registry.load("m")
        assert message in info.value.message
        assert isinstance(info.value.__cause__, ConfigError)

    arun(body())


def test_model_state_names_are_tritons() -> None:
    """Index states use Triton's names."""
    assert [s.value for s in ModelState] == ["READY", "LOADING", "UNLOADING", "UNAVAILABLE"]


def test_preferred_batch_sizes_over_max_batch_size_fail_the_load(repository: Path) -> None:
    """A preferred batch size no batch can reach is a load error naming both settings."""
    config = "max_batch_size = 4\n[dynamic_batching]\npreferred_batch_sizes = [2, 8]\n"
    write_model(repository, "m", identity_model(), config=config)

    async def body() -> None:
        registry = await loaded(repository)
        (row,) = rows_of(registry, "m")
        assert row["state"] == "UNAVAILABLE"
        assert "preferred_batch_sizes [8] exceed max_batch_size 4" in row["reason"]

    arun(body())


def test_index_forgets_an_unloaded_model_whose_folder_is_gone(repository: Path) -> None:
    """After unload and deleting its folder, a model leaves the index; others stay."""
    write_model(repository, "gone", identity_model())
    write_model(repository, "kept", identity_model())

    async def body() -> None:
        registry = await loaded(repository)
        await registry.unload("gone")
        await registry.unload("kept")
        for path in sorted((repository / "gone").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (repository / "gone").rmdir()
        assert rows_of(registry, "gone") == []
        assert rows_of(registry, "kept") == [
            {"name": "kept", "state": "UNAVAILABLE", "reason": "unloaded"}
        ]
        await registry.close()

    arun(body())


def test_unreadable_model_toml_marks_only_that_model_unavailable(repository: Path) -> None:
    """An OS error reading one model's files (model.toml is a folder) is that model's load
    failure with a reason; it neither stops load_all nor leaves the model LOADING."""
    write_model(repository, "good", identity_model())
    write_model(repository, "bad", identity_model())
    (repository / "bad" / "model.toml").mkdir()

    async def body() -> None:
        registry = await loaded(repository)
        assert registry.get("good").version == 1
        (row,) = rows_of(registry, "bad")
        assert row["state"] == "UNAVAILABLE"
        assert "model.toml: cannot read it" in row["reason"]
        await registry.close()

    arun(body())


def test_only_canonical_version_folders_count(repository: Path) -> None:
    """'01' or '²' folders are not versions (they would collide with 1 or crash int())."""
    write_model(repository, "m", identity_model())
    for odd in ("01", "\u00b2", "0"):
        (repository / "m" / odd).mkdir()

    async def body() -> None:
        registry = await loaded(repository)
        assert [v.version for v in registry.versions("m")] == [1]
        await registry.close()

    arun(body())


def _int8_report(family: str, description: str, reduce_range: bool) -> str:
    int8 = {"family": family, "description": description, "reduce_range": reduce_range}
    return json.dumps({"step": "optimize", "optimization": {"method": "int8-static", "int8": int8}})


def test_int8_version_made_for_another_cpu_loads_with_a_warning(
    repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Full-range int8 chosen on VNNI, loaded on an AVX2-only CPU: it serves, warns in the log
    and in the served version; the same report on a VNNI CPU loads silently."""
    write_model(repository, "m", identity_model())
    (repository / "m" / "1" / "report.json").write_text(
        _int8_report("x86-vnni", "x86 with AVX-512 VNNI", reduce_range=False)
    )
    avx2 = ModelRegistry(repository, 1.0, cpu=parse_cpuinfo(AVX2_EPYC))
    with caplog.at_level(logging.WARNING, logger="shipyard.repository.registry"):
        arun(avx2.load("m"))
    (served,) = avx2.versions("m")
    assert rows_of(avx2, "m")[0]["state"] == "READY"
    assert len(served.warnings) == 1
    assert "saturates them" in served.warnings[0]
    assert any("model m version 1: quantized with full-range" in r.message for r in caplog.records)
    vnni = ModelRegistry(repository, 1.0, cpu=parse_cpuinfo(VNNI_XEON))
    arun(vnni.load("m"))
    assert vnni.versions("m")[0].warnings == ()


def test_unreadable_report_is_ignored(repository: Path) -> None:
    """A report.json that is not JSON (or not an object) does not stop the version loading."""
    write_model(repository, "m", identity_model())
    (repository / "m" / "1" / "report.json").write_text("[1, 2")
    registry = ModelRegistry(repository, 1.0, cpu=parse_cpuinfo(AVX2_EPYC))
    arun(registry.load("m"))
    assert registry.versions("m")[0].warnings == ()
