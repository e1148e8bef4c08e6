"""A model's serving settings: :class:`ModelConfig` and its parts, typed and frozen.

They are read from ``<repo>/<name>/model.toml`` by :mod:`~shipyard.config.model_toml` (every
field is documented in ``docs/model-config.md``); anything the file leaves out is inferred from
the model itself. The tuner writes the same settings that the server reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shipyard.types import TensorSpec

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DynamicBatchingConfig",
    "EnsembleStepConfig",
    "ExecutionMode",
    "ExplainConfig",
    "GraphOptimizationLevel",
    "ModelConfig",
    "OnnxRuntimeConfig",
    "OpenVinoConfig",
    "OpenVinoPrecision",
    "PostprocessConfig",
    "PreprocessConfig",
    "PythonConfig",
    "PythonPostprocessConfig",
    "PythonPreprocessConfig",
    "ScaleConfig",
    "StepConfig",
    "VersionPolicy",
]

#: ``max_batch_size`` given to a model whose first dimension is dynamic and whose
#: ``model.toml`` does not say otherwise.
DEFAULT_MAX_BATCH_SIZE = 32

#: Values of model.toml's ``backend`` (``auto``: chosen from the version folder's model file;
#: ``python``: the version folder's model.py, docs/python-models.md; ``ensemble``: the
#: ``[[step]]`` list, which wires other models together).
BACKENDS = ("auto", "onnxruntime", "tflite", "openvino", "python", "ensemble")

ExecutionMode = Literal["sequential", "parallel"]
GraphOptimizationLevel = Literal["disable", "basic", "extended", "all"]
#: OpenVINO's inference precision hint (``f32`` unless model.toml asks for another).
OpenVinoPrecision = Literal["f32", "bf16", "f16"]


@dataclass(frozen=True, slots=True)
class DynamicBatchingConfig:
    """How concurrent requests are merged into one model execution."""

    #: How long the oldest queued request may wait for more to arrive (0: never wait; a
    #: request runs as soon as an instance is free, taking whatever queued meanwhile).
    max_queue_delay_us: int = 0
    #: Batch sizes to dispatch at once when reached, without waiting for the delay.
    preferred_batch_sizes: tuple[int, ...] = ()
    #: Requests that may wait; one more is refused at once with 503.
    max_queue_size: int = 1024
    #: Deadline in microseconds for requests that do not send a ``timeout`` parameter (0: none).
    default_timeout_us: int = 0


@dataclass(frozen=True, slots=True)
class OnnxRuntimeConfig:
    """ONNX Runtime session options."""

    #: Threads used inside one operator: "auto" (the default) follows the model's measured
    #: cost (:mod:`shipyard.backends.threads`); 0: ONNX Runtime's default, one per core.
    intra_op_threads: int | Literal["auto"] = "auto"
    #: Threads used across independent operators (0: ONNX Runtime's default); ONNX Runtime
    #: uses them only when ``execution_mode`` is "parallel".
    inter_op_threads: int = 1
    graph_optimization_level: GraphOptimizationLevel = "all"
    #: Whether idle intra-op threads spin; spinning burns the CPU the HTTP side needs.
    allow_spinning: bool = False
    #: Execution providers in order of preference; empty: the best available on this machine.
    providers: tuple[str, ...] = ()
    #: "sequential" runs one operator at a time; "parallel" runs independent branches of the
    #: graph at once on the inter-op threads.
    execution_mode: ExecutionMode = "sequential"
    #: The GPU (or other device) the non-CPU providers run on, e.g. 1 for the second GPU.
    device_id: int = 0
    #: Run with I/O binding: inputs copied to the device once, outputs allocated there by ONNX
    #: Runtime and copied out once. "auto": on when CUDA or TensorRT runs the model, off on
    #: the CPU (where it saves nothing); true/false force it.
    io_binding: bool | Literal["auto"] = "auto"


@dataclass(frozen=True, slots=True)
class OpenVinoConfig:
    """``[openvino]``: how the OpenVINO backend compiles the model (``backend = "openvino"``)."""

    #: The OpenVINO device: CPU, GPU, NPU, AUTO... (``shipyard hw`` lists those found).
    device: str = "CPU"
    #: The precision OpenVINO computes in. ``None`` (unset): the precision a version's IR was
    #: made and guarded for by ``shipyard optimize --quantize bf16``, else "f32". Never
    #: OpenVINO's own default, which is bf16 on CPUs with AMX or AVX-512 BF16.
    inference_precision: OpenVinoPrecision | None = None
    #: Threads one inference uses, as ``[onnxruntime] intra_op_threads``: "auto" follows the
    #: model's measured cost (:mod:`shipyard.backends.threads`); 0: OpenVINO's default.
    intra_op_threads: int | Literal["auto"] = "auto"


@dataclass(frozen=True, slots=True)
class ExplainConfig:
    """``[explain]``: limits of ``POST /v2/models/{name}/explain`` (docs/explain.md)."""

    #: Most perturbed inferences one explanation may run; a request needing more gets 400.
    max_perturbations: int = 4096


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Which versions of a model are served: the latest N, all, or specific ones."""

    kind: Literal["latest", "all", "specific"] = "latest"
    latest: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """Return the versions to serve out of ``available``, newest first."""
        ordered = sorted(available, reverse=True)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[: self.latest]


