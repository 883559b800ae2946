"""Checks on any model: finite-difference forces (eV/Å), Haar-random rotations and the largest energy
deviation (eV) over rotations."""

from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.models.base import Model
from symprobe.models.qtip4pf import WaterModel, check_water_molecules
from symprobe.models.torch_model import TorchModel
from symprobe.structures import check_structure


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


def max_rotation_deviation(model: Model, atoms: Atoms, rotations: np.ndarray) -> float:
    """max_k |E(R_k x) − E(x)| (eV) over ``rotations`` (B, 3, 3)."""
    reference = model.predict(atoms).energy
    energies = model.predict_rotated(atoms, np.asarray(rotations, dtype=np.float64)).energies
    return float(np.max(np.abs(energies - reference)))
