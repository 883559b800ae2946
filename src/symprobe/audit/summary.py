"""Summaries over the audited structures: pooled rotational errors (meV, meV/Å, meV/Å³), spread, torque (eV),
mean spectrum (eV²), the model's own error, the convergence table, and the CI gate :func:`exceeds`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from symprobe.audit.results import AuditError, AuditReport, GridInfo, StructureAudit


def summarize(results: Sequence[StructureAudit]) -> dict[str, Any]:
    """Summary over structures: the rotational errors, spread, torque, spectrum and the model's own error."""
    n_atoms = sum(r.n_atoms for r in results)
    dev_e = np.array([r.energy_deviation_meV for r in results])
    # force statistics pooled over all atoms and components: weight each structure by its atom count
    atoms_w = np.array([r.n_atoms for r in results], dtype=float)
    force_mae = float(np.sum(atoms_w * [r.force_deviation_mae_meV_per_A for r in results]) / n_atoms)
    force_rmse = float(np.sqrt(np.sum(atoms_w * np.square([r.force_deviation_rms_meV_per_A for r in results])) / n_atoms))
    isolated = [r for r in results if r.torque_rms_eV is not None]
    stressed = [r for r in results if r.stress_deviation_rms_meV_per_A3 is not None]
    rms = lambda values: float(np.sqrt(np.mean(np.square(values))))  # noqa: E731
    spectra = [r.spectrum for r in results]
    mean_of = lambda rows: None if rows[0] is None else np.mean(rows, axis=0).tolist()  # noqa: E731
    summary: dict[str, Any] = {
        "n_structures": len(results),
        "n_atoms": n_atoms,
        "rotational_energy_mae_meV": float(np.mean(np.abs(dev_e))),
        "rotational_energy_mae_meV_per_atom": float(np.sum(np.abs(dev_e)) / n_atoms),
        "rotational_energy_max_meV": float(np.max(np.abs(dev_e))),
        "rotational_force_mae_meV_per_A": force_mae,
        "rotational_force_rmse_meV_per_A": force_rmse,
        "rotational_force_max_meV_per_A": float(max(r.force_deviation_max_meV_per_A for r in results)),
        "energy_std_mean_meV": float(np.mean([r.energy_std_meV for r in results])),
        "force_std_rms_meV_per_A": rms([r.force_std_meV_per_A for r in results]),
        "rotational_stress_rms_meV_per_A3": rms([r.stress_deviation_rms_meV_per_A3 for r in stressed]) if stressed else None,
        "net_force_rms_eV_per_A": rms([r.net_force_rms_eV_per_A for r in isolated]) if isolated else None,
        "torque_rms_eV": rms([r.torque_rms_eV for r in isolated]) if isolated else None,
        "spectrum_mean_power_eV2": mean_of([s.power_eV2 for s in spectra]),
        "spectrum_mean_power_even_eV2": mean_of([s.power_even_eV2 for s in spectra]),
        "spectrum_mean_power_odd_eV2": mean_of([s.power_odd_eV2 for s in spectra]),
        "spectrum_mean_breaking_power_eV2": float(np.mean([s.breaking_power() for s in spectra])),
    }
    summary["model_error"] = model_error_summary(results)
    own = summary["model_error"]
    summary["force_error_ratio"] = (
        force_mae / own["force_mae_meV_per_A"]
        if own is not None and own["force_mae_meV_per_A"] not in (None, 0.0)
        else None
    )
    return summary


