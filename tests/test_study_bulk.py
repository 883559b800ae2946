"""The bulk study for any elements (symprobe.study.bulk) on an exactly invariant Morse solid, and its pieces with known
answers: molecules from bonded connectivity, molecular axes, species pairs, the dynamics of rotating molecules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from symprobe.analysis import observables
from symprobe.structures import water_box
from symprobe.study.bulk import (
    BulkPlan,
    bulk_section,
    check_bulk,
    combine_bulk_replicas,
    replica_observables,
    run_bulk,
)
from symprobe.study.variants import REPEAT
from symprobe.testing.pair import known_answer_pair_model

# 5 replicas per set (the fewest for a conclusive null comparison); grid "i" averages an invariant model exactly
TINY = BulkPlan(steps=100, equilibration_steps=20, stride=2, npt_steps=50, npt_equilibration_steps=10, grid="i", mts_grid="i",
                n_inner=4)


def cu3au() -> Atoms:
    """A 32-atom Cu3Au cell (fcc, a = 3.75 Å), rattled by 0.02 Å."""
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)
    atoms.symbols[::4] = "Au"
    atoms.rattle(0.02, seed=1)
    return atoms


@pytest.fixture(scope="module")
def solid(tmp_path_factory):
    """(directory, result, whether a second call left the cached stages untouched) of the tiny bulk study of the Morse
    Cu3Au solid."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bulk")
    result = run_bulk(known_answer_pair_model(), cu3au(), out, plan=TINY, progress=False)
    stages = sorted((out / "stages").glob("*.json"))
    written = [path.stat().st_mtime_ns for path in stages]
    again = run_bulk(known_answer_pair_model(), cu3au(), out, plan=TINY, progress=False)
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)
    return out, result, [path.stat().st_mtime_ns for path in stages] == written


def test_invariant_solid_no_variant_differs_and_the_null_comparison_passes(solid):
    """Exactly invariant Morse model: every variant agrees with raw family-wise (NVT and NPT), the raw-repeat null
    comparison is conclusive and calibrated, and every null test carries a p-value for the run's gate."""
    from symprobe.analysis.statistics import calibration_gate

    _, result, _ = solid
    bulk_ = result["experiments"]["bulk"]
    assert result["kind"] == "bulk" and result["system"] == "Au8Cu24"
    assert set(bulk_["variants"]) == {"raw", "averaged", "random", "mts", REPEAT}
    assert {name for name in bulk_["variants"]["raw"] if name.startswith("g_")} == {"g_CuCu", "g_CuAu", "g_AuAu"}
    assert bulk_["calibration"]["conclusive"] and bulk_["calibration"]["passed"]
    for variant in ("averaged", "random", "mts"):
        assert not any(test["significant"] for test in bulk_["verdicts"][variant].values()), variant
        assert all(test["detectable_effect"] > 0 for test in bulk_["verdicts"][variant].values())
    npt = result["experiments"]["density_npt"]
    assert npt["calibration"]["passed"] and not npt["verdicts"]["averaged"]["density"]["significant"]
    assert 10.0 < npt["variants"]["raw"]["density"]["value"] < 20.0  # g/cm³ of this dense Morse solid
    assert not npt["variants"]["raw"]["settled"] and npt["variants"]["raw"]["drift"]["value"] > 0  # still compressing
    assert "had not settled" in {f["key"]: f for f in result["findings"]}["bulk_density_npt"]["evidence"]
    assert set(result["null_tests"]) == {"g_CuCu", "g_CuAu", "g_AuAu", "msd_last_Cu", "msd_last_Au", "density"}
    assert calibration_gate({"bulk": result["null_tests"]})["passed"]
    gate = result["calibration_gate"]  # Holm over the NVT and NPT null tests together, as the findings read them
    assert gate["passed"] and set(gate["adjusted_p"]) == {"bulk", "density_npt"} and gate["n_tests"] == 6
    findings = {f["key"]: f for f in result["findings"]}
    assert findings["bulk_variants_agree"]["holds"] is True and findings["bulk_density_npt"]["holds"] is True
    assert all("water" not in f["claim"] + f["evidence"] for f in result["findings"])


