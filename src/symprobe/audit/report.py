"""Writing an audit: ``audit.json`` and its figures as one set, and a few readable summary lines."""

from __future__ import annotations

from pathlib import Path

from symprobe.audit.results import AuditReport
from symprobe.figures import AUDIT_FIGURES, audit_figures
from symprobe.files import replacing_set, write_json, writing_to

RESULT_FILES = ("audit.json", *AUDIT_FIGURES)  # an audit's result set, replaced as a unit (:func:`write_results`)


def write_report(report: AuditReport | dict, path: str | Path) -> Path:
    """Write the report as JSON atomically (temporary file, then rename)."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    path = write_json(path, data)
    return path


def write_results(report: AuditReport | dict, out: str | Path) -> list[Path]:
    """Write audit.json and the figures into ``out`` as one set (:func:`~symprobe.files.replacing_set`): a
    failure while writing them (a full disk) leaves the previous set whole. Returns the paths, audit.json first."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    out = Path(out)
    with replacing_set(out, RESULT_FILES) as staging, writing_to(out):
        write_report(data, staging / "audit.json")
        figures = audit_figures(data, staging)
    return [out / "audit.json", *(out / figure.name for figure in figures)]


def own_energy_text(own: dict) -> str:
    """The model's own energy error in words that cannot mislead: the raw MAE and, where defined, the MAE after
    removing a mean offset per atom, with a word when that is not smaller."""
    raw, shifted, offset = own["energy_mae_meV"], own["energy_mae_offset_removed_meV"], own["energy_offset_meV_per_atom"]
    if raw is None:
        return "energy MAE n/a (no reference energies)"
    text = f"energy MAE {raw:.4g} meV"
    if shifted is None:
        return f"{text} (one labelled energy: removing a mean offset is undefined, it would absorb the whole error)"
    text += f" ({shifted:.4g} meV after removing a mean offset of {offset:.4g} meV/atom"
    if shifted > raw:
        text += ("; larger than the raw MAE: the offset is per atom, and the errors of these structures do not scale "
                 "with their atom counts")
    return text + ")"


def summary_text(report: AuditReport | dict) -> str:
    """A few readable lines: rotational errors, spread, torque and the model's own error with the ratio."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    s, grid = data["summary"], data["grid"]
    fmt = lambda v, unit: "n/a" if v is None else f"{v:.4g} {unit}"  # noqa: E731
    lines = [
        f"model {data['model']['name']} ({data['model']['dtype']}), {s['n_structures']} structures, "
        f"reference grid {grid['name']} ({grid['evaluations']} evaluations, degree {grid['degree']})",
        f"rotational error (raw vs averaged): energy MAE {fmt(s['rotational_energy_mae_meV'], 'meV')} per structure, "
        f"force MAE {fmt(s['rotational_force_mae_meV_per_A'], 'meV/Å')}",
        f"spread over the grid: energy std {fmt(s['energy_std_mean_meV'], 'meV')}, "
        f"force std {fmt(s['force_std_rms_meV_per_A'], 'meV/Å')}",
    ]
    if s["torque_rms_eV"] is not None:
        lines.append(f"isolated structures: RMS net torque {fmt(s['torque_rms_eV'], 'eV')}, "
                     f"RMS net force {fmt(s['net_force_rms_eV_per_A'], 'eV/Å')}")
    own = s["model_error"]
    if own is not None:
        lines.append(f"model's own error ({own['n_structures']} labelled): {own_energy_text(own)}, "
                     f"force MAE {fmt(own['force_mae_meV_per_A'], 'meV/Å')}")
        if s["force_error_ratio"] is not None:
            lines.append(f"rotational / own force error: {s['force_error_ratio']:.3g}")
    return "\n".join(lines)
