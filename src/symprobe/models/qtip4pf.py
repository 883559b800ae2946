"""q-TIP4P/F water as a torch model: the flexible water potential of Habershon, Markland & Manolopoulos,
J. Chem. Phys. 131, 024501 (2009), spec ``builtin:qtip4pf``.

Electrostatics by damped shifted force (DSF, α = 0.2 Å⁻¹, 9 Å cutoff; not Ewald); exactly invariant under
rotations and inversion. :class:`QTIP4PF` takes an optional term on the molecules' unit bisectors (the
orientation-dependent known-answer terms of :mod:`symprobe.testing`). Atoms must come as whole molecules
ordered O, H, H (as in all data files of this project); molecules may straddle periodic boundaries (bonds
use the minimum image). Energies in eV, lengths in Å.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ase import Atoms, units
from ase.data import chemical_symbols

from symprobe.models.base import BatchPrediction
from symprobe.models.torch_model import Graph, TorchModel
from symprobe.structures import StructureError, structure_label

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
    if len(atoms) % 3:
        raise StructureError(
            f"{structure_label(atoms)}: {len(atoms)} atoms is not a whole number of H2O molecules "
            "(the water models need molecules ordered O, H, H)"
        )
    bad = np.flatnonzero((atoms.numbers.reshape(-1, 3) != WATER_ORDER).any(axis=1))
    if len(bad):
        k = int(bad[0])
        found = ", ".join(chemical_symbols[z] for z in atoms.numbers[3 * k : 3 * k + 3])
        raise StructureError(
            f"{structure_label(atoms)}: molecule {k} (atoms {3 * k}–{3 * k + 2}) is {found}; "
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
    """Minimum-image O→H vectors and unwrap shifts of the molecules in a graph."""

    def __init__(self, graph: Graph):
        _check_water_graph(graph)
        positions = graph.positions.view(-1, 3, 3)
        self.structure = graph.structure[::3]
        cells = graph.cells[self.structure]
        periodic = torch.linalg.det(graph.cells).abs()[self.structure] > 1e-12
        raw = positions[:, 1:] - positions[:, :1]  # (M, 2, 3)
        shifts = torch.stack([_minimum_image(raw[:, k], cells, periodic) for k in (0, 1)], dim=1)
        self.oh = (raw + torch.einsum("mka,mab->mkb", shifts, cells)).to(graph.dtype)  # (M, 2, 3), formed in float64
        zero = torch.zeros_like(shifts[:, :1])
        self.atom_shifts = torch.cat([zero, shifts], dim=1).reshape(-1, 3)  # unwrap shift of each atom

    def bisectors(self) -> torch.Tensor:
        """O → midpoint of the H's (M, 3), Å."""
        return 0.5 * (self.oh[:, 0] + self.oh[:, 1])

    def m_offsets(self) -> torch.Tensor:
        """r_M − r_O (M, 3), Å."""
        return (1.0 - GAMMA_M) * self.bisectors()


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
        orientation_term: torch.nn.Module | None = None,
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

    half_list = True  # every pair term is counted once: a half neighbour list is half the search and the edges

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
        oo, oh, hh, flipped = _pair_edges(graph, water.atom_shifts)
        energies = torch.zeros(graph.n_structures, dtype=graph.dtype, device=graph.positions.device)

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
        # M–H pairs from the O–H edges, turned to point from O to H
        r_ij = _edge_vectors(graph, oh)
        r_oh = torch.where(flipped[:, None], -r_ij, r_ij)
        oxygen = torch.where(flipped, graph.edge_j[oh], graph.edge_i[oh])
        r_mh = r_oh - m_offsets[oxygen // 3]
        add(COULOMB * CHARGE_M * CHARGE_H, oh, r_mh.norm(dim=-1), lambda d: _dsf(d, alpha, rc))
        # H–H pairs
        add(COULOMB * CHARGE_H**2, hh, _edge_vectors(graph, hh).norm(dim=-1), lambda d: _dsf(d, alpha, rc))
        return energies


def _edge_vectors(graph: Graph, edges: torch.Tensor) -> torch.Tensor:
    """r_ij = x_j − x_i + S·cell (Å) of the selected edges, formed in float64, in the graph's dtype."""
    i, j, s = graph.edge_i[edges], graph.edge_j[edges], graph.shifts[edges]
    if graph.n_structures == 1:
        offsets = s @ graph.cells[0]
    else:
        offsets = torch.einsum("ea,eab->eb", s, graph.cells[graph.structure[i]])
    return (graph.positions[j] - graph.positions[i] + offsets).to(graph.dtype)


def _pair_edges(graph: Graph, atom_shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of the edges that carry intermolecular O–O, O–H and H–H pairs, each pair once, and for the
    O–H edges whether they run H → O (``flipped``).

    A half list (``graph.half_list``) holds each pair once already. A full list holds (i, j, S) and
    (j, i, −S): O–O and H–H keep i < j, or i = j (an atom and its own image) with S lexicographically
    positive, and O–H keeps the O → H direction. Edges inside one molecule (same molecule and S equal to
    the difference of the atoms' unwrap shifts) are dropped.
    """
    with torch.no_grad():
        ei, ej, s = graph.edge_i, graph.edge_j, graph.shifts
        oxygen = graph.numbers == 8
        o_i, o_j = oxygen[ei], oxygen[ej]
        if graph.half_list:
            once = torch.ones_like(o_i)
            keep_oh = o_i != o_j
        else:
            positive = (s[:, 0] > 0) | ((s[:, 0] == 0) & ((s[:, 1] > 0) | ((s[:, 1] == 0) & (s[:, 2] > 0))))
            once = (ei < ej) | ((ei == ej) & positive)
            keep_oh = o_i & ~o_j
        keep_hh = ~o_i & ~o_j & once
        inside = torch.nonzero((ei // 3 == ej // 3) & (ei != ej)).squeeze(1)
        bonded = (s[inside] == atom_shifts[ej[inside]] - atom_shifts[ei[inside]]).all(dim=-1)
        inside = inside[bonded]
        keep_hh[inside] = False
        keep_oh[inside] = False
        oh = torch.nonzero(keep_oh).squeeze(1)
        return torch.nonzero(o_i & o_j & once).squeeze(1), oh, torch.nonzero(keep_hh).squeeze(1), ~o_i[oh]


class WaterModel(TorchModel):
    """A :class:`TorchModel` of a :class:`QTIP4PF` module that checks its input is O, H, H molecules."""

    module: QTIP4PF

    def __init__(self, module: QTIP4PF, name: str, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        super().__init__(module, name=name, species=(1, 8), dtype=dtype, device=device)

    def _predict_many(self, structures: list[Atoms], rotations: list[np.ndarray]) -> list[BatchPrediction]:
        for atoms in structures:
            check_water_molecules(atoms)
        return super()._predict_many(structures, rotations)

    def check_graph(self, graph: Graph) -> None:
        _check_water_graph(graph)

    @property
    def orientation_term(self) -> torch.nn.Module | None:
        """The added orientation-dependent term (known-answer models), or None for plain q-TIP4P/F."""
        return self.module.orientation_term


def qtip4pf(dtype: torch.dtype = torch.float64, cutoff: float = 9.0, dsf_alpha: float = 0.2,
            device: str | torch.device = "cpu") -> WaterModel:
    """q-TIP4P/F (see :class:`QTIP4PF`): LJ and DSF electrostatics (α = ``dsf_alpha`` Å⁻¹) cut at ``cutoff`` Å."""
    return WaterModel(QTIP4PF(cutoff, dsf_alpha), name="q-TIP4P/F", dtype=dtype, device=device)