def test_solid_regime_and_molecules_are_stated(solid):
    """A 200 fs run of a solid is not diffusive: no D, the MSD at the longest lag instead; no molecules in a
    metal, with the reason."""
    _, result, _ = solid
    bulk_ = result["experiments"]["bulk"]
    raw = bulk_["variants"]["raw"]
    assert raw["diffusion_Cu"] is None and not raw["diffusion_regime"]["Cu"]["reached"]
    assert 0 < raw["diffusion_regime"]["Au"]["msd_at_longest_lag_A2"] < 0.1
    findings = {f["key"]: f for f in result["findings"]}
    assert findings["bulk_diffusive"]["holds"] is False and "not diffusive within the run" in findings["bulk_diffusive"]["evidence"]
    assert bulk_["molecules"]["n"] == 0 and bulk_["molecules"]["extended"] == 1
    assert findings["bulk_axis_unbiased"]["holds"] is None and "no molecules" in findings["bulk_axis_unbiased"]["evidence"]


def test_bulk_study_is_cached_and_its_section_renders(solid):
    """The second call loads the cached stages instead of rerunning them; the HTML section holds the figures, the
    comparison, density and findings tables, worded for the system."""
    out, result, untouched = solid
    assert (out / "stages" / "bulk.json").exists() and (out / "stages" / "bulk_npt.json").exists() and untouched
    section = bulk_section(result)
    assert section.count("<img") == 3 and "Bulk Au8Cu24" in section
    for table in ("bulk-comparisons", "bulk-sets", "bulk-regime", "bulk-density", "bulk-findings"):
        assert f'id="table-{table}"' in section
    assert "water" not in section.lower()


@pytest.mark.parametrize("atoms, message", [
    (molecule("CH4"), "not periodic"),
    (bulk("Cu", "fcc", a=3.6) * (2, 1, 1), "wide at its narrowest"),
    (Atoms("Cu", cell=[5, 5, 5], pbc=True), "at least two"),
])
def test_bulk_study_refuses_what_is_not_a_bulk_system(atoms, message):
    with pytest.raises(ValueError, match=message):
        check_bulk(atoms)


def test_bulk_study_refuses_elements_the_model_does_not_know(tmp_path):
    from symprobe.models.qtip4pf import qtip4pf

    with pytest.raises(ValueError, match="unknown species Cu, Au for this model"):
        run_bulk(qtip4pf(), cu3au(), tmp_path, plan=TINY, progress=False)
    assert not (tmp_path / "stages").exists()


def test_bonded_molecules_of_water_metal_and_gas():
    """Water: each H2O a molecule, none across the boundary; fcc Cu: one network through the cell; a dilute Ar lattice:
    single atoms."""
    found = observables.bonded_molecules(water_box(2, seed=0))
    assert len(found.members) == 8 and all(len(m) == 3 for m in found.members) and found.extended == 0
    metal = observables.bonded_molecules(bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2))
    assert metal.members == [] and metal.extended == 1 and metal.single_atoms == 0
    gas = observables.bonded_molecules(bulk("Ar", "sc", a=6.0) * (2, 2, 2))
    assert gas.members == [] and gas.single_atoms == 8


def test_molecular_axes_are_the_water_dipole_and_a_bond_of_methane():
    box = water_box(2, seed=0)
    triples = observables.water_molecules(box).triples
    axes = observables.molecular_axes(box.get_positions(), [t for t in triples], box.get_masses(), box.cell.array)
    dipoles = observables.dipole_directions(box.get_positions(), triples, box.cell.array)
    np.testing.assert_allclose(axes, dipoles, atol=1e-12)
    methane = molecule("CH4")
    axis = observables.molecular_axes(methane.get_positions(), [np.arange(5)], methane.get_masses())
    bond = methane.positions[1] - methane.positions[0]
    np.testing.assert_allclose(axis[0], bond / np.linalg.norm(bond), atol=1e-12)


def test_species_pairs_in_order_of_atomic_number():
    atoms = Atoms("OHHNa", positions=np.eye(4, 3) * 3, cell=[8, 8, 8], pbc=True)
    assert observables.species_pairs(atoms) == [("H", "H"), ("H", "O"), ("H", "Na"), ("O", "Na")]


