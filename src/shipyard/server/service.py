"""InferenceService: the one transport-neutral implementation of the Open Inference Protocol.

HTTP and gRPC adapters decode their wire format into core types, call a method here, and encode
what it returns: every answer is a core type (:mod:`shipyard.types`, :mod:`shipyard.stats`,
:class:`~shipyard.config.ModelConfig`), never a wire shape. Errors are :mod:`shipyard.errors`
exceptions that each transport maps to its own status by one table.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import numpy as np

from shipyard import __version__
from shipyard.config import ModelConfig
from shipyard.context import RequestContext, current_request
from shipyard.errors import (
    InvalidInputError,
    ModelNotReadyError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
)
from shipyard.explain import Explanation, explain
from shipyard.processing.image import ImageChain
from shipyard.processing.outputs import check_classification, classify
from shipyard.processing.predict import InputKind, PredictInput, predictions
from shipyard.repository.layout import check_model_name
from shipyard.repository.registry import ModelRegistry, ServedVersion
from shipyard.stats import ModelStats
from shipyard.types import (
    Array,
    DataType,
    InferRequest,
    InferResponse,
    JSONValue,
    ModelMetadata,
    Prediction,
    RepositoryEntry,
    ServerMetadata,
    Tensor,
    TensorSpec,
)

__all__ = ["EXTENSIONS", "Cluster", "InferenceService"]

#: Extensions advertised in server metadata: exactly those implemented, on every transport.
EXTENSIONS = (
    "binary_tensor_data",
    "model_repository",
    "statistics",
    "model_configuration",
    "classification",
)


class Cluster(Protocol):
    """The worker processes that serve as one server (``--workers N``), this one among them.

    What a client asks any worker about the server as a whole goes through it: readiness,
    statistics and ``/metrics`` are gathered from every worker, repository control is applied
    by every worker before the call returns (:mod:`shipyard.workers` implements it).
    """

    async def ready(self) -> bool:
        """Whether every worker is running and ready."""

    async def statistics(self, name: str | None, version: str | None) -> list[ModelStats]:
        """The statistics of :meth:`InferenceService.statistics`, summed over the workers."""

    async def apply(self, action: Literal["load", "unload"], name: str) -> None:
        """Load or unload model ``name`` in every worker; raise ShipyardError if any failed."""

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of ``/metrics``, summed over the workers."""


