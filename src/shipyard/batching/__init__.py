"""Dynamic batching: merge concurrent requests into one model execution."""

from shipyard.batching.batcher import DynamicBatcher

__all__ = ["DynamicBatcher"]
