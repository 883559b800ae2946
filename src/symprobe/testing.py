"""Known-answer models and test helpers, for this package's tests and for users' own test suites.

Models (all :class:`~symprobe.models.qtip4pf.WaterModel`: q-TIP4P/F, :mod:`symprobe.models.qtip4pf`,
plus a term of known angular content):

* :func:`anisotropic_qtip4pf` — q-TIP4P/F plus :class:`SphericalHarmonicTerm`, an orientation-dependent
  term of chosen angular degrees ℓ and amplitudes, whose power spectrum is known exactly
  (:func:`expected_power`).
* :func:`noo3_qtip4pf` — q-TIP4P/F plus :class:`NoO3Term`, the smooth, non-band-limited term of i-PI's
  ``noo3-h2o`` test driver (all ℓ present; its spectrum is known too).

Atoms must come as whole molecules ordered O, H, H. Energies in eV, lengths in Å.

For crystals: :class:`AnisotropicPairCalculator`, ASE's EMT plus a known lab-frame pair term (ℓ = 0, 2, 4).

Helpers: :func:`finite_difference_forces`, :func:`random_rotations`, :func:`max_rotation_deviation`,
:func:`unit_bisectors`.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from scipy.special import eval_legendre, spherical_in

from symprobe import so3
from symprobe.models.base import Model, matrix_to_voigt
from symprobe.models.qtip4pf import QTIP4PF, WaterModel, check_water_molecules
from symprobe.models.torch_model import TorchModel
from symprobe.analysis.observables import dipole_directions
from symprobe.structures import check_structure

__all__ = [
    "OrientationTerm",
    "SphericalHarmonicTerm",
    "NoO3Term",
    "anisotropic_qtip4pf",
    "noo3_qtip4pf",
    "expected_power",
    "real_spherical_harmonics",
    "unit_bisectors",
    "random_pet",
    "finite_difference_forces",
    "random_rotations",
    "max_rotation_deviation",
    "AnisotropicPairCalculator",
]

# --------------------------------------------------------------------------------------------------
# Real spherical harmonics in torch


def real_spherical_harmonics(lmax: int, u: torch.Tensor) -> list[torch.Tensor]:
    """Real orthonormal spherical harmonics of unit vectors ``u`` (M, 3): a list over ℓ = 0..lmax of
    (M, 2ℓ+1) tensors, m = −ℓ..ℓ.

    Same convention as :func:`symprobe.so3.real_sph_harm`: Y_ℓ,m>0 = √2 N_ℓm P̄_ℓ^m(cos θ) cos mφ,
    Y_ℓ,m<0 = √2 N_ℓ|m| P̄_ℓ^|m|(cos θ) sin |m|φ, Y_ℓ0 = N_ℓ0 P_ℓ(cos θ), with P̄ the associated Legendre
    functions without the Condon–Shortley phase (so ℓ = 1 is √(3/4π) (y, z, x)). Written as polynomials
    in x, y, z, hence smooth everywhere (no pole singularity in the gradients).
    """
    x, y, z = u.unbind(-1)
    # (x + iy)^m = sin^m θ e^{imφ} for unit u
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]
    for m in range(1, lmax + 1):
        re_m, im_m = x * re[-1] - y * im[-1], x * im[-1] + y * re[-1]
        re.append(re_m)
        im.append(im_m)
    # Q[l][m] = P̄_ℓ^m(z) / sin^m θ, a polynomial in z
    Q = [[None] * (lmax + 1) for _ in range(lmax + 1)]
    for m in range(lmax + 1):
        Q[m][m] = torch.full_like(z, float(math.prod(range(1, 2 * m, 2))))
        if m + 1 <= lmax:
            Q[m + 1][m] = (2 * m + 1) * z * Q[m][m]
        for l in range(m + 2, lmax + 1):
            Q[l][m] = ((2 * l - 1) * z * Q[l - 1][m] - (l + m - 1) * Q[l - 2][m]) / (l - m)
    out = []
    for l in range(lmax + 1):
        columns = [None] * (2 * l + 1)
        for m in range(l + 1):
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            if m == 0:
                columns[l] = norm * Q[l][0]
            else:
                columns[l + m] = math.sqrt(2.0) * norm * Q[l][m] * re[m]
                columns[l - m] = math.sqrt(2.0) * norm * Q[l][m] * im[m]
        out.append(torch.stack(columns, dim=-1))
    return out


# --------------------------------------------------------------------------------------------------
# Orientation-dependent terms


class OrientationTerm(torch.nn.Module):
    """E = Σ_molecules g(û_i), a function g on the sphere of each molecule's unit bisector û_i.

    Subclasses give ``per_molecule(û) -> (M,)`` eV, ``coefficient_power(ℓ)`` = Σ_m b_ℓm² where
    g(u) = Σ_ℓm b_ℓm Y_ℓm(u) (eV²), and ``band_limit`` (largest ℓ, or None if every ℓ is present).
    """

    band_limit: int | None = None

    def per_molecule(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def coefficient_power(self, l: int) -> float:
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


# --------------------------------------------------------------------------------------------------
# The exact spectrum


def expected_power(
    model_or_term: WaterModel | OrientationTerm, atoms: Atoms, lmax: int | None = None
) -> dict[int, float]:
    """Exact power per degree ℓ (eV²) of f(R) = E(R x) over rotations, for ℓ = 0..``lmax``.

    Definition (Haar measure normalised to ∫ dR = 1 on SO(3)): f = Σ_ℓ f_ℓ with f_ℓ in the span of the
    Wigner-D functions D^ℓ_mk, and P_ℓ = ∫ f_ℓ(R)² dR = (2ℓ+1) Σ_mk (∫ f D^ℓ_mk dR)² (real orthogonal
    D^ℓ), so Σ_ℓ P_ℓ = ∫ f² dR. P_0 = (∫ f dR)², the square of the rotational mean: for a model, the
    q-TIP4P/F energy of x plus N·(mean of g over the sphere); for a term alone, only the latter.

    For the orientation term E = Σ_i g(û_i) with g = Σ_ℓm b_ℓm Y_ℓm and ℓ ≥ 1, using
    ∫ Y_ℓm(R u) Y_ℓm'(R v) dR = δ_mm' P_ℓ(u·v)/(4π):
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