@dataclass(frozen=True, slots=True)
class StepConfig:
    """One processing step as written in model.toml: ``{op = "resize", size = [28, 28]}``.

    Only the shape is checked here; :mod:`shipyard.processing` checks the op and its options
    when the model loads.
    """

    op: str
    #: The step's other keys, in file order (arrays become tuples, so the config stays frozen).
    options: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        """The option ``key``, or ``default`` when the step does not set it."""
        return dict(self.options).get(key, default)


@dataclass(frozen=True, slots=True)
class PreprocessConfig:
    """``[[preprocess]]``: turn the client-facing BYTES input ``input`` into model tensors."""

    input: str
    #: The model input the steps feed (``None`` for ``tokenize``, whose targets are named
    #: ``input_ids``, ``attention_mask`` and ``token_type_ids``).
    target: str | None
    steps: tuple[StepConfig, ...]


@dataclass(frozen=True, slots=True)
class PostprocessConfig:
    """``[[postprocess]]``: transform the model output ``output`` before it is returned."""

    output: str
    steps: tuple[StepConfig, ...] = ()
    #: A labels file (one label per line, relative to the model folder) for ``topk``, the
    #: ``classification`` parameter and ``/predict``.
    labels: str | None = None


@dataclass(frozen=True, slots=True)
class ScaleConfig:
    """``[scale]``: replicas of the model under ``shipyard ray serve`` (docs/ray.md)."""

    #: Replicas kept running however idle (>= 1; Ray scales down to it).
    min_replicas: int = 1
    #: Most replicas autoscaling may start; equal to min_replicas: a fixed count.
    max_replicas: int = 1
    #: Requests in flight per replica that autoscaling aims for.
    target_ongoing_requests: float = 16.0
    #: Requests one replica accepts at once (Ray queues the rest); room for batches.
    max_ongoing_requests: int = 64
    #: CPUs Ray reserves for each replica (fractions allowed).
    num_cpus: float = 1.0
    #: Seconds the load must stay above target before a replica is added (Ray's default).
    upscale_delay_s: float = 30.0
    #: Seconds the load must stay below target before a replica is removed (Ray's default).
    downscale_delay_s: float = 600.0


