"""The Python library: the public API, the fsspec filesystem, and file-like readers and writers."""
