"""What a task needs on its worker: models loaded from their spec string once per worker process."""

from __future__ import annotations

from functools import lru_cache

from symprobe.models.base import Model


@lru_cache(maxsize=4)
def worker_model(spec: str, dtype: str | None = None, device: str = "cpu") -> Model:
    """The model named by ``spec`` (as :func:`symprobe.models.external.load_model`) in ``dtype`` (``float64``,
    ``float32`` or None: the model's own), loaded once per process."""
    import torch

    from symprobe.models.external import load_model

    return load_model(spec, dtype=None if dtype is None else getattr(torch, dtype), device=device)
