"""Tests for shipyard.server.service.InferenceService: validation, metadata and statistics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from shipyard import __version__
from shipyard.errors import (
    InvalidInputError,
    ModelNotReadyError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
)
from shipyard.protocol.rest import encode_model_config, encode_server_metadata, encode_statistics
from shipyard.repository.registry import ModelRegistry
from shipyard.server.service import EXTENSIONS, InferenceService
from shipyard.stats import ModelStats
from shipyard.testing.models import add_sub_model, identity_model, write_model
from shipyard.types import DataType, InferRequest, RequestedOutput, Tensor

Body = Callable[[InferenceService], Awaitable[None]]


@pytest.fixture
def models(repository: Path) -> Path:
    """simple (add/sub, [-1, 16]), small (max_batch_size 2), fixed ([2, 4]) and a broken one."""
    write_model(repository, "simple", add_sub_model())
    write_model(repository, "small", identity_model(), config="max_batch_size = 2\n")
    write_model(repository, "fixed", identity_model(DataType.INT32, shape=[2, 4]))
    write_model(repository, "broken", b"not onnx")
    return repository


def with_service(repository: Path, body: Body) -> None:
    """Load every model, run ``body`` with a service over them, then close the registry."""

    async def main() -> None:
        registry = ModelRegistry(repository, drain_timeout_s=1.0)
        await registry.load_all()
        try:
            await body(InferenceService(registry, max_tensor_elements=10_000))
        finally:
            await registry.close()

    asyncio.run(main())


def fp32(name: str, rows: int = 1, width: int = 16, start: float = 0.0) -> Tensor:
    """An FP32 tensor of shape [rows, width]."""
    data = np.arange(start, start + rows * width, dtype=np.float32).reshape(rows, width)
    return Tensor(name, DataType.FP32, data)


def simple_request(*inputs: Tensor, **fields: Any) -> InferRequest:
    """A request to the add/sub model (both inputs by default)."""
    return InferRequest(
        "simple", list(inputs or (fp32("INPUT0"), fp32("INPUT1", start=1))), **fields
    )


def invalid(models: Path, request: InferRequest, message: str) -> None:
    """Assert that infer() refuses ``request`` with InvalidInputError matching ``message``."""

    async def body(service: InferenceService) -> None:
        with pytest.raises(InvalidInputError, match=message):
            await service.infer(request)
        assert service.statistics("simple")[0].execution_count == 0

    with_service(models, body)


# -- inference ---------------------------------------------------------------------------------


def test_infer_runs_the_model_and_echoes_the_id(models: Path) -> None:
    """A valid request returns every output in model order, named and versioned, with the id."""

    async def body(service: InferenceService) -> None:
        a, b = fp32("INPUT0", rows=2), fp32("INPUT1", rows=2, start=5)
        response = await service.infer(simple_request(a, b, id="req-1"))
        assert (response.model_name, response.model_version, response.id) == (
            "simple",
            "1",
            "req-1",
        )
        assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
        assert all(o.datatype is DataType.FP32 for o in response.outputs)
        np.testing.assert_array_equal(response.outputs[0].data, a.data + b.data)
        np.testing.assert_array_equal(response.outputs[1].data, a.data - b.data)

    with_service(models, body)


def test_infer_returns_only_requested_outputs(models: Path) -> None:
    """A request naming outputs gets exactly those, in the order asked."""

    async def body(service: InferenceService) -> None:
        request = simple_request(outputs=[RequestedOutput("OUTPUT1"), RequestedOutput("OUTPUT0")])
        response = await service.infer(request)
        assert [o.name for o in response.outputs] == ["OUTPUT1", "OUTPUT0"]

    with_service(models, body)


def test_infer_with_explicit_version(models: Path) -> None:
    """model_version selects a loaded version; an unloaded one is NotFound."""

    async def body(service: InferenceService) -> None:
        response = await service.infer(simple_request(model_version="1"))
        assert response.model_version == "1"
        with pytest.raises(NotFoundError, match="no version 2"):
            await service.infer(simple_request(model_version="2"))

    with_service(models, body)


def test_unknown_model(models: Path) -> None:
    """Inference on a model the server does not know is NotFound."""

    async def body(service: InferenceService) -> None:
        with pytest.raises(NotFoundError, match="unknown model 'ghost'"):
            await service.infer(InferRequest("ghost", [fp32("INPUT0")]))

    with_service(models, body)


def test_model_that_failed_to_load_is_not_ready(models: Path) -> None:
    """Inference on a model that failed to load is ModelNotReadyError (503)."""

    async def body(service: InferenceService) -> None:
        with pytest.raises(ModelNotReadyError, match="'broken' is not ready"):
            await service.infer(InferRequest("broken", [fp32("INPUT0")]))

    with_service(models, body)


def test_unknown_input(models: Path) -> None:
    """An input the model does not take is refused, listing the inputs it does take."""
    request = simple_request(fp32("INPUT0"), fp32("INPUT1"), fp32("EXTRA"))
    invalid(models, request, "unknown input 'EXTRA'; the model takes 'INPUT0', 'INPUT1'")


def test_missing_input(models: Path) -> None:
    """A request without every input is refused, naming the missing one."""
    invalid(models, simple_request(fp32("INPUT0")), r"missing input\(s\) 'INPUT1'")


def test_duplicate_input(models: Path) -> None:
    """The same input twice is refused."""
    request = simple_request(fp32("INPUT0"), fp32("INPUT0"), fp32("INPUT1"))
    invalid(models, request, "input 'INPUT0' is given twice")


def test_wrong_datatype(models: Path) -> None:
    """An input whose datatype differs from the model's is refused."""
    wrong = Tensor("INPUT1", DataType.INT32, np.zeros((1, 16), np.int32))
    invalid(
        models,
        simple_request(fp32("INPUT0"), wrong),
        "input 'INPUT1': datatype INT32 does not match the model's FP32",
    )


