"""The study report: one self-contained HTML file (figures as base64 PNG) built from ``results.json``.

:func:`write_report` renders the figures of :data:`FIGURES` and the tables of :data:`TABLES`; every number
shown comes from the results document, the paper's numbers from its ``paper`` section (cited).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable

import numpy as np
from symprobe.files import atomic_write
from symprobe.study.calibration import gated
from symprobe.pages import CSS, fmt as _fmt, png_base64 as _png, pyplot as _pyplot, table as _table
from symprobe.study.variants import REPEAT

FIGURES = ("gas_angular_momentum", "gas_torque", "gas_spectra", "gas_orientation", "liquid_rdf", "liquid_dipoles",
           "liquid_dynamics", "liquid_drift", "rotational_errors", "ice", "grid_convergence")
TABLES = ("findings", "calibration", "rotational_errors", "torque", "orientation", "drift", "mts_cost", "gas_nve", "liquid", "ice",
          "grid_convergence")
COLOURS = {"raw": "#c0392b", "averaged": "#2471a3", "random": "#7d8c8d", "mts": "#27ae60", "raw-repeat": "#e59866"}


def curve_band(ax, c: dict[str, Any], label: str, colour: str | None = None, scale: float = 1.0) -> None:
    """Draw curve ``c`` (its ``x``, ``y`` and ``error``) on ``ax`` as a line with a ±1σ band; x scaled by ``scale``."""
    x, y, e = (np.asarray(c[k], dtype=float) for k in ("x", "y", "error"))
    line, = ax.plot(x * scale, y, label=label, color=colour, lw=1.2)
    if np.any(e > 0):
        ax.fill_between(x * scale, y - e, y + e, color=line.get_color(), alpha=0.25, lw=0)


def _pm(obs: dict[str, Any] | None, digits: int = 3) -> str:
    if obs is None:
        return "–"
    text = _fmt(obs["value"], digits)
    return text if obs.get("error") is None else f"{text} ± {_fmt(obs['error'], 2)}"


# ---------------------------------------------------------------------------------------------------
# Figures


def fig_gas_angular_momentum(r: dict[str, Any]):
    """Figure: angular momentum (eV·fs) of the gas NVE variants against time (ps), from a study's ``results.json`` dict ``r``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    variants = r["experiments"]["gas_nve"]["variants"]
    for k, axis in enumerate("xyz"):
        c = variants["raw"]["L_components_molecule0"][axis]
        axes[0].plot(np.array(c["x"]) / 1000, c["y"], label=f"raw L{axis}")
    c = variants["averaged"]["L_components_molecule0"]["x"]
    axes[0].plot(np.array(c["x"]) / 1000, c["y"], "k--", label="averaged Lx")
    axes[0].set(xlabel="time (ps)", ylabel="L (eV·fs)", title="molecule 0: angular momentum")
    axes[0].legend(fontsize=7)
    for variant, data in variants.items():
        c = data["L_magnitude_molecule0"]
        axes[1].plot(np.array(c["x"]) / 1000, c["y"], label=variant, color=COLOURS.get(variant))
        curve_band(axes[2], data["L_change"], variant, COLOURS.get(variant), 1e-3)
    axes[1].set(xlabel="time (ps)", ylabel="|L| (eV·fs)", title="molecule 0: |L|")
    axes[2].set(xlabel="time (ps)", ylabel="|L(t) − L(0)| (eV·fs)", yscale="symlog", title="mean over molecules ± s.e.")
    axes[2].set_yscale("symlog", linthresh=1e-4)
    for ax in axes[1:]:
        ax.legend(fontsize=7)
    return fig


def fig_gas_torque(r: dict[str, Any]):
    """Figure: RMS torque on the molecule (eV) against evaluations per grid, from ``r``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    rows = r["experiments"]["gas_torque"]["rows"]
    floor = 1e-18
    paper_rows = [row for row in rows if row["grid"].startswith("paper-")]
    ours = [row for row in rows if not row["grid"].startswith("paper-")]
    for subset, marker, label in ((paper_rows, "o-", "this model, paper's grids"), (ours, "s", "this model, symprobe's smallest O(3) rules")):
        if subset:
            x = [row["evaluations"] for row in subset]
            y = [max(row["rms_torque"]["value"], floor) for row in subset]
            ax.loglog(x, y, marker, label=label)
    paper = r["paper"]["rms_torque_eV"]
    sizes = {"0": 1, "i": 2, "2": 18, "2i": 36, "3": 75, "3i": 150}
    ax.loglog([sizes[k] for k in paper], list(paper.values()), "k^--", label="paper (cited, Langer et al. 2024)")
    ax.set(xlabel="grid evaluations", ylabel="RMS net torque (eV)", title="isolated molecule: torque vs grid")
    ax.legend(fontsize=7)
    return fig


def fig_gas_spectra(r: dict[str, Any]):
    """Figure: vibrational power spectra of the potential V and of the breaking ΔV (cm⁻¹), from ``r``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    s = r["experiments"]["gas_spectra"]
    for key, label in (("spectrum_V", "V (raw)"), ("spectrum_dV", "ΔV = V_raw − V_avg")):
        x, y = np.array(s[key]["x"]), np.maximum(np.array(s[key]["y"]), 1e-30)
        ax.semilogy(x, y, label=label)
    ax.axvline(4000, color="grey", ls=":")
    ax.set(xlabel="wavenumber (cm⁻¹)", ylabel="power (eV²·fs)", title="power spectra along the raw NVE trajectory")
    ax.legend(fontsize=8)
    return fig


