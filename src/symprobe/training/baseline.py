"""The composition baseline: per-species reference energies (eV/atom) fitted by least squares, re-fitted
on the energy residuals during training and on the training set for a saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from symprobe.checks import ConfigError
from symprobe.models.pet import PETModule, load_module, save_model
from symprobe.training.data import Sample, make_batch, module_device


def fit_baseline(samples: Sequence[Sample], species: Sequence[int]) -> tuple[np.ndarray, float]:
    """Per-species reference energies (eV/atom) by least squares on composition, and the energy scale
    (eV): the RMS force component (eV/Å) × 1 Å, so the network's output is of order one."""
    species = list(species)
    unknown = sorted({int(z) for s in samples for z in s.numbers} - set(species))
    if unknown:
        raise ConfigError(f"training data contains species {unknown} not in model.species {species}")
    counts = np.array([[np.sum(s.numbers == z) for z in species] for s in samples], dtype=np.float64)
    energies = np.array([s.energy for s in samples])
    reference = np.linalg.lstsq(counts, energies, rcond=None)[0]
    scale = float(np.sqrt(np.mean(np.concatenate([s.forces.ravel() for s in samples]) ** 2)))
    return reference, scale


def refit_baseline(module: PETModule, samples: Sequence[Sample], residuals: Sequence[float]) -> None:
    """Shift the per-species reference energies by the least-squares fit of the energy residuals
    E_ref − E_pred (eV) on composition, so the composition offset tracks the network's drift."""
    counts = np.array([[np.sum(s.numbers == z) for z in module.species] for s in samples], dtype=np.float64)
    shift = np.linalg.lstsq(counts, np.asarray(residuals, dtype=np.float64), rcond=None)[0]
    with torch.no_grad():
        energy = module.core.species_energy
        energy += torch.as_tensor(shift, dtype=energy.dtype, device=energy.device)


def refit_offset(module: PETModule, samples: Sequence[Sample], dtype: torch.dtype, batch_size: int = 4) -> None:
    """Re-fit the composition offset of ``module`` on the un-rotated ``samples`` (energies in eV)."""
    residuals = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            graph, labels = make_batch(samples[start : start + batch_size], None, dtype, module_device(module))
            residuals.extend((labels["energy"] - module(graph)).double().tolist())
    refit_baseline(module, samples, residuals)


def refit_best(path: Path, train_set: Sequence[Sample], dtype: torch.dtype, device: torch.device | str = "cpu",
               batch_size: int = 4) -> dict[str, Any]:
    """Re-fit the composition offset of the saved model at ``path`` on the (un-rotated) training set, on
    ``device``, and save it again; returns its card. During training the offset is fitted on residuals gathered
    while the weights change, which lags behind the network."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    module = load_module(path).to(dtype).to(device).eval()
    refit_offset(module, train_set, dtype, batch_size)
    card = {**data.get("card", {}), "baseline_refit_on_train": True}
    save_model(module, path, card=card)
    return card