@pytest.mark.parametrize(
    "shape",
    [(16,), (1, 16, 1), (1, 15), (1, 17)],
    ids=["rank-low", "rank-high", "dim-small", "dim-large"],
)
def test_shape_mismatch(models: Path, shape: tuple[int, ...]) -> None:
    """Wrong rank or a wrong fixed dimension is refused with both shapes in the message."""
    bad = Tensor("INPUT0", DataType.FP32, np.zeros(shape, np.float32))
    invalid(
        models,
        simple_request(bad, fp32("INPUT1")),
        rf"input 'INPUT0': shape \[{', '.join(map(str, shape))}\] does not match the model's "
        r"\[-1, 16\]",
    )


def test_inputs_disagreeing_on_batch_size(models: Path) -> None:
    """All inputs of a batched model must share dim 0."""
    request = simple_request(fp32("INPUT0", rows=1), fp32("INPUT1", rows=2))
    invalid(models, request, r"inputs disagree on the batch size \(dim 0\): \[1, 2\]")


@pytest.mark.parametrize("rows", [0, 3])
def test_batch_size_outside_max_batch_size(models: Path, rows: int) -> None:
    """A batch of 0 rows or more than max_batch_size rows is refused."""

    async def body(service: InferenceService) -> None:
        request = InferRequest("small", [fp32("INPUT0", rows=rows, width=4)])
        with pytest.raises(InvalidInputError, match=rf"batch size {rows} is outside 1..2"):
            await service.infer(request)

    with_service(models, body)


def test_max_batch_size_is_accepted_at_the_limit(models: Path) -> None:
    """A batch of exactly max_batch_size rows runs."""

    async def body(service: InferenceService) -> None:
        response = await service.infer(InferRequest("small", [fp32("INPUT0", rows=2, width=4)]))
        assert response.outputs[0].data.shape == (2, 4)

    with_service(models, body)


