"""Orientation-dependent terms of known angular content (energies in eV) and the known-answer water models
built from them: q-TIP4P/F plus :class:`SphericalHarmonicTerm` (:func:`anisotropic_qtip4pf`) or plus i-PI's
``noo3-h2o`` term :class:`NoO3Term` (:func:`noo3_qtip4pf`)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from ase import units
from scipy.special import eval_legendre, spherical_in

from symprobe.models.qtip4pf import QTIP4PF, WaterModel
from symprobe.testing.harmonics import real_spherical_harmonics


class OrientationTerm(torch.nn.Module):
    """E = Σ_molecules g(û_i), a function g on the sphere of each molecule's unit bisector û_i.

    Subclasses give ``per_molecule(û) -> (M,)`` eV, ``coefficient_power(ℓ)`` = Σ_m b_ℓm² where
    g(u) = Σ_ℓm b_ℓm Y_ℓm(u) (eV²), and ``band_limit`` (largest ℓ, or None if every ℓ is present).
    """

    band_limit: int | None = None

    def per_molecule(self, u: torch.Tensor) -> torch.Tensor:
        """g(û) for each molecule's unit bisector ``u`` (n, 3): its energy term (eV), shape (n,)."""
        raise NotImplementedError

    def coefficient_power(self, l: int) -> float:
        """Σ_m b_ℓm² (eV²): the power of g in degree ``l``."""
        raise NotImplementedError

    def mean_per_molecule(self) -> float:
        """The average of g over the sphere, b_00 / √(4π) (eV)."""
        raise NotImplementedError

    def forward(self, u: torch.Tensor, structure: torch.Tensor, n_structures: int) -> torch.Tensor:
        values = self.per_molecule(u)
        return torch.zeros(n_structures, dtype=values.dtype, device=values.device).index_add(0, structure, values)


class SphericalHarmonicTerm(OrientationTerm):
    """g(u) = Σ_ℓ a_ℓ Σ_m c_ℓm Y_ℓm(u): pure degree-ℓ components with amplitudes a_ℓ (eV).

    c_ℓ (2ℓ+1 numbers) is a fixed random unit vector drawn from ``numpy.random.default_rng([seed, ℓ])``
    (so each ℓ's direction does not depend on which other ℓ are present). Σ_m c_ℓm² = 1, hence the
    coefficient power of degree ℓ is a_ℓ².
    """

    def __init__(self, amplitudes: dict[int, float], seed: int = 0):
        super().__init__()
        if not amplitudes:
            raise ValueError("SphericalHarmonicTerm: give at least one degree ℓ with its amplitude")
        for l, a in amplitudes.items():
            if not isinstance(l, (int, np.integer)) or l < 0 or l > 20:
                raise ValueError(f"SphericalHarmonicTerm: degree ℓ must be an integer in 0..20, got {l!r}")
            if not np.isfinite(a):
                raise ValueError(f"SphericalHarmonicTerm: amplitude of ℓ = {l} is {a}")
        self.amplitudes = {int(l): float(a) for l, a in sorted(amplitudes.items())}
        self.seed = int(seed)
        self.band_limit = max(self.amplitudes)
        for l, a in self.amplitudes.items():
            c = np.random.default_rng([self.seed, l]).standard_normal(2 * l + 1)
            self.register_buffer(f"coefficients_{l}", torch.tensor(a * c / np.linalg.norm(c)))

    def coefficients(self, l: int) -> np.ndarray:
        """b_ℓ = a_ℓ c_ℓ (2ℓ+1,), eV; zeros for an absent ℓ."""
        if l in self.amplitudes:
            return getattr(self, f"coefficients_{l}").detach().cpu().numpy().astype(np.float64)
        return np.zeros(2 * l + 1)

    def per_molecule(self, u: torch.Tensor) -> torch.Tensor:
        harmonics = real_spherical_harmonics(self.band_limit, u)
        total = torch.zeros_like(u[:, 0])
        for l in self.amplitudes:
            total = total + harmonics[l] @ getattr(self, f"coefficients_{l}").to(u.dtype)
        return total

    def coefficient_power(self, l: int) -> float:
        return self.amplitudes.get(l, 0.0) ** 2

    def mean_per_molecule(self) -> float:
        return float(self.coefficients(0)[0]) / math.sqrt(4 * math.pi)