def fig_gas_orientation(r: dict[str, Any]):
    """Figure: gas-phase orientational free energy (kT) of each NVT variant, from ``r``."""
    plt = _pyplot()
    variants = r["experiments"]["gas_nvt"]["variants"]
    fig, axes = plt.subplots(1, len(variants), figsize=(4.0 * len(variants) + 1.0, 3.4), squeeze=False, sharey=True,
                             layout="constrained")
    limit = max(0.3, max(float(np.max(np.abs(data["map"]["free_energy_kT"]))) for data in variants.values()))  # one scale
    for ax, (variant, data) in zip(axes[0], variants.items()):
        m = data["map"]
        image = ax.pcolormesh(m["phi"], m["cos_theta"], np.array(m["free_energy_kT"]), cmap="RdBu_r", vmin=-limit, vmax=limit,
                              shading="auto")
        ax.set(xlabel="φ (rad)", title=f"{variant}: bias {data['harmonic']['bias_kT']['value']:.2g} kT")
    axes[0, 0].set_ylabel("cos θ")
    fig.colorbar(image, ax=axes[0, -1], label="F/kT")
    return fig


def fig_liquid_rdf(r: dict[str, Any]):
    """Figure: g_OO, g_OH and g_HH (r in Å) of each liquid variant with error bars, from ``r``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, name in zip(axes, ("g_OO", "g_OH", "g_HH")):
        for variant, data in r["experiments"]["liquid"]["variants"].items():
            curve_band(ax, data[name], variant, COLOURS.get(variant))
        ax.set(xlabel="r (Å)", ylabel=name.replace("_", "").replace("g", "g_", 1), title=name)
        ax.legend(fontsize=7)
    return fig


def fig_liquid_dipoles(r: dict[str, Any]):
    """Figure: longitudinal and transverse dipole correlations c_L, c_T of each liquid variant, from ``r``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, name in zip(axes, ("c_L", "c_T")):
        for variant, data in r["experiments"]["liquid"]["variants"].items():
            curve_band(ax, data[name], variant, COLOURS.get(variant))
        ax.axhline(0, color="grey", lw=0.5)
        ax.set(xlabel="r_OO (Å)", ylabel=name, title=f"dipole correlation {name}(r)")
        ax.legend(fontsize=7)
    return fig


def fig_liquid_dynamics(r: dict[str, Any]):
    """Figure: mean squared displacement (Å²) and orientational correlation c_uu(t) of each liquid variant against t (ps), from ``r``."""
    return liquid_dynamics_figure(r["experiments"]["liquid"]["variants"])


def liquid_dynamics_figure(variants: dict[str, Any]):
    """Figure: the MSD (Å²) and c_uu(t) of each variant (name → its ``msd_O`` and ``c_uu`` curves) against t (ps), and
    where the variants carry a ``mobility`` (the long runs), the oxygen MSD over its lag along each run."""
    plt = _pyplot()
    along = all(data.get("mobility") for data in variants.values())
    fig, axes = plt.subplots(1, 3 if along else 2, figsize=(15 if along else 10, 3.4))
    for variant, data in variants.items():
        curve_band(axes[0], data["msd_O"], variant, COLOURS.get(variant), 1e-3)
        curve_band(axes[1], data["c_uu"], variant, COLOURS.get(variant), 1e-3)
        if along:
            mobility = data["mobility"]
            axes[2].plot(np.array(mobility["window_start_fs"]) / 1000, mobility["msd_A2"], "o-", ms=3, label=variant,
                         color=COLOURS.get(variant))
    axes[0].set(xlabel="t (ps)", ylabel="MSD O (Å²)", title="oxygen mean-squared displacement")
    axes[1].set(xlabel="t (ps)", ylabel="c_uu(t)", title="orientational autocorrelation")
    if along:
        lag_ps = next(iter(variants.values()))["mobility"]["lag_fs"] / 1000
        axes[2].set(xlabel="time in the run (ps)", ylabel=f"MSD O over {lag_ps:g} ps (Å²)", title="has the liquid settled?")
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


