"""The study pipeline on the known-answer model (q-TIP4P/F + ℓ = 1, 2 anisotropic term) with tiny runs:
stage caching and resumption, the results document, and the paper's qualitative findings."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from symprobe import study
from symprobe.study import gas

TINY = dict(quick=True, gas_nve_molecules=6, gas_nve_steps=200, gas_nvt_molecules=8, gas_nvt_steps=400, gas_bandwidth=0.3,
            torque_samples=4, orientation_snapshots=2, liquid_n_per_side=3, liquid_shared_512=False, liquid_pre_steps=20, liquid_steps=60,
            liquid_equilibration=10, liquid_stride=2, error_reference="3", error_cells=1, ice_frames=(2, 3), ice_fmax=0.5,
            ice_max_steps=2, mts_grid="T", liquid_replicas=2)  # MTS over the 12-rotation group T (exact to the known term's degree 2)


_TINY_STUDY: dict = {}


def tiny_study(tmp_path_factory):
    """A tiny study, first interrupted after the gas NVE stage, then resumed to the end; computed once per
    test session (test_report uses it too): (directory, gas_nve stage file after the interruption, results)."""
    if "result" not in _TINY_STUDY:
        torch.set_num_threads(1)
        out = tmp_path_factory.getbasetemp() / "tiny-study"
        model = study.known_answer_model()
        partial = study.run_study(model, out, plan=study.Plan(**TINY), progress=False, stop_after="gas_nve")
        assert set(partial) == {"gas_nve"} and not (out / "results.json").exists()
        first = json.loads((out / "stages" / "gas_nve.json").read_text())
        results = study.run_study(model, out, plan=study.Plan(**TINY), progress=False)
        _TINY_STUDY["result"] = (out, first, results)
    return _TINY_STUDY["result"]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return tiny_study(tmp_path_factory)


def test_finished_stage_is_not_recomputed(study_dir):
    out, first, results = study_dir
    again = json.loads((out / "stages" / "gas_nve.json").read_text())
    assert again == first  # same stored seconds and result: loaded, not recomputed
    assert results["experiments"]["gas_nve"] == first["result"]
    assert results["timings_s"]["gas_nve"] == first["seconds"]


def test_rerun_loads_every_stage_from_cache(study_dir, monkeypatch):
    out, _, results = study_dir

    def refuse(*args, **kwargs):
        raise AssertionError("an MD run was started although every stage is cached")

    monkeypatch.setattr("symprobe.md.run.run_batched", refuse)
    again = study.run_study(study.known_answer_model(), out, plan=study.Plan(**TINY), progress=False)
    assert again["experiments"] == results["experiments"]


def _walk(value, path="$"):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _walk(v, f"{path}[{k}]")
    else:
        yield path, value


def test_results_json_follows_schema_without_nan(study_dir):
    out, _, _ = study_dir
    text = (out / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    for path, value in _walk(data):
        if isinstance(value, float):
            assert math.isfinite(value), path
    assert data["schema"] == study.SCHEMA
    assert set(data) >= {"schema", "mode", "model", "grid", "variants", "confidence", "plan", "costs_s_per_call", "experiments",
                         "mts_cost", "findings", "paper", "timings_s"}
    assert data["paper"]["citation"].startswith("Langer, Pozdnyakov & Ceriotti")
    assert data["grid"]["evaluations"] == 36
    assert (data["mts_cost"]["grid"], data["mts_cost"]["grid_evaluations"]) == ("T", 12)  # T holds the identity
    assert set(data["experiments"]) == set(study.STAGES) - {"costs"}
    for _, observable in _walk_scalars(data["experiments"]):
        assert set(observable) == {"value", "error", "unit"}
    for variant, d in data["experiments"]["liquid"]["variants"].items():
        for name in ("g_OO", "g_OH", "g_HH", "c_L", "c_T", "msd_O", "c_uu"):
            c = d[name]
            assert len(c["x"]) == len(c["y"]) == len(c["error"]) > 0, (variant, name)


def _walk_scalars(value, path="$"):
    if isinstance(value, dict):
        if "value" in value and "unit" in value:
            yield path, value
            return
        for k, v in value.items():
            yield from _walk_scalars(v, f"{path}.{k}")


def test_known_answer_findings(study_dir):
    """The paper's findings on a model with known symmetry breaking, exactly removed by the 2i grid."""
    _, _, results = study_dir
    exp = results["experiments"]
    nve = exp["gas_nve"]["variants"]
    assert nve["raw"]["L_change_final"]["value"] > 0.1  # eV·fs: torques of ≈ 0.02 eV act on the molecules
    assert nve["averaged"]["L_change_final"]["value"] < 1e-5  # exactly invariant average: Verlet conserves L
    assert nve["mts"]["L_change_final"]["value"] < 0.05 * nve["raw"]["L_change_final"]["value"]
    torque = {row["grid"]: row["rms_torque"]["value"] for row in exp["gas_torque"]["rows"]}
    assert torque["paper-0"] > 1e-3 and torque["paper-2i"] < 1e-12 and torque["paper-i"] > 1e-3  # ℓ = 1, 2 survive inversion alone
    by_id = {f["id"]: f for f in results["findings"]}
    assert by_id["gas_angular_momentum_fixed_by_averaging"]["holds"] is True
    assert by_id["gas_mts_reproduces_averaged"]["holds"] is True
    assert exp["gas_nvt"]["variants"]["mts"]["engine"] == "batched" and "gas_orientation_flat_mts" in by_id
    assert by_id["torque_falls_with_grid"]["holds"] is True
    assert by_id["gas_orientation_energy_flat_averaged"]["holds"] is True  # ℓ ≤ 2 terms: exactly removed by 2i
    liquid = exp["liquid"]
    assert liquid["replicas"] == {"raw": 2, "mts": 2, "random": 2, "raw-repeat": 2}
    assert liquid["variants"]["raw"]["errors_from"] == "replicas" and len(liquid["variants"]["raw"]["g_OO"]["blocks"]) == 2
    calibration = liquid["calibration"]  # 2 replicas per set: too few for a conclusive null comparison
    assert not calibration["conclusive"] and not calibration["passed"] and liquid["withheld"]
    liquid_finding = by_id["liquid_indistinguishable"]
    assert liquid_finding["holds"] is None and "inconclusive" in liquid_finding["evidence"]
    errors = exp["rotational_errors"]["sets"]["isolated molecule"]["rows"]
    by_grid = {row["grid"]: row for row in errors}
    assert by_grid["0"]["energy_meV"] > 1.0 and by_grid["2i"]["energy_meV"] < 1e-6


