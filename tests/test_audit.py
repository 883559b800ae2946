"""The symmetry audit on known-answer models, in float64 (issue 2, "The audit" and "Must show")."""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from scipy.spatial.transform import Rotation

from symprobe import audit as A
from symprobe.audit import run as audit_run
from symprobe import cli, so3, testing
from symprobe.models.base import Model
from symprobe.models.qtip4pf import qtip4pf
from symprobe.structures import StructureError, rotate, water_box, water_monomer

SCHEMA_DOC = Path(__file__).resolve().parents[1] / "docs" / "audit-schema.md"
TINY = 1e-12  # eV, eV/Å, eV/Å³: "zero" for an exactly invariant float64 model


def dimer() -> Atoms:
    """Two water molecules (O, H, H each) about 2.9 Å apart, isolated."""
    mono = water_monomer(0.0).get_positions()
    spin = so3.haar(1, seed=7).rotations[0]
    positions = np.concatenate([mono, (mono - mono[0]) @ spin.T + [2.9, 0.3, -0.2]])
    atoms = Atoms("OH2OH2", positions=positions, pbc=False)
    atoms.info["name"] = "water dimer"
    return atoms


def small_box() -> Atoms:
    """8 H2O, periodic (6.2 Å cube); paired with a 4 Å q-TIP4P/F to keep the tests fast."""
    return water_box(2, seed=1)


def fast_qtip4pf(dtype=torch.float64):
    return qtip4pf(dtype=dtype, cutoff=4.0)


def labelled(atoms: Atoms, model: Model, energy_shift: float, force_shift: float) -> Atoms:
    """``atoms`` carrying reference labels E_ref = E − shift, F_ref = F − shift (known model error)."""
    prediction = model.predict(atoms)
    out = atoms.copy()
    out.calc = SinglePointCalculator(
        out, energy=prediction.energy - energy_shift, forces=prediction.forces - force_shift
    )
    return out


# --- known answers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("improper", [False, True])
def test_injected_powers_recovered(improper):
    amplitudes = {1: 0.05, 2: 0.02, 3: 0.01, 4: 0.004}
    model = testing.anisotropic_qtip4pf(amplitudes, seed=3)
    atoms = dimer()
    grid = "T+i" if improper else "T"
    result = A.audit_structure(model, atoms, grid, lmax=5, convergence_grids=[])
    expected = testing.expected_power(model, atoms, lmax=5)
    power = np.array(result.spectrum.power_eV2)
    for lam in range(5):
        assert power[lam] == pytest.approx(expected[lam], rel=1e-10), lam
    assert abs(power[5]) < 1e-24  # nothing injected at λ = 5
    if improper:  # f_ℓ(−R) = (−1)^ℓ f_ℓ(R): all power of ℓ in the sector of parity (−1)^ℓ
        even, odd = np.array(result.spectrum.power_even_eV2), np.array(result.spectrum.power_odd_eV2)
        natural = np.where(np.arange(6) % 2 == 1, odd, even)
        other = np.where(np.arange(6) % 2 == 1, even, odd)
        np.testing.assert_allclose(natural[:5], power[:5], rtol=1e-10)
        assert np.all(np.abs(other) < 1e-24)
    else:
        assert result.spectrum.power_odd_eV2 is None


