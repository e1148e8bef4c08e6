"""Open Inference Protocol wire formats ↔ core types. Pure functions, no I/O."""