def _liquid_variant(rng, shift: float = 0.0, replicas: int = 5) -> dict:
    """Synthetic liquid observables of ``replicas`` independent replicas: one smooth curve per observable."""
    from symprobe.study.variants import curve, scalar
    from symprobe.study.liquid import CURVES
    from symprobe.analysis.statistics import blocks_mean_and_error

    x = np.linspace(2.0, 6.0, 40)
    out = {"n_replicas": replicas, "n_blocks": replicas, "errors_from": "replicas", "diffusion": None,
           "c_uu_last": scalar(0.5 + shift, 0.01, "dimensionless"), "dipole_bias": {"bias_kT": scalar(0.2, 0.05, "kT")}}
    for name in CURVES:
        blocks = 1.0 + shift * np.exp(-(x - 3.0) ** 2) + 0.01 * rng.normal(size=(replicas, len(x)))
        out[name] = curve(x, *blocks_mean_and_error(blocks), "Å", "", blocks=blocks)
    return out


def test_liquid_null_comparison_gates_the_verdicts():
    """Raw against a repeat of itself with 5 replicas each: calibrated, verdicts issued; a repeat that differs
    (error bars too small for the runs): not calibrated, every verdict withheld."""
    from symprobe.study.variants import REPEAT
    from symprobe.study.liquid import compare_variants

    rng = np.random.default_rng(3)
    same = compare_variants({"variants": {"raw": _liquid_variant(rng), REPEAT: _liquid_variant(rng), "mts": _liquid_variant(rng)}})
    assert same["calibration"]["conclusive"] and same["calibration"]["passed"] and not same["withheld"]
    assert same["verdicts"]["mts"]["g_OO"]["equivalent"] and "bounds every bin" in same["verdicts"]["mts"]["g_OO"]["verdict"]
    shifted = compare_variants({"variants": {"raw": _liquid_variant(rng), REPEAT: _liquid_variant(rng, shift=0.3)}})
    assert not shifted["calibration"]["passed"] and shifted["withheld"] and "g_OO" in shifted["calibration"]["family"]["significant"]