def fig_liquid_drift(r: dict[str, Any]):
    """Figure: conserved-energy drift (meV per molecule) of each liquid variant against time (ps), from ``r``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for variant, data in r["experiments"]["liquid"]["variants"].items():
        c = data["conserved"]
        ax.plot(np.array(c["x"]) / 1000, c["y"], label=f"{variant} ({_pm(data['drift_per_500ps'], 2)} meV/H2O/500 ps)",
                color=COLOURS.get(variant))
    ax.set(xlabel="time (ps)", ylabel="conserved quantity − initial (meV/H2O)", title="liquid: conserved-quantity drift")
    ax.legend(fontsize=7)
    return fig


def fig_rotational_errors(r: dict[str, Any]):
    """Figure: rotational energy (meV) and force (meV/Å) errors against grid evaluations, ours beside the paper's, from ``r``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    table = r["experiments"]["rotational_errors"]
    sizes = {"0": 1, "i": 2, "2": 18, "2i": 36, "3": 75}
    for name, data in table["sets"].items():
        x = [row["evaluations"] for row in data["rows"]]
        axes[0].loglog(x, [max(row["energy_meV"], 1e-12) for row in data["rows"]], "o-", label=f"ours: {name}")
        axes[1].loglog(x, [max(row["force_meV_per_A"], 1e-12) for row in data["rows"]], "o-", label=f"ours: {name}")
    paper = r["paper"]["rotational_energy_error_meV"]
    for k, name in enumerate(("test cells", "bulk MD", "isolated molecule")):
        axes[0].loglog([sizes[g] for g in paper], [v[k] for v in paper.values()], "k^:", alpha=0.4 + 0.2 * k,
                       label=f"paper (cited): {name}")
    axes[0].set(xlabel="grid evaluations", ylabel="energy error (meV per structure)", title="rotational energy error")
    axes[1].set(xlabel="grid evaluations", ylabel="force error (meV/Å per component)", title="rotational force error")
    for ax in axes:
        ax.legend(fontsize=6)
    return fig


def fig_ice(r: dict[str, Any]):
    """Figure: relative energies of the ice cells (meV/H2O), raw against averaged, from ``r``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ice = r["experiments"]["ice"]
    if "relative_raw_meV_per_H2O" in ice:
        k = np.arange(len(ice["relative_raw_meV_per_H2O"]))
        ax.bar(k - 0.2, ice["relative_raw_meV_per_H2O"], 0.4, label="raw", color=COLOURS["raw"])
        ax.bar(k + 0.2, ice["relative_averaged_meV_per_H2O"], 0.4, label="averaged (2i)", color=COLOURS["averaged"])
        ax.set(xlabel="proton arrangement (cell)", ylabel="relaxed E − mean (meV/H2O)", title="ice Ih: relative energies")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, ice.get("skipped", "fewer than two cells: no relative energies"), ha="center", va="center", wrap=True,
                fontsize=8)
        ax.set_axis_off()
    return fig


def fig_grid_convergence(r: dict[str, Any]):
    """Figure: how the grid-dependent observables converge with evaluations per grid (torque, errors, ice), from ``r``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    exp, floor = r["experiments"], 1e-12
    rows = exp["gas_orientation_grid"]["rows"]
    x = [row["evaluations"] for row in rows]
    axes[0].loglog(x, [max(row["bias_kT"]["value"], floor) for row in rows], "o-", label="static profile, ℓ ≤ 2 part")
    axes[0].loglog(x, [max(row["max_kT"]["value"], floor) for row in rows], "s:", label="static profile, largest |ΔV|")
    for variant, data in exp["gas_nvt"]["variants"].items():
        if variant in ("raw", "averaged"):
            bias = data["harmonic"]["bias_kT"]
            axes[0].errorbar([1 if variant == "raw" else r["grid"]["evaluations"]], [bias["value"]], [bias["error"]], fmt="D",
                             color=COLOURS[variant], label=f"NVT map, {variant} (noise-limited)")
    axes[0].axhline(0.3, color="k", ls="--", lw=0.8, label="paper's raw bias, 0.3 kT (cited)")
    axes[0].set(xlabel="grid evaluations", ylabel="orientation bias (kT)", title="isolated molecule: orientation bias vs grid")
    axes[0].legend(fontsize=6)
    ice = exp["ice"].get("grid_convergence")
    if ice:
        y = [max(row["relative_change"]["value"], floor) for row in ice["rows"][:-1]]
        axes[1].loglog([row["evaluations"] for row in ice["rows"][:-1]], y, "o-", label=f"change from {ice['reference']}")
        axes[1].axhline(exp["ice"]["relative_spread"]["value"], color="k", lw=0.8, label="spread of the relative energies")
        axes[1].axhline(r["paper"]["ice_relative_change_meV_per_H2O"], color="k", ls="--", lw=0.8,
                        label="paper: raw vs averaged change (cited)")
        axes[1].set(xlabel="grid evaluations", ylabel="relative-energy change (meV/H2O)", title="ice Ih: relative energies vs grid")
        axes[1].legend(fontsize=6)
    else:
        axes[1].text(0.5, 0.5, exp["ice"].get("skipped", "fewer than two ice cells: no relative energies"), ha="center",
                     va="center", wrap=True, fontsize=8)
        axes[1].set_axis_off()
    return fig


