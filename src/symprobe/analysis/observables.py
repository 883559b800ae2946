"""Observables of trajectories (water and any bulk system): pure functions of positions, velocities, forces and energies.

Units (see docs/conventions.md, section "Observables"): lengths Å, time fs, masses amu, energies eV,
angular momentum amu·Å²/fs (× ``EV_FS_PER_AMU_A2_PER_FS`` gives eV·fs), diffusion Å²/ps and cm²/s,
frequencies cm⁻¹, free energies in kT. Trajectories are either lists of :class:`ase.Atoms` (structural
observables that need species and cell) or arrays shaped (n_frames, n_atoms, 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
from ase import Atoms, units
from ase.data import atomic_numbers, chemical_symbols
from scipy import stats
from scipy.spatial import cKDTree

from symprobe.analysis.statistics import Estimate, block_average, mean_and_error, ratio_or_nan
from symprobe.structures import neighbour_box, structure_label

EV_FS_PER_AMU_A2_PER_FS = units._amu * 1e-20 / 1e-30 / units._e  # 1 amu·Å²/fs = 103.6427 eV·fs
CM2_PER_S_PER_A2_PER_PS = 1e-4  # 1 Å²/ps = 1e-4 cm²/s
CM1_PER_INV_FS = 1.0 / (units._c * 100 * 1e-15)  # 1 fs⁻¹ = 33356.41 cm⁻¹


# ---------------------------------------------------------------------------------------------------
# Geometry helpers


def minimum_image(vectors: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Displacement ``vectors`` (..., 3) Å mapped to their minimum image in ``cell`` (3, 3) or (..., 3, 3) Å.

    Exact for displacements shorter than half the smallest perpendicular cell width (bonds, one-frame
    steps); ``cell=None`` (isolated system) returns the vectors unchanged.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if cell is None:
        return vectors
    cell = np.asarray(cell, dtype=np.float64)
    if cell.ndim == 3:  # one cell per frame: broadcast over the atoms axis
        cell = cell[:, None]
    fractional = np.einsum("...i,...ij->...j", vectors, np.linalg.inv(cell))
    fractional -= np.round(fractional)
    return np.einsum("...i,...ij->...j", fractional, cell)


def trajectory_arrays(frames: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions (n_frames, n_atoms, 3) Å and cells (n_frames, 3, 3) Å of a trajectory; cells are ``None``
    for isolated (non-periodic) frames."""
    if len(frames) == 0:
        raise ValueError("the trajectory is empty (no frames)")
    n_atoms = {len(atoms) for atoms in frames}
    if len(n_atoms) != 1:
        raise ValueError(f"the frames have different numbers of atoms {sorted(n_atoms)}")
    positions = np.stack([atoms.get_positions() for atoms in frames])
    periodic = [neighbour_box(atoms)[1] for atoms in frames]
    if any(periodic) and not all(periodic):
        raise ValueError("the trajectory mixes periodic and isolated frames")
    cells = np.stack([atoms.cell.array for atoms in frames]) if periodic[0] else None
    return positions, cells


def half_cell_width(atoms: Atoms) -> float:
    """Half the smallest perpendicular width of the cell, Å (largest distance minimum image can resolve)."""
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    return 0.5 * min(widths)


def _bin_edges(r_max: float, bin_width: float) -> np.ndarray:
    """Equal bins from 0 to ``r_max`` Å, their width the closest to ``bin_width`` Å that divides r_max."""
    if r_max <= 0 or bin_width <= 0:
        raise ValueError(f"r_max ({r_max} Å) and bin_width ({bin_width} Å) must be positive")
    return np.linspace(0.0, r_max, max(1, int(round(r_max / bin_width))) + 1)


def _bin_index(distances: np.ndarray, r_max: float, n_bins: int) -> np.ndarray:
    """Bin of each distance in [0, r_max) Å for ``n_bins`` equal bins."""
    return np.minimum((distances * (n_bins / r_max)).astype(np.int64), n_bins - 1)


def _pairs(atoms: Atoms, cutoff: float, quantities: str) -> list[np.ndarray]:
    """Half neighbour list (each pair once) of ``atoms`` within ``cutoff`` Å, from vesin."""
    from vesin import NeighborList

    box, periodic = neighbour_box(atoms)
    return NeighborList(cutoff=cutoff, full_list=False).compute(atoms.get_positions(), box, periodic, quantities=quantities)


# ---------------------------------------------------------------------------------------------------
# Molecules and their orientation


class WaterMolecules(NamedTuple):
    """Intact molecules of one structure: ``triples`` (n, 3) int array of (O, H1, H2) atom indices, the
    number ``n_broken`` of O atoms not bonded to exactly two H (OH⁻, H3O⁺, bare O), and
    ``n_free_hydrogens`` H atoms with no O within the bond cutoff."""

    triples: np.ndarray
    n_broken: int
    n_free_hydrogens: int


