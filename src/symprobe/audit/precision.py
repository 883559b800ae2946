"""The precision of audited models: the float64 version of a torch model (so that round-off is not counted
as symmetry breaking), and the precision a model evaluates in, as recorded in the report."""

from __future__ import annotations

from symprobe.models.base import Model


def in_float64(model: Model) -> Model:
    """The float64 version of a torch model (a copy; the input is unchanged); other models as they are.

    Float64 separates round-off from learned symmetry breaking: an exactly invariant float64 model gives
    rotational errors ≈1e-12 eV, a float32 one ≈1e-7 relative to the energy.
    """
    import torch

    from symprobe.models.torch_model import TorchModel

    if isinstance(model, TorchModel) and model.dtype != torch.float64:
        return model.converted(dtype=torch.float64)
    return model


def model_dtype(model: Model) -> str:
    """The evaluation precision of ``model`` as a string ('float64', 'float32' or 'unknown')."""
    dtype = getattr(model, "dtype", None)
    return str(dtype).replace("torch.", "") if dtype is not None else "unknown"