FIGURE_MAKERS: dict[str, tuple[Callable, str]] = {
    "gas_angular_momentum": (fig_gas_angular_momentum, "Gas phase, NVE 0.5 fs from 300 K: angular momentum of molecule 0 "
                             "(components and |L|) and the mean change |L(t) − L(0)| over all molecules (band: standard error)."),
    "gas_torque": (fig_gas_torque, "RMS net torque of the grid-averaged model vs the number of evaluations, with the "
                   "paper's values (cited). Values at 1e-18 are at the float64 floor."),
    "gas_spectra": (fig_gas_spectra, "Power spectra of the potential V and of its non-invariant part ΔV along the raw "
                    "trajectory (Blackman-windowed autocorrelation)."),
    "gas_orientation": (fig_gas_orientation, "Orientational free energy F(cos θ, φ)/kT of the H–O–H bisector in the lab "
                        "frame (Langevin NVT 300 K); the bias in the title is the low-order (ℓ ≤ 2) estimate."),
    "liquid_rdf": (fig_liquid_rdf, "Liquid water at 300 K: radial distribution functions with block-average error bands."),
    "liquid_dipoles": (fig_liquid_dipoles, "Distance-resolved longitudinal and transverse dipole correlations."),
    "liquid_dynamics": (fig_liquid_dynamics, "Oxygen MSD and dipole orientational autocorrelation c_uu(t) (bands: "
                        "standard error over trajectory segments)."),
    "liquid_drift": (fig_liquid_drift, "Conserved quantity (including the thermostat's heat) per molecule vs time."),
    "rotational_errors": (fig_rotational_errors, "Rotational errors (mean absolute deviation from the reference grid's "
                          "average) vs grid size; ours beside the paper's (cited)."),
    "ice": (fig_ice, "Ice Ih: relative energies of proton arrangements after L-BFGS relaxation with each model."),
    "grid_convergence": (fig_grid_convergence, "Observables vs grid size at fixed geometries (float64). Left: the isolated "
                         "molecule's orientation-energy profile ΔV(u)/kT of the bisector, the noise-free first-order "
                         "counterpart of the NVT map (diamonds: the NVT maps' biases). Right: mean change of the ice "
                         "relative energies at the raw-relaxed structures from the largest grid's. Points at 1e-12 are "
                         "at the floor."),
}


# ---------------------------------------------------------------------------------------------------
# Tables


def _channel_verdicts(errors: dict[str, Any]) -> str:
    """Each set's audit verdict in words: breaking under proper rotations and under inversion apart (absent from
    results cached before channels were measured)."""
    items = [f"<li><b>{html.escape(name)}</b>: {html.escape(' '.join(data['verdict']))}</li>"
             for name, data in errors["sets"].items() if data.get("verdict")]
    return (f"<p>Breaking by channel, on the {html.escape(errors['reference'])} grid:</p><ul>{''.join(items)}</ul>"
            if items else "")