def test_invariant_model_is_zero_everywhere():
    model = fast_qtip4pf()
    report = A.audit(model, [water_monomer(), dimer(), small_box()], grid="I+i", lmax=2,
                     convergence_grids=["paper-0", "paper-i", "T"])
    for s in report.structures:
        assert abs(s.energy_deviation_meV) / A.MEV < TINY
        assert s.energy_std_meV / A.MEV < TINY
        assert s.force_deviation_max_meV_per_A / A.MEV < TINY
        assert s.force_std_meV_per_A / A.MEV < TINY
        assert s.spectrum.breaking_power() < TINY**2
        assert all(p.energy_error_meV / A.MEV < TINY and p.force_mae_meV_per_A / A.MEV < TINY for p in s.convergence)
        if s.periodic:
            assert s.stress_deviation_rms_meV_per_A3 / A.MEV < TINY
            assert s.stress_std_meV_per_A3 / A.MEV < TINY
            assert s.torque_rms_eV is None
        else:
            assert s.stress_deviation_rms_meV_per_A3 is None
            for value in (s.torque_raw_eV, s.torque_rms_eV, s.torque_symmetrized_eV, s.net_force_rms_eV_per_A):
                assert value < TINY
    assert report.summary["torque_rms_eV"] < TINY
    assert report.summary["spectrum_mean_breaking_power_eV2"] < TINY**2
    assert report.structures[2].spectrum.power_eV2[0] > 0  # the invariant mean is there


def test_torque_is_the_rotational_derivative_of_the_energy():
    """Net torque about the centre of mass τ satisfies n·τ = −dE/dθ for a rotation by θ about n."""
    model = testing.anisotropic_qtip4pf({1: 0.05, 2: 0.03}, seed=1)
    atoms = water_monomer()
    result = A.audit_structure(model, atoms, "T", lmax=0, convergence_grids=[])
    centre, h = atoms.get_center_of_mass(), 1e-4
    gradient = []
    for axis in np.eye(3):
        energies = []
        for theta in (h, -h):
            R = Rotation.from_rotvec(theta * axis).as_matrix()
            turned = atoms.copy()
            turned.positions = (atoms.positions - centre) @ R.T + centre
            energies.append(model.predict(turned).energy)
        gradient.append((energies[0] - energies[1]) / (2 * h))
    assert result.torque_raw_eV == pytest.approx(np.linalg.norm(gradient), rel=1e-6)
    assert result.torque_raw_eV > 1e-3
    assert result.net_force_raw_eV_per_A < TINY  # translations still leave the energy unchanged


@pytest.mark.parametrize("L, exact, coarse", [(2, "T", "D2"), (3, "O", "T"), (4, "legendre-3", "O"), (5, "I", "legendre-3")])
def test_band_limited_model_is_invariant_after_averaging_only_on_a_degree_L_rule(L, exact, coarse):
    model = testing.anisotropic_qtip4pf({L: 0.05}, seed=2)
    atoms = water_monomer()
    assert so3.get(exact).degree == L and so3.get(coarse).degree == L - 1
    invariant = qtip4pf().predict(atoms).energy  # the pure-ℓ term averages to zero
    averaged = {
        name: [A.audit_structure(model, rotate(atoms, Q), name, lmax=0, convergence_grids=[]).energy_symmetrized_eV
               for Q in so3.haar(4, seed=L).rotations]
        for name in (exact, coarse)
    }
    assert np.max(np.abs(np.array(averaged[exact]) - invariant)) < TINY
    assert np.ptp(averaged[coarse]) > 1e-5


def test_rotational_error_and_convergence_known_answer():
    """For E = q-TIP4P/F + g(û) with pure ℓ = 2, the average is the q-TIP4P/F energy: the raw deviation
    is g(û(x)); rules exact to degree ≥ 2 converge exactly; inversion alone does nothing (ℓ even)."""
    model = testing.anisotropic_qtip4pf({2: 0.05}, seed=4)
    atoms = dimer()
    report = A.audit(model, [atoms], grid="3i", lmax=2, convergence_grids=["paper-0", "paper-i", "paper-2", "D2+i"])
    g = model.predict(atoms).energy - qtip4pf().predict(atoms).energy
    s = report.structures[0]
    assert s.energy_deviation_meV == pytest.approx(g * A.MEV, rel=1e-9)
    rows = {row["grid"]: row for row in report.convergence}
    assert rows["paper-0"]["energy_mae_meV"] == pytest.approx(abs(g) * A.MEV, rel=1e-9)
    assert rows["paper-i"]["energy_mae_meV"] == pytest.approx(abs(g) * A.MEV, rel=1e-9)
    assert rows["paper-2"]["energy_mae_meV"] / A.MEV < TINY
    assert rows["D2+i"]["energy_mae_meV"] > 1e-3
    assert rows["paper-0"]["force_mae_meV_per_A"] == pytest.approx(report.summary["rotational_force_mae_meV_per_A"])
    assert [row["evaluations"] for row in report.convergence] == [1, 2, 18, 8]


