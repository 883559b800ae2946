"""Breaking split into proper rotations and inversion (issue 28, item 2), the known-answer models for any elements
(item 4) and the verdict in words (issue 31, item 1), on models whose breaking is known exactly."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_stress
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron
from ase.io import write

from symprobe import cli
from symprobe.audit import audit, summary_text
from symprobe.audit.mirror import why_no_inversion_signal
from symprobe.bench import bench_model, builtin_set
from symprobe.models.base import CalculatorModel
from symprobe.testing import finite_difference_forces
from symprobe.testing.pair import KnownAnswerCalculator

C = 0.01  # eV/Å³, the pseudoscalar coefficient


def chfclbr() -> Atoms:
    return builtin_set(["CHFClBr"])["CHFClBr"]


def analytic_triple_products(atoms: Atoms, cutoff: float) -> float:
    """T = Σ_i det[A_i, B_i, C_i] by plain loops (the formula in symprobe.testing.pair, written out again)."""
    x, z, total = atoms.get_positions(), atoms.numbers, 0.0
    for i in range(len(atoms)):
        sums = np.zeros((3, 3))
        for j in range(len(atoms)):
            r_vec = x[j] - x[i]
            r = np.linalg.norm(r_vec)
            if j == i or r >= cutoff:
                continue
            s = z[j] / 10 + r / cutoff
            sums += np.outer(0.5 * (1 + np.cos(np.pi * r / cutoff)) * r_vec, [1.0, s, s * s])
        total += np.linalg.det(sums)
    return total


def named(atoms: Atoms, name: str) -> Atoms:
    atoms.info["name"] = name
    return atoms


def run_audit(model, structures, grid="3i"):
    return audit(model, structures, grid=grid, lmax=2, convergence_grids=[])


def test_known_answer_models_have_consistent_forces_and_stress():
    calculator = KnownAnswerCalculator(degree=2, amplitude=0.05, pseudoscalar=C)
    model = CalculatorModel(calculator)
    for atoms in (chfclbr(), builtin_set(["alpha-quartz"])["alpha-quartz"]):
        assert np.abs(model.predict(atoms).forces - finite_difference_forces(model, atoms, 1e-5)).max() < 1e-7
    quartz = builtin_set(["alpha-quartz"])["alpha-quartz"]
    quartz.calc = calculator
    assert np.abs(quartz.get_stress() - calculate_numerical_stress(quartz, eps=1e-6)).max() < 1e-7


def test_mirror_images_that_are_rotated_copies_are_flagged():
    quartz = builtin_set(["alpha-quartz"])["alpha-quartz"]
    assert why_no_inversion_signal(molecule("H2O")) == "planar"
    assert why_no_inversion_signal(molecule("CO2")) == "linear"
    assert "achiral" in why_no_inversion_signal(molecule("CH4"))
    assert "achiral" in why_no_inversion_signal(molecule("CH3CH2OH"))
    assert "centrosymmetric" in why_no_inversion_signal(bulk("Si", "diamond", a=5.43))
    assert "mirror or glide" in why_no_inversion_signal(bulk("ZnO", "wurtzite", a=3.25, c=5.21))
    mirror = chfclbr()
    mirror.positions *= -1
    assert why_no_inversion_signal(chfclbr()) is None and why_no_inversion_signal(mirror) is None
    assert why_no_inversion_signal(quartz) is None


def test_pseudoscalar_is_rotation_exact_and_its_inversion_channel_is_2cT():
    calculator = KnownAnswerCalculator(pseudoscalar=C)
    atoms = chfclbr()
    expected_meV = 2 * C * analytic_triple_products(atoms, calculator.cutoff) * 1000
    assert abs(expected_meV) > 1.0  # the molecule is chiral: T does not vanish
    report = run_audit(CalculatorModel(calculator, name="pseudoscalar"), [atoms, named(molecule("H2O"), "H2O")])
    chiral, planar = (s.channels for s in report.structures)
    assert chiral.inversion_energy_difference_meV == pytest.approx(expected_meV, rel=1e-6)
    assert planar.no_inversion_signal == "planar" and abs(planar.inversion_energy_difference_meV) < 1e-9
    for c in (chiral, planar):  # rotation channel at the round-off floor
        assert c.rotation_force_deviation_mae_meV_per_A < 10 * c.floor_force_meV_per_A
        assert abs(c.rotation_energy_deviation_meV) / 5 < 10 * c.floor_energy_meV_per_atom
    data = json.loads(json.dumps(report.to_dict()))
    channels = data["summary"]["channels"]
    assert channels["rotation"]["broken_on"] == [] and channels["inversion"]["broken_on"] == ["CHFClBr"]
    assert channels["inversion"]["cannot_show"] == [{"name": "H2O", "reason": "planar"}]
    assert channels["inversion"]["odd_lambda0_power_eV2"] == pytest.approx((expected_meV / 2000) ** 2, rel=1e-6)
    text = summary_text(data)
    assert "exact under proper rotations (within its numerical floor) but not under inversion" in text
    assert "Inversion: broken on 1 of 1 chiral structures" in text and "grid 'i', 2 evaluations" in text


def test_pseudoscalar_is_named_in_the_bench():
    structures = builtin_set(["CHFClBr", "alpha-quartz", "CH4"])
    result = bench_model(CalculatorModel(KnownAnswerCalculator(pseudoscalar=C), name="pseudoscalar"), structures)
    assert result["inversion_broken_on"] == ["CHFClBr", "alpha-quartz"]
    assert "not under inversion" in result["verdict"][0]
    assert "not under inversion" in result["structures"]["alpha-quartz"]["verdict"][0]
    assert "no evidence of parity invariance" in result["structures"]["CH4"]["verdict"][2]


@pytest.mark.parametrize("degree", [1, 2])
def test_lab_frame_term_breaks_at_its_degree_with_its_parity(degree):
    model = CalculatorModel(KnownAnswerCalculator(degree=degree, amplitude=0.05), name=f"pair+Y{degree}")
    report = run_audit(model, [chfclbr()])
    channels = report.summary["channels"]
    (row,) = channels["rotation"]["lambdas"]
    assert row["lambda"] == degree and row["parity"] == ("odd" if degree % 2 else "even")
    assert channels["rotation"]["broken_on"] == ["CHFClBr"] and channels["inversion"]["broken_on"] == []
    assert f"at λ = {degree} ({row['parity']} parity, 100 % of the breaking power)" in report.summary["verdict"][1]


def test_achiral_structures_are_never_evidence_of_parity_invariance():
    report = run_audit(CalculatorModel(KnownAnswerCalculator(pseudoscalar=C)), [molecule("H2O"), molecule("CH4")])
    verdict = " ".join(report.summary["verdict"])
    assert "inversion is not tested here" in verdict and "no evidence of parity invariance" in verdict
    assert "under proper rotations or inversion" not in verdict
    no_inversion = run_audit(CalculatorModel(KnownAnswerCalculator(pseudoscalar=C)), [chfclbr()], grid="3")
    assert "not measured, the grid paper-3 has no improper rotations" in no_inversion.summary["verdict"][2]


class EMTPlusLabFrame(Calculator):
    """EMT plus 0.01·(x₀ − x₁) eV (x: Cartesian x of atoms 0 and 1, Å): a parity-odd λ = 1 term of known size."""

    implemented_properties = ("energy", "forces")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms.copy()
        atoms.calc = EMT()
        forces = atoms.get_forces()
        forces[0, 0] -= 0.01
        forces[1, 0] += 0.01
        x = atoms.positions
        self.results = {"energy": atoms.get_potential_energy() + 0.01 * (x[0, 0] - x[1, 0]), "forces": forces}


def copper_cluster() -> Atoms:
    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.05, seed=1)
    return atoms


def test_verdict_on_emt_with_an_added_term_and_on_emt_alone():
    broken = run_audit(CalculatorModel(EMTPlusLabFrame(), name="EMT+x"), [copper_cluster()]).summary
    assert broken["verdict"][0] == "Verdict: the model breaks rotational symmetry beyond its numerical floor (proper rotations)."
    assert "at λ = 1 (odd parity, 100 % of the breaking power)" in broken["verdict"][1]
    assert "meV/atom" in broken["verdict"][1] and "stated scale" in broken["verdict"][1]
    assert "Next: averaging over D2 (4 evaluations" in broken["verdict"][3]
    assert broken["channels"]["rotation"]["force_max_meV_per_A"] == pytest.approx(10.0, rel=1e-6)  # 0.01 eV/Å on atoms 0, 1
    exact = run_audit(CalculatorModel(EMT(), name="EMT"), [copper_cluster()]).summary
    assert exact["verdict"][1].startswith("Proper rotations: within the numerical floor on all 1 structures")
    assert "nothing to remove" in exact["verdict"][3]


MODULE = """
from symprobe.testing.pair import KnownAnswerCalculator

