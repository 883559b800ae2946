"""The bench as one self-contained HTML page: a table across models, one table per model, and the walk's
force differences against the angle between successive orientations."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from symprobe.files import atomic_write
from symprobe.pages import CSS, png_base64, pyplot, table


def breaking_amplitude(audit_row: dict[str, Any]) -> float:
    """RMS over orientations of the energy's symmetry-breaking part (λ ≥ 1 and parity-odd λ = 0) in meV/atom:
    the square root of its λ power, on the audit's spectrum rule. The invariant part (λ = 0, the energy itself) is
    left out, so the value compares with the walk's |ΔE| and with the model's own energy error."""
    power, odd = audit_row["spectrum_power_eV2"], audit_row["spectrum_odd_power_eV2"]
    breaking = sum(power[1:]) + (odd[0] if odd else 0.0)
    return 1000.0 * float(np.sqrt(max(breaking, 0.0))) / audit_row["n_atoms"]


def walk_figure(result: dict[str, Any]):
    """Force differences between successive orientations of the walk against their angle, one colour per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, bench in result["models"].items():
        angles = [a for row in bench["structures"].values() for a in row["walk"]["relative_angle_deg"]]
        forces = [max(f, 1e-12) for row in bench["structures"].values() for f in row["walk"]["dF_meV_per_A"]]
        if angles:
            ax.scatter(angles, forces, s=6, alpha=0.5, label=name)
    ax.set(xscale="log", yscale="log", xlabel="angle between successive orientations (°)",
           ylabel="force MAE between them (meV/Å)", title="ml-peg walk: all structures (values below 1e-12 drawn at 1e-12)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, markerscale=2)
    return fig


def render_bench(result: dict[str, Any]) -> str:
    """The page as an HTML string."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>symprobe bench</title><style>{CSS}</style></head><body>",
             "<h1>symprobe bench</h1>",
             f"<p>Audit on the {html.escape(result['grid'])} grid (float as each model runs). ml-peg's rotational metric "
             f"(its <code>physicality/rotational_symmetry</code> benchmark): the structure is turned through a walk of "
             f"{result['walk_orientations']} orientations and successive orientations are compared, |ΔE| per atom and ΔF, "
             "the force MAE between them in a common frame; an invariant model gives zero. The floor ΔF is the larger "
             "of two terms, and the column <i>floor set by</i> says which: the largest force difference under a "
             "translation or a permutation of the atoms (zero in exact arithmetic), or round-off, 10 ε × the larger of "
             "the RMS force and |E|/N per Å at the model's precision ε (rotated inputs round differently even where "
             f"translations and permutations round alike). A model breaks symmetry above its floor on a structure when "
             f"the walk's mean ΔF exceeds {result['floor_factor']:g} × the floor. The breaking amplitude is the RMS over "
             "orientations of the energy's non-invariant part (λ ≥ 1 and parity-odd λ = 0 of the audit's spectrum).</p>"]
    summary = []
    for name, bench in result["models"].items():
        overall = bench["walk_overall"] or {}
        floors = [row["floor"]["dF_meV_per_A"] for row in bench["structures"].values()]
        summary.append([name, len(bench["structures"]), ", ".join(s["structure"] for s in bench["skipped"]) or "–",
                        overall.get("mean_dE_meV_per_atom"), overall.get("max_dE_meV_per_atom"), overall.get("mean_dF_meV_per_A"),
                        overall.get("max_dF_meV_per_A"), float(np.median(floors)) if floors else None,
                        ", ".join(bench["breaks_above_floor"]) or "none"])
    parts.append(table("bench-summary", "Across models (ml-peg metric over all structures a model takes)",
                       ["model", "structures", "skipped (species)", "mean |ΔE| (meV/atom)", "max |ΔE| (meV/atom)",
                        "mean ΔF (meV/Å)", "max ΔF (meV/Å)", "median floor ΔF (meV/Å)", "above its floor on"], summary))
    parts.append(f"<figure><img alt='walk' src='data:image/png;base64,{png_base64(walk_figure(result))}'></figure>")
    for name, bench in result["models"].items():
        rows = [[structure, row["audit"]["n_atoms"], row["audit"]["energy_deviation_meV_per_atom"],
                 row["audit"]["force_deviation_rms_meV_per_A"], row["audit"]["stress_deviation_rms_meV_per_A3"],
                 row["audit"]["torque_raw_eV"], row["audit"]["torque_symmetrized_eV"], breaking_amplitude(row["audit"]),
                 row["walk"]["mean_dF_meV_per_A"], row["walk"]["max_dF_meV_per_A"], row["floor"]["dF_meV_per_A"],
                 row["floor"].get("set_by", "–"), row["above_floor"]]
                for structure, row in bench["structures"].items()]
        parts.append(table(f"bench-{name}", f"{name}: per structure",
                           ["structure", "atoms", "E − Ē (meV/atom)", "F − F̄ RMS (meV/Å)", "σ − σ̄ RMS (meV/Å³)", "torque raw (eV)",
                            "torque averaged (eV)", "breaking amplitude (meV/atom)", "walk mean ΔF (meV/Å)", "walk max ΔF (meV/Å)",
                            "floor ΔF (meV/Å)", "floor set by", "above floor"], rows))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_bench(result: dict[str, Any], path: str | Path) -> Path:
    """Render and write the page atomically."""
    path = Path(path)
    atomic_write(path, render_bench(result))
    return path