def _tables(r: dict[str, Any]) -> dict[str, str]:
    paper, exp = r["paper"], gated(r["experiments"], r.get("calibration_gate"))
    tables: dict[str, str] = {}
    rows = [[f["claim"], "not tested" if f["holds"] is None else ("holds" if f["holds"] else "does NOT hold"),
             html.escape(f["evidence"])] for f in r["findings"]]
    tables["findings"] = _table("findings", "The paper's qualitative findings tested on this model", ["finding", "here", "evidence"], rows)

    rows = [[stage, html.escape(name), _fmt(chi2), _fmt(c["family"]["adjusted_p"].get(name)), "yes" if c["passed"] else "NO",
             f"{c['false_alarms']} of {c['n_tests']}"]
            for stage, c in ((stage, exp[stage].get("calibration")) for stage in ("gas_nve", "gas_nvt", "liquid")) if c
            for name, chi2 in c["chi2_per_dof"].items()]
    gate = r.get("calibration_gate")
    correction = gate["correction"] if gate else "Bonferroni within each stage"
    tables["calibration"] = _table("calibration", "Null comparisons: the raw model run twice (own seeds, own starting structures) "
                                   f"and compared like two variants, p-values corrected by {correction}; a stage that fails "
                                   "issues no verdicts",
                                   ["stage", "observable", "χ²/dof (≈ 1)", "adjusted p", "stage passes", "individually significant"],
                                   rows)

    rows = []
    names = {"test cells": 0, "bulk MD": 1, "isolated molecule": 2}
    for name, data in exp["rotational_errors"]["sets"].items():
        for row in data["rows"]:
            pe = paper["rotational_energy_error_meV"].get(row["grid"], [None] * 3)[names[name]]
            pf = paper["rotational_force_error_meV_per_A"].get(row["grid"], [None] * 3)[names[name]]
            rows.append([name, row["grid"], row["evaluations"], row["energy_meV"], pe, row["force_meV_per_A"], pf])
    tables["rotational_errors"] = _table(
        "rotational_errors", f"Rotational errors against the {exp['rotational_errors']['reference']} average "
        "(energy per cell/molecule, forces per component); paper: cited, against 3i (150)",
        ["structures", "grid", "evaluations", "energy (meV) ours", "energy (meV) paper", "force (meV/Å) ours",
         "force (meV/Å) paper"], rows) + _channel_verdicts(exp["rotational_errors"])

    rows = [[row["grid"], row["evaluations"], row["degree"], _pm(row["rms_torque"]),
             paper["rms_torque_eV"].get(row["grid"].removeprefix("paper-")) if row["grid"].startswith("paper-") else None]
            for row in exp["gas_torque"]["rows"]]
    tables["torque"] = _table("torque", "RMS net torque (eV) of the isolated molecule vs grid; paper: cited",
                              ["grid", "evaluations", "degree", "ours (eV)", "paper (eV)"], rows)

    rows = []
    for variant, data in exp["gas_nvt"]["variants"].items():
        rows.append(["gas molecule", variant, _pm(data["harmonic"]["bias_kT"]), data["harmonic"]["p_value"],
                     _pm(data["map_max_deviation"]), _pm(data["map_noise"]), paper["gas_orientation_bias_kT"].get(variant, "–")])
    pooled = exp["gas_nvt"].get("raw_pooled")
    if pooled:
        rows.append(["gas molecule", f"raw and raw-repeat pooled ({pooled['n_molecules']} molecules)", _pm(pooled["bias_kT"]),
                     pooled["p_value"], "–", "–", paper["gas_orientation_bias_kT"]["raw"]])
    for variant, data in exp["liquid"]["variants"].items():
        bias = data["dipole_bias"]
        rows.append(["liquid dipoles", variant, _pm(bias["bias_kT"]),
                     bias["p_value"] if bias.get("testable", True) else "not tested: molecules have not reoriented",
                     _pm(data["dipole_map_max_deviation"]), _pm(data["dipole_map_noise"]), paper["liquid_dipole_bias_kT"]])
    tables["orientation"] = _table("orientation", "Orientation bias in kT: low-order (ℓ ≤ 2) estimate with bootstrap error, its "
                                   "Hotelling T² p-value against a flat map, and the KDE map's largest |F| beside its noise level",
                                   ["system", "variant", "bias ℓ≤2 (kT)", "p (flat)", "map max |F| (kT)", "map noise (kT)",
                                    "paper (kT, cited)"], rows)

    tables["grid_convergence"] = _grid_convergence_table(exp)

    rows = [[variant, _pm(data["drift_per_500ps"]), paper["drift_meV_per_H2O_per_500ps"].get(variant, "–"),
             _pm(data["temperature"])] for variant, data in exp["liquid"]["variants"].items()]
    tables["drift"] = _table("drift", "Liquid conserved-quantity drift extrapolated to 500 ps (meV per H2O); paper: cited",
                             ["variant", "ours", "paper", "temperature (K)"], rows)

    m = r["mts_cost"]
    tables["mts_cost"] = _table("mts_cost", "Cost of MTS molecular dynamics relative to raw MD",
                                ["", "ours measured", "ours from call costs", "paper (cited)"],
                                [[f"MTS, correction over the {m['grid']} grid ({m['grid_evaluations']} copies per call) every {m['n_inner']} steps",
                                  m["measured_x_raw"], m["estimated_x_raw"], m["paper_x_raw"]]])

    rows = [[variant, _pm(d["L_change_final"]), _pm(d["L_magnitude_mean"]), _pm(d["energy_drift_per_molecule"]),
             d["duration_ps"]] for variant, d in exp["gas_nve"]["variants"].items()]
    tables["gas_nve"] = _table("gas_nve", f"Gas-phase NVE, {exp['gas_nve']['n_molecules']} isolated molecules "
                               f"(paper, cited: L components swing by ≈ ±{paper['gas_L_swing_eV_fs']} eV·fs over "
                               f"{paper['gas_L_duration_ps']} ps with raw, |L| ≈ {paper['gas_L_magnitude_eV_fs']} eV·fs)",
                               ["variant", "|L(T) − L(0)| (eV·fs)", "mean |L| (eV·fs)", "energy drift (meV/ps/molecule)",
                                "duration (ps)"], rows)

    rows = []
    for variant, d in exp["liquid"]["variants"].items():
        regime = d.get("diffusion_regime", {})
        diffusion = (f"{_pm(d['diffusion'])} (fit {_fmt(regime['fit_window_fs'][0])}–{_fmt(regime['fit_window_fs'][1])} fs)"
                     if d["diffusion"] is not None else
                     f"not reached in this run (MSD {_fmt(regime.get('msd_at_longest_lag_A2'))} Å² at {_fmt(regime.get('longest_lag_fs'))} fs)")
        decay = d.get("c_uu_decay_fs")
        at_paper = d.get("c_uu_at_paper_lag")
        rows.append([variant, diffusion, f"{_pm(d['c_uu_last'])} at {_fmt(d['c_uu_last_lag_fs'])} fs",
                     _pm(at_paper) if at_paper else "lag not reached", _fmt(decay) if decay is not None else "not covered",
                     d["n_frames"], d["n_molecules"]])
    rows.append(["paper (cited)", paper["liquid_diffusion_1e-5_cm2_s"], "–", paper["liquid_c_uu_2ps"], "–", "–", 512])
    tables["liquid"] = _table("liquid", "Liquid water: diffusion coefficient (1e-5 cm²/s, fitted only in the diffusive regime) "
                              "and c_uu (the paper's value is at 2000 fs)",
                              ["variant", "D", "c_uu at the last lag", "c_uu at 2000 fs", "c_uu 1/e time (fs)", "frames",
                               "molecules"], rows)
    liquid_exp = exp["liquid"]
    calibration = liquid_exp.get("calibration")
    verdict_rows = [[variant, name, html.escape(test["verdict"])] for variant, row in liquid_exp.get("verdicts", {}).items()
                    for name, test in row.items()]
    caption = "Liquid verdicts: each variant against raw (95 % confidence); raw-repeat is the null comparison"
    if calibration is not None:
        caption += (f". Null calibration: {calibration['verdict']} ({calibration['false_alarms']} of {calibration['n_tests']} "
                    "null tests significant)")
    if liquid_exp.get("withheld"):
        caption += ". The verdicts are withheld."
    tables["liquid"] += _table("liquid_verdicts", caption, ["variant", "observable", "verdict"], verdict_rows)

    ice = exp["ice"]
    if "cells" in ice:
        rows = [[c["cell"], c["difference_eV_per_atom"], c["relaxation_difference_eV_per_atom"], c["steps_raw"], c["steps_averaged"],
                 c["fmax_raw"]] for c in ice["cells"]]
        rows.append(["mean |·| (paper, cited)", paper["ice_energy_difference_eV_per_atom"],
                     paper["ice_relaxation_difference_eV_per_atom"], "–", "–", "–"])
        if "relative_change" in ice:
            rows.append(["relative energies: change vs spread (meV/H2O)", _pm(ice["relative_change"]), _pm(ice["relative_spread"]),
                         "–", "–", "–"])
            if "relative_change_same_geometry" in ice:
                rows.append(["relative energies at the raw-relaxed geometries: change (meV/H2O)",
                             _pm(ice["relative_change_same_geometry"]), "–", "–", "–", "–"])
            rows.append(["paper (cited)", paper["ice_relative_change_meV_per_H2O"], paper["ice_relative_spread_meV_per_H2O"],
                         "–", "–", "–"])
        tables["ice"] = _table("ice", f"Ice Ih, {ice['source']}: raw − averaged energies (eV/atom)",
                               ["cell", "E raw − E avg", "relaxation-energy difference", "L-BFGS steps raw", "steps avg",
                                "final max force raw (eV/Å)"], rows)
    else:
        tables["ice"] = _table("ice", "Ice Ih", ["status"], [[html.escape(ice["skipped"])]])
    return tables