def test_unbatched_model_requires_the_exact_shape(models: Path) -> None:
    """A model without batching takes its full fixed shape and nothing else."""

    async def body(service: InferenceService) -> None:
        ok = Tensor("INPUT0", DataType.INT32, np.arange(8, dtype=np.int32).reshape(2, 4))
        response = await service.infer(InferRequest("fixed", [ok]))
        np.testing.assert_array_equal(response.outputs[0].data, ok.data)
        one_row = Tensor("INPUT0", DataType.INT32, np.zeros((1, 4), np.int32))
        with pytest.raises(InvalidInputError, match=r"does not match the model's \[2, 4\]"):
            await service.infer(InferRequest("fixed", [one_row]))

    with_service(models, body)


def test_unknown_requested_output(models: Path) -> None:
    """Requesting an output the model does not have is refused, listing its outputs."""
    request = simple_request(outputs=[RequestedOutput("OUTPUT9")])
    invalid(models, request, "unknown output 'OUTPUT9'; the model has 'OUTPUT0', 'OUTPUT1'")


def test_duplicate_requested_output(models: Path) -> None:
    """Requesting the same output twice is refused."""
    request = simple_request(outputs=[RequestedOutput("OUTPUT0"), RequestedOutput("OUTPUT0")])
    invalid(models, request, "output 'OUTPUT0' is requested twice")


def test_classification_parameter_returns_top_n_strings(models: Path) -> None:
    """The classification parameter turns an output into Triton's "value:index" strings."""

    async def body(service: InferenceService) -> None:
        output = RequestedOutput("OUTPUT0", {"classification": 2})
        response = await service.infer(simple_request(outputs=[output]))
        (tensor,) = response.outputs
        assert tensor.datatype.value == "BYTES"
        assert tensor.shape == (1, 2)
        value, index = tensor.data[0, 0].decode().split(":")
        assert float(value) == max(float(v.decode().split(":")[0]) for v in tensor.data[0])
        assert 0 <= int(index) < 16

    with_service(models, body)


@pytest.mark.parametrize("count", [0, -1, "3", True, 1.5])
def test_bad_classification_parameter(models: Path, count: Any) -> None:
    """A classification count that is not an integer >= 1 is refused with 400."""
    output = RequestedOutput("OUTPUT0", {"classification": count})
    invalid(models, simple_request(outputs=[output]), "'classification' must be an integer >= 1")


@pytest.mark.parametrize("timeout", [0, 10_000_000])
def test_good_timeout_parameter(models: Path, timeout: int) -> None:
    """A zero or generous timeout lets the request run."""

    async def body(service: InferenceService) -> None:
        response = await service.infer(simple_request(timeout_us=timeout))
        assert len(response.outputs) == 2

    with_service(models, body)


def test_draining_refuses_inference_and_is_not_ready(models: Path) -> None:
    """After start_draining() the server is not ready and refuses new inference with 503."""

    async def body(service: InferenceService) -> None:
        service.start_draining()
        assert service.live()
        assert not service.ready()
        with pytest.raises(UnavailableError, match="shutting down"):
            await service.infer(simple_request())

    with_service(models, body)


# -- health, metadata, configuration -----------------------------------------------------------


def test_server_metadata(models: Path) -> None:
    """Server metadata names Shipyard, its version and exactly the implemented extensions."""

    async def body(service: InferenceService) -> None:
        assert encode_server_metadata(service.server_metadata()) == {
            "name": "shipyard",
            "version": __version__,
            "extensions": list(EXTENSIONS),
        }
        assert set(EXTENSIONS) == {
            "binary_tensor_data",
            "model_repository",
            "statistics",
            "model_configuration",
            "classification",
        }

    with_service(models, body)


def test_readiness(models: Path) -> None:
    """Server ready needs every model ready; model_ready is per model; unknown is 404."""

    async def body(service: InferenceService) -> None:
        assert not service.ready()  # 'broken' failed to load
        assert service.model_ready("simple")
        assert service.model_ready("simple", "1")
        assert not service.model_ready("broken")
        with pytest.raises(NotFoundError):
            service.model_ready("ghost")
        await service.unload_model("broken")
        assert service.ready()

    with_service(models, body)


