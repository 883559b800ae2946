"""The λ spectrum of a structure's energy as a function on SO(3) (or O(3)), f(R) = E(R x): power per
degree λ in eV², split by parity when the rule includes inversion."""

from __future__ import annotations

import numpy as np

from symprobe import so3
from symprobe.audit.results import Spectrum


def energy_spectrum(energies: np.ndarray, quadrature, lmax: int) -> Spectrum:
    """λ spectrum of f(R_k) = ``energies`` sampled on ``quadrature`` (exact to degree ≥ 2·lmax for a
    band-limited f). With improper rotations the O(3) irreps D^λ ⊗ (±1) give even and odd sectors."""
    f = np.asarray(energies, dtype=np.float64)
    w = quadrature.weights
    mean = float(w @ f)
    centred = f - mean  # removing the constant first keeps round-off of large energies out of λ ≥ 1

    def power(d: np.ndarray, values: np.ndarray) -> float:
        c = np.einsum("k,kmn->mn", w * values, d)
        return float(d.shape[1] * np.sum(c**2))

    if not quadrature.improper:
        powers = [mean**2] + [power(so3.wigner_D(lam, quadrature.rotations), centred) for lam in range(1, lmax + 1)]
        return Spectrum(powers, None, None)
    even = [mean**2] + [
        power(so3.wigner_D_parity(lam, quadrature.rotations, odd=False), centred) for lam in range(1, lmax + 1)
    ]
    odd = [power(so3.wigner_D_parity(lam, quadrature.rotations, odd=True), centred) for lam in range(0, lmax + 1)]
    return Spectrum([e + o for e, o in zip(even, odd)], even, odd)