def test_orientation_bias_of_known_term():
    """The low-order bias estimator on directions drawn from p(u) ∝ exp(0.3 u_z) (bias 0.3 kT to first
    order) and from the uniform distribution (no bias)."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(60000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    keep = rng.random(len(u)) < np.exp(0.3 * (u[:, 2] - 1))
    u = u[keep][: 40 * 500].reshape(40, 500, 3)
    biased = gas.harmonic_orientation_bias(u)
    assert biased["significant"] and 0.2 < biased["bias_kT"]["value"] < 0.45  # exact: 0.3 kT to first order
    flat = rng.normal(size=(40, 500, 3))
    flat /= np.linalg.norm(flat, axis=-1, keepdims=True)
    assert gas.harmonic_orientation_bias(flat)["bias_kT"]["value"] < 0.1


def test_orientation_profile_of_known_term():
    """q-TIP4P/F + g(û) with ℓ = 1, 2, 3 content: the raw profile is g itself (q-TIP4P/F is invariant), so its
    ℓ ≤ 2 bias and largest |ΔV| are known; a rule exact to degree 3 removes all of it."""
    from symprobe import so3
    from symprobe.structures import water_monomer
    from symprobe.testing import anisotropic_qtip4pf

    model = anisotropic_qtip4pf({1: 0.01, 2: 0.02, 3: 0.01}, seed=1)
    term = model.orientation_term
    g = lambda u, ls: sum(so3.real_sph_harm(l, u) @ term.coefficients(l) for l in ls) / gas.KT_300K  # noqa: E731
    directions = so3.lebedev(9, 3)
    result = gas.orientation_energy_convergence(model, [water_monomer()], [so3.identity(), so3.group("O")], 2, directions)
    raw, exact = result["rows"]
    assert raw["bias_kT"]["value"] == pytest.approx(np.abs(g(gas._sphere_points(800), (1, 2))).max(), rel=1e-9)
    assert raw["max_kT"]["value"] == pytest.approx(np.abs(g(directions.rotations[:, :, 2], (1, 2, 3))).max(), rel=1e-9)
    assert raw["bias_kT"]["value"] > 0.3 and exact["bias_kT"]["value"] < 1e-9 and exact["max_kT"]["value"] < 1e-9


def test_mts_setting_is_parsed_with_clear_errors():
    assert study.parse_mts("2i/10") == ("2i", 10) and study.parse_mts("T+i/14") == ("T+i", 14)
    with pytest.raises(ValueError, match="expected GRID/N_INNER"):
        study.parse_mts("T")
    with pytest.raises(ValueError, match="expected GRID/N_INNER"):
        study.parse_mts("T/0")
    with pytest.raises(ValueError, match="unknown quadrature 'X'"):
        study.parse_mts("X/10")


COSTS = {"gas_nve_step_s_8": 0.04, "gas_nve_step_s_40": 0.12, "gas_nvt_step_s_27": 0.15, "gas_nvt_step_s_256": 0.5,
         "liquid_raw_step_s": 0.075, "liquid_mts_step_s": 0.24, "gas_avg_s": 0.065, "liquid_s": 0.12, "liquid_corr_s": 2.9,
         "ice_s": 0.08, "ice_avg_s": 2.4}  # seconds, as measured on 2 CPU cores for the bundled model


def test_quick_plan_spends_its_budget_and_buys_precision_with_it():
    """The estimates of a quick plan add up to its budget; a longer budget buys more molecules, longer runs,
    more independent liquid boxes, all 9 ice cells and more rotational-error cells."""
    demo = study.make_plan(True, COSTS, budget_s=330.0)
    assert demo.liquid_steps % 10 == 0 and demo.liquid_steps >= 60 and demo.liquid_replicas == 2
    assert len(demo.ice_frames) >= 2
    hour = study.make_plan(True, COSTS, budget_s=3600.0)
    assert sum(hour.estimate_s.values()) == pytest.approx(3600.0, rel=0.03)
    assert hour.ice_frames == tuple(range(2, 11)) and hour.error_cells > demo.error_cells
    assert hour.liquid_replicas == 5 and hour.gas_nvt_molecules == 256
    assert hour.liquid_steps * hour.liquid_replicas > 5 * demo.liquid_steps * demo.liquid_replicas
    assert hour.gas_nvt_steps * hour.gas_nvt_molecules > 5 * demo.gas_nvt_steps * demo.gas_nvt_molecules
    tight = study.make_plan(True, {**COSTS, "ice_s": 1.0, "ice_avg_s": 30.0}, budget_s=3600.0)
    assert len(tight.ice_frames) < 9  # expensive ice: fewer cells, within its share
    assert tight.estimate_s["ice"] <= 0.12 * 3600.0 or len(tight.ice_frames) == 2


def test_full_plan_runs_the_protocols_of_the_issue():
    """Full plans: gas NVE ≥ 1 ns over molecules, gas NVT ≥ 5 ns per variant (MTS included), the 512-molecule
    liquid ≥ 100 ps per variant, the paper's 9 ice cells; the estimate scales with the measured step costs."""
    full = study.make_plan(False, COSTS)
    assert full.gas_nve_molecules * full.gas_nve_steps * 0.5 >= 1e6
    assert full.gas_nvt_molecules * full.gas_nvt_steps * 0.5 >= 5e6 and "mts" in study.stages.VARIANTS
    assert full.liquid_shared_512 and full.liquid_replicas * full.liquid_steps * 0.5 >= 1e5
    assert full.ice_frames == tuple(range(2, 11))
    double = study.make_plan(False, {k: 2 * v for k, v in COSTS.items()})
    assert sum(double.estimate_s.values()) == pytest.approx(2 * sum(full.estimate_s.values()))


@pytest.mark.parametrize("argv, message", [(["--mts", "T"], "expected GRID/N_INNER"),
                                           (["--mts", "Q/10"], "unknown quadrature 'Q'"),
                                           (["--budget-min", "-1"], "--budget-min must be positive")])
def test_study_command_refuses_bad_settings_before_running(tmp_path, capsys, argv, message):
    from symprobe import cli

    assert cli.main(["study", "--model", "symprobe.study:known_answer_model", "--out", str(tmp_path), *argv]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "stages").exists()  # nothing was run