def pseudoscalar():
    return KnownAnswerCalculator(pseudoscalar=0.01)
"""


def test_cli_gates_each_channel(tmp_path, capsys, monkeypatch):
    (tmp_path / "channel_models.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    atoms = chfclbr()
    pair = KnownAnswerCalculator()  # labels from the invariant pair potential: the model's own error is c·T's forces
    atoms.calc = SinglePointCalculator(atoms, energy=pair.get_potential_energy(atoms), forces=pair.get_forces(atoms))
    labelled, planar = tmp_path / "chiral.extxyz", tmp_path / "planar.extxyz"
    write(labelled, [atoms])
    water = molecule("H2O")
    water.calc = SinglePointCalculator(water, energy=0.0, forces=np.zeros((3, 3)))
    write(planar, [water])

    def run(*argv):
        code = cli.main(["audit", "channel_models:pseudoscalar", *map(str, argv), "--convergence", "none", "--grid", "2i"])
        return code, capsys.readouterr()

    code, out = run(labelled, "--out", tmp_path / "a", "--fail-above", "0.1")
    assert code == 0 and "not under inversion" in out.out
    code, out = run(labelled, "--out", tmp_path / "b", "--fail-above-inversion", "0.1")
    assert code == 3 and "FAIL: force difference under inversion" in out.err
    code, out = run(planar, "--out", tmp_path / "c", "--fail-above-inversion", "0.1")
    assert code == 2 and "no structure can show inversion breaking" in out.err and "planar" in out.err
    code = cli.main(["audit", "channel_models:pseudoscalar", str(labelled), "--grid", "3", "--out", str(tmp_path / "d"),
                     "--fail-above-inversion", "0.1"])
    assert code == 2 and "needs a grid with inversion" in capsys.readouterr().err
