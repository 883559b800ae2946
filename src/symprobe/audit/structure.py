"""The audit of one structure: one batched ``predict_rotated`` call on every rotation it needs, then the
rotational errors (meV, meV/Å, meV/Å³), spread, net force (eV/Å) and torque (eV), spectrum, grid convergence
and the model's own error; and the estimated wall time (s) of auditing many structures."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.analysis.observables import net_torque
from symprobe.audit.channels import split_channels
from symprobe.audit.grids import _unique_rotations, spectrum_grid
from symprobe.audit.precision import model_dtype
from symprobe.audit.results import MEV, AuditError, GridPoint, ModelError, StructureAudit
from symprobe.audit.spectrum import energy_spectrum
from symprobe.models.base import BatchPrediction, Model
from symprobe.structures import StructureError, check_structure, reference_labels, structure_label


def _weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.tensordot(weights, values, axes=1)


def _weighted_std(weights: np.ndarray, values: np.ndarray, mean: np.ndarray) -> float:
    """RMS over all components of the weighted std over the first axis."""
    var = np.tensordot(weights, (values - mean) ** 2, axes=1)
    return float(np.sqrt(max(float(np.mean(var)), 0.0)))


def _net_force_and_torque(atoms: Atoms, forces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Net force (..., 3) eV/Å and net torque about the centre of mass (..., 3) eV of forces (..., N, 3)."""
    return forces.sum(axis=-2), net_torque(atoms.get_positions(), forces, atoms.get_masses())


def _model_error(atoms: Atoms, energy: float, forces: np.ndarray, label: str) -> ModelError | None:
    e_ref, f_ref = reference_labels(atoms)
    if e_ref is None and f_ref is None:
        return None
    energy_error = None if e_ref is None else (energy - e_ref) * MEV
    mae = rmse = None
    if f_ref is not None:
        if f_ref.shape != forces.shape:
            raise AuditError(f"{label}: reference forces have shape {f_ref.shape}, expected {forces.shape}")
        diff = forces - f_ref
        mae, rmse = float(np.mean(np.abs(diff)) * MEV), float(np.sqrt(np.mean(diff**2)) * MEV)
    return ModelError(e_ref, energy_error, mae, rmse)