def water_molecules(atoms: Atoms, max_oh: float = 1.25) -> WaterMolecules:
    """Identify intact H2O molecules: each H joins its nearest O within ``max_oh`` Å (minimum image);
    an O with exactly two H is a molecule, any other O counts as broken. H1 < H2 by atom index."""
    if max_oh <= 0:
        raise ValueError(f"max_oh must be positive, got {max_oh} Å")
    symbols = np.asarray(atoms.get_chemical_symbols())
    oxygens = np.flatnonzero(symbols == "O")
    hydrogens = np.flatnonzero(symbols == "H")
    if len(oxygens) == 0:
        raise ValueError(f"{structure_label(atoms)}: no oxygen atoms, cannot identify water molecules")
    i, j, d = _pairs(atoms, max_oh, "ijd")
    is_o, is_h = symbols == "O", symbols == "H"
    oh = is_o[i] & is_h[j]
    ho = is_h[i] & is_o[j]
    o_index = np.concatenate([i[oh], j[ho]])
    h_index = np.concatenate([j[oh], i[ho]])
    distance = np.concatenate([d[oh], d[ho]])
    nearest_o = np.full(len(atoms), -1)
    order = np.lexsort((distance, h_index))  # by H, then by distance: the first entry of each H is its O
    first = np.unique(h_index[order], return_index=True)[1]
    nearest_o[h_index[order][first]] = o_index[order][first]
    bonded_h = nearest_o[hydrogens]
    n_free = int(np.sum(bonded_h < 0))
    triples, n_broken = [], 0
    h_of_o: dict[int, list[int]] = {int(o): [] for o in oxygens}
    for h, o in zip(hydrogens, bonded_h):
        if o >= 0:
            h_of_o[int(o)].append(int(h))
    for o in oxygens:
        partners = h_of_o[int(o)]
        if len(partners) == 2:
            triples.append((int(o), *sorted(partners)))
        else:
            n_broken += 1
    return WaterMolecules(np.asarray(triples, dtype=int).reshape(-1, 3), n_broken, n_free)


def persistent_molecules(frames: Sequence[Atoms], max_oh: float = 1.25) -> np.ndarray:
    """(O, H1, H2) triples (n, 3) that are intact, with the same atoms, in every frame (for time
    correlations that follow one molecule)."""
    if len(frames) == 0:
        raise ValueError("the trajectory is empty (no frames)")
    common = {tuple(t) for t in water_molecules(frames[0], max_oh).triples.tolist()}
    for atoms in frames[1:]:
        common &= {tuple(t) for t in water_molecules(atoms, max_oh).triples.tolist()}
    return np.asarray(sorted(common), dtype=int).reshape(-1, 3)


