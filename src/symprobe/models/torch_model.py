"""Torch models of this package: batched neighbour graphs, autograd forces and stress.

Any ``torch.nn.Module`` with a ``cutoff`` attribute (Å) and ``forward(graph: Graph) -> energies`` (one
energy per structure, eV) becomes a :class:`~symprobe.models.base.Model` through :class:`TorchModel`.
Rotated copies of one structure share one neighbour list: the pairs (i, j, cell shift) of x and R x are
the same, only positions and cell are rotated, so ``predict_rotated`` is one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from symprobe.models.base import BatchPrediction, Model, Prediction
from symprobe.structures import neighbour_box


@dataclass
class Graph:
    """Several structures as one graph.

    ``positions`` (A, 3) Å; ``numbers`` (A,) atomic numbers; ``structure`` (A,) index of each atom's
    structure; ``cells`` (S, 3, 3) Å (rows are cell vectors; zeros for non-periodic); ``edge_i``,
    ``edge_j`` (E,) full neighbour list (both directions); ``shifts`` (E, 3) integer cell shifts so that
    r_ij = x_j − x_i + shifts @ cell.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    structure: torch.Tensor
    cells: torch.Tensor
    edge_i: torch.Tensor
    edge_j: torch.Tensor
    shifts: torch.Tensor

    @property
    def n_structures(self) -> int:
        return int(self.cells.shape[0])

    def edge_vectors(self) -> torch.Tensor:
        """r_ij = x_j − x_i + S·cell (E, 3), differentiable in positions and cells."""
        cell_of_edge = self.cells[self.structure[self.edge_i]]
        offsets = torch.einsum("ea,eab->eb", self.shifts, cell_of_edge)
        return self.positions[self.edge_j] - self.positions[self.edge_i] + offsets

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "Graph":
        as_float = dict(dtype=dtype, device=device)
        return Graph(
            self.positions.to(**as_float),
            self.numbers.to(device=device),
            self.structure.to(device=device),
            self.cells.to(**as_float),
            self.edge_i.to(device=device),
            self.edge_j.to(device=device),
            self.shifts.to(**as_float),
        )


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (i, j, integer shifts) within ``cutoff`` Å, from vesin.

    vesin includes as many periodic images as needed, so cells smaller than twice the cutoff are handled
    exactly (an atom may see several images of the same neighbour).
    """
    from vesin import NeighborList

    box, periodic = neighbour_box(atoms)
    i, j, shifts = NeighborList(cutoff=cutoff, full_list=True).compute(
        atoms.get_positions(), box, periodic, quantities="ijS"
    )
    return i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64)


def stack_graph(
    positions: Sequence[np.ndarray],
    numbers: Sequence[np.ndarray],
    cells: Sequence[np.ndarray],
    edges: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    dtype: torch.dtype = torch.float64,
) -> Graph:
    """One graph from per-structure arrays: positions (N, 3) Å, atomic numbers (N,), cell (3, 3) Å (zeros if
    isolated) and a neighbour list (i, j, shifts) with indices local to each structure."""
    sizes = [len(z) for z in numbers]
    offsets = np.cumsum([0] + sizes[:-1])
    return Graph(
        torch.tensor(np.concatenate(positions), dtype=dtype),
        torch.tensor(np.concatenate(numbers), dtype=torch.long),
        torch.tensor(np.repeat(np.arange(len(sizes)), sizes), dtype=torch.long),
        torch.tensor(np.stack(cells), dtype=dtype),
        torch.tensor(np.concatenate([i + o for (i, _, _), o in zip(edges, offsets)]), dtype=torch.long),
        torch.tensor(np.concatenate([j + o for (_, j, _), o in zip(edges, offsets)]), dtype=torch.long),
        torch.tensor(np.concatenate([S for _, _, S in edges]), dtype=dtype),
    )


def batch_graph(frames: Sequence[Atoms], cutoff: float, dtype: torch.dtype = torch.float64) -> Graph:
    """One graph holding several structures (for training or evaluating many structures at once)."""
    return stack_graph(
        [atoms.get_positions() for atoms in frames],
        [atoms.numbers for atoms in frames],
        [atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3)) for atoms in frames],
        [neighbour_list(atoms, cutoff) for atoms in frames],
        dtype,
    )


def rotated_graph(atoms: Atoms, rotations: np.ndarray, cutoff: float, dtype: torch.dtype = torch.float64) -> Graph:
    """The copies R_k x (B of them) of one structure as one graph, built from a single neighbour list."""
    i, j, S = neighbour_list(atoms, cutoff)
    n, b = len(atoms), len(rotations)
    R = torch.tensor(np.asarray(rotations), dtype=torch.float64)
    x = torch.tensor(atoms.get_positions(), dtype=torch.float64)
    cell = torch.tensor(atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3)), dtype=torch.float64)
    offsets = (torch.arange(b) * n).repeat_interleave(len(i))
    return Graph(
        torch.einsum("kab,nb->kna", R, x).reshape(b * n, 3).to(dtype),
        torch.tensor(atoms.numbers, dtype=torch.long).repeat(b),
        torch.arange(b).repeat_interleave(n),
        torch.einsum("kab,cb->kca", R, cell).to(dtype),
        torch.tensor(i).repeat(b) + offsets,
        torch.tensor(j).repeat(b) + offsets,
        torch.tensor(S, dtype=dtype).repeat(b, 1),
    )


def energy_forces_stress(
    module: torch.nn.Module, graph: Graph, stress: bool = False, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Energies (S,) eV, forces (A, 3) eV/Å = −∂E/∂x and, if asked, stress (S, 3, 3) eV/Å³ = (1/V) ∂E/∂ε.

    The stress uses a symmetric strain ε applied to positions and cell of each structure.
    ``create_graph`` keeps the graph so forces can enter a training loss.
    """
    positions = graph.positions.detach().requires_grad_(True)
    cells = graph.cells
    inputs = [positions]
    if stress:
        strain = torch.zeros_like(cells, requires_grad=True)
        symmetric = 0.5 * (strain + strain.transpose(1, 2))
        eye = torch.eye(3, dtype=cells.dtype, device=cells.device)
        deform = eye + symmetric
        positions_used = torch.einsum("na,nab->nb", positions, deform[graph.structure])
        cells = torch.einsum("sca,sab->scb", cells, deform)
        inputs.append(strain)
    else:
        positions_used = positions
    strained = Graph(positions_used, graph.numbers, graph.structure, cells, graph.edge_i, graph.edge_j, graph.shifts)
    energies = module(strained)
    grads = torch.autograd.grad(energies.sum(), inputs, create_graph=create_graph)
    forces = -grads[0]
    stress_out = None
    if stress:
        volume = torch.abs(torch.linalg.det(graph.cells)).reshape(-1, 1, 1)
        stress_out = grads[1] / volume
    return energies, forces, stress_out