def _grid_convergence_table(exp: dict[str, Any]) -> str:
    """Every grid-dependent observable per paper grid: torque, orientation profile, ice relative energies and
    the rotational errors of the bulk MD frames (those bound the change of the liquid observables)."""
    by_grid: dict[str, dict[str, Any]] = {}

    def entry(grid: str, row: dict[str, Any]) -> dict[str, Any]:
        return by_grid.setdefault(grid, {"evaluations": row["evaluations"], "degree": row.get("degree")})

    for row in exp["gas_torque"]["rows"]:
        entry(row["grid"], row)["torque"] = _pm(row["rms_torque"])
    for row in exp["gas_orientation_grid"]["rows"]:
        entry(row["grid"], row).update(bias=_pm(row["bias_kT"]), max=_pm(row["max_kT"]))
    ice = exp["ice"].get("grid_convergence", {"rows": []})
    for row in ice["rows"]:
        entry(row["grid"], row)["ice"] = _pm(row["relative_change"])
    for row in exp["rotational_errors"]["sets"].get("bulk MD", {"rows": []})["rows"]:
        entry(f"paper-{row['grid']}", row).update(energy=row["energy_meV"], force=row["force_meV_per_A"])
    rows = [[name, e["evaluations"], e["degree"], e.get("torque", "–"), e.get("bias", "–"), e.get("max", "–"), e.get("ice", "–"),
             e.get("energy", "–"), e.get("force", "–")]
            for name, e in sorted(by_grid.items(), key=lambda item: (item[1]["evaluations"], item[0])) if name.startswith("paper-")]
    return _table("grid_convergence", "Convergence with grid size (the paper's grids): RMS torque on the isolated molecule; "
                  "its orientation-energy profile (ℓ ≤ 2 bias and largest |ΔV|, kT); change of the ice relative energies from "
                  f"{ice.get('reference', '–')}; rotational errors of the bulk MD frames against "
                  f"{exp['rotational_errors']['reference']} (the liquid observables move with these forces)",
                  ["grid", "evaluations", "degree", "torque (eV)", "orientation bias ℓ≤2 (kT)", "largest |ΔV| (kT)",
                   "ice relative change (meV/H2O)", "bulk energy error (meV/cell)", "bulk force error (meV/Å)"], rows)


