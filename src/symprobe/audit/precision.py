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


ROUNDOFF_FACTOR = 10.0  # the round-off floor is this many ε × the force scale
FLOOR_FACTOR = 10.0  # breaking counts when it exceeds this many floors


def roundoff_floor(energy: float, forces, precision: str) -> tuple[float, float]:
    """The round-off floor of one prediction: (energy meV/atom, forces meV/Å), ``ROUNDOFF_FACTOR`` × ε at the
    precision ('float32', else float64) × |E|/N, and × the RMS force or, if larger, |E|/N per Å: forces near a
    minimum are small, but they are differences of terms as large as the energy, and round off like those. An
    invariant function computed on rotated inputs differs by about this much."""
    import numpy as np

    forces = np.asarray(forces)
    eps = float(np.finfo(np.float32 if precision == "float32" else np.float64).eps)
    per_atom = abs(float(energy)) / len(forces)
    force_scale = max(float(np.sqrt(np.mean(forces**2))), per_atom)  # eV/Å
    return 1000 * ROUNDOFF_FACTOR * eps * per_atom, 1000 * ROUNDOFF_FACTOR * eps * force_scale