class TorchModel(Model):
    """A torch energy module (``cutoff`` in Å, ``forward(Graph) -> (S,) eV``) as a :class:`Model`.

    ``dtype`` is the evaluation precision (float64 separates round-off from learned symmetry breaking);
    ``chunk_atoms`` bounds the atoms of rotated copies in one forward pass. Small passes keep the tensors
    in cache: for the PET-style model on one CPU core, 12 copies of 192 atoms cost 19 single calls in one
    pass of 2304 atoms and 12 in passes of 384; 150 copies of a molecule cost 4 (tuned at 512 on this
    project's 2-core machine; ``benchmarks/symmetrize_cost.py`` part a measures it).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        name: str = "torch-model",
        species: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float64,
        device: str = "cpu",
        chunk_atoms: int = 512,
    ):
        self.module = module.to(dtype=dtype, device=device).eval()
        self.name = name
        self.species = None if species is None else frozenset(int(z) for z in species)
        self.dtype, self.device = dtype, torch.device(device)
        self.chunk_atoms = chunk_atoms

    @property
    def cutoff(self) -> float:
        return float(self.module.cutoff)

    def _evaluate(self, graph: Graph, periodic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        graph = graph.to(self.dtype, self.device)
        energies, forces, stress = energy_forces_stress(self.module, graph, stress=periodic)
        to_np = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
        return to_np(energies), to_np(forces), None if stress is None else to_np(stress)

    def _predict(self, atoms: Atoms) -> Prediction:
        energies, forces, stress = self._evaluate(batch_graph([atoms], self.cutoff), atoms.pbc.all())
        return Prediction(float(energies[0]), forces, None if stress is None else stress[0])

    def _predict_rotated(self, atoms: Atoms, rotations: np.ndarray) -> BatchPrediction:
        n, periodic = len(atoms), bool(atoms.pbc.all())
        per_chunk = max(1, self.chunk_atoms // n)
        # filled in place: results kept chunk by chunk fragment the heap (GBs over thousands of chunks)
        energies, forces = np.empty(len(rotations)), np.empty((len(rotations), n, 3))
        stress = np.empty((len(rotations), 3, 3)) if periodic else None
        for start in range(0, len(rotations), per_chunk):
            chunk = slice(start, start + per_chunk)
            R = rotations[chunk]
            e, f, s = self._evaluate(rotated_graph(atoms, R, self.cutoff), periodic)
            energies[chunk] = e
            forces[chunk] = np.einsum("kji,kaj->kai", R, f.reshape(len(R), n, 3))
            if periodic:
                stress[chunk] = np.einsum("kai,kab,kbj->kij", R, s, R)
        return BatchPrediction(energies, forces, stress)