def test_all_grids_share_one_batched_call():
    calls = []

    class Counting(Model):
        species = frozenset({1, 8})

        def __init__(self):
            self.inner = qtip4pf()

        def _predict_many(self, structures, rotations):
            calls.append([len(R) for R in rotations])
            return self.inner.predict_many(structures, rotations)

    A.audit_structure(Counting(), water_monomer(), "3i", lmax=2, convergence_grids=["paper-0", "paper-i", "paper-3"])
    # 3i (150) holds 3; the identity and −identity come from 0 and i; the spectrum reuses 3i (degree 4)
    assert calls == [[152]]


def test_model_error_beside_rotational_error():
    model = fast_qtip4pf()
    shifts = [0.010, 0.030]  # eV: model − reference
    frames = [labelled(water_monomer(), model, shifts[0], 0.002), labelled(small_box(), model, shifts[1], 0.002)]
    report = A.audit(model, frames, grid="T", lmax=1, convergence_grids=[])
    own = report.summary["model_error"]
    assert own["n_structures"] == 2
    assert own["energy_mae_meV"] == pytest.approx(np.mean(shifts) * A.MEV)
    offset = sum(shifts) / (3 + 24)
    assert own["energy_offset_meV_per_atom"] == pytest.approx(offset * A.MEV)
    removed = [shifts[0] - 3 * offset, shifts[1] - 24 * offset]
    assert own["energy_mae_offset_removed_meV"] == pytest.approx(np.mean(np.abs(removed)) * A.MEV)
    assert own["force_mae_meV_per_A"] == pytest.approx(2.0) and own["force_rmse_meV_per_A"] == pytest.approx(2.0)
    assert report.summary["force_error_ratio"] < 1e-9
    assert not A.exceeds(report, 1e-6)


def test_float64_separates_round_off_from_breaking():
    model32 = fast_qtip4pf(dtype=torch.float32)
    atoms = small_box()
    raw = A.audit_structure(model32, atoms, "T", lmax=0, convergence_grids=[])
    model64 = A.in_float64(model32)
    exact = A.audit_structure(model64, atoms, "T", lmax=0, convergence_grids=[])
    assert model32.dtype == torch.float32 and model64.module is not model32.module  # the input is unchanged
    assert A.model_dtype(model64) == "float64"
    assert raw.force_deviation_max_meV_per_A / A.MEV > 1e-7  # float32 round-off looks like breaking
    assert exact.force_deviation_max_meV_per_A / A.MEV < TINY


# --- bad input -----------------------------------------------------------------------------------------
def _bad_structures() -> dict[str, tuple[Atoms, str]]:
    nan = water_monomer()
    nan.positions[1, 0] = np.nan
    close = water_monomer()
    close.positions[2] = close.positions[1] + [0.3, 0.0, 0.0]
    salt = Atoms("NaCl", positions=[[0, 0, 0], [2.4, 0, 0]])
    empty = Atoms()
    cases = {"nan": (nan, "NaN"), "close": (close, "closer than 0.5"), "species": (salt, "unknown species"),
             "empty": (empty, "empty")}
    for name, (atoms, _) in cases.items():
        atoms.info["name"] = f"bad-{name}"
    return cases


@pytest.mark.parametrize("case", ["nan", "close", "species", "empty"])
def test_bad_structures_are_named(case):
    atoms, problem = _bad_structures()[case]
    with pytest.raises(StructureError, match=f"bad-{case}.*{problem}"):
        A.audit(fast_qtip4pf(), [water_monomer(), atoms], grid="T", lmax=0, convergence_grids=[])