def audit_structure(
    model: Model,
    atoms: Atoms,
    grid,
    lmax: int = 2,
    convergence_grids: Sequence = (),
    spectrum_rule=None,
    index: int = 0,
) -> StructureAudit:
    """Audit one structure on the reference quadrature ``grid``.

    ``convergence_grids`` are compared with ``grid``; ``spectrum_rule`` defaults to :func:`spectrum_grid`.
    Raises :class:`~symprobe.structures.StructureError` for bad input and :class:`AuditError` when the
    model returns non-finite values, both naming the structure.
    """
    grid = so3.get(grid)
    convergence_grids = [so3.get(g) for g in convergence_grids]
    spectrum_rule = spectrum_rule if spectrum_rule is not None else spectrum_grid(lmax, grid.improper, grid)
    label = structure_label(atoms, index)
    check_structure(atoms, label=label, species=model.species)

    rules = [grid, spectrum_rule, *convergence_grids]
    stacked = np.concatenate([np.eye(3)[None]] + [q.rotations for q in rules])
    unique, where = _unique_rotations(stacked)
    batch = _predict(model, atoms, unique, label)
    _check_finite(batch, label)
    bounds = np.cumsum([1] + [len(q) for q in rules])  # row 0 of ``stacked`` is the identity
    ref_rows, spectrum_rows, *convergence_rows = [where[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    raw = where[0]
    e_raw, f_raw = float(batch.energies[raw]), batch.forces[raw]

    def average(q, rows):
        e = float(_weighted_mean(q.weights, batch.energies[rows]))
        f = _weighted_mean(q.weights, batch.forces[rows])
        s = None if batch.stress is None else _weighted_mean(q.weights, batch.stress[rows])
        return e, f, s

    e_sym, f_sym, s_sym = average(grid, ref_rows)
    energies = batch.energies[ref_rows]
    force_dev = f_raw - f_sym
    per_atom = np.linalg.norm(force_dev, axis=1)

    stress_dev_rms = stress_std = None
    if batch.stress is not None and atoms.pbc.all():
        stress_dev_rms = float(np.sqrt(np.mean((batch.stress[raw] - s_sym) ** 2)) * MEV)
        stress_std = _weighted_std(grid.weights, batch.stress[ref_rows], s_sym) * MEV

    isolated = not atoms.pbc.any()
    torque_fields: dict[str, float | None] = dict.fromkeys(
        ["net_force_raw_eV_per_A", "net_force_rms_eV_per_A", "torque_raw_eV", "torque_rms_eV", "torque_symmetrized_eV"]
    )
    if isolated:
        net, torque = _net_force_and_torque(atoms, batch.forces[ref_rows])
        net_raw, torque_raw = _net_force_and_torque(atoms, f_raw)
        _, torque_sym = _net_force_and_torque(atoms, f_sym)
        torque_fields = {
            "net_force_raw_eV_per_A": float(np.linalg.norm(net_raw)),
            "net_force_rms_eV_per_A": float(np.sqrt(grid.weights @ np.sum(net**2, axis=1))),
            "torque_raw_eV": float(np.linalg.norm(torque_raw)),
            "torque_rms_eV": float(np.sqrt(grid.weights @ np.sum(torque**2, axis=1))),
            "torque_symmetrized_eV": float(np.linalg.norm(torque_sym)),
        }

    spectrum = energy_spectrum(batch.energies[spectrum_rows], spectrum_rule, lmax)

    convergence = []
    for q, rows in zip(convergence_grids, convergence_rows):
        e_q, f_q, _ = average(q, rows)
        torque_q = float(np.linalg.norm(_net_force_and_torque(atoms, f_q)[1])) if isolated else None
        convergence.append(
            GridPoint(q.name, abs(e_q - e_sym) * MEV, float(np.mean(np.abs(f_q - f_sym)) * MEV), torque_q)
        )

    return StructureAudit(
        index=index,
        name=label,
        formula=atoms.get_chemical_formula(),
        n_atoms=len(atoms),
        periodic=bool(atoms.pbc.all()),
        energy_raw_eV=e_raw,
        energy_symmetrized_eV=e_sym,
        energy_deviation_meV=(e_raw - e_sym) * MEV,
        energy_std_meV=_weighted_std(grid.weights, energies, e_sym) * MEV,
        energies_eV=energies.tolist(),
        force_deviation_mae_meV_per_A=float(np.mean(np.abs(force_dev)) * MEV),
        force_deviation_rms_meV_per_A=float(np.sqrt(np.mean(force_dev**2)) * MEV),
        force_deviation_max_meV_per_A=float(per_atom.max() * MEV),
        force_deviation_per_atom_meV_per_A=(per_atom * MEV).tolist(),
        force_std_meV_per_A=_weighted_std(grid.weights, batch.forces[ref_rows], f_sym) * MEV,
        stress_deviation_rms_meV_per_A3=stress_dev_rms,
        stress_std_meV_per_A3=stress_std,
        spectrum=spectrum,
        convergence=convergence,
        model_error=_model_error(atoms, e_raw, f_raw, label),
        channels=split_channels(atoms, grid, energies, batch.forces[ref_rows], e_raw, f_raw, model_dtype(model)),
        **torque_fields,
    )


def _predict(model: Model, atoms: Atoms, rotations: np.ndarray, label: str) -> BatchPrediction:
    """``model.predict_rotated``; a model that refuses the structure (e.g. a broken molecule) raises
    :class:`AuditError` naming it."""
    try:
        return model.predict_rotated(atoms, rotations)
    except StructureError:
        raise
    except (ValueError, RuntimeError) as error:
        raise AuditError(f"{label}: model {getattr(model, 'name', '')!r} failed: {error}") from error


def estimated_seconds(model: Model, structures: Sequence[Atoms], per_structure: int, sample: int = 8) -> tuple[float, float]:
    """(estimated wall time of auditing ``structures`` with ``per_structure`` evaluations each, time of the
    one timed call), both in s: one call of ``sample`` rotated copies of the largest structure (where the cost
    per atom is least dominated by fixed overheads), scaled linearly to every structure's atoms and evaluations."""
    import time

    largest = max(structures, key=len)
    rotations = so3.haar_rotations(min(sample, per_structure), np.random.default_rng(0))
    begin = time.perf_counter()
    _predict(model, largest, rotations, structure_label(largest))
    seconds = time.perf_counter() - begin
    per_atom_evaluation = seconds / (len(rotations) * len(largest))
    return per_atom_evaluation * per_structure * sum(len(atoms) for atoms in structures), seconds


def _check_finite(batch: BatchPrediction, label: str) -> None:
    bad = ~np.isfinite(batch.energies) | ~np.isfinite(batch.forces).all(axis=(1, 2))
    if batch.stress is not None:
        bad |= ~np.isfinite(batch.stress).all(axis=(1, 2))
    if bad.any():
        raise AuditError(f"{label}: the model returned NaN or infinite values for {int(bad.sum())} of {len(bad)} rotated copies")