def _agreement(r: dict[str, Any]) -> str:
    """Plain-language agreement with the paper, with numbers."""
    exp, paper = r["experiments"], r["paper"]
    items = []
    for f in r["findings"]:
        state = "not tested" if f["holds"] is None else ("agrees with the paper" if f["holds"] else "differs from the paper")
        items.append(f"<li><b>{html.escape(f['claim'])}</b>: {state}. {html.escape(f['evidence'])}.</li>")
    torque = {row["grid"]: row["rms_torque"]["value"] for row in exp["gas_torque"]["rows"]}
    items.append(f"<li>Raw RMS torque {torque['paper-0']:.3g} eV here vs {paper['rms_torque_eV']['0']:g} eV in the paper "
                 f"(cited); with the 2i grid {torque['paper-2i']:.3g} eV vs {paper['rms_torque_eV']['2i']:g} eV.</li>")
    s = exp["gas_spectra"]
    items.append(f"<li>ΔV lies {s['orders_of_magnitude_below_V']['value']:.2g} decades below V below 4000 cm⁻¹ "
                 f"(paper: {paper['dV_orders_below_V'][0]}–{paper['dV_orders_below_V'][1]}); "
                 f"{100 * s['dV_share_below_4000']['value']:.3g} % of ΔV's power lies below 4000 cm⁻¹.</li>")
    m = r["mts_cost"]
    if m["measured_x_raw"] is not None:
        items.append(f"<li>MTS cost {m['measured_x_raw']:.2g}× raw MD here (from call costs {m['estimated_x_raw']:.2g}×) vs "
                     f"{m['paper_x_raw']}× in the paper.</li>")
    return "<ul>" + "".join(items) + "</ul>"


def long_liquid_diffusion(data: dict[str, Any]) -> str:
    """D of one long run (1e-5 cm²/s) in words: from the diffusive regime, else its upper bound, else not reached."""
    regime, bound = data["diffusion_regime"], data.get("diffusion_bound")
    if regime["reached"]:
        return _pm(data["diffusion"])
    at = f"{regime['msd_at_longest_lag_A2']:.3g} Å² at {regime['longest_lag_fs'] / 1000:.3g} ps"
    if bound is None:
        return f"not reached (MSD {at})"
    return (f"below {_pm(bound)}: diffusive regime not reached, MSD/6t at the longest lag ({at}; local exponent "
            f"{bound['local_exponent']:.2f}, still falling)")


def long_liquid_decay(data: dict[str, Any]) -> str:
    """The c_uu decay of one long run (fs) in words: the 1/e time, else the slow tail's time constant, else not reached."""
    if data["c_uu_decay"] is not None:
        return f"1/e at {_pm(data['c_uu_decay'])}"
    tail = data.get("c_uu_tail")
    if tail is None:
        return "not reached"
    return f"1/e not reached; tail exp(−t/τ), τ = {_pm(tail)} (fitted {tail['window_fs'][0] / 1000:g}–{tail['window_fs'][1] / 1000:.3g} ps)"


def long_liquid_verdict(tests: dict[str, Any], variant: str) -> str:
    """A long run's verdicts against raw in words (the second raw run's: the null check)."""
    words = "; ".join(f"{name}: {html.escape(test['verdict'])}" for name, test in tests.items() if test is not None)
    if words:
        return f"null check (same variant, another seed): {words}" if variant == REPEAT else words
    return "reference" if variant == "raw" else "no test: a quantity was not reached"


def long_liquid_section(summary: dict[str, Any]) -> str:
    """The long liquid runs (:func:`symprobe.study.liquid_long.summarise`) as an HTML section: D from the diffusive
    regime beside the paper's (else its upper bound), the c_uu 1/e decay time (else its tail's time constant), and each
    variant's verdict against raw with the smallest difference the runs could have seen."""
    paper_d = summary["paper"]["diffusion_1e-5_cm2_s"]
    rows = []
    for variant, data in summary["variants"].items():
        rows.append([variant, long_liquid_diffusion(data), f"{paper_d:g} (paper)", long_liquid_decay(data), _pm(data["temperature"]),
                     long_liquid_verdict(summary["verdicts"].get(variant, {}), variant)])
    table = _table("liquid_long", "Long liquid runs: D (1e-5 cm²/s) and the c_uu decay (fs); each variant against raw",
                   ["variant", "D (1e-5 cm²/s)", "D, paper", "c_uu decay (fs)", "T (K)", "verdict against raw"], rows)
    image = _png(liquid_dynamics_figure(summary["variants"]))
    calibration = summary.get("calibration")
    checked = f"<p>Error bars: {html.escape(calibration['verdict'])} (raw against {REPEAT}).</p>" if calibration else ""
    drifting = {variant: data["mobility"] for variant, data in summary["variants"].items()
                if data.get("mobility") and data["mobility"]["stationary"] is False}
    if drifting:
        checked += ("<p class='note'>Not settled: the oxygen MSD over 1 ps still changes along the kept part of "
                    + ", ".join(f"{html.escape(v)} (first half / second half {m['kept_halves_ratio']:.2g}; "
                                f"{m['msd_A2'][0]:.2g} Å² in the first ps, {m['msd_A2'][-1]:.2g} Å² in the last)" for v, m in drifting.items())
                    + ": the liquid is still relaxing, or its mobility fluctuates over times comparable to the run, so D and "
                    "the c_uu decay from these runs describe that, not the settled liquid; longer runs (with more of their "
                    "start discarded, if it still relaxes) are needed.</p>")
    return (f"<h2 id='liquid-long'>Long liquid runs</h2><p>{summary['n_molecules']} H2O, {summary['length_ps']:g} ps per variant "
            f"(the first {summary['equilibration_ps']:g} ps discarded), {html.escape(summary['thermostat'])}, MTS "
            f"{html.escape(summary['mts'])}; errors from {html.escape(summary['errors_from'])}.</p>{checked}"
            f"<figure id='figure-liquid-long'><img alt='liquid_long' src='data:image/png;base64,{image}'>"
            "<figcaption>Oxygen MSD and dipole autocorrelation c_uu(t) of the long runs.</figcaption></figure>" + table)


