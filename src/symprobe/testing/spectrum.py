"""The exact power spectrum (eV² per degree ℓ) of a known-answer model's energy over rotations, and the
unit H–O–H bisectors it depends on."""

from __future__ import annotations

import math

import numpy as np
import torch
from ase import Atoms
from scipy.special import eval_legendre

from symprobe.analysis.observables import dipole_directions
from symprobe.models.qtip4pf import WaterModel, check_water_molecules
from symprobe.testing.orientation import OrientationTerm


def expected_power(
    model_or_term: WaterModel | OrientationTerm, atoms: Atoms, lmax: int | None = None
) -> dict[int, float]:
    """Exact power per degree ℓ (eV²) of f(R) = E(R x) over rotations, for ℓ = 0..``lmax``.

    Definition (Haar measure normalised to ∫ dR = 1 on SO(3)): f = Σ_ℓ f_ℓ with f_ℓ in the span of the
    Wigner-D functions D^ℓ_mk, and P_ℓ = ∫ f_ℓ(R)² dR = (2ℓ+1) Σ_mk (∫ f D^ℓ_mk dR)² (real orthogonal
    D^ℓ), so Σ_ℓ P_ℓ = ∫ f² dR. P_0 = (∫ f dR)², the square of the rotational mean: for a model, the
    q-TIP4P/F energy of x plus N·(mean of g over the sphere); for a term alone, only the latter.

    For the orientation term E = Σ_i g(û_i) with g = Σ_ℓm b_ℓm Y_ℓm and ℓ ≥ 1, using
    ∫ Y_ℓm(R u) Y_ℓm'(R v) dR = δ_mm' P_ℓ(u·v)/(4π)::

        P_ℓ = (Σ_m b_ℓm²) · Σ_ij P_ℓ(û_i·û_j) / (4π)

    (P_ℓ on the right: Legendre polynomial; û_i: unit bisectors, :func:`unit_bisectors`). Under
    inversion f_ℓ(−R) = (−1)^ℓ f_ℓ(R): on O(3) (Haar, each component weight 1/2) all of P_ℓ lies in the
    sector of parity (−1)^ℓ and the other parity has zero power.

    ``lmax`` defaults to the term's band limit (0 for plain q-TIP4P/F); it is required for
    :class:`NoO3Term`, which has every ℓ.
    """
    u = unit_bisectors(atoms)
    if isinstance(model_or_term, OrientationTerm):
        term, invariant_energy = model_or_term, 0.0
    elif isinstance(model_or_term, WaterModel):
        term = model_or_term.orientation_term
        invariant_energy = model_or_term.predict(atoms).energy  # minus the term's value at x, below
        if term is not None:
            with torch.no_grad():
                invariant_energy -= float(term.per_molecule(torch.tensor(u, dtype=torch.float64)).sum())
    else:
        raise TypeError(f"expected_power: need a WaterModel or an OrientationTerm, got {type(model_or_term).__name__}")
    if lmax is None:
        if term is not None and term.band_limit is None:
            raise ValueError(f"expected_power: {type(term).__name__} is not band-limited; give lmax")
        lmax = 0 if term is None else term.band_limit
    if term is None:
        return {l: (invariant_energy**2 if l == 0 else 0.0) for l in range(lmax + 1)}
    mean = invariant_energy + len(u) * term.mean_per_molecule()
    cosines = np.clip(u @ u.T, -1.0, 1.0)
    power = {0: mean**2}
    for l in range(1, lmax + 1):
        power[l] = term.coefficient_power(l) * float(eval_legendre(l, cosines).sum()) / (4 * math.pi)
    return power


def unit_bisectors(atoms: Atoms) -> np.ndarray:
    """Unit H–O–H bisectors û (O → midpoint of the two H, minimum image), one per molecule, (M, 3)."""
    check_water_molecules(atoms)
    triples = np.arange(len(atoms)).reshape(-1, 3)
    return dipole_directions(atoms.get_positions(), triples, atoms.cell.array if atoms.pbc.any() else None)
