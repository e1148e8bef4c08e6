"""Backends: how one model file runs: ONNX Runtime (the default), LiteRT (tflite) and OpenVINO."""

from shipyard.backends.base import Backend, load_backend

__all__ = ["Backend", "load_backend"]