# --------------------------------------------------------------------------------------------------
# Test helpers


def finite_difference_forces(model: Model, atoms: Atoms, h: float = 1e-4) -> np.ndarray:
    """Forces (N, 3) eV/Å as −∂E/∂x by central differences of step ``h`` Å (6N energies; torch models
    evaluate them in batched forward passes)."""
    check_structure(atoms, species=model.species)
    if isinstance(model, WaterModel):
        check_water_molecules(atoms)
    x0 = atoms.get_positions()
    frames = []
    for a, k, step in itertools.product(range(len(atoms)), range(3), (h, -h)):
        displaced = atoms.copy()
        displaced.calc = None
        x = x0.copy()
        x[a, k] += step
        displaced.set_positions(x)
        frames.append(displaced)
    energies = _energies(model, frames).reshape(len(atoms), 3, 2)
    return -(energies[..., 0] - energies[..., 1]) / (2 * h)


def _energies(model: Model, frames: list[Atoms]) -> np.ndarray:
    """Energies (eV) of many structures: batched passes without gradients for torch models, else one by one."""
    if isinstance(model, TorchModel):
        return model.energies(frames)
    return np.array([model.predict(frame).energy for frame in frames])


def random_rotations(n: int, seed: int = 0, improper: bool = False) -> np.ndarray:
    """``n`` Haar-random rotation matrices (n, 3, 3) from ``seed``; with ``improper`` all are −R (det −1)."""
    rotations = so3.haar_rotations(n, np.random.default_rng(seed))
    return -rotations if improper else rotations


def unit_bisectors(atoms: Atoms) -> np.ndarray:
    """Unit H–O–H bisectors û (O → midpoint of the two H, minimum image), one per molecule, (M, 3)."""
    check_water_molecules(atoms)
    triples = np.arange(len(atoms)).reshape(-1, 3)
    return dipole_directions(atoms.get_positions(), triples, atoms.cell.array if atoms.pbc.any() else None)


def max_rotation_deviation(model: Model, atoms: Atoms, rotations: np.ndarray) -> float:
    """max_k |E(R_k x) − E(x)| (eV) over ``rotations`` (B, 3, 3)."""
    reference = model.predict(atoms).energy
    energies = model.predict_rotated(atoms, np.asarray(rotations, dtype=np.float64)).energies
    return float(np.max(np.abs(energies - reference)))


SMALL_PET = dict(width=16, heads=2, blocks=2, layers_per_block=1, radial_basis=6, angular_degree=3)


