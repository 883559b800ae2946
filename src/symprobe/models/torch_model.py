"""Torch models of this package: copies of many structures in one graph, autograd forces and stress.

Any ``torch.nn.Module`` with a ``cutoff`` attribute (Å) and ``forward(graph: Graph) -> energies`` (one
energy per structure of the graph, eV) becomes a :class:`~symprobe.models.base.Model` through
:class:`TorchModel`. Its engine evaluates *copies*: copy c is structure s(c) turned by a rotation R_c
(x → R_c x, cell rows h → R_c h). Every structure has one neighbour list (vesin, sorted canonically by
(i, j, shift)); the copies of a structure share it, because the pairs (i, j, cell shift) of x and R x are
the same. Copies go through the module in passes sized by a memory budget of the device
(:func:`symprobe.models.device.memory_budget`): the activation memory per atom and edge is measured once
per model, by counting the tensors autograd saves in a pass of one copy.

Positions, cells and edge vectors are formed in float64 and cast to the module's precision only as edge
vectors, so a float32 model sees the same round-off 200 Å from the origin as at the origin.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from symprobe.models.base import BatchPrediction, Model
from symprobe.models.device import memory_budget, resolve_device
from symprobe.structures import neighbour_box


@dataclass
class Graph:
    """Several structures as one graph, as a module's ``forward`` receives it.

    ``positions`` (A, 3) Å and ``cells`` (S, 3, 3) Å (rows are cell vectors; zeros for non-periodic) are
    float64; ``numbers`` (A,) atomic numbers; ``structure`` (A,) index of each atom's structure;
    ``edge_i``, ``edge_j`` (E,) neighbour list, full (both directions) unless ``half_list`` (each pair once,
    for modules that ask for it with a ``half_list = True`` attribute); ``shifts`` (E, 3) integer cell
    shifts (float64) so that r_ij = x_j − x_i + shifts @ cell; ``dtype`` the module's precision.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    structure: torch.Tensor
    cells: torch.Tensor
    edge_i: torch.Tensor
    edge_j: torch.Tensor
    shifts: torch.Tensor
    dtype: torch.dtype = torch.float64
    half_list: bool = False

    @property
    def n_structures(self) -> int:
        """Number of structures in the graph."""
        return int(self.cells.shape[0])

    def edge_vectors(self) -> torch.Tensor:
        """r_ij = x_j − x_i + S·cell (E, 3) Å, formed in float64, returned in ``dtype``; differentiable."""
        cell_of_edge = self.cells[self.structure[self.edge_i]]
        offsets = torch.einsum("ea,eab->eb", self.shifts, cell_of_edge)
        vectors = self.positions[self.edge_j] - self.positions[self.edge_i] + offsets
        return vectors.to(self.dtype)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "Graph":
        """The graph on ``device`` for a module in ``dtype`` (coordinates stay float64)."""
        moved = {f.name: getattr(self, f.name).to(device=device) for f in dataclasses.fields(self) if f.name not in ("dtype", "half_list")}
        return Graph(**moved, dtype=dtype or self.dtype, half_list=self.half_list)

    def with_coordinates(self, positions: torch.Tensor, cells: torch.Tensor) -> "Graph":
        """The same graph with other positions and cells (e.g. strained or requiring gradients)."""
        return dataclasses.replace(self, positions=positions, cells=cells)


