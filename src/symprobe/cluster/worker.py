"""What a task needs on its worker: models loaded from their spec string once per worker process, and the memory
allocator as a process outside Dask has it."""

from __future__ import annotations

import ctypes
from functools import lru_cache

from symprobe.models.base import Model


@lru_cache(maxsize=4)
def worker_model(spec: str, dtype: str | None = None, device: str = "cpu") -> Model:
    """The model named by ``spec`` (as :func:`symprobe.models.external.load_model`) in ``dtype`` (``float64``,
    ``float32`` or None: the model's own), loaded once per process."""
    import torch

    from symprobe.models.external import load_model

    return load_model(spec, dtype=None if dtype is None else getattr(torch, dtype), device=device)


# glibc's mallopt parameters and the values its dynamic thresholds reach for large, repeated allocations (bytes)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = 32 << 20, 64 << 20


@lru_cache(maxsize=1)
def restore_allocator() -> bool:
    """Undo, once per worker process, what the nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` does to torch: with it glibc
    maps and unmaps every tensor over 128 kB on each allocation, and a PET call on a 192-atom cell took 0.17–0.20 s
    on a worker against 0.058 s in a plain process (1 thread each); with these thresholds, 0.057 s. Returns whether
    the C library took them (False off glibc, where nothing is changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