def dipole_directions(positions: np.ndarray, triples: np.ndarray, cell: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors (..., n_molecules, 3) along O → (H1 + H2)/2 (minimum image within the molecule).

    ``positions`` (..., n_atoms, 3) Å; ``cell`` (3, 3) or (n_frames, 3, 3) Å, ``None`` for isolated
    systems. The q-TIP4P/F point-charge dipole q_H γ (r_H1 + r_H2 − 2 r_O) is parallel to this bisector
    for any geometry, so the two definitions give the same direction.
    """
    positions = np.asarray(positions, dtype=np.float64)
    triples = np.asarray(triples, dtype=int)
    if triples.ndim != 2 or triples.shape[1] != 3 or len(triples) == 0:
        raise ValueError(f"triples must be a non-empty (n, 3) array of (O, H1, H2) indices, got shape {triples.shape}")
    oxygen = positions[..., triples[:, 0], :]
    oh1 = minimum_image(positions[..., triples[:, 1], :] - oxygen, cell)
    oh2 = minimum_image(positions[..., triples[:, 2], :] - oxygen, cell)
    bisector = 0.5 * (oh1 + oh2)
    norm = np.linalg.norm(bisector, axis=-1, keepdims=True)
    if np.any(norm < 1e-8):
        raise ValueError("a molecule has a linear H–O–H geometry (bisector of zero length)")
    return bisector / norm


class BondedMolecules(NamedTuple):
    """Molecules of one structure from bonded connectivity: ``members`` (one sorted index array per molecule of two or
    more atoms), and the numbers of ``single_atoms`` (bonded to none) and of ``extended`` components (bonded networks
    that join themselves through the periodic boundaries: chains, layers, solids)."""

    members: list[np.ndarray]
    single_atoms: int
    extended: int


def bonded_molecules(atoms: Atoms, scale: float = 1.2) -> BondedMolecules:
    """The finite molecules of ``atoms``: atoms closer than ``scale`` × the sum of their covalent radii (ASE's
    ``natural_cutoffs``) are bonded; a connected component is a molecule unless following its bonds (minimum image
    through the periodic boundaries) leads back to one of its atoms displaced by a lattice vector."""
    from ase.neighborlist import natural_cutoffs, neighbor_list
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    i, j, d = neighbor_list("ijD", atoms, natural_cutoffs(atoms, mult=scale))
    n = len(atoms)
    _, labels = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    bonds: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n)]
    for a, b, vector in zip(i, j, d):
        bonds[a].append((int(b), vector))
    members, single, extended = [], 0, 0
    for label in np.unique(labels):
        component = np.flatnonzero(labels == label)
        if len(component) == 1:
            single += 1
        elif _closes_through_boundary(bonds, int(component[0])):
            extended += 1
        else:
            members.append(component)
    return BondedMolecules(members, single, extended)


def _closes_through_boundary(bonds: list[list[tuple[int, np.ndarray]]], start: int) -> bool:
    """Whether walking the bonds (i → j with bond vector D, Å) from ``start`` reaches an atom at two places."""
    place = {start: np.zeros(3)}
    stack = [start]
    while stack:
        a = stack.pop()
        for b, vector in bonds[a]:
            position = place[a] + vector
            if b not in place:
                place[b] = position
                stack.append(b)
            elif np.linalg.norm(place[b] - position) > 1e-6:
                return True
    return False


def molecular_axes(positions: np.ndarray, molecules: Sequence[np.ndarray], masses: np.ndarray,
                   cell: np.ndarray | None = None, min_balance: float = 0.2) -> np.ndarray:
    """Unit vectors (..., n_molecules, 3) of each molecule's axis: from its anchor (the heaviest atom, the first of
    equals) to its centre of mass, or, where the other atoms nearly balance around the anchor in the first frame
    (|Σ m_i r_i| < ``min_balance`` Σ m_i |r_i| about the anchor: a symmetric top such as CH4), from the anchor to the
    molecule's first other atom. For water this is the dipole direction (the centre of mass lies on the H–O–H
    bisector). ``positions`` (..., n_atoms, 3) Å, ``masses`` (n_atoms,) amu; atoms are taken at their minimum image
    from the anchor (molecules under half a cell wide)."""
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    if len(molecules) == 0:
        raise ValueError("no molecules given")
    axes = []
    for members in molecules:
        members = np.asarray(members, dtype=int)
        if len(members) < 2:
            raise ValueError(f"molecule {members.tolist()} has fewer than two atoms, so it has no axis")
        anchor = members[np.argmax(masses[members])]
        relative = minimum_image(positions[..., members, :] - positions[..., anchor, None, :], cell)
        vector = np.einsum("...ik,i->...k", relative, masses[members])  # parallel to anchor → centre of mass
        first = relative.reshape(-1, len(members), 3)[0]
        if np.linalg.norm(vector.reshape(-1, 3)[0]) < min_balance * np.sum(masses[members] * np.linalg.norm(first, axis=1)):
            vector = relative[..., int(np.flatnonzero(members != anchor)[0]), :]
        axes.append(vector / np.linalg.norm(vector, axis=-1, keepdims=True))
    return np.stack(axes, axis=-2)


def species_pairs(atoms: Atoms) -> list[tuple[str, str]]:
    """Every pair of chemical species of ``atoms`` whose partial g(r) is defined (a like pair needs two atoms), in
    order of atomic number."""
    numbers, counts = np.unique(atoms.numbers, return_counts=True)
    symbols = [chemical_symbols[z] for z in numbers]
    return [(symbols[a], symbols[b]) for a in range(len(symbols)) for b in range(a, len(symbols)) if a != b or counts[a] >= 2]


# ---------------------------------------------------------------------------------------------------
# Radial distribution functions


@dataclass(frozen=True)
class RadialDistribution:
    """Partial g_AB(r) of one species pair, per frame.

    ``edges`` (n_bins + 1) Å; ``g_frames`` (n_frames, n_bins), normalised by the ideal-gas pair density so
    an uncorrelated system gives 1; ``partner_density`` Å⁻³ is the density of B atoms seen from an A atom
    (N_B/V, or (N_A − 1)/V when A = B), so ρ ∫ g 4πr² dr counts neighbours.
    """

    pair: tuple[str, str]
    edges: np.ndarray
    g_frames: np.ndarray
    partner_density: float

    @property
    def r(self) -> np.ndarray:
        """Bin centres, Å."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def g(self) -> np.ndarray:
        """g(r) averaged over frames (dimensionless)."""
        return self.g_frames.mean(axis=0)

    def coordination(self) -> np.ndarray:
        """Running coordination number n(r) = ρ ∫₀ʳ g 4πr'² dr' at the upper bin edges (neighbours)."""
        shells = 4.0 / 3.0 * np.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        return np.cumsum(self.g * shells) * self.partner_density


