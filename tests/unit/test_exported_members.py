"""The public API of ``shipyard`` is exactly what ``__all__`` lists (httpx's habit)."""

from __future__ import annotations

import shipyard

#: Changing this list is changing the public API: say so in CHANGELOG.md.
PUBLIC = [
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


def test_exported_members() -> None:
    """__all__ is the pinned list, sorted, and every name in it exists."""
    assert shipyard.__all__ == PUBLIC
    assert sorted(shipyard.__all__) == shipyard.__all__
    for name in shipyard.__all__:
        assert hasattr(shipyard, name), name


def test_public_classes_say_where_they_live() -> None:
    """Every exported class and function is defined in a shipyard module."""
    for name in shipyard.__all__:
        member = getattr(shipyard, name)
        if isinstance(member, type):
            assert member.__module__.startswith("shipyard."), name


def test_python_model_contract_is_reachable_from_the_top() -> None:
    """User code subclasses shipyard.PythonModel and receives a shipyard.ModelContext."""
    from shipyard.backends.python_model import ModelContext, PythonModel

    assert shipyard.PythonModel is PythonModel
    assert shipyard.ModelContext is ModelContext
