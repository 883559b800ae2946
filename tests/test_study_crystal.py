"""The crystal study (symprobe.study.crystal) on hcp Mg made of the known-answer pair potential, in a general
orientation: with a lab-frame term of degree ℓ = 2 the raw relaxation loses P6₃/mmc at 1e-6 Å and splits the E2g
pair at Γ, while the 2i average (exact to degree 2) and the average over the crystal's point group 6/mmm keep both;
the invariant pair potential keeps them raw. Also the point group as a rotation rule and the Γ sets it implies."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from symprobe.analysis.crystal import (
    gamma_hessian,
    gamma_operations,
    point_group,
    symmetric_sets,
    symmetrised,
)
from symprobe.testing.pair import KnownAnswerCalculator, known_answer_pair_model

pytest.importorskip("spglib", reason="spglib is not installed (pip install 'symprobe[crystal]')")

HCP = "P6_3/mmc (194)"
CUTOFF = 3.3  # Å: nearest neighbours only (the second shell of hcp is at ~3.7 Å)


def _hcp() -> Atoms:
    """hcp Mg (2 atoms) near the pair potential's lattice constant, turned away from the lab axes."""
    atoms = bulk("Mg", "hcp", a=2.6, c=2.6 * 1.633)
    atoms.rotate(17, "x", rotate_cell=True)
    atoms.rotate(33, "z", rotate_cell=True)
    return atoms


def _model(amplitude: float):
    """The pair potential with a lab-frame term of degree 2 and ``amplitude`` eV, on the batched engine."""
    return known_answer_pair_model(degree=2, amplitude=amplitude, cutoff=CUTOFF)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    from symprobe.study.crystal import run_crystal

    out = tmp_path_factory.mktemp("crystal")
    return out, run_crystal(_model(0.02), _hcp(), out, budget_s=600.0, progress=False)


def test_point_group_of_a_turned_hcp_cell_maps_it_onto_itself():
    atoms = symmetrised(_hcp())
    group = point_group(atoms)
    assert (group.name, len(group), group.degree) == ("point group 6/mmm", 24, 1)  # ℓ = 2 along c is invariant
    assert np.abs(np.einsum("gji,gjk->gik", group.rotations, group.rotations) - np.eye(3)).max() < 1e-12
    vectors = neighbor_list("D", atoms, 6.0)  # the crystal's interatomic vectors: a symmetry maps them onto themselves
    key = lambda v: np.array(sorted(map(tuple, np.round(v, 8))))
    for R in group.rotations:
        assert np.abs(key(vectors @ R.T) - key(vectors)).max() < 1e-7


def test_gamma_sets_of_hcp_are_the_e2g_pair_split_only_by_the_term():
    atoms = symmetrised(_hcp())
    operations = gamma_operations(atoms)
    assert len(operations) == 24 and sorted(sorted(target.tolist()) for _, target in operations) == [[0, 1]] * 24
    sets = {}
    for amplitude in (0.0, 0.02):
        moved = atoms.copy()
        moved.calc = KnownAnswerCalculator(degree=2, amplitude=amplitude, cutoff=CUTOFF)
        sets[amplitude] = symmetric_sets(gamma_hessian(moved), moved.get_masses(), operations)
    assert [s["modes"] for s in sets[0.0]] == [2] and sets[0.0][0]["frequency_cm"] > 50  # E2g; acoustic E1u left out
    assert sets[0.0][0]["splitting_cm"] < 1e-4
    assert sets[0.02][0]["splitting_cm"] > 0.05


def test_raw_loses_the_space_group_and_both_averages_keep_it(broken):
    _, result = broken
    exp = result["experiments"]["crystal"]
    assert result["kind"] == "crystal" and result["system"] == f"Mg2 in {HCP}" and result["null_tests"] == {}
    assert set(exp["start"]["space_groups"].values()) == {HCP}
    rows = exp["variants"]
    assert rows["raw"]["space_groups"]["tight"] != HCP and rows["raw"]["space_groups"]["default"] != HCP
    assert rows["raw"]["displacement_A"] > 1e-5 and rows["raw"]["strain"] > 1e-5
    for name in ("averaged", "point-group"):
        assert set(rows[name]["space_groups"].values()) == {HCP}
        assert rows[name]["displacement_A"] < 1e-10 and rows[name]["strain"] < 1e-10
    assert rows["raw"]["degenerate_sets"][0]["splitting_cm"] > 0.05
    assert rows["averaged"]["degenerate_sets"][0]["splitting_cm"] < 1e-4 and exp["floor_cm"] < 1e-4
    holds = {f["key"]: f["holds"] for f in result["findings"]}
    assert holds == {"crystal_raw_keeps_space_group": False, "crystal_raw_keeps_space_group_loose": False, "crystal_averaged_keeps_space_group": True,
                     "crystal_point_group_keeps_space_group": True, "crystal_raw_keeps_gamma_degeneracy": False,
                     "crystal_averaged_keeps_gamma_degeneracy": True}
    assert all("Mg2" in f["claim"] and "water" not in f["claim"] for f in result["findings"])
    json.dumps(result)