@dataclass(frozen=True, slots=True)
class PythonPreprocessConfig:
    """``[[preprocess]]`` with ``kind = "python"``: a function of the version folder turns the
    client inputs it declares into model inputs (docs/python-models.md)."""

    #: ``"module:name"``: ``<version>/module.py``'s function ``name(batch) -> dict`` or its
    #: :class:`~shipyard.PythonModel` subclass ``name``.
    function: str
    #: The client-facing inputs the step takes (full shapes, -1 for variable).
    inputs: tuple[TensorSpec, ...]
    #: The model inputs the step returns.
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PythonPostprocessConfig:
    """``[[postprocess]]`` with ``kind = "python"``: a function of the version folder turns
    model tensors into the client outputs it declares (docs/python-models.md)."""

    #: ``"module:name"``, as for :class:`PythonPreprocessConfig`.
    function: str
    #: The model outputs (or model inputs) the step takes, by name.
    sources: tuple[str, ...]
    #: The client-facing outputs the step returns (full shapes, -1 for variable).
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class PythonConfig:
    """``[python]``: how a model's Python code runs (its model.py and its Python steps)."""

    #: Worker processes per model version (each runs one batch at a time), and per Python
    #: step of the model.
    workers: int = 1
    #: ``[python.settings]``: values handed to ``load(context)`` as ``context.settings``.
    settings: tuple[tuple[str, Any], ...] = ()
    #: Seconds a worker may take to start and run ``load()`` before the load fails.
    start_timeout_s: float = 120.0
    #: Shared memory per worker for tensors (0: every tensor goes over the worker's socket);
    #: tensors that do not fit go over the socket.
    shared_memory_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EnsembleStepConfig:
    """One ``[[step]]`` of an ensemble: run ``model`` on ensemble tensors, name its outputs."""

    model: str
    #: The version to run (``None``: the latest loaded).
    version: int | None
    #: Step model input → the ensemble tensor that feeds it.
    input_map: tuple[tuple[str, str], ...]
    #: Step model output → the ensemble tensor it becomes.
    output_map: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A model's serving configuration, as read from ``model.toml`` (the tuner writes the same)."""

    name: str
    #: ``onnxruntime``, ``tflite``, ``openvino``, ``python``, ``ensemble``, or ``auto``
    #: (model.toml names none): ``onnxruntime`` for a version folder with model.onnx, else
    #: ``tflite`` with model.tflite, else ``openvino`` with model.xml (OpenVINO IR), else
    #: ``python`` with model.py.
    backend: str = "auto"
    #: Largest batch the model runs; 0 turns batching off (inputs then carry no batch dim
    #: of Shipyard's own). ``None``: inferred (dynamic dim 0 → DEFAULT_MAX_BATCH_SIZE, else 0).
    max_batch_size: int | None = None
    #: ``None`` turns dynamic batching off; the default is on whenever max_batch_size > 0.
    dynamic_batching: DynamicBatchingConfig | None = field(default_factory=DynamicBatchingConfig)
    instance_count: int = 1
    onnxruntime: OnnxRuntimeConfig = field(default_factory=OnnxRuntimeConfig)
    openvino: OpenVinoConfig = field(default_factory=OpenVinoConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    #: Overrides of the signature read from the model file (full shapes, -1 for variable).
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    #: Pre- and post-processing run in the server around the model (docs/processing.md).
    preprocess: tuple[PreprocessConfig, ...] = ()
    postprocess: tuple[PostprocessConfig, ...] = ()
    #: Replicas and autoscaling under ``shipyard ray serve`` (ignored by ``shipyard serve``).
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    #: Seconds one model execution may take (0: no limit). Past it the batch's requests fail
    #: with DEADLINE_EXCEEDED and the instance is replaced (a new session, a new worker).
    execution_timeout_s: float = 0.0
    #: How Python code runs: model.py (``backend = "python"``) and Python steps.
    python: PythonConfig = field(default_factory=PythonConfig)
    #: ``[[preprocess]]`` / ``[[postprocess]]`` entries with ``kind = "python"``.
    python_preprocess: tuple[PythonPreprocessConfig, ...] = ()
    python_postprocess: tuple[PythonPostprocessConfig, ...] = ()
    #: ``[[step]]``: the models an ensemble runs (``backend = "ensemble"``).
    steps: tuple[EnsembleStepConfig, ...] = ()

    @property
    def runs_python(self) -> bool:
        """Whether serving this model runs Python code from the repository."""
        return (
            self.backend == "python"
            or bool(self.python_preprocess)
            or bool(self.python_postprocess)
        )