def render_report(results: dict[str, Any]) -> str:
    """The report as an HTML string (figures embedded as base64 PNG)."""
    model, exp = results["model"], results["experiments"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>symprobe study: {html.escape(model['name'])}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>symprobe study of {html.escape(model['name'])}</h1>",
             f"<p>Model spec <code>{html.escape(str(model['spec']))}</code>, evaluated in {html.escape(model['dtype'])}; "
             f"{results['mode']} mode; symmetrized with the paper's {results['grid']['label']} grid "
             f"({results['grid']['evaluations']} evaluations, exact to degree {results['grid']['degree']}); verdicts at "
             f"{100 * results['confidence']:g} % confidence.</p>"]
    if results.get("note"):
        parts.append(f"<p class='note'>{html.escape(results['note'])}</p>")
    if results["mode"] == "quick":
        parts.append("<p class='note'>Quick mode: the runs are short (sized to finish in minutes on 2 CPU cores), so "
                     f"statistical errors are large and time-correlation functions are truncated: gas NVE "
                     f"{exp['gas_nve']['variants']['raw']['duration_ps']:.3g} ps, liquid "
                     f"{exp['liquid']['steps'] * 0.5 / 1000:.3g} ps per variant with {exp['liquid']['n_molecules']} molecules "
                     f"(paper: 25 ps, 5 ns with 512). Block errors from such short runs can underestimate the true error.</p>")
    parts.append(f"<p class='cite'>Numbers marked “paper” are cited from {html.escape(results['paper']['citation'])}, not "
                 "computed here.</p>")
    tables = _tables(results)
    parts.append("<h2>Agreement with the paper</h2>" + _agreement(results) + tables["findings"] + tables["calibration"])
    sections = [("Gas-phase molecule", ["gas_angular_momentum", "gas_torque", "gas_spectra", "gas_orientation"],
                 ["gas_nve", "torque", "orientation"]),
                ("Liquid water", ["liquid_rdf", "liquid_dipoles", "liquid_dynamics", "liquid_drift"], ["liquid", "drift", "mts_cost"]),
                ("Rotational errors", ["rotational_errors"], ["rotational_errors"]),
                ("Ice Ih", ["ice"], ["ice"]),
                ("Convergence with grid size", ["grid_convergence"], ["grid_convergence"])]
    for title, figures, table_names in sections:
        parts.append(f"<h2>{title}</h2>")
        if title == "Liquid water":
            liquid_exp = exp["liquid"]
            starts = [liquid_exp["start"]] if isinstance(liquid_exp["start"], str) else liquid_exp["start"]
            repeats = liquid_exp.get("repeat_start") or []
            parts.append(f"<p>Each variant runs from {len(starts)} independent box(es): {html.escape('; '.join(starts))}. "
                         + (f"The null comparison (raw-repeat) runs from others: {html.escape('; '.join(repeats))}. " if repeats else "")
                         + f"{html.escape(liquid_exp['thermostat'])}; {liquid_exp['equilibration_steps']} steps discarded as "
                         "equilibration.</p>")
        for name in figures:
            maker, caption = FIGURE_MAKERS[name]
            parts.append(f"<figure id='figure-{name}'><img alt='{name}' src='data:image/png;base64,{_png(maker(results))}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.extend(tables[t] for t in table_names)
    if "liquid_long" in exp:
        parts.append(long_liquid_section(exp["liquid_long"]))
    control = exp.get("control", {})
    parts.append("<h2>Control: the invariant twin</h2>")
    if "skipped" in control:
        parts.append(f"<p>{html.escape(control['skipped'])}</p>")
    else:
        raw = control["gas_nve"]["variants"]["raw"]
        torque = control["torque"]["rows"][0]["rms_torque"]
        parts.append(f"<p id='control'>{html.escape(control['model']['name'])} (exactly invariant by construction, a control the "
                     f"paper did not have): |L(T) − L(0)| = {_pm(raw['L_change_final'])} eV·fs after {raw['duration_ps']:.3g} ps "
                     f"of NVE without any averaging; raw RMS torque {_pm(torque)} eV.</p>")
    timings = "".join(f"<li>{html.escape(k)}: {v:.0f} s</li>" for k, v in results["timings_s"].items())
    parts.append(f"<h2>Timings</h2><ul>{timings}</ul></body></html>")
    return "\n".join(parts)


def write_report(results: dict[str, Any], path: str | Path) -> Path:
    """Render the report of a results document and write it atomically to ``path``."""
    path = Path(path)
    atomic_write(path, render_report(results))
    return path
