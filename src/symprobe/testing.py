"""Known-answer models and test helpers, for this package's tests and for users' own test suites.

Models (all :class:`WaterModel`, a :class:`~symprobe.models.torch_model.TorchModel` for H2O only):

* :func:`qtip4pf` — the flexible q-TIP4P/F water potential (Habershon, Markland & Manolopoulos,
  J. Chem. Phys. 131, 024501 (2009)), written in torch; electrostatics by damped shifted force (DSF,
  α = 0.2 Å⁻¹, 9 Å cutoff; not Ewald); exactly invariant under rotations and inversion.
* :func:`anisotropic_qtip4pf` — q-TIP4P/F plus :class:`SphericalHarmonicTerm`, an orientation-dependent
  term of chosen angular degrees ℓ and amplitudes, whose power spectrum is known exactly
  (:func:`expected_power`).
* :func:`noo3_qtip4pf` — q-TIP4P/F plus :class:`NoO3Term`, the smooth, non-band-limited term of i-PI's
  ``noo3-h2o`` test driver (all ℓ present; its spectrum is known too).

Atoms must come as whole molecules ordered O, H, H (as in all data files of this project); molecules may
straddle periodic boundaries (bonds use the minimum image). Energies in eV, lengths in Å.

Helpers: :func:`finite_difference_forces`, :func:`random_rotations`, :func:`max_rotation_deviation`.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.data import chemical_symbols
from scipy.special import eval_legendre, spherical_in

from symprobe.models.base import Model
from symprobe.models.torch_model import Graph, TorchModel, batch_graph
from symprobe.structures import StructureError, check_structure, structure_label

__all__ = [
    "QTIP4PF",
    "OrientationTerm",
    "SphericalHarmonicTerm",
    "NoO3Term",
    "WaterModel",
    "qtip4pf",
    "anisotropic_qtip4pf",
    "noo3_qtip4pf",
    "expected_power",
    "real_spherical_harmonics",
    "check_water_molecules",
    "unit_bisectors",
    "finite_difference_forces",
    "random_rotations",
    "max_rotation_deviation",
]

KCAL_PER_MOL = units.kcal / units.mol  # eV
COULOMB = units.Hartree * units.Bohr  # e²/(4πε0) in eV·Å

# q-TIP4P/F parameters (paper, Table I; identical to i-PI's drivers/f90/pes/qtip4pf.f90 in atomic units)
MORSE_D = 116.09 * KCAL_PER_MOL  # eV
MORSE_ALPHA = 2.287  # 1/Å
OH_EQ = 0.9419  # Å
BEND_K = 87.85 * KCAL_PER_MOL  # eV/rad², E = (k/2)(θ − θ_eq)²
HOH_EQ = math.radians(107.4)
LJ_EPSILON = 0.1852 * KCAL_PER_MOL  # eV, O–O
LJ_SIGMA = 3.1589  # Å
CHARGE_M = -1.1128  # e
CHARGE_H = 0.5564  # e
GAMMA_M = 0.73612  # r_M = γ r_O + (1 − γ)/2 (r_H1 + r_H2)

WATER_ORDER = (8, 1, 1)


# --------------------------------------------------------------------------------------------------
# Input checks


def check_water_molecules(atoms: Atoms) -> None:
    """Raise :class:`~symprobe.structures.StructureError` unless ``atoms`` are whole H2O molecules
    ordered O, H, H; the message names the structure and the first bad molecule."""
    label = structure_label(atoms)
    if len(atoms) % 3:
        raise StructureError(
            f"{label}: {len(atoms)} atoms is not a whole number of H2O molecules "
            "(the water models need molecules ordered O, H, H)"
        )
    bad = np.flatnonzero((atoms.numbers.reshape(-1, 3) != WATER_ORDER).any(axis=1))
    if len(bad):
        k = int(bad[0])
        found = ", ".join(chemical_symbols[z] for z in atoms.numbers[3 * k : 3 * k + 3])
        raise StructureError(
            f"{label}: molecule {k} (atoms {3 * k}–{3 * k + 2}) is {found}; "
            "the water models need molecules ordered O, H, H"
        )


def _check_water_graph(graph: Graph) -> None:
    """The graph-level version of :func:`check_water_molecules` (structures named by graph index)."""
    numbers, structure = graph.numbers, graph.structure
    if numbers.numel() % 3:
        raise ValueError(f"graph of {numbers.numel()} atoms is not a whole number of H2O molecules (O, H, H)")
    order = torch.tensor(WATER_ORDER, device=numbers.device)
    triples = structure.view(-1, 3)
    bad = (numbers.view(-1, 3) != order).any(dim=1) | (triples != triples[:, :1]).any(dim=1)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        found = ", ".join(chemical_symbols[int(z)] for z in numbers[3 * k : 3 * k + 3])
        raise ValueError(
            f"structure #{int(structure[3 * k])} of the graph: atoms {3 * k}–{3 * k + 2} are {found}; "
            "the water models need whole molecules ordered O, H, H"
        )


# --------------------------------------------------------------------------------------------------
# Molecular geometry from a graph


def _minimum_image(vectors: torch.Tensor, cells: torch.Tensor, periodic: torch.Tensor) -> torch.Tensor:
    """Integer cell shifts s (M, 3, as float) making ``vectors + s @ cell`` the shortest image.

    The candidate shifts around the rounded fractional coordinates are searched exhaustively (27 of
    them), which gives the true minimum image for any cell shape a bond can be in.
    """
    with torch.no_grad():
        eye = torch.eye(3, dtype=cells.dtype, device=cells.device)
        safe = torch.where(periodic[:, None, None], cells, eye)
        fractional = torch.linalg.solve(safe.transpose(1, 2), vectors.unsqueeze(-1)).squeeze(-1)
        base = -torch.round(fractional)
        steps = torch.tensor([-1.0, 0.0, 1.0], dtype=cells.dtype, device=cells.device)
        offsets = torch.cartesian_prod(steps, steps, steps)  # (27, 3)
        candidates = base[:, None, :] + offsets[None]  # (M, 27, 3)
        images = vectors[:, None, :] + torch.einsum("mka,mab->mkb", candidates, safe)
        best = images.norm(dim=-1).argmin(dim=1)
        shifts = candidates[torch.arange(len(vectors), device=vectors.device), best]
        return torch.where(periodic[:, None], shifts, torch.zeros_like(shifts))


class _Molecules:
    """O positions, minimum-image O→H vectors and unwrap shifts of the molecules in a graph."""

    def __init__(self, graph: Graph):
        _check_water_graph(graph)
        positions = graph.positions.view(-1, 3, 3)
        self.structure = graph.structure[::3]
        cells = graph.cells[self.structure]
        periodic = torch.linalg.det(graph.cells).abs()[self.structure] > 1e-12
        self.oxygen = positions[:, 0]
        raw = positions[:, 1:] - positions[:, :1]  # (M, 2, 3)
        shifts = torch.stack([_minimum_image(raw[:, k], cells, periodic) for k in (0, 1)], dim=1)
        self.oh = raw + torch.einsum("mka,mab->mkb", shifts, cells)  # (M, 2, 3)
        zero = torch.zeros_like(shifts[:, :1])
        self.atom_shifts = torch.cat([zero, shifts], dim=1).reshape(-1, 3)  # unwrap shift of each atom

    def bisectors(self) -> torch.Tensor:
        """O → midpoint of the H's (M, 3), Å."""
        return 0.5 * (self.oh[:, 0] + self.oh[:, 1])

    def m_offsets(self) -> torch.Tensor:
        """r_M − r_O (M, 3), Å."""
        return (1.0 - GAMMA_M) * self.bisectors()