def test_model_metadata(models: Path) -> None:
    """Model metadata lists versions, platform and the tensors with -1 for variable dims."""

    async def body(service: InferenceService) -> None:
        meta = service.model_metadata("simple").to_dict()
        assert meta == {
            "name": "simple",
            "versions": ["1"],
            "platform": "onnx_onnxv1",
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 16]},
                {"name": "INPUT1", "datatype": "FP32", "shape": [-1, 16]},
            ],
            "outputs": [
                {"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 16]},
                {"name": "OUTPUT1", "datatype": "FP32", "shape": [-1, 16]},
            ],
        }
        with pytest.raises(NotFoundError):
            service.model_metadata("ghost")

    with_service(models, body)


def test_model_config(models: Path) -> None:
    """The Triton model configuration reflects the resolved batching."""

    async def body(service: InferenceService) -> None:
        config = encode_model_config(service.model_config("small"))
        assert config["max_batch_size"] == 2
        assert config["input"][0]["dims"] == [4]
        fixed = encode_model_config(service.model_config("fixed"))
        assert fixed["max_batch_size"] == 0
        assert fixed["input"][0]["dims"] == [2, 4]
        assert fixed["input"][0]["data_type"] == "TYPE_INT32"

    with_service(models, body)


# -- predict -----------------------------------------------------------------------------------


def test_predict_runs_decoded_instances(repository: Path) -> None:
    """predict() runs the instances a transport decoded and answers one entry per instance."""
    write_model(repository, "echo", identity_model(DataType.BYTES, shape=["batch"]))

    async def body(service: InferenceService) -> None:
        target = service.predict_input("echo")
        assert (target.model_name, target.spec.name, target.kind) == ("echo", "INPUT0", "bytes")
        prediction = await service.predict("echo", None, [b"a", b"bc"])
        assert (prediction.model_name, prediction.model_version) == ("echo", "1")
        assert prediction.predictions == [{"OUTPUT0": "a"}, {"OUTPUT0": "bc"}]
        with pytest.raises(InvalidInputError, match="top_k must be an integer >= 1, got 0"):
            await service.predict("echo", None, [b"a"], top_k=0)

    with_service(repository, body)


def test_predict_refuses_a_model_without_one_bytes_input(models: Path) -> None:
    """A model whose input is not one BYTES tensor cannot serve /predict: 400, use /infer."""

    async def body(service: InferenceService) -> None:
        with pytest.raises(InvalidInputError, match="predict needs one processed image or text"):
            service.predict_input("simple")
        with pytest.raises(InvalidInputError, match="use /infer instead"):
            await service.predict("simple", None, [b"a"])
        with pytest.raises(NotFoundError):
            service.predict_input("ghost")

    with_service(models, body)


# -- statistics and repository -----------------------------------------------------------------


def test_statistics(models: Path) -> None:
    """Statistics count inferences per model; all models, one model, one version."""

    async def body(service: InferenceService) -> None:
        await service.infer(simple_request(fp32("INPUT0", rows=3), fp32("INPUT1", rows=3)))
        (simple,) = encode_statistics(service.statistics("simple"))["model_stats"]
        assert (simple["name"], simple["version"]) == ("simple", "1")
        assert simple["inference_count"] == 3
        assert simple["execution_count"] == 1
        assert simple["inference_stats"]["success"]["count"] == 1
        assert encode_statistics(service.statistics("simple", "1"))["model_stats"] == [simple]
        everything = encode_statistics(service.statistics())["model_stats"]
        assert {s["name"] for s in everything} == {"simple", "small", "fixed"}
        assert encode_statistics(service.statistics("broken")) == {"model_stats": []}
        with pytest.raises(NotFoundError):
            service.statistics("ghost")
        with pytest.raises(NotFoundError):
            service.statistics("simple", "9")

    with_service(models, body)


def test_repository_index(models: Path) -> None:
    """The repository index passes through the registry's rows."""

    async def body(service: InferenceService) -> None:
        ready = service.repository_index(ready_only=True)
        assert {row.name for row in ready} == {"simple", "small", "fixed"}
        states = {row.name: row.state for row in service.repository_index()}
        assert states["broken"] == "UNAVAILABLE"

    with_service(models, body)