def model_error_summary(results: Sequence[StructureAudit]) -> dict[str, Any] | None:
    """The model's own error over the labelled structures, or None when no structure has labels.

    Energies are also given after removing the mean offset per atom (``energy_offset_meV_per_atom``):
    models fitted to another reference (e.g. q-TIP4P/F against DFT) sit on a different absolute scale,
    and only the offset-removed errors compare with the rotational error. With one labelled energy the offset
    absorbs the whole error, so the offset-removed values are None (undefined), not 0.
    """
    labelled = [r for r in results if r.model_error is not None]
    if not labelled:
        return None
    with_energy = [r for r in labelled if r.model_error.energy_error_meV is not None]
    with_forces = [r for r in labelled if r.model_error.force_mae_meV_per_A is not None]
    out: dict[str, Any] = {"n_structures": len(labelled)}
    if with_energy:
        err = np.array([r.model_error.energy_error_meV for r in with_energy])
        n = np.array([r.n_atoms for r in with_energy], dtype=float)
        offset = float(err.sum() / n.sum())
        shifted = err - offset * n
        defined = len(err) > 1
        out.update(
            energy_mae_meV=float(np.mean(np.abs(err))),
            energy_rmse_meV=float(np.sqrt(np.mean(err**2))),
            energy_mae_meV_per_atom=float(np.sum(np.abs(err)) / n.sum()),
            energy_offset_meV_per_atom=offset if defined else None,
            energy_mae_offset_removed_meV=float(np.mean(np.abs(shifted))) if defined else None,
            energy_rmse_offset_removed_meV=float(np.sqrt(np.mean(shifted**2))) if defined else None,
        )
    else:
        out.update(dict.fromkeys(
            ["energy_mae_meV", "energy_rmse_meV", "energy_mae_meV_per_atom", "energy_offset_meV_per_atom",
             "energy_mae_offset_removed_meV", "energy_rmse_offset_removed_meV"]
        ))
    if with_forces:
        n = np.array([r.n_atoms for r in with_forces], dtype=float)
        mae = np.array([r.model_error.force_mae_meV_per_A for r in with_forces])
        rmse = np.array([r.model_error.force_rmse_meV_per_A for r in with_forces])
        out.update(
            force_mae_meV_per_A=float(np.sum(n * mae) / n.sum()),
            force_rmse_meV_per_A=float(np.sqrt(np.sum(n * rmse**2) / n.sum())),
        )
    else:
        out.update(force_mae_meV_per_A=None, force_rmse_meV_per_A=None)
    return out


def convergence_table(
    results: Sequence[StructureAudit], grids: Sequence[GridInfo], reference: GridInfo
) -> list[dict[str, Any]]:
    """Per convergence grid: evaluations, mean |ΔĒ| (meV/structure), pooled force MAE (meV/Å) against the
    reference grid's average, and the RMS net torque of the averaged forces over isolated structures."""
    n_atoms = np.array([r.n_atoms for r in results], dtype=float)
    table = []
    for c, info in enumerate(grids):
        points = [r.convergence[c] for r in results]
        torques = [p.torque_eV for p in points if p.torque_eV is not None]
        table.append(
            {
                "grid": info.name,
                "evaluations": info.evaluations,
                "degree": info.degree,
                "improper": info.improper,
                "paper_grid": info.name.startswith("paper-"),
                "reference": reference.name,
                "energy_mae_meV": float(np.mean([p.energy_error_meV for p in points])),
                "force_mae_meV_per_A": float(np.sum(n_atoms * [p.force_mae_meV_per_A for p in points]) / n_atoms.sum()),
                "torque_rms_eV": float(np.sqrt(np.mean(np.square(torques)))) if torques else None,
            }
        )
    return table


def exceeds(report: AuditReport | dict, ratio: float) -> bool:
    """Whether the rotational force error exceeds ``ratio`` × the model's own force error (CI gate).

    Raises :class:`AuditError` when the structures carry no reference forces (the gate needs them).
    """
    summary = report.summary if isinstance(report, AuditReport) else report["summary"]
    own = summary["model_error"]
    if own is None or own["force_mae_meV_per_A"] is None:
        raise AuditError("--fail-above needs reference forces on the structures, and none carry them")
    return summary["rotational_force_mae_meV_per_A"] > ratio * own["force_mae_meV_per_A"]
