"""Factories of test inputs: a small random-weight PET-style module and extended-XYZ water labelled by
q-TIP4P/F (energies in eV, forces in eV/Å)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

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