def test_an_invariant_model_keeps_the_group_raw_and_equals_the_exact_average(broken):
    from symprobe.study.crystal import relaxed_variant

    _, result = broken
    exp = result["experiments"]["crystal"]
    row = relaxed_variant(_model(0.0), symmetrised(_hcp()), exp["plan"]["fmax_eV_per_A"], exp["plan"]["max_steps"])
    assert set(row["space_groups"].values()) == {HCP} and row["displacement_A"] < 1e-10
    assert row["degenerate_sets"][0]["splitting_cm"] < 1e-4
    # the 2i grid is exact to degree 2: the averaged ℓ = 2 term vanishes, leaving the invariant pair potential
    averaged = exp["variants"]["averaged"]
    assert averaged["energy_eV_per_atom"] == pytest.approx(row["energy_eV_per_atom"], abs=1e-10)
    assert averaged["cell_parameters"] == pytest.approx(row["cell_parameters"], abs=1e-6)


def test_a_second_call_loads_every_stage_and_the_section_shows_them(broken):
    from symprobe.study.crystal import crystal_section, run_crystal

    out, result = broken
    stages = sorted((out / "stages").glob("crystal_*.json"))
    assert [p.stem for p in stages] == ["crystal_averaged", "crystal_plan", "crystal_point-group", "crystal_raw"]
    written = [p.stat().st_mtime_ns for p in stages]
    assert run_crystal(_model(0.02), _hcp(), out, budget_s=600.0, progress=False) == result
    assert [p.stat().st_mtime_ns for p in stages] == written
    section = crystal_section(result)
    assert "table-crystal-structure" in section and "table-crystal-gamma" in section and "data:image/png;base64," in section
    assert section.count(HCP) >= 3


def test_a_molecule_is_refused_in_one_line(tmp_path):
    from symprobe.study.crystal import run_crystal

    with pytest.raises(ValueError, match=r"^crystal study: CH4 is not a crystal \(periodic in three directions\)$"):
        run_crystal(_model(0.0), Atoms("CH4", positions=np.random.default_rng(0).normal(size=(5, 3))), tmp_path)


def test_gamma_sets_from_the_group_match_the_degenerate_frequencies_of_fcc_cu():
    from ase.calculators.emt import EMT

    from symprobe.analysis.crystal import degenerate_sets, gamma_frequencies

    atoms = bulk("Cu", "fcc", a=3.5898, cubic=True)  # 4 atoms: Γ and the three X points of fcc
    assert (point_group(atoms).name, len(point_group(atoms))) == ("point group m-3m", 48)
    atoms.calc = EMT()
    frequencies = gamma_frequencies(atoms)
    by_frequency = degenerate_sets(frequencies)
    by_group = symmetric_sets(gamma_hessian(atoms), atoms.get_masses(), gamma_operations(atoms))
    assert [s["modes"] for s in by_group] == [len(s) for s in by_frequency] == [6, 3]
    assert [s["frequency_cm"] for s in by_group] == pytest.approx([frequencies[s].mean() for s in by_frequency], abs=1e-3)


def test_a_quick_budget_below_the_hessians_leaves_gamma_out_and_says_why(tmp_path):
    from symprobe.study.crystal import crystal_section, run_crystal

    result = run_crystal(_model(0.0), _hcp(), tmp_path, budget_s=1e-3, progress=False)
    exp = result["experiments"]["crystal"]
    assert not exp["plan"]["gamma"] and exp["floor_cm"] is None and "exceed the quick budget" in exp["gamma_skipped"]
    assert all("degenerate_sets" not in row for row in exp["variants"].values())
    holds = {f["key"]: f["holds"] for f in result["findings"]}
    assert holds["crystal_raw_keeps_space_group"] is True  # an exactly invariant model keeps the group raw
    assert holds["crystal_raw_keeps_gamma_degeneracy"] is None
    assert "Γ modes: not computed" in crystal_section(result)