def unit_bisectors(atoms: Atoms) -> np.ndarray:
    """Unit H–O–H bisectors û (O → midpoint of the two H, minimum image), one per molecule, (M, 3)."""
    from ase.geometry import find_mic

    check_water_molecules(atoms)
    x = atoms.get_positions().reshape(-1, 3, 3)
    oh = (x[:, 1:] - x[:, :1]).reshape(-1, 3)
    if atoms.pbc.any():
        oh = find_mic(oh, atoms.cell, atoms.pbc)[0]
    b = 0.5 * oh.reshape(-1, 2, 3).sum(axis=1)
    return b / np.linalg.norm(b, axis=1, keepdims=True)


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


# --------------------------------------------------------------------------------------------------
# q-TIP4P/F


def _dsf(r: torch.Tensor, alpha: float, rc: float) -> torch.Tensor:
    """Damped shifted-force pair kernel (Å⁻¹), R = ``rc``:
    erfc(αr)/r − erfc(αR)/R + [erfc(αR)/R² + 2α/√π e^{−α²R²}/R] (r − R).

    Value and first derivative vanish at r = R (Fennell & Gezelter, J. Chem. Phys. 124, 234104 (2006)).
    """
    erfc_rc = math.erfc(alpha * rc)
    slope = erfc_rc / rc**2 + 2 * alpha / math.sqrt(math.pi) * math.exp(-((alpha * rc) ** 2)) / rc
    return torch.erfc(alpha * r) / r - erfc_rc / rc + slope * (r - rc)