def radial_distributions(
    frames: Sequence[Atoms],
    pairs: Sequence[tuple[str, str]] = (("O", "O"), ("O", "H"), ("H", "H")),
    r_max: float = 6.0,
    bin_width: float = 0.05,
) -> dict[tuple[str, str], RadialDistribution]:
    """Partial radial distribution functions of periodic frames, one vesin neighbour list per frame.

    ``r_max`` Å must not exceed half the smallest cell width (minimum image); ``bin_width`` Å.
    """
    if len(frames) == 0:
        raise ValueError("the trajectory is empty (no frames)")
    edges = _bin_edges(r_max, bin_width)
    n_bins = len(edges) - 1
    shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = {tuple(pair): np.zeros((len(frames), len(edges) - 1)) for pair in pairs}
    densities: dict[tuple[str, str], list[float]] = {pair: [] for pair in g}
    for k, atoms in enumerate(frames):
        label = structure_label(atoms, k)
        if not atoms.pbc.all():
            raise ValueError(f"{label}: g(r) needs a periodic cell (ideal-gas normalisation uses its volume)")
        if r_max > half_cell_width(atoms) + 1e-9:
            raise ValueError(f"{label}: r_max = {r_max} Å exceeds half the smallest cell width ({half_cell_width(atoms):.3f} Å)")
        numbers = atoms.numbers
        volume = atoms.get_volume()
        i, j, d = _pairs(atoms, r_max, "ijd")
        keep = d < r_max
        z_i, z_j, bins = numbers[i[keep]], numbers[j[keep]], _bin_index(d[keep], r_max, n_bins)
        for a, b in g:
            za, zb = atomic_numbers.get(a, -1), atomic_numbers.get(b, -1)
            n_a, n_b = int(np.sum(numbers == za)), int(np.sum(numbers == zb))
            if n_a == 0 or n_b == 0 or (a == b and n_a < 2):
                raise ValueError(f"{label}: not enough {a} and {b} atoms for g_{a}{b}")
            if a == b:
                selected = (z_i == za) & (z_j == za)
                n_pairs = 0.5 * n_a * (n_a - 1)
                densities[(a, b)].append((n_a - 1) / volume)
            else:
                selected = ((z_i == za) & (z_j == zb)) | ((z_i == zb) & (z_j == za))
                n_pairs = float(n_a * n_b)
                densities[(a, b)].append(n_b / volume)
            counts = np.bincount(bins[selected], minlength=n_bins)
            g[(a, b)][k] = counts / (n_pairs / volume * shells)
    return {pair: RadialDistribution(pair, edges, g[pair], float(np.mean(densities[pair]))) for pair in g}


# ---------------------------------------------------------------------------------------------------
# Orientations


@dataclass(frozen=True)
class OrientationMap:
    """F(cos θ, φ)/kT = −ln(4π P) on a grid (uniform orientations give 0).

    ``cos_theta`` (n_cos,), ``phi`` (n_phi,) rad in (−π, π]; ``free_energy`` (n_cos, n_phi) kT;
    ``max_deviation`` = max |F| kT; ``noise`` kT is the expected standard deviation of F at a point for
    that many *independent* uniform samples (√(κ/N), κ = 1/bandwidth²); correlated samples are noisier.
    """

    cos_theta: np.ndarray
    phi: np.ndarray
    free_energy: np.ndarray
    max_deviation: float
    noise: float


