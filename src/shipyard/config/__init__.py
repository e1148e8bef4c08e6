"""Typed, frozen configuration: :class:`ServerConfig` and :class:`ModelConfig`.

* :mod:`~shipyard.config.server`: the settings of one server process.
* :mod:`~shipyard.config.model`: a model's serving settings, and
  :mod:`~shipyard.config.model_toml`, which reads them from ``<repo>/<name>/model.toml``
  (anything the file leaves out is inferred from the model itself).
* :mod:`~shipyard.config.resolve`: where settings come from (defaults < config file <
  environment ``SHIPYARD_*`` < CLI flags) and the checks every raw value goes through.

Unknown keys are errors, so a typo never silently falls back to a default.
"""

from shipyard.config.model import (
    BACKENDS,
    DEFAULT_MAX_BATCH_SIZE,
    DynamicBatchingConfig,
    EnsembleStepConfig,
    ExecutionMode,
    ExplainConfig,
    GraphOptimizationLevel,
    ModelConfig,
    OnnxRuntimeConfig,
    OpenVinoConfig,
    OpenVinoPrecision,
    PostprocessConfig,
    PreprocessConfig,
    PythonConfig,
    PythonPostprocessConfig,
    PythonPreprocessConfig,
    ScaleConfig,
    StepConfig,
    VersionPolicy,
)
from shipyard.config.model_toml import load_model_config, parse_model_config
from shipyard.config.server import LOG_FORMATS, LOG_LEVELS, ServerConfig

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_BATCH_SIZE",
    "LOG_FORMATS",
    "LOG_LEVELS",
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
    "ServerConfig",
    "StepConfig",
    "VersionPolicy",
    "load_model_config",
    "parse_model_config",
]