def test_load_and_unload(models: Path) -> None:
    """load_model/unload_model change what is served; unload_dependents is accepted."""

    async def body(service: InferenceService) -> None:
        await service.unload_model("simple", {"unload_dependents": True})
        with pytest.raises(ModelNotReadyError):
            await service.infer(simple_request())
        await service.load_model("simple")
        assert len((await service.infer(simple_request())).outputs) == 2

    with_service(models, body)


@pytest.mark.parametrize(
    ("action", "parameters", "error", "message"),
    [
        ("load", {"config": "{}"}, UnsupportedError, "'config' parameter is not supported"),
        ("load", {"file:1/model.onnx": "AAAA"}, UnsupportedError, "'file' parameter"),
        ("load", {"colour": 1}, InvalidInputError, "load: unknown parameter 'colour'"),
        ("load", {"unload_dependents": True}, InvalidInputError, "unknown parameter"),
        ("unload", {"config": "{}"}, InvalidInputError, "unload: unknown parameter 'config'"),
        ("unload", {"file:1/model.onnx": "AAAA"}, InvalidInputError, "unknown parameter 'file:"),
        ("unload", {"force": True}, InvalidInputError, "unload: unknown parameter 'force'"),
    ],
)
def test_repository_parameters_are_checked(
    models: Path, action: str, parameters: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Load and unload refuse parameters they do not implement."""

    async def body(service: InferenceService) -> None:
        call = service.load_model if action == "load" else service.unload_model
        with pytest.raises(error, match=message):
            await call("simple", parameters)
        assert service.model_ready("simple")

    with_service(models, body)


@pytest.mark.parametrize("name", ["../simple", "a/b", "..", "x y"])
def test_repository_refuses_path_like_names(models: Path, name: str) -> None:
    """Model names that could be paths are refused before touching the disk."""

    async def body(service: InferenceService) -> None:
        with pytest.raises(InvalidInputError, match="invalid model name"):
            await service.load_model(name)
        with pytest.raises(InvalidInputError, match="invalid model name"):
            await service.unload_model(name)

    with_service(models, body)


# -- with --workers: the whole server through its Cluster ---------------------------------------


class _Cluster:
    """A stand-in for the other workers: records what the service asks of it."""

    def __init__(self, ready: bool) -> None:
        self.is_ready = ready
        self.actions: list[tuple[str, str]] = []

    async def ready(self) -> bool:
        return self.is_ready

    async def statistics(self, name: str | None, version: str | None) -> list[ModelStats]:
        stats = ModelStats(name or "all", version or "1")
        stats.success.add(5, 42)
        return [stats]

    async def apply(self, action: Literal["load", "unload"], name: str) -> None:
        self.actions.append((action, name))

    async def metrics_text(self) -> bytes:
        return b""


def test_with_a_cluster_the_server_answers_for_every_worker(models: Path) -> None:
    """Readiness needs this process and the cluster; statistics come from the cluster; load
    and unload go to the cluster (which runs them everywhere), not to this registry alone."""

    async def main() -> None:
        registry = ModelRegistry(models, drain_timeout_s=1.0)
        await registry.load_all(("simple",))
        cluster = _Cluster(ready=False)
        service = InferenceService(registry, 10_000, cluster)
        try:
            assert service.ready()
            assert not await service.server_ready()
            cluster.is_ready = True
            assert await service.server_ready()
            service.start_draining()
            assert not await service.server_ready()  # this process first, without asking
            stats = await service.server_statistics("simple")
            assert stats[0].success.count == 42
            await service.unload_model("simple")
            await service.load_model("small")
            assert cluster.actions == [("unload", "simple"), ("load", "small")]
            assert registry.known("simple")
            assert not registry.known("small")  # the cluster loads it, this call does not
            with pytest.raises(InvalidInputError, match="unknown parameter"):
                await service.load_model("small", {"bogus": 1})
            assert len(cluster.actions) == 2  # refused before anything was sent
        finally:
            await registry.close()

    asyncio.run(main())