def test_rotating_dimers_give_the_known_axis_correlation():
    """N2 molecules spinning at ω about z in a box: c_uu(t) = cos ωt, so the 1/e decay time is arccos(1/e)/ω; the
    atoms do not diffuse (MSD bounded by the bond)."""
    omega, dt, n_frames = 2 * np.pi / 400.0, 5.0, 120  # rad/fs, fs
    centres = np.array([[2.5, 2.5, 2.5], [7.5, 2.5, 2.5], [2.5, 7.5, 7.5], [7.5, 7.5, 7.5]])
    frames = []
    for k in range(n_frames):
        angle = omega * k * dt + np.arange(4)
        u = np.stack([np.cos(angle), np.sin(angle), np.zeros(4)], axis=1)
        positions = np.concatenate([centres - 0.55 * u, centres + 0.55 * u])
        frames.append(Atoms("N8", positions=positions, cell=[10, 10, 10], pbc=True))
    log = {"time_fs": np.arange(n_frames) * dt, "conserved_eV": np.zeros(n_frames), "temperature_K": np.full(n_frames, 300.0)}
    molecules = observables.bonded_molecules(frames[0]).members
    assert sorted(m.tolist() for m in molecules) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    replicas = [replica_observables(frames, log, dt, molecules) for _ in range(2)]
    out = combine_bulk_replicas([o for o, _ in replicas], [u for _, u in replicas])
    lags = np.asarray(out["c_uu"]["x"])
    np.testing.assert_allclose(out["c_uu"]["y"], np.cos(omega * lags), atol=1e-12)
    assert out["c_uu_decay_fs"] == pytest.approx(np.arccos(np.exp(-1)) / omega, rel=1e-3)
    assert out["diffusion_N"] is None and out["diffusion_regime"]["N"]["msd_at_longest_lag_A2"] <= 4 * 0.55**2
    assert out["axis_bias"]["testable"]


def test_quick_plan_buys_its_steps_with_the_budget():
    """Known costs: the NVT share of the budget over (cost per step of one replica per set × replicas) steps, the NPT
    share over replicas × (3 raw calls + 1 averaged call); a costly model gets the fewest steps, with its estimate."""
    from symprobe.study.bulk import (
        BUDGET_SHARES,
        QUICK_STEPS,
        make_bulk_plan,
        measure_bulk_costs,
    )

    atoms = cu3au()
    costs = {"step_s_one_replica_per_set": 0.01, "call_s": 0.002, "averaged_call_s": 0.014}
    plan = make_bulk_plan(atoms, True, costs, 100.0, seed=3)
    assert plan.steps == int(BUDGET_SHARES["nvt"] * 100.0 / 0.05) and plan.npt_steps == int(BUDGET_SHARES["npt"] * 100.0 / 0.1)
    assert plan.equilibration_steps == plan.steps // 5 and plan.timestep_fs == 1.0 and plan.seed == 3
    assert sum(plan.estimate_s.values()) <= 0.85 * 100.0 + 1e-9
    costly = make_bulk_plan(atoms, True, {k: 100 * v for k, v in costs.items()}, 100.0, seed=0)
    assert (costly.steps, costly.npt_steps) == (QUICK_STEPS[0], QUICK_STEPS[0]) and costly.estimate_s["nvt"] == 100 * 5.0
    measured = measure_bulk_costs(known_answer_pair_model(), atoms, BulkPlan(grid="i", mts_grid="i", n_inner=2))
    assert all(value > 0 for value in measured.values())
    keys = {BulkPlan().key(structure, model) for structure in (atoms, cu3au() * (2, 1, 1))
            for model in (known_answer_pair_model(), known_answer_pair_model(degree=2, amplitude=0.1))}
    assert len(keys) == 4  # cached stages are never reused for another structure or model


