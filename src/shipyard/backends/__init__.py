"""Backends: how one model file runs. ONNX Runtime is the default (and so far the only) one."""

from shipyard.backends.base import Backend, load_backend

__all__ = ["Backend", "load_backend"]
