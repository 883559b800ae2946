"""Evaluating a module: energy (meV/atom) and force (meV/Å) errors against labels, the spread of its
predictions over random rotations (meV/cell, meV/Å), and its energy's rotation gradient ∂E/∂θ (eV/rad)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from symprobe import so3
from symprobe.models.torch_model import Graph, energy_forces_stress
from symprobe.training.data import Sample, make_batch, module_device


def evaluate(module: torch.nn.Module, samples: Sequence[Sample], dtype: torch.dtype, batch_size: int = 4,
             direct: bool = False) -> dict[str, float]:
    """Energy MAE (meV/atom), force MAE and RMSE (meV/Å) of ``module`` on ``samples`` (no augmentation); the
    forces are −∂E/∂x, or the force head's with ``direct``."""
    energy_errors, force_errors = [], []
    for start in range(0, len(samples), batch_size):
        graph, labels = make_batch(samples[start : start + batch_size], None, dtype, module_device(module))
        if direct:
            with torch.no_grad():
                energies, forces = module.direct_forces(graph)
        else:
            energies, forces, _ = energy_forces_stress(module, graph)
        energy_errors.append(((energies.detach() - labels["energy"]) / labels["n_atoms"]).double().cpu().numpy())
        force_errors.append((forces.detach() - labels["forces"]).double().cpu().numpy().ravel())
    de, df = np.concatenate(energy_errors), np.concatenate(force_errors)
    return {
        "energy_mae": 1000 * float(np.mean(np.abs(de))),
        "force_mae": 1000 * float(np.mean(np.abs(df))),
        "force_rmse": 1000 * float(np.sqrt(np.mean(df**2))),
    }


def rotation_gradient(module: torch.nn.Module, graph: Graph, create_graph: bool = False) -> torch.Tensor:
    """∂E/∂θ (S, 3), eV/rad: the derivative of each structure's energy under an infinitesimal rotation
    exp(θ·L) of its positions and cell about the axes x, y, z (ORB's Equigrad). Zero for an invariant model."""
    theta = torch.zeros(len(graph.cells), 3, dtype=graph.positions.dtype, device=graph.positions.device, requires_grad=True)
    zero = torch.zeros_like(theta[:, 0])
    x, y, z = theta.unbind(1)
    generator = torch.stack([torch.stack([zero, -z, y], 1), torch.stack([z, zero, -x], 1),
                             torch.stack([-y, x, zero], 1)], 1)  # (S, 3, 3), R ≈ I + generator
    rotation = torch.eye(3, dtype=theta.dtype, device=theta.device) + generator
    positions = torch.einsum("nb,nab->na", graph.positions, rotation[graph.structure])  # rows: x Rᵀ
    cells = torch.einsum("scb,sab->sca", graph.cells, rotation)
    energies = module(graph.with_coordinates(positions, cells))
    return torch.autograd.grad(energies.sum(), theta, create_graph=create_graph)[0]


def rotational_errors(module: torch.nn.Module, samples: Sequence[Sample], n_rotations: int = 8, seed: int = 0) -> dict[str, float]:
    """Spread of predictions over random proper rotations, in float64 on ``module``'s device: RMS over structures
    and rotations of E(R x) − ⟨E⟩_R (meV per cell) and of Rᵀ F(R x) − ⟨Rᵀ F⟩_R (meV/Å, over atoms and components)."""
    module = module.to(torch.float64).eval()
    rng = np.random.default_rng(seed)
    energy_dev, force_dev = [], []
    for sample in samples:
        rotations = so3.haar_rotations(n_rotations, rng)
        graph, _ = make_batch([sample] * n_rotations, list(rotations), torch.float64, module_device(module))
        energies, forces, _ = energy_forces_stress(module, graph)
        e = energies.detach().cpu().numpy()
        f = np.einsum("kji,kaj->kai", rotations, forces.detach().cpu().numpy().reshape(n_rotations, -1, 3))
        energy_dev.append(e - e.mean())
        force_dev.append((f - f.mean(axis=0)).ravel())
    return {
        "energy_rms_per_cell": 1000 * float(np.sqrt(np.mean(np.concatenate(energy_dev) ** 2))),
        "force_rms": 1000 * float(np.sqrt(np.mean(np.concatenate(force_dev) ** 2))),
        "rotations": n_rotations,
    }