def neighbour_list(atoms: Atoms, cutoff: float, half: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (i, j, integer shifts) within ``cutoff`` Å (each pair once if ``half``), from vesin,
    sorted by (i, j, shift).

    vesin includes as many periodic images as needed, so cells smaller than twice the cutoff are handled
    exactly (an atom may see several images of the same neighbour). The canonical order makes results
    independent of when the list was built (bit-exact MD restarts).
    """
    from vesin import NeighborList

    box, periodic = neighbour_box(atoms)
    i, j, shifts = NeighborList(cutoff=cutoff, full_list=not half).compute(
        atoms.get_positions(), box, periodic, quantities="ijS"
    )
    i, j, shifts = i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64)
    order = np.argsort(_pair_keys(i, j, shifts, len(atoms)), kind="stable")
    return i[order], j[order], shifts[order]


def _pair_keys(i: np.ndarray, j: np.ndarray, shifts: np.ndarray, n_atoms: int) -> np.ndarray:
    """One int64 key per pair that sorts like (i, j, shift): one argsort instead of a five-key lexsort."""
    if len(i) == 0:
        return np.zeros(0, dtype=np.int64)
    low = shifts.min(axis=0)
    span = shifts.max(axis=0) - low + 1
    if float(n_atoms) ** 2 * float(np.prod(span)) >= 2.0**62:  # too many pairs for one key
        return np.argsort(np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i)), kind="stable")
    s = shifts - low
    return (((i * n_atoms + j) * span[0] + s[:, 0]) * span[1] + s[:, 1]) * span[2] + s[:, 2]


def stack_graph(
    positions: Sequence[np.ndarray],
    numbers: Sequence[np.ndarray],
    cells: Sequence[np.ndarray],
    edges: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    dtype: torch.dtype = torch.float64,
    half_list: bool = False,
) -> Graph:
    """One graph from per-structure arrays: positions (N, 3) Å, atomic numbers (N,), cell (3, 3) Å (zeros if
    isolated) and a neighbour list (i, j, shifts) with indices local to each structure."""
    sizes = [len(z) for z in numbers]
    offsets = np.cumsum([0] + sizes[:-1])
    return Graph(
        torch.tensor(np.concatenate(positions), dtype=torch.float64),
        torch.tensor(np.concatenate(numbers), dtype=torch.long),
        torch.tensor(np.repeat(np.arange(len(sizes)), sizes), dtype=torch.long),
        torch.tensor(np.stack(cells), dtype=torch.float64),
        torch.tensor(np.concatenate([i + o for (i, _, _), o in zip(edges, offsets)]), dtype=torch.long),
        torch.tensor(np.concatenate([j + o for (_, j, _), o in zip(edges, offsets)]), dtype=torch.long),
        torch.tensor(np.concatenate([S for _, _, S in edges]), dtype=torch.float64),
        dtype,
        half_list,
    )


def cell_of(atoms: Atoms) -> np.ndarray:
    """The cell rows (3, 3) Å of a periodic structure, zeros for an isolated one."""
    return atoms.cell.array.copy() if atoms.pbc.any() else np.zeros((3, 3))


def batch_graph(frames: Sequence[Atoms], cutoff: float, dtype: torch.dtype = torch.float64, half_list: bool = False) -> Graph:
    """One graph holding several structures (for training or evaluating many structures at once)."""
    return stack_graph(
        [atoms.get_positions() for atoms in frames],
        [atoms.numbers for atoms in frames],
        [cell_of(atoms) for atoms in frames],
        [neighbour_list(atoms, cutoff, half_list) for atoms in frames],
        dtype,
        half_list,
    )


# ---------------------------------------------------------------------------------------------------
# Structures, copies and the chunked engine


@dataclass
class Structures:
    """Structures on a device, concatenated: ``positions`` (N, 3) Å float64, ``numbers`` (N,), ``cells``
    (S, 3, 3) Å float64, ``periodic`` (S,) (stress is computed for these), ``atom_start`` (S + 1,) numpy
    offsets, and the neighbour lists: ``edge_i``, ``edge_j`` (E,) indices into ``positions``, ``shifts``
    (E, 3) float64, ``edge_start`` (S + 1,) numpy offsets; ``half_list`` when each pair is listed once."""

    positions: torch.Tensor
    numbers: torch.Tensor
    cells: torch.Tensor
    periodic: np.ndarray
    atom_start: np.ndarray
    edge_i: torch.Tensor
    edge_j: torch.Tensor
    shifts: torch.Tensor
    edge_start: np.ndarray
    half_list: bool = False

    @classmethod
    def of(cls, frames: Sequence[Atoms], cutoff: float, device: torch.device,
           edges: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None, half_list: bool = False) -> "Structures":
        """``frames`` with their neighbour lists within ``cutoff`` Å (or the given ``edges``, half lists if
        ``half_list``) on ``device``."""
        edges = [neighbour_list(atoms, cutoff, half_list) for atoms in frames] if edges is None else edges
        atom_start = np.cumsum([0] + [len(atoms) for atoms in frames])
        edge_start = np.cumsum([0] + [len(i) for i, _, _ in edges])
        as_long = dict(dtype=torch.long, device=device)
        return cls(
            torch.tensor(np.concatenate([atoms.get_positions() for atoms in frames]), dtype=torch.float64, device=device),
            torch.tensor(np.concatenate([atoms.numbers for atoms in frames]), **as_long),
            torch.tensor(np.stack([cell_of(atoms) for atoms in frames]), dtype=torch.float64, device=device),
            np.array([bool(atoms.pbc.all()) for atoms in frames]),
            atom_start,
            torch.tensor(np.concatenate([i + o for (i, _, _), o in zip(edges, atom_start)]), **as_long),
            torch.tensor(np.concatenate([j + o for (_, j, _), o in zip(edges, atom_start)]), **as_long),
            torch.tensor(np.concatenate([S for _, _, S in edges]), dtype=torch.float64, device=device),
            edge_start,
            half_list,
        )

    @property
    def n_structures(self) -> int:
        """Number of structures."""
        return len(self.atom_start) - 1


@dataclass
class Copies:
    """Where the atoms and edges of every copy sit in the flat graph of all copies (torch, on a device).

    Copies are ordered by structure: ``copy_structure`` (C,); ``atom_copy``/``atom_source`` (A,) the copy
    of each flat atom and its atom in :class:`Structures`; ``edge_copy``/``edge_source`` (E,) likewise
    for edges, with ``edge_i``/``edge_j`` flat atom indices; ``atom_start``/``edge_start`` (C + 1,) numpy.
    """

    copy_structure: torch.Tensor
    atom_copy: torch.Tensor
    atom_source: torch.Tensor
    edge_copy: torch.Tensor
    edge_source: torch.Tensor
    edge_i: torch.Tensor
    edge_j: torch.Tensor
    atom_start: np.ndarray
    edge_start: np.ndarray

    @classmethod
    def of(cls, structures: Structures, counts: Sequence[int], edge_mask: torch.Tensor | None = None) -> "Copies":
        """``counts[s]`` copies of structure s; ``edge_mask`` (E,) keeps a subset of the structures' edges."""
        device = structures.positions.device
        counts = np.asarray(counts, dtype=np.int64)
        copy_structure = np.repeat(np.arange(len(counts)), counts)
        n_atoms = np.diff(structures.atom_start)[copy_structure]
        if edge_mask is None:
            kept = np.arange(structures.edge_start[-1])
            edge_counts = np.diff(structures.edge_start)
        else:
            kept = torch.nonzero(edge_mask).squeeze(1).cpu().numpy()
            edge_counts = np.bincount(np.searchsorted(structures.edge_start, kept, side="right") - 1,
                                      minlength=len(counts))
        kept_start = np.concatenate([[0], np.cumsum(edge_counts)])
        n_edges = edge_counts[copy_structure]
        atom_start = np.concatenate([[0], np.cumsum(n_atoms)])
        edge_start = np.concatenate([[0], np.cumsum(n_edges)])
        atom_copy = np.repeat(np.arange(len(copy_structure)), n_atoms)
        first_atom = structures.atom_start[copy_structure]
        atom_source = first_atom[atom_copy] + np.arange(atom_start[-1]) - atom_start[atom_copy]
        edge_copy = np.repeat(np.arange(len(copy_structure)), n_edges)
        rank = np.arange(edge_start[-1]) - edge_start[edge_copy]
        edge_source = kept[kept_start[copy_structure][edge_copy] + rank]
        shift_to_flat = (atom_start[:-1] - first_atom)[edge_copy]
        source_i = structures.edge_i.cpu().numpy()[edge_source]
        source_j = structures.edge_j.cpu().numpy()[edge_source]
        as_long = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
        return cls(as_long(copy_structure), as_long(atom_copy), as_long(atom_source), as_long(edge_copy),
                   as_long(edge_source), as_long(source_i + shift_to_flat), as_long(source_j + shift_to_flat),
                   atom_start, edge_start)

    @property
    def n_copies(self) -> int:
        """Number of rotated copies."""
        return len(self.atom_start) - 1

    def graph(self, structures: Structures, rotations: torch.Tensor, start: int, stop: int, dtype: torch.dtype) -> Graph:
        """The graph of copies ``start`` to ``stop``: positions R_c x, cell rows R_c h (``rotations`` (C, 3, 3))."""
        a0, a1 = int(self.atom_start[start]), int(self.atom_start[stop])
        e0, e1 = int(self.edge_start[start]), int(self.edge_start[stop])
        atom_copy = self.atom_copy[a0:a1]
        R = rotations[start:stop]
        positions = torch.einsum("aij,aj->ai", rotations[atom_copy], structures.positions[self.atom_source[a0:a1]])
        cells = torch.einsum("cij,ckj->cki", R, structures.cells[self.copy_structure[start:stop]])
        return Graph(positions, structures.numbers[self.atom_source[a0:a1]], atom_copy - start, cells,
                     self.edge_i[e0:e1] - a0, self.edge_j[e0:e1] - a0, structures.shifts[self.edge_source[e0:e1]], dtype,
                     structures.half_list)


@dataclass
class CopyResults:
    """Per copy, in the copy's own (rotated) frame: ``energies`` (C,) eV, ``grad_positions`` (A, 3) eV/Å
    = ∂E/∂y of the copy's positions y = R x, ``grad_cells`` (C, 3, 3) eV/Å = ∂E/∂(rows of R h) and the
    ``virial`` (C, 3, 3) eV = Σ_a y_a ⊗ ∂E/∂y_a + Σ_k h_k ⊗ ∂E/∂h_k (None when no structure is periodic).
    All float64, on the model's device."""

    energies: torch.Tensor
    grad_positions: torch.Tensor | None
    grad_cells: torch.Tensor | None
    virial: torch.Tensor | None


def energy_and_gradients(module: torch.nn.Module, graph: Graph, cells: bool = False,
                         create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Energies (S,) eV, ∂E/∂positions (A, 3) eV/Å and, if ``cells``, ∂E/∂(cell rows) (S, 3, 3) eV/Å.

    ``create_graph`` keeps the graph so the gradients can enter a training loss.
    """
    positions = graph.positions.detach().requires_grad_(True)
    cell_rows = graph.cells.detach().requires_grad_(cells)
    energies = module(graph.with_coordinates(positions, cell_rows))
    inputs = [positions, cell_rows] if cells else [positions]
    grads = torch.autograd.grad(energies.sum(), inputs, create_graph=create_graph, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
    return energies, grads[0], grads[1] if cells else None


def virial(graph: Graph, grad_positions: torch.Tensor, grad_cells: torch.Tensor) -> torch.Tensor:
    """W = Σ_a x_a ⊗ ∂E/∂x_a + Σ_k h_k ⊗ ∂E/∂h_k per structure (S, 3, 3) eV: ∂E/∂ε under a strain
    x → x(1 + ε), h → h(1 + ε) of positions and cell rows together."""
    w = torch.zeros((graph.n_structures, 3, 3), dtype=grad_positions.dtype, device=grad_positions.device)
    w = w.index_add(0, graph.structure, graph.positions[:, :, None] * grad_positions[:, None, :])
    return w + torch.einsum("ska,skb->sab", graph.cells, grad_cells)


def stress_of(virial_: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """σ = sym(W)/V (S, 3, 3) eV/Å³ (ASE's sign); NaN where the cell has no volume."""
    volume = torch.abs(torch.linalg.det(cells))
    volume = torch.where(volume > 0, volume, torch.full_like(volume, torch.nan))
    return 0.5 * (virial_ + virial_.transpose(1, 2)) / volume[:, None, None]


def energy_forces_stress(module: torch.nn.Module, graph: Graph, stress: bool = False,
                         create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Energies (S,) eV, forces (A, 3) eV/Å = −∂E/∂x and, if asked, stress (S, 3, 3) eV/Å³."""
    energies, grad_x, grad_h = energy_and_gradients(module, graph, cells=stress, create_graph=create_graph)
    sigma = stress_of(virial(graph, grad_x, grad_h), graph.cells) if stress else None
    return energies, -grad_x, sigma


def saved_bytes(run) -> int:
    """Bytes of the tensors autograd saves while ``run()`` builds its graph (activation memory)."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return total


class TorchModel(Model):
    """A torch energy module (``cutoff`` in Å, ``forward(Graph) -> (S,) eV``) as a :class:`Model`.

    ``dtype`` is the module's precision (float64 separates round-off from learned symmetry breaking);
    ``device`` where it runs (``cpu``, ``cuda``, ``cuda:N``). Copies are evaluated in passes that fit
    :func:`~symprobe.models.device.memory_budget`.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        name: str = "torch-model",
        species: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ):
        self.device = resolve_device(device)
        self.module = module.to(dtype=dtype, device=self.device).eval()
        self.name = name
        self.species = None if species is None else frozenset(int(z) for z in species)
        self.dtype = dtype
        self.activation_bytes: float | None = None  # bytes per (atom + edge) of a pass, measured on first use
        self._budget_scale = 1.0  # lowered after an out-of-memory error

    @property
    def cutoff(self) -> float:
        """Interaction cutoff of the module (Å)."""
        return float(self.module.cutoff)

    @property
    def half_list(self) -> bool:
        """Whether the module takes each neighbour pair once (its ``half_list`` attribute; full lists otherwise)."""
        return bool(getattr(self.module, "half_list", False))

    def converted(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> "TorchModel":
        """A copy of this model in ``dtype`` on ``device`` (the module is copied; this model is unchanged)."""
        other = copy.copy(self)
        other.dtype = dtype or self.dtype
        other.device = resolve_device(device or self.device)
        other.module = copy.deepcopy(self.module).to(dtype=other.dtype, device=other.device)
        other.activation_bytes, other._budget_scale = None, 1.0
        return other

    def check_graph(self, graph: Graph) -> None:
        """Checks a subclass makes on the input (raise ValueError); none here."""

    # --- the engine --------------------------------------------------------------------------------
    def evaluate(self, structures: Structures, copies: Copies, rotations: torch.Tensor, gradients: bool = True,
                 stress: bool = True) -> CopyResults:
        """Energies and (if ``gradients``) ∂E/∂positions and, if ``stress`` too, ∂E/∂cell and the virial of all
        ``copies``, in passes within the budget (no cell gradient is formed when nothing asks for stress)."""
        n_copies = copies.n_copies
        device = structures.positions.device
        energies = torch.empty(n_copies, dtype=torch.float64, device=device)
        grad_x = torch.empty((int(copies.atom_start[-1]), 3), dtype=torch.float64, device=device) if gradients else None
        grad_h = w = None
        if gradients and stress and structures.periodic.any():
            grad_h = torch.zeros((n_copies, 3, 3), dtype=torch.float64, device=device)
            w = torch.zeros((n_copies, 3, 3), dtype=torch.float64, device=device)
        costs = np.diff(copies.atom_start) + np.diff(copies.edge_start)
        start = 0
        while start < n_copies:
            if self.activation_bytes is None:
                self.activation_bytes = self._measure(copies.graph(structures, rotations, start, start + 1, self.dtype))
            stop = _chunk_end(costs, start, memory_budget(device) * self._budget_scale / self.activation_bytes)
            graph = copies.graph(structures, rotations, start, stop, self.dtype)
            try:
                e, gx, gh = self._forward(graph, gradients, grad_h is not None)
            except torch.OutOfMemoryError:
                if stop - start == 1:
                    raise
                self._budget_scale *= 0.5
                torch.cuda.empty_cache()
                continue
            energies[start:stop] = e
            if gradients:
                grad_x[copies.atom_start[start] : copies.atom_start[stop]] = gx
                if gh is not None:
                    grad_h[start:stop] = gh
                    w[start:stop] = virial(graph, gx, gh)
            start = stop
        return CopyResults(energies, grad_x, grad_h, w)

    def _forward(self, graph: Graph, gradients: bool, cells: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        self.check_graph(graph)
        if not gradients:
            with torch.no_grad():
                return self.module(graph).to(torch.float64), None, None
        energies, grad_x, grad_h = energy_and_gradients(self.module, graph, cells)
        return energies.detach().to(torch.float64), grad_x.to(torch.float64), None if grad_h is None else grad_h.to(torch.float64)

    def _measure(self, graph: Graph) -> float:
        """Activation bytes per (atom + edge), from the tensors autograd saves in a pass of one copy."""
        self.check_graph(graph)
        positions = graph.positions.detach().requires_grad_(True)
        units = graph.positions.shape[0] + graph.edge_i.shape[0]
        return max(saved_bytes(lambda: self.module(graph.with_coordinates(positions, graph.cells))), 1) / max(units, 1)

    # --- the Model contract ------------------------------------------------------------------------
    def prepare(self, frames: Sequence[Atoms], rotations: Sequence[np.ndarray]) -> tuple[Structures, Copies, torch.Tensor]:
        """(structures, copies, rotations on the device) of ``frames`` and their ``rotations`` (B_s, 3, 3)."""
        structures = Structures.of(frames, self.cutoff, self.device, half_list=self.half_list)
        copies = Copies.of(structures, [len(R) for R in rotations])
        R = torch.as_tensor(np.concatenate(rotations), dtype=torch.float64, device=self.device)
        return structures, copies, R

    def _predict_many(self, structures: Sequence[Atoms], rotations: Sequence[np.ndarray]) -> list[BatchPrediction]:
        batch, copies, R = self.prepare(structures, rotations)
        results = self.evaluate(batch, copies, R)
        forces, stress = rotated_back(batch, copies, R, results)
        return split_copies(structures, rotations, results.energies, forces, stress)

    def energies(self, frames: Sequence[Atoms], rotations: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Energies (eV) of all copies (structure-major) without gradients: the cheapest pass."""
        rotations = [np.eye(3)[None]] * len(frames) if rotations is None else rotations
        batch, copies, R = self.prepare(frames, rotations)
        return self.evaluate(batch, copies, R, gradients=False).energies.cpu().numpy()

    def gradients(self, atoms: Atoms, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the copies R_k x: energies (K,) eV, ∂E/∂y (K, N, 3) eV/Å in each copy's frame and
        ∂E/∂(rotated cell rows) (K, 3, 3) eV/Å (zeros for an isolated structure)."""
        batch, copies, R = self.prepare([atoms], [rotations])
        results = self.evaluate(batch, copies, R)
        k = len(rotations)
        grad_h = np.zeros((k, 3, 3)) if results.grad_cells is None else results.grad_cells.cpu().numpy()
        return results.energies.cpu().numpy(), results.grad_positions.cpu().numpy().reshape(k, len(atoms), 3), grad_h


def _chunk_end(costs: np.ndarray, start: int, units: float) -> int:
    """The end of the pass starting at copy ``start`` whose summed ``costs`` fit ``units`` (one copy at least)."""
    fits = np.searchsorted(np.cumsum(costs[start:]), units, side="right")
    return start + max(1, int(fits))


def rotated_back(structures: Structures, copies: Copies, rotations: torch.Tensor,
                 results: CopyResults) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forces (A, 3) eV/Å and stress (C, 3, 3) eV/Å³ of every copy in the input's frame: Rᵀ F(R x) and
    Rᵀ σ(R x) R (stress NaN for non-periodic structures; None when none is periodic)."""
    forces = -torch.einsum("aji,aj->ai", rotations[copies.atom_copy], results.grad_positions)
    if results.virial is None:
        return forces, None
    cells = torch.einsum("cij,ckj->cki", rotations, structures.cells[copies.copy_structure])
    sigma = stress_of(results.virial, cells)
    return forces, torch.einsum("cai,cab,cbj->cij", rotations, sigma, rotations)


def split_copies(frames: Sequence[Atoms], rotations: Sequence[np.ndarray], energies: torch.Tensor, forces: torch.Tensor,
                 stress: torch.Tensor | None) -> list[BatchPrediction]:
    """Per-structure :class:`BatchPrediction` (numpy) from flat per-copy tensors (structure-major)."""
    energies = energies.cpu().numpy()
    forces = forces.cpu().numpy()
    stress = None if stress is None else stress.cpu().numpy()
    out, c, a = [], 0, 0
    for atoms, R in zip(frames, rotations):
        k, n = len(R), len(atoms)
        s = stress[c : c + k] if stress is not None and atoms.pbc.all() else None
        out.append(BatchPrediction(energies[c : c + k], forces[a : a + k * n].reshape(k, n, 3), s))
        c, a = c + k, a + k * n
    return out


def chunks(costs: Sequence[float], units: float) -> Iterator[slice]:
    """Consecutive slices of items whose summed ``costs`` fit ``units`` (one item at least each)."""
    costs = np.asarray(costs, dtype=np.float64)
    start = 0
    while start < len(costs):
        stop = _chunk_end(costs, start, units)
        yield slice(start, stop)
        start = stop
