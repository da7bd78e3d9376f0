"""The parallel engine: the worker pool, what a worker does with a part, and the memory governor."""