def orientational_free_energy(unit_vectors: np.ndarray, bandwidth: float = 0.1, n_cos: int = 41, n_phi: int = 81) -> OrientationMap:
    """Orientational free energy of lab-frame unit vectors (n, 3) from a von Mises–Fisher KDE.

    The kernel is exp(κ μ·x) with κ = 1/bandwidth² (``bandwidth`` in rad; 0.1 as in the paper). Samples
    are first pooled into 3-D voxels of edge bandwidth/4 (each represented by its count and mean
    direction), which changes the estimate by far less than its statistical noise and keeps the cost
    independent of the number of samples.
    """
    u = np.asarray(unit_vectors, dtype=np.float64).reshape(-1, 3)
    if len(u) == 0:
        raise ValueError("no unit vectors given")
    norms = np.linalg.norm(u, axis=1)
    if not np.all(np.abs(norms - 1.0) < 1e-6):
        raise ValueError("the vectors are not unit vectors (|u| differs from 1 by more than 1e-6)")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth} rad")
    kappa = 1.0 / bandwidth**2
    voxels = np.floor(u / (bandwidth / 4)).astype(np.int64)
    side = int(np.ceil(4.0 / bandwidth)) + 1  # voxel indices lie in [−side, side)
    keys = ((voxels[:, 0] + side) * 2 * side + voxels[:, 1] + side) * 2 * side + voxels[:, 2] + side
    _, inverse, weights = np.unique(keys, return_inverse=True, return_counts=True)
    centres = np.zeros((len(weights), 3))
    np.add.at(centres, inverse.ravel(), u)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    cos_theta = np.linspace(-1.0, 1.0, n_cos)
    phi = np.linspace(-np.pi, np.pi, n_phi)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    grid = np.stack(np.broadcast_arrays(sin_theta[:, None] * np.cos(phi), sin_theta[:, None] * np.sin(phi), cos_theta[:, None]), -1)
    grid = grid.reshape(-1, 3)
    norm = kappa / (2.0 * np.pi * (1.0 - np.exp(-2.0 * kappa)))  # vMF normalisation with exp(κ(μ·x − 1))
    # κ(μ·x − 1) = −κ|μ − x|²/2: kernel terms below e^(−20) (chord > √(40/κ)) are dropped
    close = cKDTree(grid).sparse_distance_matrix(cKDTree(centres), np.sqrt(40.0 / kappa), output_type="ndarray")
    terms = np.exp(-0.5 * kappa * close["v"] ** 2) * weights[close["j"]]
    density = np.bincount(close["i"], weights=terms, minlength=len(grid)) * norm / len(u)
    with np.errstate(divide="ignore"):
        free_energy = -np.log(4.0 * np.pi * density).reshape(n_cos, n_phi)
    return OrientationMap(cos_theta, phi, free_energy, float(np.max(np.abs(free_energy))), float(np.sqrt(kappa / len(u))))


@dataclass(frozen=True)
class DipoleCorrelations:
    """Distance-resolved dipole correlations of O–O pairs of intact molecules, per frame.

    ``edges`` (n_bins + 1) Å; ``longitudinal_sums`` and ``transverse_sums`` (n_frames, n_bins) hold
    Σ (r̂·u_i)(r̂·u_j) and Σ [u_i·u_j − (r̂·u_i)(r̂·u_j)] over pairs; ``pair_counts`` the pairs per bin.
    """

    edges: np.ndarray
    longitudinal_sums: np.ndarray
    transverse_sums: np.ndarray
    pair_counts: np.ndarray

    @property
    def r(self) -> np.ndarray:
        """Bin centres, Å."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def longitudinal(self) -> np.ndarray:
        """c_L(r) = ⟨(r̂·u_i)(r̂·u_j)⟩ over all frames (NaN in empty bins; dimensionless)."""
        return ratio_or_nan(self.longitudinal_sums.sum(0), self.pair_counts.sum(0))

    @property
    def transverse(self) -> np.ndarray:
        """c_T(r) = ⟨u_i·u_j⟩ − c_L(r) over all frames (NaN in empty bins; dimensionless)."""
        return ratio_or_nan(self.transverse_sums.sum(0), self.pair_counts.sum(0))


def dipole_correlations(frames: Sequence[Atoms], r_max: float = 8.0, bin_width: float = 0.1, max_oh: float = 1.25) -> DipoleCorrelations:
    """c_L(r) and c_T(r) of molecular dipole directions over O–O distance (Å), molecules found per frame."""
    if len(frames) == 0:
        raise ValueError("the trajectory is empty (no frames)")
    edges = _bin_edges(r_max, bin_width)
    n_bins = len(edges) - 1
    shape = (len(frames), n_bins)
    longitudinal, transverse, counts = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for k, atoms in enumerate(frames):
        if atoms.pbc.all() and r_max > half_cell_width(atoms) + 1e-9:
            raise ValueError(f"{structure_label(atoms, k)}: r_max = {r_max} Å exceeds half the smallest cell width")
        triples = water_molecules(atoms, max_oh).triples
        if len(triples) < 2:
            raise ValueError(f"{structure_label(atoms, k)}: fewer than two intact water molecules")
        cell = atoms.cell.array if atoms.pbc.all() else None
        u = dipole_directions(atoms.get_positions(), triples, cell)
        oxygens = atoms[triples[:, 0]]
        i, j, vectors, d = _pairs(oxygens, r_max, "ijDd")
        keep = (d < r_max) & (d > 0)
        i, j, vectors, d = i[keep], j[keep], vectors[keep], d[keep]
        rhat = vectors / d[:, None]
        parallel = np.einsum("pk,pk->p", rhat, u[i]) * np.einsum("pk,pk->p", rhat, u[j])
        total = np.einsum("pk,pk->p", u[i], u[j])
        bins = _bin_index(d, r_max, n_bins)
        counts[k] = np.bincount(bins, minlength=n_bins)
        longitudinal[k] = np.bincount(bins, weights=parallel, minlength=n_bins)
        transverse[k] = np.bincount(bins, weights=total - parallel, minlength=n_bins)
    return DipoleCorrelations(edges, longitudinal, transverse, counts)


# ---------------------------------------------------------------------------------------------------
# Time correlations


class TimeCorrelation(NamedTuple):
    """A time-correlation function: ``lags`` fs, ``mean`` and ``error`` (standard error over independent
    trajectory segments), in the units of the observable."""

    lags: np.ndarray
    mean: np.ndarray
    error: np.ndarray


def unwrap_positions(positions: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Continuous trajectory (n_frames, n_atoms, 3) Å from wrapped positions: each frame-to-frame step is
    replaced by its minimum image (valid while atoms move less than half a cell width per frame)."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (n_frames, n_atoms, 3), got {positions.shape}")
    if cell is None:
        return positions.copy()
    cell = np.asarray(cell, dtype=np.float64)
    steps = minimum_image(np.diff(positions, axis=0), cell[1:] if cell.ndim == 3 else cell)
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)])


def _autocorrelation(x: np.ndarray) -> np.ndarray:
    """Σ over trailing axes of ⟨x(t0)·x(t0 + k)⟩, averaged over all origins t0, lags k = 0..T−1 (FFT)."""
    n = len(x)
    flat = x.reshape(n, -1)
    spectrum = np.fft.rfft(flat, n=2 * n, axis=0)
    acf = np.fft.irfft(spectrum * spectrum.conj(), n=2 * n, axis=0)[:n].sum(axis=1)
    return acf / (n - np.arange(n))


def _msd_fft(x: np.ndarray) -> np.ndarray:
    """⟨|x(t0 + k) − x(t0)|²⟩ over origins and atoms for k = 0..T−1; x (T, n_atoms, 3) (FFT algorithm)."""
    n = len(x)
    squares = np.sum(x**2, axis=(1, 2))
    # Σ over origins t of |x(t)|² + |x(t + k)|²: the full sum minus the k first and k last terms
    dropped = np.concatenate([[0.0], np.cumsum(squares + squares[::-1])[:-1]])
    s1 = (2.0 * squares.sum() - dropped) / (n - np.arange(n))
    return (s1 - 2.0 * _autocorrelation(x)) / x.shape[1]


def _segments(x: np.ndarray, n_segments: int, max_lag: int, timestep_fs: float) -> list[np.ndarray]:
    """``n_segments`` consecutive pieces of a trajectory, each longer than ``max_lag`` frames."""
    if timestep_fs <= 0:
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be at least 1, got {n_segments}")
    length = len(x) // n_segments
    if length <= max_lag:
        raise ValueError(f"{len(x)} frames in {n_segments} segments are too short for max_lag = {max_lag} frames")
    return [x[s * length : (s + 1) * length] for s in range(n_segments)]


def _segment_statistics(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over segments (error NaN for a single segment)."""
    stacked = np.stack(curves)
    if len(stacked) < 2:
        return stacked[0], np.full(stacked.shape[1:], np.nan)
    return stacked.mean(axis=0), stacked.std(axis=0, ddof=1) / np.sqrt(len(stacked))


