"""Symmetry breaking split into its two channels, per structure and over an audit.

* **Proper rotations**: the raw prediction against the average over the grid's proper rotations,
  E(x) − Ē₊ and F(x) − F̄₊ (meV, meV/Å), with the λ ≥ 1 powers of the energy spectrum (eV²); a
  rotation-invariant model has none, whatever it does under inversion.
* **Inversion**: the rotation-averaged difference between the structure and its mirror image,
  ⟨E(R x) − E(−R x)⟩_R = Ē₊ − Ē₋ and F̄₊ − F̄₋ (forces rotated back), and the parity-odd λ = 0 power. Only
  grids with improper rotations measure it, and only chiral structures can show it (:mod:`.mirror`).

Each structure carries its round-off floor (:func:`~symprobe.audit.precision.roundoff_floor`); a channel is
broken on a structure when it exceeds ``FLOOR_FACTOR`` × that floor, in energy per atom or in forces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from symprobe.audit.mirror import why_no_inversion_signal
from symprobe.audit.precision import FLOOR_FACTOR, roundoff_floor
from symprobe.audit.results import MEV, AuditError, Channels

# Without labels, sizes are compared with this scale: the errors of a good machine-learning potential.
STATED_SCALE = {"energy_meV_per_atom": 1.0, "force_meV_per_A": 30.0}


def split_channels(atoms: Atoms, grid, energies: np.ndarray, forces: np.ndarray, raw_energy: float,
                   raw_forces: np.ndarray, precision: str) -> Channels:
    """:class:`Channels` of ``atoms`` from the predictions on ``grid`` (energies (K,) eV, forces rotated back
    (K, N, 3) eV/Å) and the raw prediction; ``precision`` is the model's ('float32', 'float64', 'unknown')."""
    proper = np.linalg.det(grid.rotations) > 0
    e_plus, f_plus, std = _proper_average(grid.weights[proper], energies[proper], forces[proper])
    deviation = raw_forces - f_plus
    inversion_e = inversion_f = None
    if not proper.all():
        e_minus, f_minus, _ = _proper_average(grid.weights[~proper], energies[~proper], forces[~proper])
        inversion_e, inversion_f = (e_plus - e_minus) * MEV, float(np.mean(np.abs(f_plus - f_minus)) * MEV)
    floor_e, floor_f = roundoff_floor(raw_energy, raw_forces, precision)
    return Channels(
        rotation_energy_deviation_meV=(raw_energy - e_plus) * MEV, rotation_energy_std_meV=std * MEV,
        rotation_force_deviation_mae_meV_per_A=float(np.mean(np.abs(deviation)) * MEV),
        rotation_force_deviation_max_meV_per_A=float(np.linalg.norm(deviation, axis=1).max() * MEV),
        inversion_energy_difference_meV=inversion_e, inversion_force_difference_mae_meV_per_A=inversion_f,
        no_inversion_signal=why_no_inversion_signal(atoms), floor_energy_meV_per_atom=floor_e, floor_force_meV_per_A=floor_f)


