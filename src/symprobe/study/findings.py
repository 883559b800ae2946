"""The paper's qualitative findings, each tested on a study's results: holds True/False/None, with its evidence."""

from __future__ import annotations

from typing import Any

from symprobe.analysis import statistics
from symprobe.study.variants import REPEAT

RESOLUTION_KT = 0.15  # an orientation verdict needs the bias error below half the paper's 0.3 kT


def findings(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's qualitative findings, each tested on our results: holds True/False, with evidence."""
    out: list[dict[str, Any]] = []

    def add(key: str, claim: str, holds: bool | None, evidence: str) -> None:
        out.append({"id": key, "claim": claim, "holds": holds, "evidence": evidence})

    nve = results["gas_nve"]["variants"]
    raw, avg = nve["raw"]["L_change_final"], nve["averaged"]["L_change_final"]
    n = results["gas_nve"]["n_molecules"]
    test = statistics.difference_significance(raw["value"], raw["error"] or 0.0, avg["value"], avg["error"] or 0.0, dof=n - 1)
    add("gas_angular_momentum_drifts_raw", "An isolated molecule's angular momentum is not conserved with the raw model",
        bool(test["significant"] and raw["value"] > avg["value"]),
        f"|L(t)−L(0)| after {nve['raw']['duration_ps']:.3g} ps: raw {raw['value']:.3g} ± {raw['error'] or 0:.2g} eV·fs, "
        f"averaged {avg['value']:.3g} ± {avg['error'] or 0:.2g} eV·fs ({test['verdict']})")
    add("gas_angular_momentum_fixed_by_averaging", "Grid averaging restores angular-momentum conservation",
        bool(avg["value"] < 0.1 * raw["value"]),
        f"averaged/raw change ratio {avg['value'] / max(raw['value'], 1e-300):.2g}")
    mts = nve["mts"]["L_change_final"]
    add("gas_mts_reproduces_averaged", "MTS reproduces the averaged model's conservation of L (gas)",
        bool(mts["value"] < 0.1 * raw["value"]),
        f"MTS change {mts['value']:.3g} eV·fs vs raw {raw['value']:.3g} and averaged {avg['value']:.3g}")
    nvt = results["gas_nvt"]["variants"]
    h_raw, h_avg = nvt["raw"]["harmonic"], nvt["averaged"]["harmonic"]

    def resolved(h: dict[str, Any], flat_expected: bool) -> bool | None:
        """The verdict, or None when the run cannot resolve a bias of half the paper's 0.3 kT."""
        if h["significant"] != flat_expected:
            return True
        return None if h["bias_kT"]["error"] is None or h["bias_kT"]["error"] > RESOLUTION_KT else False

    static = {row["grid"]: row["bias_kT"] for row in results.get("gas_orientation_grid", {}).get("rows", [])}

    def static_profile(grid: str) -> str:
        """The noise-free static-profile bias of ``grid``, as supporting evidence (it does not enter the verdict)."""
        b = static.get(grid)
        return "" if b is None else f"; static orientation-energy profile {b['value']:.2g} ± {b['error']:.1g} kT"

    add("gas_orientation_not_flat_raw", "The raw model's gas-phase orientation map is not flat", resolved(h_raw, False),
        f"low-order bias {h_raw['bias_kT']['value']:.3g} ± {h_raw['bias_kT']['error']:.2g} kT, Hotelling T² p = {h_raw['p_value']:.2g}"
        + ("" if h_raw["significant"] or h_raw["bias_kT"]["error"] <= RESOLUTION_KT else
           f"; inconclusive: the run is too short to resolve {RESOLUTION_KT} kT") + static_profile("paper-0"))
    add("gas_orientation_flat_averaged", "The averaged model's orientation map is flat within noise", resolved(h_avg, True),
        f"low-order bias {h_avg['bias_kT']['value']:.3g} ± {h_avg['bias_kT']['error']:.2g} kT, Hotelling T² p = {h_avg['p_value']:.2g}"
        + ("" if h_avg["significant"] or h_avg["bias_kT"]["error"] <= RESOLUTION_KT else
           f"; flat within this noise, which is too large to resolve {RESOLUTION_KT} kT") + static_profile("paper-2i"))
    if "paper-0" in static and "paper-2i" in static:
        raw_profile, averaged_profile = static["paper-0"], static["paper-2i"]
        add("gas_orientation_energy_flat_averaged",
            "The 2i grid average flattens the molecule's orientation-energy profile (static, noise-free)",
            bool(averaged_profile["value"] < 0.01 * raw_profile["value"]),
            f"low-order profile bias raw {raw_profile['value']:.3g} ± {raw_profile['error']:.1g} kT, "
            f"2i {averaged_profile['value']:.2g} ± {averaged_profile['error']:.1g} kT")
    if "mts" in nvt:
        h_mts = nvt["mts"]["harmonic"]
        add("gas_orientation_flat_mts", "MTS gives a flat orientation map, as the averaged model does", resolved(h_mts, True),
            f"low-order bias {h_mts['bias_kT']['value']:.3g} ± {h_mts['bias_kT']['error']:.2g} kT, Hotelling T² p = {h_mts['p_value']:.2g}")
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
