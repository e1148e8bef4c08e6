"""Shipyard: take a trained model to a fast, measured Open Inference Protocol service.

The public API is listed in ``__all__``; importing the package starts nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"

from shipyard.backends.python_model import ModelContext, PythonModel
from shipyard.config import ModelConfig, ServerConfig
from shipyard.errors import ShipyardError
from shipyard.types import (
    DataType,
    InferRequest,
    InferResponse,
    ModelMetadata,
    RequestedOutput,
    Tensor,
    TensorSpec,
)

__all__ = [
    "DataType",
    "InferRequest",
    "InferResponse",
    "ModelConfig",
    "ModelContext",
    "ModelMetadata",
    "PythonModel",
    "RequestedOutput",
    "ServerConfig",
    "ShipyardError",
    "Tensor",
    "TensorSpec",
    "__version__",
]