def _lj_shifted_force(r: torch.Tensor, rc: float) -> torch.Tensor:
    """O–O Lennard-Jones (eV) with value and force shifted to zero at ``rc``."""
    def lj(x):
        s6 = (LJ_SIGMA / x) ** 6
        return 4 * LJ_EPSILON * (s6 * s6 - s6)

    s6c = (LJ_SIGMA / rc) ** 6
    dlj_c = 4 * LJ_EPSILON * (-12 * s6c * s6c + 6 * s6c) / rc
    return lj(r) - lj(rc) - dlj_c * (r - rc)


class QTIP4PF(torch.nn.Module):
    """q-TIP4P/F water (Habershon, Markland & Manolopoulos 2009) as a torch energy module.

    Energy (eV) per structure = intramolecular + O–O Lennard-Jones + electrostatics (+ ``orientation_term``):

    * intramolecular: Σ_OH D[α²Δr² − α³Δr³ + (7/12)α⁴Δr⁴] + (k_θ/2)(θ − θ_eq)², Δr = r_OH − r_eq, with
      D = 116.09 kcal/mol, α = 2.287 Å⁻¹, r_eq = 0.9419 Å, k_θ = 87.85 kcal/mol/rad², θ_eq = 107.4°;
      bonds use the minimum image, so molecules may straddle the cell boundary;
    * Lennard-Jones between O of different molecules (ε = 0.1852 kcal/mol, σ = 3.1589 Å), shifted-force
      truncated at ``pair_cutoff``;
    * electrostatics between charges q_M = −1.1128 e (M site r_M = γ r_O + (1−γ)/2 (r_H1 + r_H2),
      γ = 0.73612) and q_H = +0.5564 e of different molecules, by **damped shifted force** (DSF,
      Fennell & Gezelter 2006) with damping ``dsf_alpha`` (Å⁻¹) and site–site cutoff ``pair_cutoff``
      (Å), the same pair form for periodic and isolated structures. The DSF self term is a constant for
      fixed charges and is left out. No Ewald sum and no long-range LJ tail correction, so energies
      differ slightly from Ewald-based q-TIP4P/F; the potential and forces are continuous at the cutoff
      (good for NVE tests).

    No intramolecular LJ or electrostatics. Interactions of a molecule with its own periodic images are
    included, so cells smaller than twice the cutoff are exact. ``cutoff`` (the graph's neighbour
    cutoff) is ``pair_cutoff + 2 · m_site_margin``: M-site pairs are found from O–O and O–H edges, which
    is complete while every M site is within ``m_site_margin`` Å of its O (checked: a ValueError otherwise).
    """

    def __init__(
        self,
        pair_cutoff: float = 9.0,
        dsf_alpha: float = 0.2,
        orientation_term: OrientationTerm | None = None,
        m_site_margin: float = 0.5,
    ):
        super().__init__()
        if not (pair_cutoff > 0 and dsf_alpha >= 0 and m_site_margin > 0):
            raise ValueError(
                "QTIP4PF: need pair_cutoff > 0, dsf_alpha ≥ 0, m_site_margin > 0 "
                f"(got {pair_cutoff}, {dsf_alpha}, {m_site_margin})"
            )
        self.pair_cutoff = float(pair_cutoff)
        self.dsf_alpha = float(dsf_alpha)
        self.m_site_margin = float(m_site_margin)
        self.cutoff = self.pair_cutoff + 2 * self.m_site_margin
        self.orientation_term = orientation_term

    def forward(self, graph: Graph) -> torch.Tensor:
        water = _Molecules(graph)
        n_structures = graph.n_structures
        energies = self.intramolecular(water, n_structures) + self.intermolecular(graph, water)
        if self.orientation_term is not None:
            b = water.bisectors()
            energies = energies + self.orientation_term(b / b.norm(dim=-1, keepdim=True), water.structure, n_structures)
        return energies

    def intramolecular(self, water: _Molecules, n_structures: int) -> torch.Tensor:
        """Quartic Morse stretches and harmonic bend, summed per structure (S,) eV."""
        d1, d2 = water.oh[:, 0], water.oh[:, 1]
        stretch = 0.0
        for d in (d1, d2):
            x = MORSE_ALPHA * (d.norm(dim=-1) - OH_EQ)
            stretch = stretch + MORSE_D * (x**2 - x**3 + 7.0 / 12.0 * x**4)
        angle = torch.atan2(torch.linalg.cross(d1, d2).norm(dim=-1), (d1 * d2).sum(-1))
        per_molecule = stretch + 0.5 * BEND_K * (angle - HOH_EQ) ** 2
        return torch.zeros(n_structures, dtype=per_molecule.dtype, device=per_molecule.device).index_add(
            0, water.structure, per_molecule
        )

    def intermolecular(self, graph: Graph, water: _Molecules) -> torch.Tensor:
        """LJ and DSF electrostatics between different molecules (and periodic images), (S,) eV."""
        m_offsets = water.m_offsets()
        too_far = m_offsets.norm(dim=-1) > self.m_site_margin
        if bool(too_far.any()):
            k = int(torch.nonzero(too_far)[0, 0])
            raise ValueError(
                f"structure #{int(water.structure[k])} of the graph: molecule {k} has its M site "
                f"{float(m_offsets[k].detach().norm()):.3f} Å from O (> {self.m_site_margin} Å): broken molecule"
            )
        rc, alpha = self.pair_cutoff, self.dsf_alpha
        oo, oh, hh = _pair_edges(graph, water.atom_shifts)
        energies = torch.zeros(graph.n_structures, dtype=graph.positions.dtype, device=graph.positions.device)

        def add(factor: float, edges: torch.Tensor, distances: torch.Tensor, kernel) -> None:
            keep = distances < rc
            structure = graph.structure[graph.edge_i[edges[keep]]]
            energies.index_add_(0, structure, factor * kernel(distances[keep]))

        # O–O pairs: Lennard-Jones and M–M
        i, j = graph.edge_i[oo] // 3, graph.edge_j[oo] // 3
        r_oo = _edge_vectors(graph, oo)
        add(1.0, oo, r_oo.norm(dim=-1), lambda d: _lj_shifted_force(d, rc))
        r_mm = r_oo + m_offsets[j] - m_offsets[i]
        add(COULOMB * CHARGE_M**2, oo, r_mm.norm(dim=-1), lambda d: _dsf(d, alpha, rc))
        # M–H pairs from O→H edges
        r_mh = _edge_vectors(graph, oh) - m_offsets[graph.edge_i[oh] // 3]
        add(COULOMB * CHARGE_M * CHARGE_H, oh, r_mh.norm(dim=-1), lambda d: _dsf(d, alpha, rc))
        # H–H pairs
        add(COULOMB * CHARGE_H**2, hh, _edge_vectors(graph, hh).norm(dim=-1), lambda d: _dsf(d, alpha, rc))
        return energies


def _edge_vectors(graph: Graph, edges: torch.Tensor) -> torch.Tensor:
    """r_ij = x_j − x_i + S·cell (Å) of the selected edges."""
    i, j, s = graph.edge_i[edges], graph.edge_j[edges], graph.shifts[edges]
    if graph.n_structures == 1:
        offsets = s @ graph.cells[0]
    else:
        offsets = torch.einsum("ea,eab->eb", s, graph.cells[graph.structure[i]])
    return graph.positions[j] - graph.positions[i] + offsets


def _pair_edges(graph: Graph, atom_shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of the edges that carry intermolecular O–O, O→H and H–H pairs, each pair once.

    The graph's full list holds (i, j, S) and (j, i, −S); O–O and H–H keep i < j, or i = j (an atom and
    its own image) with S lexicographically positive. O–H keeps the O→H direction. Edges inside one
    molecule (same molecule and S equal to the difference of the atoms' unwrap shifts) are dropped.
    """
    with torch.no_grad():
        ei, ej, s = graph.edge_i, graph.edge_j, graph.shifts
        oxygen = graph.numbers == 8
        o_i, o_j = oxygen[ei], oxygen[ej]
        positive = (s[:, 0] > 0) | ((s[:, 0] == 0) & ((s[:, 1] > 0) | ((s[:, 1] == 0) & (s[:, 2] > 0))))
        once = (ei < ej) | ((ei == ej) & positive)
        keep_hh = ~o_i & ~o_j & once
        keep_oh = o_i & ~o_j
        inside = torch.nonzero((ei // 3 == ej // 3) & (ei != ej)).squeeze(1)
        bonded = (s[inside] == atom_shifts[ej[inside]] - atom_shifts[ei[inside]]).all(dim=-1)
        inside = inside[bonded]
        keep_hh[inside] = False
        keep_oh[inside] = False
        return (
            torch.nonzero(o_i & o_j & once).squeeze(1),
            torch.nonzero(keep_oh).squeeze(1),
            torch.nonzero(keep_hh).squeeze(1),
        )


class WaterModel(TorchModel):
    """A :class:`TorchModel` of a :class:`QTIP4PF` module that checks its input is O, H, H molecules.

    ``chunk_atoms`` defaults lower than for ML models: the 10 Å neighbour graph has ≈ 400 edges per atom
    in liquid water, so 4096 atoms per forward pass keep a chunk near 2M edges (≈ 0.5 GB with autograd).
    """

    module: QTIP4PF

    def __init__(
        self, module: QTIP4PF, name: str, dtype: torch.dtype = torch.float64, device: str = "cpu", chunk_atoms: int = 4096
    ):
        super().__init__(module, name=name, species=(1, 8), dtype=dtype, device=device, chunk_atoms=chunk_atoms)

    def _predict(self, atoms: Atoms):
        check_water_molecules(atoms)
        return super()._predict(atoms)

    def _predict_rotated(self, atoms: Atoms, rotations: np.ndarray):
        check_water_molecules(atoms)
        return super()._predict_rotated(atoms, rotations)

    @property
    def orientation_term(self) -> OrientationTerm | None:
        return self.module.orientation_term


def qtip4pf(dtype: torch.dtype = torch.float64, cutoff: float = 9.0, dsf_alpha: float = 0.2) -> WaterModel:
    """q-TIP4P/F (see :class:`QTIP4PF`): LJ and DSF electrostatics (α = ``dsf_alpha`` Å⁻¹) cut at ``cutoff`` Å."""
    return WaterModel(QTIP4PF(cutoff, dsf_alpha), name="q-TIP4P/F", dtype=dtype)


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


def _energies(model: Model, frames: list[Atoms], chunk_atoms: int = 20_000) -> np.ndarray:
    """Energies (eV) of many structures: one forward pass per chunk for torch models, else one by one."""
    if not isinstance(model, TorchModel):
        return np.array([model.predict(frame).energy for frame in frames])
    per_chunk = max(1, chunk_atoms // len(frames[0]))
    energies = []
    with torch.no_grad():
        for start in range(0, len(frames), per_chunk):
            graph = batch_graph(frames[start : start + per_chunk], model.cutoff).to(model.dtype, model.device)
            energies.append(model.module(graph).to("cpu", torch.float64).numpy())
    return np.concatenate(energies)


def random_rotations(n: int, seed: int = 0, improper: bool = False) -> np.ndarray:
    """``n`` Haar-random rotation matrices (n, 3, 3) from ``seed``; with ``improper`` all are −R (det −1)."""
    from scipy.spatial.transform import Rotation

    rotations = Rotation.random(n, random_state=np.random.default_rng(seed)).as_matrix().reshape(n, 3, 3)
    return -rotations if improper else rotations


def max_rotation_deviation(model: Model, atoms: Atoms, rotations: np.ndarray) -> float:
    """max_k |E(R_k x) − E(x)| (eV) over ``rotations`` (B, 3, 3)."""
    reference = model.predict(atoms).energy
    energies = model.predict_rotated(atoms, np.asarray(rotations, dtype=np.float64)).energies
    return float(np.max(np.abs(energies - reference)))