def test_verdicts_below_the_numerical_floor_are_withheld(broken):
    """Where the point-group average (exact but for round-off, e.g. of a float32 model) loses the group at a tolerance,
    the other variants' verdicts at that tolerance say so instead of blaming the model."""
    import copy

    from symprobe.study.crystal import crystal_findings

    _, result = broken
    exp = copy.deepcopy(result["experiments"]["crystal"])
    exp["variants"]["point-group"]["space_groups"]["tight"] = "P-1 (2)"
    findings = {f["key"]: f for f in crystal_findings(result["system"], exp)}
    assert findings["crystal_raw_keeps_space_group"]["holds"] is None
    assert "below the model's numerical floor" in findings["crystal_averaged_keeps_space_group"]["evidence"]
    assert findings["crystal_point_group_keeps_space_group"]["holds"] is None  # exact by construction: its loss is the floor
    assert findings["crystal_raw_keeps_space_group_loose"]["holds"] is False  # 1e-3 Å is above the floor


def test_an_improper_copy_keeps_a_right_handed_cell_spanning_the_same_lattice():
    from symprobe.structures import rotate

    atoms = _hcp()
    inverted = rotate(atoms, -np.eye(3))
    assert np.linalg.det(inverted.cell.array) > 0 and np.allclose(inverted.cell.array, atoms.cell.array)
    assert np.allclose(inverted.positions, -atoms.positions)
    key = lambda v: np.array(sorted(map(tuple, np.round(v, 8))))  # the interatomic vectors, inverted
    assert np.abs(key(neighbor_list("D", inverted, 6.0)) - key(-neighbor_list("D", atoms, 6.0))).max() < 1e-7


def test_a_cell_averaged_with_inversion_keeps_chgnets_stress():
    """CHGNet takes the volume as det(cell): on a left-handed copy its stress changed sign, and the average over E and
    inversion had none, so cell relaxations of the averaged model did not move (issue found by the crystal study)."""
    pytest.importorskip("chgnet", reason="CHGNet is not installed (pip install 'symprobe[pretrained]')")
    from symprobe import so3
    from symprobe.models.external import load_model
    from symprobe.symmetrize import GridAverage

    model = load_model("chgnet:0.3.0")
    atoms = bulk("Mg", "hcp", a=3.21, c=5.21)
    raw = model.predict(atoms).stress
    assert np.abs(raw).max() > 1e-3  # eV/Å³: far from CHGNet's minimum
    assert GridAverage(model, so3.get("i")).predict(atoms).stress == pytest.approx(raw, abs=1e-6)  # CHGNet is invariant


def test_the_point_group_average_removes_a_degree_the_grid_leaves():
    """A lab-frame term of degree ℓ = 4 lies above the 2i grid's degree 2: its 2i average still pushes hcp out of
    P6₃/mmc, while the average over 6/mmm, a group of the crystal, pushes only along its symmetry."""
    from symprobe import so3
    from symprobe.analysis.crystal import symmetry_residual
    from symprobe.symmetrize import GridAverage

    atoms = symmetrised(_hcp())
    model = known_answer_pair_model(degree=4, amplitude=0.02, cutoff=CUTOFF)

    def pushed(averaged) -> float:
        """The part of a steepest-descent step (0.01 Å²/eV × forces) that breaks P6₃/mmc, Å RMS."""
        moved = atoms.copy()
        moved.positions += 0.01 * averaged.predict(atoms).forces
        return symmetry_residual(moved, atoms)

    assert pushed(model) > 1e-5
    assert pushed(GridAverage(model, so3.paper_grid("2i"))) > 1e-6  # 6e-6 Å: round-off is 1e-15
    assert pushed(GridAverage(model, point_group(atoms))) < 1e-12


def test_the_user_study_runs_the_crystal_and_reports_it_for_the_system(tmp_path):
    """``--crystal`` through the user-system study: the results document and report name Mg2, never water."""
    from symprobe.study.user_system import run_user_study

    result = run_user_study(_model(0.02), {"crystal": _hcp()}, tmp_path, budget_s=600.0, progress=False)
    assert result["systems"] == {"crystal": "Mg2 in P6_3/mmc (194)"}
    claims = " ".join(f["claim"] for f in result["findings"])
    assert "Mg2" in claims and "water" not in claims.lower()
    report = (tmp_path / "report.html").read_text()
    assert "Mg2" in report and "water" not in report.lower()
    assert json.loads((tmp_path / "results.json").read_text())["findings"] == result["findings"]