class NoO3Term(OrientationTerm):
    """g(u) = A Σ_a exp(κ_a u_a) over the Cartesian axes a = x, y, z: i-PI's ``noo3-h2o`` test term.

    i-PI's driver uses A = 2·10⁻² Hartree (≈ 0.544 eV) and κ = (1, 0.5, 2). Smooth and not band-limited:
    e^{κ cos γ} = Σ_ℓ (2ℓ+1) i_ℓ(κ) P_ℓ(cos γ) gives every ℓ, with coefficient power
    Σ_m b_ℓm² = 4π (2ℓ+1) A² Σ_ab i_ℓ(κ_a) i_ℓ(κ_b) P_ℓ(e_a·e_b)   (i_ℓ: modified spherical Bessel).
    """

    def __init__(self, amplitude: float = 2e-2 * units.Hartree, kappas: Sequence[float] = (1.0, 0.5, 2.0)):
        super().__init__()
        kappas = np.asarray(kappas, dtype=np.float64)
        if kappas.shape != (3,) or not np.all(np.isfinite(kappas)) or not np.isfinite(amplitude):
            raise ValueError(f"NoO3Term: need a finite amplitude and three finite κ, got {amplitude}, {kappas}")
        self.amplitude = float(amplitude)
        self.register_buffer("kappas", torch.tensor(kappas))

    def per_molecule(self, u: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.exp(u * self.kappas.to(u.dtype)).sum(dim=-1)

    def coefficient_power(self, l: int) -> float:
        i_l = spherical_in(l, self.kappas.cpu().numpy())
        overlap = np.where(np.eye(3, dtype=bool), 1.0, eval_legendre(l, 0.0))  # P_ℓ(e_a·e_b)
        return float(4 * math.pi * (2 * l + 1) * self.amplitude**2 * i_l @ overlap @ i_l)

    def mean_per_molecule(self) -> float:
        return float(self.amplitude * spherical_in(0, self.kappas.cpu().numpy()).sum())


def anisotropic_qtip4pf(
    amplitudes: dict[int, float],
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    cutoff: float = 9.0,
    dsf_alpha: float = 0.2,
) -> WaterModel:
    """q-TIP4P/F + Σ_molecules Σ_ℓ a_ℓ Σ_m c_ℓm Y_ℓm(û_i) (:class:`SphericalHarmonicTerm`).

    ``amplitudes`` maps degree ℓ to a_ℓ (eV per molecule). E(R x) then has Wigner-D content of exactly
    these degrees (plus ℓ = 0 from q-TIP4P/F), parity (−1)^ℓ under inversion, and power
    :func:`expected_power`.
    """
    term = SphericalHarmonicTerm(amplitudes, seed)
    content = ", ".join(f"{l}:{a:g}" for l, a in term.amplitudes.items())
    return WaterModel(
        QTIP4PF(cutoff, dsf_alpha, orientation_term=term),
        name=f"q-TIP4P/F+Ylm({content}; seed {seed})",
        dtype=dtype,
    )


def noo3_qtip4pf(
    amplitude: float = 2e-2 * units.Hartree,
    kappas: Sequence[float] = (1.0, 0.5, 2.0),
    dtype: torch.dtype = torch.float64,
    cutoff: float = 9.0,
    dsf_alpha: float = 0.2,
) -> WaterModel:
    """q-TIP4P/F + i-PI's ``noo3-h2o`` term A Σ_molecules Σ_a exp(κ_a û_a) (:class:`NoO3Term`), all ℓ."""
    term = NoO3Term(amplitude, kappas)
    return WaterModel(QTIP4PF(cutoff, dsf_alpha, orientation_term=term), name="q-TIP4P/F+noo3", dtype=dtype)