def mean_squared_displacement(unwrapped: np.ndarray, timestep_fs: float, max_lag: int, n_segments: int = 4) -> TimeCorrelation:
    """MSD(t) Å² of unwrapped positions (n_frames, n_atoms, 3) Å, all time origins, lags 0..max_lag
    frames of ``timestep_fs`` fs; the error is the standard error over ``n_segments`` consecutive
    segments (NaN when n_segments = 1)."""
    unwrapped = np.asarray(unwrapped, dtype=np.float64)
    curves = [_msd_fft(segment)[: max_lag + 1] for segment in _segments(unwrapped, n_segments, max_lag, timestep_fs)]
    mean, error = _segment_statistics(curves)
    return TimeCorrelation(np.arange(max_lag + 1) * timestep_fs, mean, error)


class Diffusion(NamedTuple):
    """Self-diffusion coefficient from the Einstein relation MSD = 6 D t: ``a2_per_ps`` Å²/ps and
    ``cm2_per_s`` cm²/s, each an :class:`~symprobe.analysis.statistics.Estimate` (mean, standard error over
    segments); ``msd`` the curve it was fitted to; ``fit_window_fs`` the fitted lag range."""

    a2_per_ps: Estimate
    cm2_per_s: Estimate
    msd: TimeCorrelation
    fit_window_fs: tuple[float, float]