class InferenceService:
    """Health, metadata, inference, repository control and statistics."""

    def __init__(
        self, registry: ModelRegistry, max_tensor_elements: int, cluster: Cluster | None = None
    ) -> None:
        self.registry = registry
        self.max_tensor_elements = max_tensor_elements
        #: The other worker processes of this server (``--workers``); None: this one alone.
        self.cluster = cluster
        self._draining = False

    # -- health and metadata --------------------------------------------------------------

    def live(self) -> bool:
        """The process can receive and answer requests."""
        return True

    def ready(self) -> bool:
        """Every model that should serve is ready, and the server is not shutting down."""
        return not self._draining and self.registry.all_ready()

    async def server_ready(self) -> bool:
        """Whether the server is ready: this process, and with ``--workers`` every worker."""
        if not self.ready():
            return False
        return self.cluster is None or await self.cluster.ready()

    def start_draining(self) -> None:
        """Refuse new inference requests (shutdown has begun); in-flight ones finish."""
        self._draining = True

    @property
    def draining(self) -> bool:
        """Whether shutdown has begun."""
        return self._draining

    def server_metadata(self) -> ServerMetadata:
        """The server's name, version and extensions."""
        return ServerMetadata("shipyard", __version__, EXTENSIONS)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether that model (version) can serve; unknown models raise NotFoundError."""
        try:
            self.registry.get(name, version)
        except ModelNotReadyError:
            return False
        return True

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """The ``$metadata_model_response`` of a loaded model (version)."""
        served = self.registry.get(name, version)
        versions = tuple(str(v.version) for v in self.registry.versions(name))
        inputs, outputs = _signature(served)
        return ModelMetadata(name, versions, served.platform, inputs, outputs)

    def model_config(self, name: str, version: str | None = None) -> ModelConfig:
        """The configuration a loaded model (version) runs with.

        Resolved as loaded (the real backend, the maximum batch size), with the model's whole
        signature in ``inputs`` and ``outputs``: the model's own tensors, not the processed
        ones clients send to a model with processing.
        """
        served = self.registry.get(name, version)
        return dataclasses.replace(served.config, inputs=served.inputs, outputs=served.outputs)

    # -- inference ------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        """Validate ``request``, run it through the model's batcher, return the outputs.

        A model with processing takes and returns its client-facing tensors: pre-processing
        runs before the request is queued (so processed requests batch together), and
        post-processing after the batch returns.
        """
        if self._draining:
            raise UnavailableError("server is shutting down; send the request elsewhere")
        served = self.registry.get(request.model_name, request.model_version)
        # The request's context (the transport opened it) learns what serves it, and the
        # version's metrics count it in flight.
        ctx = current_request.get()
        version = served.stats.version
        if ctx is not None:
            ctx.model, ctx.version = served.name, version
        metrics = self.registry.metrics.model(served.name, version)
        metrics.inflight += 1
        try:
            return await self._infer(served, request, ctx)
        finally:
            metrics.inflight -= 1

    async def _infer(
        self, served: ServedVersion, request: InferRequest, ctx: RequestContext | None
    ) -> InferResponse:
        inputs, outputs = _signature(served)
        arrays = self._validate_inputs(served, request.inputs, inputs)
        wanted = self._validate_outputs(served, request, outputs)
        timeout_us, deadline = request.timeout_us, request.deadline
        pipeline = served.pipeline
        if pipeline is None:
            results = await served.batcher.submit(arrays, wanted, timeout_us, deadline, ctx)
        else:
            start = time.perf_counter_ns()
            model_arrays = await pipeline.preprocess(arrays)
            tensors = [Tensor(n, DataType.from_numpy(a.dtype), a) for n, a in model_arrays.items()]
            model_arrays = self._validate_inputs(served, tensors, served.inputs)
            queued = time.perf_counter_ns()
            raw = await served.batcher.submit(
                model_arrays, pipeline.model_outputs(wanted), timeout_us, deadline, ctx
            )
            back = time.perf_counter_ns()
            results = await pipeline.postprocess(raw, model_arrays, wanted)
            if ctx is not None:
                ctx.preprocess_ns = queued - start
                ctx.postprocess_ns = time.perf_counter_ns() - back
        by_name = {spec.name: spec for spec in outputs}
        tensors = [Tensor(n, by_name[n].datatype, results[n]) for n in wanted]
        for output in request.outputs or ():
            count = output.parameters.get("classification")
            if count is not None:
                self._classify(served, tensors, output.name, count)
        return InferResponse(
            model_name=served.name,
            model_version=str(served.version),
            id=request.id,
            outputs=tensors,
        )

    def _classify(
        self, served: ServedVersion, tensors: list[Tensor], name: str, count: JSONValue
    ) -> None:
        """Replace output ``name`` by Triton's top-``count`` "value:index[:label]" strings."""
        index = next(i for i, t in enumerate(tensors) if t.name == name)
        labels = served.pipeline.labels(name) if served.pipeline is not None else None
        data = classify(
            f"{served.name}: {name}",
            tensors[index].data,
            count,
            labels,
            served.max_batch_size > 0,
        )
        tensors[index] = Tensor(name, DataType.BYTES, data, tensors[index].parameters)

    def predict_input(self, name: str, version: str | None = None) -> PredictInput:
        """The input a ``/predict`` call feeds, and whether it takes images, text or bytes.

        Raise InvalidInputError unless the model has one processed image or text input
        (a BYTES input): the only kind of model ``/predict`` serves.
        """
        return _predict_input(self.registry.get(name, version))

    async def predict(
        self,
        name: str,
        version: str | None,
        instances: Sequence[bytes],
        top_k: int | None = None,
    ) -> Prediction:
        """Run ``instances`` (one BYTES element each) and label the outputs.

        ``top_k`` is how many classes a classifier answers (None: its configured number).
        The instances come from a body that the transport decoded for :meth:`predict_input`.
        """
        served = self.registry.get(name, version)
        where = f"model {served.name!r}"
        spec = _predict_input(served).spec
        if top_k is not None and top_k < 1:
            raise InvalidInputError(f"{where}: top_k must be an integer >= 1, got {top_k}")
        data = np.empty(len(instances), dtype=object)
        data[:] = instances
        if spec.shape and len(spec.shape) != 1:
            raise InvalidInputError(f"{where}: input {spec.name!r} is not one element per row")
        request = InferRequest(
            served.name, [Tensor(spec.name, DataType.BYTES, data)], str(served.version)
        )
        response = await self.infer(request)
        outputs = {t.name: t.data for t in response.outputs}
        return Prediction(
            response.model_name,
            response.model_version,
            predictions(served.pipeline, outputs, top_k),
        )

    def _validate_inputs(
        self, served: ServedVersion, inputs: list[Tensor], signature: tuple[TensorSpec, ...]
    ) -> dict[str, Array]:
        where = f"model {served.name!r}"
        specs = {spec.name: spec for spec in signature}
        arrays: dict[str, Array] = {}
        for tensor in inputs:
            spec = specs.get(tensor.name)
            if spec is None:
                raise InvalidInputError(
                    f"{where}: unknown input {tensor.name!r}; the model takes "
                    f"{', '.join(repr(n) for n in specs)}"
                )
            if tensor.name in arrays:
                raise InvalidInputError(f"{where}: input {tensor.name!r} is given twice")
            if tensor.datatype is not spec.datatype:
                raise InvalidInputError(
                    f"{where}, input {tensor.name!r}: datatype {tensor.datatype} does not match "
                    f"the model's {spec.datatype}"
                )
            shape = tensor.shape
            if spec.shape and (
                len(shape) != len(spec.shape)
                or any(s != -1 and s != d for s, d in zip(spec.shape, shape, strict=True))
            ):
                raise InvalidInputError(
                    f"{where}, input {tensor.name!r}: shape {list(shape)} does not match the "
                    f"model's {list(spec.shape)} (-1 = any size)"
                )
            arrays[tensor.name] = tensor.data
        missing = [name for name in specs if name not in arrays]
        if missing:
            raise InvalidInputError(
                f"{where}: missing input(s) {', '.join(repr(n) for n in missing)}"
            )
        max_batch = served.max_batch_size
        if max_batch > 0:
            batch_sizes = {int(a.shape[0]) for a in arrays.values()}
            if len(batch_sizes) != 1:
                raise InvalidInputError(
                    f"{where}: inputs disagree on the batch size (dim 0): {sorted(batch_sizes)}"
                )
            rows = batch_sizes.pop()
            if not 1 <= rows <= max_batch:
                raise InvalidInputError(
                    f"{where}: batch size {rows} is outside 1..{max_batch} (max_batch_size)"
                )
        return arrays

    def _validate_outputs(
        self, served: ServedVersion, request: InferRequest, signature: tuple[TensorSpec, ...]
    ) -> list[str]:
        names = [spec.name for spec in signature]
        if not request.outputs:  # None or [] (protobuf cannot tell them apart): every output
            return names
        wanted: list[str] = []
        for output in request.outputs:
            if output.name not in names:
                raise InvalidInputError(
                    f"model {served.name!r}: unknown output {output.name!r}; the model has "
                    f"{', '.join(repr(n) for n in names)}"
                )
            if output.name in wanted:
                raise InvalidInputError(
                    f"model {served.name!r}: output {output.name!r} is requested twice"
                )
            count = output.parameters.get("classification")
            if count is not None:
                datatype = next(spec.datatype for spec in signature if spec.name == output.name)
                check_classification(f"{served.name}: {output.name}", count, datatype)
            wanted.append(output.name)
        return wanted

    # -- repository and statistics --------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every model in the repository with its state and reason."""
        return self.registry.index(ready_only)

    async def load_model(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Load or reload ``name`` from the repository."""
        check_model_name(name)
        _refuse_parameters(parameters, "load")
        if self.cluster is not None:
            await self.cluster.apply("load", name)  # every worker, this one too
        else:
            await self.registry.load(name)

    async def unload_model(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Unload ``name`` after its in-flight requests finish."""
        check_model_name(name)
        _refuse_parameters(parameters, "unload", allowed=("unload_dependents",))
        if self.cluster is not None:
            await self.cluster.apply("unload", name)
        else:
            await self.registry.unload(name)

    def statistics(self, name: str | None = None, version: str | None = None) -> list[ModelStats]:
        """The statistics of every loaded version, of a model's versions, or of one version.

        The counters are live: encode them before the event loop runs anything else.
        """
        if name is None:
            served = self.registry.served()
        elif version:
            served = [self.registry.get(name, version)]
        else:
            if not self.registry.known(name):
                raise NotFoundError(f"unknown model {name!r}")
            served = self.registry.versions(name)
        return [v.stats for v in served]

    async def server_statistics(
        self, name: str | None = None, version: str | None = None
    ) -> list[ModelStats]:
        """:meth:`statistics` of the whole server: with ``--workers``, summed over them."""
        if self.cluster is None:
            return self.statistics(name, version)
        return await self.cluster.statistics(name, version)

    # -- explanations ---------------------------------------------------------------------

    async def explain(self, request: InferRequest) -> Explanation:
        """Explain the prediction for the one instance in ``request`` (docs/explain.md).

        ``request.parameters`` choose the method, target and sizes; every perturbation runs
        through the model's batcher like any other request. Raises InvalidInputError for bad
        parameters or more perturbations than the model's ``[explain] max_perturbations``.
        """
        if self._draining:
            raise UnavailableError("server is shutting down; send the request elsewhere")
        served = self.registry.get(request.model_name, request.model_version)
        inputs, _ = _signature(served)
        arrays = self._validate_inputs(served, request.inputs, inputs)
        return await explain(served, arrays, request.parameters)

    def explain_input(self, name: str, version: str | None = None) -> PredictInput:
        """The processed input (image or text) a raw-body explanation feeds.

        Raise InvalidInputError, saying to send a V2 request instead, unless the model has one
        input and it is processed (the transport decodes the body for it, as for /predict).
        """
        served = self.registry.get(name, version)
        inputs, _ = _signature(served)
        pre = served.pipeline.pre if served.pipeline is not None else {}
        if len(inputs) != 1 or inputs[0].name not in pre:
            raise InvalidInputError(
                f"model {served.name!r} takes"
                f" {', '.join(f'{s.name} {s.datatype}' for s in inputs)} with no image or text"
                " processing; send a V2 inference request as JSON to explain it"
                " (docs/explain.md)"
            )
        return _predict_input(served)

    async def explain_instance(
        self, name: str, version: str | None, instance: bytes, parameters: Mapping[str, JSONValue]
    ) -> Explanation:
        """Explain one raw instance (the bytes of an image, or a text) for
        :meth:`explain_input`; ``parameters`` as :meth:`explain`'s."""
        target = self.explain_input(name, version)
        data = np.empty(1, dtype=object)
        data[0] = instance
        request = InferRequest(
            target.model_name,
            [Tensor(target.spec.name, DataType.BYTES, data)],
            version,
            parameters=dict(parameters),
        )
        return await self.explain(request)


def _predict_input(served: ServedVersion) -> PredictInput:
    inputs, _ = _signature(served)
    if len(inputs) != 1 or inputs[0].datatype is not DataType.BYTES:
        raise InvalidInputError(
            f"model {served.name!r} takes "
            f"{', '.join(f'{s.name} {s.datatype}' for s in inputs)}; "
            "predict needs one processed image or text input ([[preprocess]] in its "
            "model.toml, see docs/processing.md); use /infer instead"
        )
    spec = inputs[0]
    chain = served.pipeline.pre.get(spec.name) if served.pipeline is not None else None
    kind: InputKind = (
        "bytes" if chain is None else "image" if isinstance(chain, ImageChain) else "text"
    )
    return PredictInput(served.name, spec, kind)


def _signature(served: ServedVersion) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The inputs and outputs clients see: the pipeline's when the model has processing."""
    if served.pipeline is not None:
        return served.pipeline.inputs, served.pipeline.outputs
    return served.inputs, served.outputs


def _refuse_parameters(
    parameters: Mapping[str, object] | None, action: str, allowed: tuple[str, ...] = ()
) -> None:
    """Refuse every parameter but ``allowed``: Triton's load-only ``config`` and ``file:``
    (a feature Shipyard lacks) with UnsupportedError on load, anything else as invalid."""
    for key in parameters or {}:
        if key in allowed:
            continue
        if action == "load" and (key == "config" or key.startswith("file:")):
            raise UnsupportedError(
                f"{action}: the {key.split(':')[0]!r} parameter is not supported; Shipyard loads "
                "models only from its repository on disk"
            )
        raise InvalidInputError(f"{action}: unknown parameter {key!r}")