def test_lab_frame_term_biases_the_raw_molecular_axes_and_averaging_removes_it(tmp_path):
    """A gas of N2 dimers (cutoff 2 Å: no dimer feels another) with a lab-frame ℓ = 2 bond term of 0.5 eV: the raw
    axes are biased by about 3 kT, the averaged (group T, exact to degree 2), random and MTS runs much less; the null
    comparison passes, so the comparisons stand and the variants are found to differ."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = (np.indices((2, 2, 2)).reshape(3, -1).T + 0.5) * 6.0
    u = rng.normal(size=(8, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    gas = Atoms("N16", positions=np.concatenate([centres - 0.71 * u, centres + 0.71 * u]), cell=[12, 12, 12], pbc=True)
    plan = BulkPlan(seed=1, steps=200, equilibration_steps=40, stride=2, npt_steps=20, npt_equilibration_steps=4, grid="T",
                    mts_grid="T", n_inner=4)
    result = run_bulk(known_answer_pair_model(degree=2, amplitude=0.5, cutoff=2.0, seed=1), gas, tmp_path, plan=plan, progress=False)
    bulk_ = result["experiments"]["bulk"]
    assert bulk_["molecules"]["n"] == 8 and bulk_["calibration"]["passed"]
    raw_bias = bulk_["variants"]["raw"]["axis_bias"]["bias_kT"]["value"]
    assert raw_bias > 2.0
    for variant in ("averaged", "random", "mts"):
        assert bulk_["variants"][variant]["axis_bias"]["bias_kT"]["value"] < 0.5 * raw_bias
        assert bulk_["verdicts"][variant]["axis_bias"]["significant"]
    assert not bulk_["verdicts"][REPEAT]["axis_bias"]["significant"]
    findings = {f["key"]: f for f in result["findings"]}
    assert findings["bulk_variants_agree"]["holds"] is False and "averaged:axis_bias" in findings["bulk_variants_agree"]["evidence"]


def test_npt_runs_resume_at_the_first_unfinished_replica(tmp_path):
    """A replica whose series is lost is rerun alone, to the same densities (the MTK barostat is deterministic given
    the replica's momenta); the finished ones are read back untouched."""
    from symprobe.study.npt import density_runs

    settings = {"replicas": 2, "temperature_K": 300.0, "pressure_bar": 1.0, "timestep_fs": 1.0, "steps": 10,
                "equilibration_steps": 2, "stride": 1, "grid": "i", "seed": 0, "progress": False}
    first = density_runs(known_answer_pair_model(), cu3au(), tmp_path, **settings)
    kept = tmp_path / "raw" / "0.json"
    written = kept.stat().st_mtime_ns
    (tmp_path / "averaged" / "1.json").unlink()
    again = density_runs(known_answer_pair_model(), cu3au(), tmp_path, **settings)
    assert kept.stat().st_mtime_ns == written and (tmp_path / "averaged" / "1.json").exists()
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    assert first["variants"]["raw"]["per_replica_g_cm3"] != first["variants"]["raw-repeat"]["per_replica_g_cm3"]


def test_npt_runs_only_for_a_model_that_gives_stress():
    """ASE's TIP3P gives no stress (no barostat can drive it); the Morse model does."""
    from ase.calculators.tip3p import TIP3P

    from symprobe.models.base import CalculatorModel
    from symprobe.study.npt import gives_stress

    assert not gives_stress(CalculatorModel(TIP3P(rc=3.0)), water_box(2, seed=0))
    assert gives_stress(known_answer_pair_model(), cu3au())


def test_a_failing_null_test_withholds_the_bulk_verdicts(solid):
    """The same results with one NVT null test made significant (p = 1e-4, below the Holm level 0.05/6): the gate fails
    the NVT stage, so the agreement finding is withheld; the density keeps its verdict (its own stage passes)."""
    import copy

    from symprobe.analysis.statistics import calibration_gate
    from symprobe.study.bulk import bulk_findings
    from symprobe.study.calibration import gated

    _, result, _ = solid
    experiments = copy.deepcopy(result["experiments"])
    experiments["bulk"]["verdicts"][REPEAT]["g_CuCu"].update(p_value=1e-4, significant=True)
    gate = calibration_gate({stage: experiments[stage]["verdicts"][REPEAT] for stage in ("bulk", "density_npt")})
    assert not gate["stage_passed"]["bulk"] and gate["stage_passed"]["density_npt"]
    findings = {f["key"]: f for f in bulk_findings("Au8Cu24", gated(experiments, gate))}
    assert findings["bulk_variants_agree"]["holds"] is None and "g_CuCu" in findings["bulk_variants_agree"]["evidence"]
    assert findings["bulk_density_npt"]["holds"] is True