def diffusion_coefficient(
    unwrapped: np.ndarray, timestep_fs: float, fit_start_fs: float, fit_end_fs: float, n_segments: int = 4
) -> Diffusion:
    """D from linear fits of the MSD between ``fit_start_fs`` and ``fit_end_fs`` (slope/6), one fit per
    segment; the error is the standard error of the segment values."""
    if timestep_fs <= 0:
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs}")
    if not 0 <= fit_start_fs < fit_end_fs:
        raise ValueError(f"need 0 ≤ fit_start_fs < fit_end_fs, got {fit_start_fs} and {fit_end_fs} fs")
    max_lag = int(round(fit_end_fs / timestep_fs))
    segments = _segments(np.asarray(unwrapped, dtype=np.float64), n_segments, max_lag, timestep_fs)
    lags = np.arange(max_lag + 1) * timestep_fs
    window = lags >= fit_start_fs
    if window.sum() < 2:
        raise ValueError(f"the fit window {fit_start_fs}–{fit_end_fs} fs holds fewer than two frames")
    curves = [_msd_fft(segment)[: max_lag + 1] for segment in segments]
    slopes = np.array([np.polyfit(lags[window], curve[window], 1)[0] / 6.0 * 1000.0 for curve in curves])  # Å²/ps
    d = mean_and_error(slopes) if len(slopes) > 1 else Estimate(float(slopes[0]), float("nan"))
    msd = TimeCorrelation(lags, *_segment_statistics(curves))
    cm2 = Estimate(d.mean * CM2_PER_S_PER_A2_PER_PS, d.error * CM2_PER_S_PER_A2_PER_PS)
    return Diffusion(d, cm2, msd, (float(fit_start_fs), float(fit_end_fs)))


def diffusive_window(lags_fs: np.ndarray, msd: np.ndarray, tolerance: float = 0.15, min_span: float = 3.0) -> tuple[float, float] | None:
    """The lag range (fs) where an MSD curve is diffusive (MSD ∝ t), or None when the run does not reach it.

    The local exponent α(t) = ln[MSD(2t)/MSD(t)] / ln 2 is evaluated on 16 lags per octave; the window starts
    at the earliest lag from which α stays within 1 ± ``tolerance`` up to the longest lag it can be formed at,
    and ends at the longest lag. It must span at least a factor ``min_span`` in time (a ballistic start has
    α = 2; a caged, sub-diffusive one α < 1)."""
    lags, msd = np.asarray(lags_fs, dtype=np.float64), np.asarray(msd, dtype=np.float64)
    positive = (lags > 0) & (msd > 0) & np.isfinite(msd)
    lags, msd = lags[positive], msd[positive]
    if len(lags) < 4 or lags[-1] < 2.0 * min_span * lags[0]:
        return None
    grid = np.exp(np.arange(np.log(lags[0]), np.log(lags[-1] / 2.0), np.log(2.0) / 16.0))
    if len(grid) < 2:
        return None
    exponent = np.log(np.interp(2.0 * grid, lags, msd) / np.interp(grid, lags, msd)) / np.log(2.0)
    outside = np.flatnonzero(np.abs(exponent - 1.0) > tolerance)
    if len(outside) and outside[-1] == len(grid) - 1:
        return None
    start = float(grid[outside[-1] + 1]) if len(outside) else float(grid[0])
    end = float(lags[-1])
    return (start, end) if end >= min_span * start else None


def orientational_autocorrelation(directions: np.ndarray, timestep_fs: float, max_lag: int, n_segments: int = 4) -> TimeCorrelation:
    """c_uu(t) = ⟨u(t0)·u(t0 + t)⟩ (dimensionless) of unit vectors (n_frames, n_molecules, 3), all time
    origins, lags 0..max_lag frames of ``timestep_fs`` fs; error over ``n_segments`` segments."""
    directions = np.asarray(directions, dtype=np.float64)
    if directions.ndim != 3 or directions.shape[-1] != 3:
        raise ValueError(f"directions must have shape (n_frames, n_molecules, 3), got {directions.shape}")
    curves = [_autocorrelation(segment)[: max_lag + 1] / segment.shape[1] for segment in _segments(directions, n_segments, max_lag, timestep_fs)]
    mean, error = _segment_statistics(curves)
    return TimeCorrelation(np.arange(max_lag + 1) * timestep_fs, mean, error)


def decay_time(lags_fs: np.ndarray, correlation: np.ndarray, level: float = float(np.exp(-1.0))) -> float | None:
    """The first lag (fs, linearly interpolated) at which a correlation function falls to ``level`` times its
    value at lag 0, or None when the curve does not get there within its lags (the run does not cover it)."""
    lags, c = np.asarray(lags_fs, dtype=np.float64), np.asarray(correlation, dtype=np.float64)
    if len(c) < 2 or not c[0] > 0:
        raise ValueError("a decay time needs at least two lags and a positive value at lag 0")
    target = level * c[0]
    below = np.flatnonzero(c <= target)
    if not len(below):
        return None
    k = int(below[0])
    return float(lags[k - 1] + (c[k - 1] - target) / (c[k - 1] - c[k]) * (lags[k] - lags[k - 1]))


# ---------------------------------------------------------------------------------------------------
# Conservation laws of isolated systems


