"""Dynamic batching: merge concurrent requests into one model execution."""

from shipyard.batching.batcher import DynamicBatcher
from shipyard.batching.instances import Abortable, InstancePool
from shipyard.batching.scheduler import Scheduler

__all__ = ["Abortable", "DynamicBatcher", "InstancePool", "Scheduler"]
