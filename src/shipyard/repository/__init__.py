"""The model repository: what models exist on disk and which versions are loaded."""

from shipyard.repository.layout import ModelSource, scan_repository
from shipyard.repository.registry import ModelRegistry, ServedVersion

__all__ = ["ModelRegistry", "ModelSource", "ServedVersion", "scan_repository"]