def random_pet(invariant: bool = False, seed: int = 0, **hypers):
    """A small untrained PET-style module (float64) whose zero-initialised output layers and angular biases are
    randomised, so that its energy is not constant: a model with learned-like, unknown symmetry breaking."""
    from symprobe.models.pet import PETModule, default_hypers

    torch.manual_seed(seed)
    module = PETModule({**default_hypers(invariant), **SMALL_PET, **hypers}).double()
    with torch.no_grad():
        for heads in (module.core.atom_head, module.core.bond_head):
            for head in heads:
                head[-1].weight.normal_(0.0, 0.3)
                head[-1].bias.normal_(0.0, 0.3)
        for layer in (l for block in module.core.layers for l in block):
            layer.angular.normal_(0.0, 1.0)
    module.set_baseline(torch.tensor([-13.6, -432.0]), 0.5)
    return module


def write_labelled_water(path: str | Path, n_boxes: int, cutoff: float = 6.0) -> Path:
    """``n_boxes`` disordered 8-molecule periodic water boxes (seeds 0…n−1, positions jittered by 0.04 Å)
    labelled with q-TIP4P/F energies (eV) and forces (eV/Å), written as extended XYZ to ``path``: training data
    with a known answer."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from symprobe.models.qtip4pf import qtip4pf
    from symprobe.structures import water_box

    potential, frames = qtip4pf(cutoff=cutoff), []
    for seed in range(n_boxes):
        atoms = water_box(2, seed=seed)
        atoms.positions += np.random.default_rng(seed).normal(0, 0.04, atoms.positions.shape)
        p = potential.predict(atoms)
        atoms.calc = SinglePointCalculator(atoms, energy=p.energy, forces=p.forces)
        frames.append(atoms)
    write(path, frames)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# A crystal with a known non-invariant term


class AnisotropicPairCalculator(Calculator):
    """ASE's EMT plus a known lab-frame pair term, the crystal analogue of q-TIP4P/F plus an orientation term:

    E_term = A Σ_{i<j, r_ij < r_c} (1 − r_ij/r_c)² Σ_a κ_a (r̂_ij · e_a)⁴   (eV; r in Å),

    even in r̂ (so it ignores the order of a pair) and translation invariant, but not rotation invariant: its
    angular content is ℓ = 0, 2, 4, and with unequal κ it breaks cubic symmetry. Forces and stress (ASE sign,
    eV/Å³, the symmetric part of the virial) are analytic.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, amplitude: float = 0.01, kappas: Sequence[float] = (1.0, 0.5, 2.0), cutoff: float = 3.0, **kwargs):
        from ase.calculators.emt import EMT

        super().__init__(**kwargs)
        self.amplitude, self.kappas, self.cutoff = float(amplitude), np.asarray(kappas, dtype=np.float64), float(cutoff)
        self.emt = EMT()

    def term(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
        """The term alone: energy (eV), forces (N, 3) eV/Å and the virial Σ g ⊗ D (3, 3) eV."""
        from ase.neighborlist import neighbor_list

        i, j, D = neighbor_list("ijD", atoms, self.cutoff)  # every pair twice, D = r_j − r_i
        d = np.linalg.norm(D, axis=1)
        u = D / d[:, None]
        f, df = (1 - d / self.cutoff) ** 2, -2 * (1 - d / self.cutoff) / self.cutoff
        h = (self.kappas * u**4).sum(axis=1)
        dh_du = 4 * self.kappas * u**3
        grad = 0.5 * self.amplitude * (df[:, None] * h[:, None] * u + f[:, None] * (dh_du - (dh_du * u).sum(axis=1, keepdims=True) * u) / d[:, None])
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, i, grad)  # −∂E/∂r_j = −grad, −∂E/∂r_i = +grad
        np.add.at(forces, j, -grad)
        return float(0.5 * self.amplitude * (f * h).sum()), forces, grad.T @ D

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.emt.calculate(self.atoms, ["energy", "forces", "stress"], system_changes)
        energy, forces, virial = self.term(self.atoms)
        stress = (virial + virial.T) / (2 * self.atoms.get_volume())
        self.results = {"energy": self.emt.results["energy"] + energy, "forces": self.emt.results["forces"] + forces,
                        "stress": self.emt.results["stress"] + matrix_to_voigt(stress)}
        self.results["free_energy"] = self.results["energy"]
