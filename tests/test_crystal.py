"""Crystal symmetry: the known non-invariant pair term on EMT Cu (forces, stress, angular content), spglib's
space group and the residual that breaks it, Γ splittings against first-order perturbation theory; ice XI (Cmc2₁)
and an average over the crystal's point group that keeps it under the PET-style model."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from symprobe import so3
from symprobe.analysis.crystal import (cell_residual, degenerate_sets, gamma_frequencies, point_group, space_group, splittings,
                                       symmetry_residual)
from symprobe.models.base import CalculatorModel
from symprobe.symmetrize import GridAverage
from symprobe.testing import AnisotropicPairCalculator, random_rotations

pytest.importorskip("spglib", reason="spglib is not installed")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "crystal_symmetry.py"


def _cu(a: float = 3.59, rattle: float = 0.0):
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    if rattle:
        atoms.rattle(rattle, seed=3)
    return atoms


def _script():
    spec = importlib.util.spec_from_file_location("crystal_symmetry", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["crystal_symmetry"] = module
    spec.loader.exec_module(module)
    return module


def test_known_term_forces_and_stress_are_its_derivatives():
    atoms = _cu(rattle=0.05)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + np.array([[0.01, 0.003, 0], [0.003, -0.004, 0.002], [0, 0.002, 0.006]])), scale_atoms=True)
    atoms.calc = AnisotropicPairCalculator(amplitude=0.3)
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    h = 1e-5
    for a, k in [(0, 0), (1, 2), (3, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[a, k] += sign * h
            energies.append(moved.get_potential_energy())
        assert forces[a, k] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-7)
    for i, j in [(0, 0), (1, 2), (2, 2)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * h / 2
            strain[j, i] += sign * h / 2
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            energies.append(moved.get_potential_energy())
        assert stress[i, j] == pytest.approx((energies[0] - energies[1]) / (2 * h) / atoms.get_volume(), abs=1e-8)


def test_known_term_breaks_rotations_and_an_exact_grid_removes_it():
    atoms = _cu(rattle=0.05)
    term = AnisotropicPairCalculator(amplitude=0.1)
    rotations = random_rotations(5, seed=2)
    raw = CalculatorModel(term).predict_rotated(atoms, rotations)
    assert np.ptp(raw.energies) > 1e-3  # eV: the term is not invariant
    averaged = GridAverage(CalculatorModel(term), so3.get("I")).predict_rotated(atoms, rotations)  # degree 5 ≥ the term's 4
    assert np.ptp(averaged.energies) < 1e-10
    assert np.abs(averaged.forces - averaged.forces[0]).max() < 1e-10


def test_space_group_and_the_residual_that_breaks_it():
    ideal = _cu()
    assert space_group(ideal) == "Fm-3m (225)"
    shifted = ideal.copy()
    shifted.positions += [0.3, -0.2, 0.1]  # a rigid shift breaks nothing
    assert symmetry_residual(shifted, ideal) < 1e-12 and space_group(shifted) == "Fm-3m (225)"
    moved = ideal.copy()
    moved.positions[0] += [0.01, 0, 0]
    moved.positions -= moved.positions.mean(axis=0) - ideal.positions.mean(axis=0)
    assert symmetry_residual(moved, ideal) == pytest.approx(0.01 * np.sqrt(3 / 4) / 2, rel=0.05)  # RMS over atoms
    strained = ideal.copy()
    strained.set_cell(ideal.cell.array @ np.diag([1.001, 1, 1]), scale_atoms=True)
    assert space_group(strained) == "I4/mmm (139)" and cell_residual(strained, ideal) == pytest.approx(2 / 3 * 1e-3, rel=0.01)


def test_gamma_splitting_of_the_known_term_matches_perturbation_theory():
    script = _script()
    ideal = _cu(a=3.5898)
    term = AnisotropicPairCalculator(amplitude=0.1)
    reference = gamma_frequencies(script._with(ideal, EMT()))
    sets = degenerate_sets(reference)
    assert [len(s) for s in sets] == [6, 3]  # the X points of fcc folded to Γ: TA (6) and LA (3)
    full = splittings(gamma_frequencies(script._with(ideal, term)), sets)
    assert min(full) > 0.5  # cm⁻¹
    assert script.perturbation_splitting(ideal, term, sets) == pytest.approx(full, rel=1e-3)
    assert max(splittings(reference, sets)) < 1e-2


def _steepest_step(atoms, model, alpha: float = 0.01):
    """``atoms`` moved by alpha (Å²/eV) × ``model``'s forces."""
    moved = atoms.copy()
    moved.positions += alpha * model.predict(atoms).forces
    return moved


def test_ice_xi_cell_and_a_point_group_average_that_keeps_it():
    pytest.importorskip("genice2", reason="GenIce2 is not installed (pip install 'symprobe[ice]')")
    import torch

    from symprobe.models.external import load_model
    from symprobe.study.ice import ice_xi_cell

    ideal = ice_xi_cell()
    assert len(ideal) == 48 and ideal.get_chemical_symbols()[:3] == ["O", "H", "H"]
    assert space_group(ideal, 1e-8) == "Cmc2_1 (36)"
    assert ideal.get_distance(0, 1, mic=True) == pytest.approx(0.9572, abs=1e-3)
    raw = load_model("builtin:water-pet", dtype=torch.float64)
    # the raw model's forces break Cmc2₁; averaged over D2 + inversion, which holds the crystal's point group mm2
    # in this orientation, they respect it to round-off
    assert symmetry_residual(_steepest_step(ideal, raw), ideal) > 1e-6
    assert symmetry_residual(_steepest_step(ideal, GridAverage(raw, so3.get("D2+i"))), ideal) < 1e-11
    assert symmetry_residual(_steepest_step(ideal, load_model("builtin:water-pet-twin", dtype=torch.float64)), ideal) < 1e-11
    group = point_group(ideal)  # the same from spglib: mm2's 4 operations in the crystal's own frame
    assert (group.name, len(group)) == ("point group mm2", 4)
    assert symmetry_residual(_steepest_step(ideal, GridAverage(raw, group)), ideal) < 1e-11


def test_ice_xi_script_writes_each_row_and_resumes(tmp_path, capsys):
    pytest.importorskip("genice2", reason="GenIce2 is not installed (pip install 'symprobe[ice]')")
    spec = importlib.util.spec_from_file_location("ice_xi_symmetry", BENCH.with_name("ice_xi_symmetry.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "ice.json"
    arguments = ["--out", str(out), "--grids", "D2+i", "--steps", "2"]
    assert script.main(arguments) == 0
    first = json.loads(out.read_text())
    assert len(first["models"]) == 3 and out.with_suffix(".png").exists()
    assert first["ideal"]["space_group"]["tight"] == "Cmc2_1 (36)"
    assert all(row["relaxation_steps"] == 2 and not row["converged"] for row in first["models"].values())
    assert script.main(arguments) == 0  # a second call keeps the rows already written
    assert json.loads(out.read_text())["models"] == first["models"] and capsys.readouterr().out.count("kept from") == 3
    with pytest.raises(SystemExit, match="other settings"):
        script.main(["--out", str(out), "--grids", "D2+i", "--steps", "3"])