def _proper_average(weights: np.ndarray, energies: np.ndarray, forces: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Weighted mean energy (eV), forces (N, 3) eV/Å and energy std (eV) over one half of the grid."""
    w = weights / weights.sum()
    mean = float(w @ energies)
    return mean, np.tensordot(w, forces, axes=1), float(np.sqrt(max(float(w @ (energies - mean) ** 2), 0.0)))


def rotation_broken(c: Channels, n_atoms: int) -> bool:
    """Whether the proper-rotation channel exceeds ``FLOOR_FACTOR`` × the floor (energy per atom or forces)."""
    return (abs(c.rotation_energy_deviation_meV) / n_atoms > FLOOR_FACTOR * c.floor_energy_meV_per_atom
            or c.rotation_force_deviation_mae_meV_per_A > FLOOR_FACTOR * c.floor_force_meV_per_A)


def inversion_broken(c: Channels, n_atoms: int) -> bool:
    """Whether the inversion channel was measured and exceeds ``FLOOR_FACTOR`` × the floor."""
    if c.inversion_energy_difference_meV is None:
        return False
    return (abs(c.inversion_energy_difference_meV) / n_atoms > FLOOR_FACTOR * c.floor_energy_meV_per_atom
            or c.inversion_force_difference_mae_meV_per_A > FLOOR_FACTOR * c.floor_force_meV_per_A)


def channel_summary(results: Sequence, grid, own_error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Both channels over the audited structures (``StructureAudit`` with ``channels``): sizes, the structures
    where each is broken, the λ that carry it, and each size against the model's own error (``own_error``:
    :func:`~symprobe.audit.summary.model_error_summary`) or, without labels, against :data:`STATED_SCALE`."""
    if any(r.channels is None for r in results):  # results resumed from an audit that did not measure channels
        return None
    scale = _scale(results, own_error)
    n_atoms = sum(r.n_atoms for r in results)
    atoms_w = np.array([r.n_atoms for r in results], dtype=float)
    chans = [r.channels for r in results]
    rotation_e = float(sum(abs(c.rotation_energy_deviation_meV) for c in chans) / n_atoms)
    rotation_f = float(np.sum(atoms_w * [c.rotation_force_deviation_mae_meV_per_A for c in chans]) / n_atoms)
    out: dict[str, Any] = {
        "grid": grid.name, "floor_factor": FLOOR_FACTOR, "scale": scale,
        "floor_force_meV_per_A": max(c.floor_force_meV_per_A for c in chans),
        "floor_energy_meV_per_atom": max(c.floor_energy_meV_per_atom for c in chans),
        "rotation": {
            "energy_mae_meV_per_atom": rotation_e, "force_mae_meV_per_A": rotation_f,
            "force_max_meV_per_A": max(c.rotation_force_deviation_max_meV_per_A for c in chans),
            "energy_ratio": _ratio(rotation_e, scale["energy_meV_per_atom"]),
            "force_ratio": _ratio(rotation_f, scale["force_meV_per_A"]),
            "broken_on": [r.name for r in results if rotation_broken(r.channels, r.n_atoms)],
            "lambdas": _breaking_lambdas(results),
        },
        "inversion": _inversion_summary(results, grid, scale),
    }
    return out


def _inversion_summary(results: Sequence, grid, scale: dict[str, Any]) -> dict[str, Any]:
    chiral = [r for r in results if r.channels.no_inversion_signal is None]
    base: dict[str, Any] = {
        "measured": bool(grid.improper),
        "chiral": [r.name for r in chiral],
        "cannot_show": [{"name": r.name, "reason": r.channels.no_inversion_signal} for r in results
                        if r.channels.no_inversion_signal is not None],
        "energy_difference_mae_meV_per_atom": None, "force_difference_mae_meV_per_A": None,
        "odd_lambda0_power_eV2": None, "energy_ratio": None, "force_ratio": None, "broken_on": []}
    if not grid.improper or not chiral:
        return base
    n = sum(r.n_atoms for r in chiral)
    energy = float(sum(abs(r.channels.inversion_energy_difference_meV) for r in chiral) / n)
    force = float(sum(r.n_atoms * r.channels.inversion_force_difference_mae_meV_per_A for r in chiral) / n)
    odd = [r.spectrum.power_odd_eV2[0] for r in chiral if r.spectrum.power_odd_eV2 is not None]
    base.update(energy_difference_mae_meV_per_atom=energy, force_difference_mae_meV_per_A=force,
                odd_lambda0_power_eV2=float(np.mean(odd)) if odd else None,
                energy_ratio=_ratio(energy, scale["energy_meV_per_atom"]), force_ratio=_ratio(force, scale["force_meV_per_A"]),
                broken_on=[r.name for r in chiral if inversion_broken(r.channels, r.n_atoms)])
    return base


def _breaking_lambdas(results: Sequence) -> list[dict[str, Any]]:
    """The λ ≥ 1 of the mean energy spectrum that carry at least 1 % of its breaking power, largest first, each
    with its power (eV²), share and parity ('even', 'odd' or 'both'; None for rules without inversion)."""
    spectra = [r.spectrum for r in results]
    power = np.mean([s.power_eV2 for s in spectra], axis=0)[1:]
    odd = None if spectra[0].power_odd_eV2 is None else np.mean([s.power_odd_eV2 for s in spectra], axis=0)[1:]
    total = float(power.sum())
    if total <= 0:
        return []
    rows = []
    for k in np.argsort(-power):
        if power[k] < 0.01 * total:
            break
        parity = None if odd is None else ("odd" if odd[k] > 0.99 * power[k] else "even" if odd[k] < 0.01 * power[k] else "both")
        rows.append({"lambda": int(k + 1), "power_eV2": float(power[k]), "share": float(power[k] / total), "parity": parity})
    return rows


def _scale(results: Sequence, own: dict[str, Any] | None) -> dict[str, Any]:
    """The sizes' yardstick: the model's own energy error per atom (offset removed when two or more structures carry
    energies) and force MAE, or :data:`STATED_SCALE` where labels are missing."""
    energy = force = None
    source_e = source_f = "stated scale (no reference labels)"
    if own is not None and own.get("energy_mae_meV") is not None:
        labelled = [r for r in results if r.model_error is not None and r.model_error.energy_error_meV is not None]
        atoms = sum(r.n_atoms for r in labelled)
        if len(labelled) >= 2:
            energy = own["energy_mae_offset_removed_meV"] * len(labelled) / atoms
            source_e = f"model's own energy MAE on {len(labelled)} labelled structures, mean offset removed"
        else:
            energy = own["energy_mae_meV_per_atom"]
            source_e = "model's own energy error on the one labelled structure"
    if own is not None and own.get("force_mae_meV_per_A") is not None:
        force = own["force_mae_meV_per_A"]
        source_f = f"model's own force MAE on {own['n_structures']} labelled structures"
    return {"energy_meV_per_atom": STATED_SCALE["energy_meV_per_atom"] if energy is None else energy, "energy_source": source_e,
            "force_meV_per_A": STATED_SCALE["force_meV_per_A"] if force is None else force, "force_source": source_f}


def _ratio(size: float, scale: float) -> float | None:
    return size / scale if scale > 0 else None


def exceeds_inversion(summary: dict[str, Any], ratio: float) -> bool:
    """CI gate on the inversion channel: whether the rotation-averaged force difference between the chiral structures
    and their mirror images exceeds ``ratio`` × the model's own force error.

    Raises :class:`AuditError` when no structure carries reference forces, when the grid has no improper rotations,
    or when no structure is chiral: a gate that cannot see inversion breaking must not pass."""
    own, inversion = summary["model_error"], summary["channels"]["inversion"]
    if own is None or own["force_mae_meV_per_A"] is None:
        raise AuditError("--fail-above-inversion needs reference forces on the structures, and none carry them")
    if not inversion["measured"]:
        raise AuditError(f"--fail-above-inversion needs a grid with inversion (e.g. 3i), not {summary['channels']['grid']}")
    if not inversion["chiral"]:
        reasons = "; ".join(f"{c['name']}: {c['reason']}" for c in inversion["cannot_show"][:3])
        raise AuditError(f"--fail-above-inversion: no structure can show inversion breaking ({reasons}); add a chiral one")
    return inversion["force_difference_mae_meV_per_A"] > ratio * own["force_mae_meV_per_A"]
