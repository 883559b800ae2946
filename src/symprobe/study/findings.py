"""The paper's qualitative findings, each tested on a study's results: holds True/False/None, with its evidence."""

from __future__ import annotations

from typing import Any

from symprobe.analysis import statistics
from symprobe.study.calibration import gated, run_gate
from symprobe.study.variants import REPEAT

RESOLUTION_KT = 0.15  # an orientation verdict needs the bias error below half the paper's 0.3 kT


def findings(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's qualitative findings, each tested on our results: holds True/False, with evidence. A stage's verdicts
    are withheld when it fails the run's calibration gate (:mod:`.calibration`)."""
    results = gated(results, run_gate(results))
    out: list[dict[str, Any]] = []

    def add(key: str, claim: str, holds: bool | None, evidence: str) -> None:
        out.append({"id": key, "claim": claim, "holds": holds, "evidence": evidence})

    nve_stage = results["gas_nve"]
    nve = nve_stage["variants"]
    nve_withheld = _withheld(nve_stage)
    raw, avg = nve["raw"]["L_change_final"], nve["averaged"]["L_change_final"]
    n = nve_stage["n_molecules"]
    test = statistics.difference_significance(raw["value"], raw["error"] or 0.0, avg["value"], avg["error"] or 0.0, dof=n - 1)
    add("gas_angular_momentum_drifts_raw", "An isolated molecule's angular momentum is not conserved with the raw model",
        None if nve_withheld else bool(test["significant"] and raw["value"] > avg["value"]),
        nve_withheld + f"|L(t)−L(0)| after {nve['raw']['duration_ps']:.3g} ps: raw {raw['value']:.3g} ± {raw['error'] or 0:.2g} eV·fs, "
        f"averaged {avg['value']:.3g} ± {avg['error'] or 0:.2g} eV·fs ({test['verdict']})" + _null_note(nve_stage))
    add("gas_angular_momentum_fixed_by_averaging", "Grid averaging restores angular-momentum conservation",
        None if nve_withheld else bool(avg["value"] < 0.1 * raw["value"]),
        nve_withheld + f"averaged/raw change ratio {avg['value'] / max(raw['value'], 1e-300):.2g}")
    mts = nve["mts"]["L_change_final"]
    add("gas_mts_reproduces_averaged", "MTS reproduces the averaged model's conservation of L (gas)",
        None if nve_withheld else bool(mts["value"] < 0.1 * raw["value"]),
        nve_withheld + f"MTS change {mts['value']:.3g} eV·fs vs raw {raw['value']:.3g} and averaged {avg['value']:.3g}")
    nvt_stage = results["gas_nvt"]
    nvt = nvt_stage["variants"]
    nvt_withheld = _withheld(nvt_stage)
    static = {row["grid"]: row["bias_kT"] for row in results.get("gas_orientation_grid", {}).get("rows", [])}

    def orientation(key: str, claim: str, h: dict[str, Any], flat_expected: bool, who: str, grid: str | None) -> None:
        """A verdict on an orientation map's low-order bias ``h``; None when withheld or too noisy for RESOLUTION_KT."""
        bias = h["bias_kT"]
        detectable = statistics.detectable_effect(bias["error"]) if bias["error"] is not None else None
        holds = True if h["significant"] != flat_expected else (
            None if detectable is None or bias["error"] > RESOLUTION_KT else False)
        evidence = (f"{who}low-order bias {bias['value']:.3g} ± {bias['error']:.2g} kT, Hotelling T² p = {h['p_value']:.2g}"
                    + ("" if detectable is None else f"; detects a bias ≥ {detectable:.2g} kT with 80 % power")
                    + ("" if h["significant"] or detectable is None or bias["error"] <= RESOLUTION_KT else
                       f"; inconclusive: the noise is too large to resolve {RESOLUTION_KT} kT"))
        if grid is not None and grid in static:
            evidence += f"; static orientation-energy profile {static[grid]['value']:.2g} ± {static[grid]['error']:.1g} kT"
        add(key, claim, None if nvt_withheld else holds, nvt_withheld + evidence + _null_note(nvt_stage))

    pooled = nvt_stage.get("raw_pooled")
    orientation("gas_orientation_not_flat_raw", "The raw model's gas-phase orientation map is not flat",
                pooled or nvt["raw"]["harmonic"], False,
                f"raw and raw-repeat pooled ({pooled['n_molecules']} molecules): " if pooled else "", "paper-0")
    orientation("gas_orientation_flat_averaged", "The averaged model's orientation map is flat within noise",
                nvt["averaged"]["harmonic"], True, "", "paper-2i")
    if "paper-0" in static and "paper-2i" in static:
        raw_profile, averaged_profile = static["paper-0"], static["paper-2i"]
        add("gas_orientation_energy_flat_averaged",
            "The 2i grid average flattens the molecule's orientation-energy profile (static, noise-free)",
            bool(averaged_profile["value"] < 0.01 * raw_profile["value"]),
            f"low-order profile bias raw {raw_profile['value']:.3g} ± {raw_profile['error']:.1g} kT, "
            f"2i {averaged_profile['value']:.2g} ± {averaged_profile['error']:.1g} kT")
    if "mts" in nvt:
        orientation("gas_orientation_flat_mts", "MTS gives a flat orientation map, as the averaged model does",
                    nvt["mts"]["harmonic"], True, "", None)
    torque = {row["grid"]: row["rms_torque"]["value"] for row in results["gas_torque"]["rows"]}
    add("torque_falls_with_grid", "RMS torque falls by more than 10x from raw to the 2i grid",
        bool(torque["paper-2i"] < 0.1 * torque["paper-0"]),
        f"raw {torque['paper-0']:.3g} eV, 2i {torque['paper-2i']:.3g} eV")
    liquid_results = results["liquid"]
    verdicts = {v: row for v, row in liquid_results.get("verdicts", {}).items() if v != REPEAT}
    tests = {f"{v}:{name}": test for v, row in verdicts.items() for name, test in row.items()}
    alone = [name for name, test in tests.items() if test["significant"]]
    family = statistics.family_significance(tests) if tests else None
    calibration = liquid_results.get("calibration")
    claim = "Bulk-liquid observables of raw, averaged (MTS) and random-rotation runs agree within errors"
    if family is None:
        add("liquid_indistinguishable", claim, None, "no comparisons")
    elif calibration is not None and not calibration["passed"]:
        add("liquid_indistinguishable", claim, None, f"no verdict: the null comparison (raw against a second raw set) is "
            f"{calibration['verdict']}")
    else:
        not_equivalent = [name for name, test in tests.items() if not test.get("equivalent", False)]
        add("liquid_indistinguishable", claim, not family["significant"],
            f"{family['n_tests']} comparisons, family-wise at 95 % confidence (Bonferroni over comparisons): "
            f"significant: {', '.join(family['significant']) or 'none'}; individually significant at 95 %: {', '.join(alone) or 'none'}"
            + "".join(f" ({name}: family-wise p = {family['adjusted_p'][name]:.2g})" for name in alone)
            + ("; null comparison " + calibration["verdict"] if calibration else "; no null comparison")
            + f"; equivalence within the stated margins not shown for: {', '.join(not_equivalent) or 'none'}")
    ice = results["ice"]
    if "relative_change" in ice:
        # unconverged relaxations follow different paths: then compare the two models at identical geometries
        converged = ice.get("converged", True) or "relative_change_same_geometry" not in ice
        change = ice["relative_change" if converged else "relative_change_same_geometry"]["value"]
        spread = ice["relative_spread"]["value"]
        how = "after relaxing with each model" if converged else (
            f"at the raw-relaxed geometries (relaxations stopped at {ice['max_steps']} steps, short of "
            f"{ice['fmax_eV_per_A']} eV/Å; after the two relaxations: {ice['relative_change']['value']:.3g})")
        add("ice_relative_energies_unchanged", "Averaging changes ice relative energies far less than their spread",
            bool(change < 0.1 * spread), f"change {change:.3g} meV/H2O {how} vs spread {spread:.3g} meV/H2O")
    else:
        add("ice_relative_energies_unchanged", "Averaging changes ice relative energies far less than their spread", None,
            ice.get("skipped", "fewer than two cells"))
    return out


def _withheld(stage: dict[str, Any]) -> str:
    """Why a stage's verdicts are withheld (its null comparison failed), or "" when they stand."""
    calibration = stage.get("calibration")
    if calibration is None or calibration["passed"]:
        return ""
    return f"no verdict: the null comparison (raw against a second raw set) is {calibration['verdict']}; "


def _null_note(stage: dict[str, Any]) -> str:
    """The null comparison's χ²/dof, as evidence beside a verdict."""
    calibration = stage.get("calibration")
    if calibration is None:
        return "; no null comparison"
    chi2 = ", ".join(f"{name} {value:.2g}" for name, value in calibration["chi2_per_dof"].items())
    return f"; null comparison {'passed' if calibration['passed'] else 'failed'} (χ²/dof: {chi2})"