def _about_centre_of_mass(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    masses = np.asarray(masses, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape[-2] != len(masses):
        raise ValueError(f"{positions.shape[-2]} atoms but {len(masses)} masses")
    centre = np.einsum("...ik,i->...k", positions, masses) / masses.sum()
    return positions - centre[..., None, :]


def angular_momentum(positions: np.ndarray, velocities: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Total angular momentum (..., 3) amu·Å²/fs about the centre of mass, in the centre-of-mass frame.

    ``positions`` (..., n_atoms, 3) Å, ``velocities`` (..., n_atoms, 3) Å/fs (ASE velocities × ``ase.units.fs``),
    ``masses`` (n_atoms,) amu. Multiply by ``EV_FS_PER_AMU_A2_PER_FS`` (103.6427) for eV·fs.
    """
    masses = np.asarray(masses, dtype=np.float64)
    relative = _about_centre_of_mass(positions, masses)
    velocities = np.asarray(velocities, dtype=np.float64)
    drift = np.einsum("...ik,i->...k", velocities, masses) / masses.sum()
    momenta = (velocities - drift[..., None, :]) * masses[:, None]
    return np.cross(relative, momenta).sum(axis=-2)


def net_torque(positions: np.ndarray, forces: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Net torque (..., 3) eV about the centre of mass: Σ (r_i − R_com) × F_i, positions Å, forces eV/Å,
    masses amu (they fix the centre). Zero for a rotation-invariant potential."""
    return np.cross(_about_centre_of_mass(positions, masses), np.asarray(forces, dtype=np.float64)).sum(axis=-2)


# ---------------------------------------------------------------------------------------------------
# Spectra and drift


class PowerSpectrum(NamedTuple):
    """``wavenumber`` cm⁻¹ and ``intensity`` (series unit)²·fs: the Fourier transform of the
    Blackman-windowed autocorrelation of the mean-subtracted series."""

    wavenumber: np.ndarray
    intensity: np.ndarray


def power_spectrum(series: np.ndarray, timestep_fs: float) -> PowerSpectrum:
    """Power spectrum of a 1-D time series sampled every ``timestep_fs`` fs (Wiener–Khinchin, with the
    autocorrelation tapered by the positive half of a Blackman window)."""
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1 or len(x) < 4:
        raise ValueError(f"need a 1-D series of at least 4 values, got shape {x.shape}")
    if timestep_fs <= 0:
        raise ValueError(f"timestep_fs must be positive, got {timestep_fs}")
    n = len(x)
    x = x - x.mean()
    spectrum = np.fft.rfft(x, n=2 * n)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:n] / n  # biased estimator, lags 0..n−1
    acf *= np.blackman(2 * n - 1)[n - 1 :]
    symmetric = np.concatenate([acf, [0.0], acf[:0:-1]])  # even in the lag, length 2n
    intensity = np.fft.rfft(symmetric).real * timestep_fs
    frequency = np.fft.rfftfreq(2 * n, d=timestep_fs)  # fs⁻¹
    return PowerSpectrum(frequency * CM1_PER_INV_FS, intensity)


class Drift(NamedTuple):
    """Linear drift of a conserved quantity: ``mev_per_molecule_per_ps`` as an
    :class:`~symprobe.analysis.statistics.Estimate` (slope, standard error corrected for correlated residuals)
    and the same extrapolated ``per_500ps`` (meV per molecule per 500 ps)."""

    mev_per_molecule_per_ps: Estimate
    per_500ps: Estimate


def conserved_drift(times_fs: np.ndarray, conserved_ev: np.ndarray, n_molecules: int) -> Drift:
    """Least-squares slope of a conserved energy (eV) against time (fs), per molecule.

    The ordinary least-squares error assumes independent residuals; it is scaled by √g, where
    g = (block-averaged / naive standard error of the residuals)² is their statistical inefficiency.
    """
    t = np.asarray(times_fs, dtype=np.float64)
    e = np.asarray(conserved_ev, dtype=np.float64)
    if t.shape != e.shape or t.ndim != 1 or len(t) < 3:
        raise ValueError(f"need matching 1-D times and energies with at least 3 values, got {t.shape} and {e.shape}")
    if n_molecules < 1:
        raise ValueError(f"n_molecules must be positive, got {n_molecules}")
    fit = stats.linregress(t, e)
    residuals = e - (fit.intercept + fit.slope * t)
    naive = residuals.std(ddof=1) / np.sqrt(len(residuals))
    inefficiency = max(1.0, (block_average(residuals).stderr / naive) ** 2) if naive > 0 else 1.0
    scale = 1000.0 * 1000.0 / n_molecules  # eV/fs → meV/ps per molecule
    slope = Estimate(fit.slope * scale, fit.stderr * np.sqrt(inefficiency) * scale)
    return Drift(slope, Estimate(slope.mean * 500.0, slope.error * 500.0))

