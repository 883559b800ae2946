"""Training data: labelled structures with their neighbour lists (:class:`Sample`), the reproducible
train/validation/test split, random O(3) augmentation and batches of rotated samples with labels rotated
alike (energies eV, forces eV/Å, stress eV/Å³)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from symprobe import so3
from symprobe.checks import ConfigError
from symprobe.models.torch_model import Graph, neighbour_list, stack_graph
from symprobe.structures import read_structures, reference_labels
from symprobe.training.config import TrainConfig


@dataclass
class Sample:
    """One labelled structure with its neighbour list (unchanged by rotations)."""

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    periodic: bool
    edge_i: np.ndarray
    edge_j: np.ndarray
    shifts: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None


def load_samples(path: str | Path, cutoff: float) -> list[Sample]:
    """Labelled structures from an extended-XYZ file, neighbour lists computed once."""
    samples = []
    for k, atoms in enumerate(read_structures(path)):
        energy, forces = reference_labels(atoms)
        if energy is None or forces is None:
            raise ConfigError(f"{path}: structure #{k} has no energy or forces")
        stress = None
        if atoms.calc is not None and "stress" in getattr(atoms.calc, "results", {}):
            from symprobe.models.base import voigt_to_matrix

            stress = voigt_to_matrix(atoms.calc.results["stress"]) if np.size(atoms.calc.results["stress"]) == 6 else np.asarray(atoms.calc.results["stress"])
        i, j, shifts = neighbour_list(atoms, cutoff)
        periodic = bool(atoms.pbc.all())
        samples.append(
            Sample(atoms.get_positions(), atoms.numbers.copy(), atoms.cell.array.copy() if periodic else np.zeros((3, 3)), periodic, i, j, shifts, energy, forces, stress)
        )
    return samples


def split_indices(n: int, n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, list[int]]:
    """Reproducible random split of ``n`` structures into train/val/test index lists."""
    if n_train + n_val + n_test > n:
        raise ConfigError(f"split {n_train}+{n_val}+{n_test} needs more structures than the {n} in the data file")
    order = np.random.default_rng(seed).permutation(n)
    return {
        "train": order[:n_train].tolist(),
        "val": order[n_train : n_train + n_val].tolist(),
        "test": order[n_train + n_val : n_train + n_val + n_test].tolist(),
    }


WATER_SPLIT = {"n": 190, "n_train": 150, "n_val": 20, "n_test": 20, "seed": 0}  # the bundled water models' split


def water_split() -> dict[str, list[int]]:
    """Train/validation/test indices of the bundled water models and their peers (:data:`WATER_SPLIT`) in the
    190-cell revPBE0-D3 liquid reference file."""
    return split_indices(**WATER_SPLIT)


def water_test_structures(path: str | Path) -> list[Atoms]:
    """The 20 held-out cells of :func:`water_split` in the liquid reference file ``path``, with their reference
    energies (eV) and forces (eV/Å)."""
    frames = read_structures(path)
    return [frames[k] for k in water_split()["test"]]


def training_split(config: TrainConfig, n: int) -> dict[str, list[int]]:
    """The split of ``config``: :func:`split_indices`, then only the first ``data.train_subset`` training structures
    when set (validation and test structures do not depend on it: learning curves)."""
    d = config.data
    split = split_indices(n, d["train"], d["val"], d["test"], d["seed"])
    if d["train_subset"] is not None:
        split["train"] = split["train"][: d["train_subset"]]
    return split


def random_o3(rng: np.random.Generator) -> np.ndarray:
    """A Haar-random rotation, inverted (−R) with probability ½."""
    R = so3.haar_rotations(1, rng)[0]
    return -R if rng.random() < 0.5 else R


def make_batch(samples: Sequence[Sample], rotations: Sequence[np.ndarray] | None, dtype: torch.dtype,
               device: torch.device | str = "cpu") -> tuple[Graph, dict[str, torch.Tensor]]:
    """A graph of ``samples`` (rotated by ``rotations`` if given) and its labels rotated alike, on ``device``."""
    positions, cells, forces, stress = [], [], [], []
    for s, sample in enumerate(samples):
        R = np.eye(3) if rotations is None else rotations[s]
        positions.append(sample.positions @ R.T)
        cells.append(sample.cell @ R.T)
        forces.append(sample.forces @ R.T)
        if sample.stress is not None:
            stress.append(R @ sample.stress @ R.T)
    graph = stack_graph(
        positions, [sample.numbers for sample in samples], cells,
        [(sample.edge_i, sample.edge_j, sample.shifts) for sample in samples], dtype,
    )
    energies = [sample.energy for sample in samples]
    n_atoms = [len(sample.numbers) for sample in samples]
    labels = {
        "energy": torch.tensor(energies, dtype=dtype),
        "forces": torch.tensor(np.concatenate(forces), dtype=dtype),
        "n_atoms": torch.tensor(n_atoms, dtype=dtype),
    }
    if len(stress) == len(samples):
        labels["stress"] = torch.tensor(np.stack(stress), dtype=dtype)
    return graph.to(device=device), {key: value.to(device) for key, value in labels.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """The device that holds ``module``'s parameters."""
    return next(module.parameters()).device