def test_skip_failures_lists_what_was_left_out():
    atoms, _ = _bad_structures()["nan"]
    report = A.audit(fast_qtip4pf(), [water_monomer(), atoms], grid="T", lmax=0, convergence_grids=[], skip_failures=True)
    assert [s.index for s in report.structures] == [0]
    assert report.skipped[0]["index"] == 1 and "bad-nan" in report.skipped[0]["reason"]


# --- the command line ----------------------------------------------------------------------------------
MODELS_MODULE = """
from symprobe import testing
from symprobe.models.qtip4pf import qtip4pf

def invariant():
    return qtip4pf(cutoff=4.0)

def broken():
    return testing.anisotropic_qtip4pf({2: 0.05}, seed=5, cutoff=4.0)
"""


@pytest.fixture
def models_module(tmp_path, monkeypatch):
    (tmp_path / "audit_test_models.py").write_text(textwrap.dedent(MODELS_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "audit_test_models"


@pytest.fixture
def labelled_file(tmp_path):
    model = fast_qtip4pf()
    rng = np.random.default_rng(0)
    frames = []
    for atoms in (water_monomer(), small_box()):
        prediction = model.predict(atoms)
        framed = atoms.copy()
        framed.calc = SinglePointCalculator(
            framed, energy=prediction.energy + 0.01, forces=prediction.forces + rng.normal(0, 0.01, (len(atoms), 3))
        )
        frames.append(framed)
    path = tmp_path / "labelled.extxyz"
    write(path, frames)
    return path


def _run(capsys, *argv):
    code = cli.main(["audit", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


FAST = ("--grid", "T+i", "--lmax", "1", "--convergence", "paper-0,paper-i,D2+i")


def _documented_keys() -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", SCHEMA_DOC.read_text(), flags=re.M))


def _keys(value, prefix: str = "") -> tuple[set[str], set[str]]:
    """(all paths, leaf paths) of a JSON value; lists of objects are entered as ``path[]``."""
    paths, leaves = set(), set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            sub_paths, sub_leaves = _keys(item, path)
            paths |= sub_paths
            leaves |= sub_leaves if isinstance(item, dict) or (isinstance(item, list) and item and isinstance(item[0], dict)) else {path}
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for item in value:
            sub_paths, sub_leaves = _keys(item, prefix + "[]")
            paths |= sub_paths
            leaves |= sub_leaves
    return paths, leaves


def test_cli_writes_documented_json_and_figures(tmp_path, capsys, models_module, labelled_file):
    bad = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [np.nan, 0, 0]])
    bad.info["name"] = "broken frame"
    mixed = tmp_path / "mixed.extxyz"
    write(mixed, [*read(labelled_file, ":"), bad])
    out = tmp_path / "audit"
    code, stdout, _ = _run(capsys, f"{models_module}:broken", mixed, *FAST, "--out", out, "--skip-failures")
    assert code == 0, stdout
    data = json.loads((out / "audit.json").read_text())
    documented = _documented_keys()
    paths, leaves = _keys(data)
    assert documented - paths == set(), "documented keys missing from audit.json"
    assert leaves - documented == set(), "undocumented keys in audit.json"
    assert data["schema"] == A.SCHEMA and data["model"]["dtype"] == "float64"
    assert data["skipped"][0]["name"] == "broken frame"
    assert data["summary"]["rotational_energy_mae_meV"] > 1.0  # the injected ℓ = 2 term
    for figure in ("convergence.png", "spectrum.png", "distribution.png"):
        assert (out / figure).stat().st_size > 10_000
    assert "rotational / own force error" in stdout


def test_cli_fail_above_exit_codes(tmp_path, capsys, models_module, labelled_file):
    ok, _, _ = _run(capsys, f"{models_module}:invariant", labelled_file, *FAST, "--out", tmp_path / "a", "--fail-above", "0.01")
    assert ok == 0
    failed, _, err = _run(capsys, f"{models_module}:broken", labelled_file, *FAST, "--out", tmp_path / "b", "--fail-above", "0.01")
    assert failed == 3 and "FAIL" in err
    unlabelled = tmp_path / "unlabelled.extxyz"
    write(unlabelled, [water_monomer()])
    no_labels, _, err = _run(capsys, f"{models_module}:invariant", unlabelled, *FAST, "--out", tmp_path / "c", "--fail-above", "1")
    assert no_labels == 2 and "reference forces" in err
    assert not (tmp_path / "c" / "audit.json").exists()


@pytest.mark.parametrize("case", ["nan", "close", "species", "empty"])
def test_cli_names_bad_structures(tmp_path, capsys, models_module, case):
    atoms, problem = _bad_structures()[case]
    path = tmp_path / f"{case}.extxyz"
    write(path, [water_monomer(), atoms])
    code, _, err = _run(capsys, f"{models_module}:invariant", path, *FAST, "--out", tmp_path / "out")
    assert code == 2
    assert "bad-" + case in err and re.search(problem, err), err


def test_cli_unreadable_file(tmp_path, capsys, models_module):
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("this is not\nan xyz file\n")
    code, _, err = _run(capsys, f"{models_module}:invariant", garbage, *FAST, "--out", tmp_path / "out")
    assert code == 2 and "garbage.extxyz" in err and "cannot read" in err
    code, _, err = _run(capsys, f"{models_module}:invariant", tmp_path / "missing.xyz", "--out", tmp_path / "out")
    assert code == 2 and "missing.xyz" in err and "no such file" in err


# --- what the audit says before it starts; molecules in periodic boxes; figures ---------------------------
def test_estimate_is_one_timed_call_scaled_to_every_structure(monkeypatch):
    model, calls = fast_qtip4pf(), []
    original = model.predict_rotated

    def counted(atoms, rotations):
        calls.append((len(atoms), len(rotations)))
        return original(atoms, rotations)

    monkeypatch.setattr(model, "predict_rotated", counted)
    total, call = A.estimated_seconds(model, [water_monomer(), small_box()], per_structure=24)
    assert calls == [(24, 8)]  # one call, on the largest structure
    assert total == pytest.approx(call / (8 * 24) * 24 * (3 + 24))


def test_cli_prints_the_estimated_time_before_the_first_structure(tmp_path, capsys, monkeypatch, models_module, labelled_file):
    printed, original = [], A.audit_structure

    def first_sees_the_estimate(*args, **kwargs):
        printed.append(capsys.readouterr().out)
        return original(*args, **kwargs)

    monkeypatch.setattr(audit_run, "audit_structure", first_sees_the_estimate)
    code, _, _ = _run(capsys, f"{models_module}:invariant", labelled_file, *FAST, "--out", tmp_path / "out")
    assert code == 0
    lines = [line for line in printed[0].splitlines() if "estimated time" in line]
    assert len(lines) == 1 and re.match(r"audit: estimated time about [\d.]+ (s|min|h) \(one timed model call of ", lines[0])


def boxed_monomer(box: float) -> Atoms:
    """The water monomer in a periodic cubic ``box`` Å cell (as the paper's monomer file: pbc = T T T)."""
    atoms = water_monomer(box)
    atoms.pbc = True
    return atoms


def test_isolated_gives_the_torque_of_a_molecule_in_a_large_box():
    model = testing.anisotropic_qtip4pf({2: 0.05}, seed=5, cutoff=4.0)
    periodic = A.audit(model, [boxed_monomer(100.0)], grid="T+i", lmax=1, convergence_grids=[])
    isolated = A.audit(model, [boxed_monomer(100.0)], grid="T+i", lmax=1, convergence_grids=[], isolated=True)
    assert periodic.structures[0].torque_rms_eV is None
    assert isolated.structures[0].torque_rms_eV > 1e-6  # the injected ℓ = 2 term turns the molecule
    assert isolated.structures[0].energy_deviation_meV == pytest.approx(periodic.structures[0].energy_deviation_meV, abs=1e-9)


def test_cli_says_it_audits_periodic_and_refuses_to_isolate_a_small_cell(tmp_path, capsys, models_module):
    large, small = tmp_path / "large.extxyz", tmp_path / "small.extxyz"
    write(large, boxed_monomer(100.0))
    write(small, boxed_monomer(6.0))  # 6 Å < extent 1.5 Å + cutoff 4 Å + margin of the M site
    code, out, _ = _run(capsys, f"{models_module}:broken", large, *FAST, "--out", tmp_path / "a")
    assert code == 0
    assert "1 of 1 structures periodic (pbc = T T T): audited as periodic, so net force and torque are not defined" in out
    assert json.loads((tmp_path / "a" / "audit.json").read_text())["structures"][0]["torque_rms_eV"] is None
    code, out, _ = _run(capsys, f"{models_module}:broken", large, *FAST, "--out", tmp_path / "b", "--isolated")
    assert code == 0 and "audited as isolated" in out
    assert json.loads((tmp_path / "b" / "audit.json").read_text())["structures"][0]["torque_rms_eV"] > 0
    code, out, err = _run(capsys, f"{models_module}:broken", small, *FAST, "--out", tmp_path / "c", "--isolated")
    assert code == 2 and "audited as isolated" not in out
    assert err.count("\n") == 1 and "cannot audit as isolated: the cell is 6 Å wide along cell vector a" in err


def _report(tmp_path, capsys, models_module, labelled_file, *argv) -> dict:
    code, _, _ = _run(capsys, f"{models_module}:broken", labelled_file, "--out", tmp_path, *argv)
    assert code == 0
    return json.loads((tmp_path / "audit.json").read_text())


def test_convergence_figure_leaves_out_the_reference_grid(tmp_path, capsys, models_module, labelled_file):
    from symprobe.figures import convergence_series

    report = _report(tmp_path, capsys, models_module, labelled_file, "--grid", "T+i", "--lmax", "1", "--convergence", "paper-0,D2+i,T+i")
    assert [row["grid"] for row in report["convergence"]] == ["paper-0", "D2+i", "T+i"]
    assert report["convergence"][2]["energy_mae_meV"] == 0.0  # the reference against itself
    plotted = [row["grid"] for rows in convergence_series(report).values() for row in rows]
    assert plotted == ["paper-0", "D2+i"]


def test_no_convergence_figure_without_convergence_grids(tmp_path, capsys, models_module, labelled_file):
    _report(tmp_path, capsys, models_module, labelled_file, "--grid", "T+i", "--lmax", "1", "--convergence", "none")
    assert not (tmp_path / "convergence.png").exists()
    assert (tmp_path / "spectrum.png").exists() and (tmp_path / "distribution.png").exists()


@pytest.mark.parametrize("spread", [0.5, 12.0], ids=["within-a-decade", "twelve-decades"])
def test_distribution_tick_labels_do_not_collide(spread):
    import matplotlib.pyplot

    from symprobe.figures import distribution_plot

    rng = np.random.default_rng(0)
    per_atom = (1e-12 * 10 ** rng.uniform(0, spread, 200)).tolist()
    structure = {"energy_deviation_meV": 1e-11, "force_deviation_per_atom_meV_per_A": per_atom}
    report = {"structures": [structure], "summary": {"model_error": None}, "grid": {"name": "T+i"}, "model": {"name": "m"}}
    fig = distribution_plot(report)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        labels = [tick.label1 for tick in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
                  if tick.label1.get_visible() and tick.label1.get_text() and low <= tick.get_loc() <= high]
        boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda box: box.x0)
        assert len(boxes) >= 2
        assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes)), [label.get_text() for label in labels]
    matplotlib.pyplot.close(fig)
