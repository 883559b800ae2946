"""``symprobe bench``: the built-in set (species skipping), ml-peg's walk, the numerical floor, and known
answers: an exactly invariant model stays at its floor, one with a known orientation term rises above it."""

from __future__ import annotations

import json

import numpy as np

from symprobe.bench import FLOOR_FACTOR, bench, builtin_set, walk_rotations
from symprobe.bench.metrics import WALK_STEPS_DEG, bench_model, invariant_permutation, numerical_floor, walk_metric
from symprobe.cli import main
from symprobe.models.external import load_model
from symprobe.models.qtip4pf import qtip4pf
from symprobe.testing import anisotropic_qtip4pf


def test_walk_is_mlpegs_seeded_walk():
    orientations, angles = walk_rotations()
    assert orientations.shape == (114, 3, 3) and np.allclose(orientations @ orientations.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(angles[: len(WALK_STEPS_DEG)], WALK_STEPS_DEG, atol=1e-9)  # the small steps come first
    assert np.allclose(walk_rotations()[0], orientations)  # seeded


def test_invariant_permutation_keeps_water_molecules_whole():
    water = builtin_set(["water-liquid"])["water-liquid"]
    order = invariant_permutation(water, np.random.default_rng(1))
    assert sorted(order) == list(range(len(water))) and np.array_equal(water.numbers[order], water.numbers)
    assert not np.array_equal(order, np.arange(len(water)))
    assert (order.reshape(-1, 3)[:, 0] % 3 == 0).all() and (order.reshape(-1, 3).max(1) - order.reshape(-1, 3).min(1) == 2).all()


def test_an_exact_model_sits_at_its_floor_and_a_known_term_rises_above_it():
    structures = builtin_set(["H2O", "CH4"])
    exact = bench_model(qtip4pf(), structures)
    assert [s["structure"] for s in exact["skipped"]] == ["CH4"] and "unknown species C" in exact["skipped"][0]["reason"]
    row = exact["structures"]["H2O"]
    assert not row["above_floor"] and row["walk"]["mean_dF_meV_per_A"] < 1e-6  # float64 round-off
    broken = bench_model(anisotropic_qtip4pf({1: 1e-3, 2: 1e-3}), structures)["structures"]["H2O"]
    assert broken["above_floor"] and broken["walk"]["mean_dF_meV_per_A"] > FLOOR_FACTOR * broken["floor"]["dF_meV_per_A"]
    assert broken["walk"]["max_dE_meV_per_atom"] > 0.1  # a_ℓ = 1 meV per molecule over 3 atoms
    small = np.array(broken["walk"]["dF_meV_per_A"][:5])  # 1° steps: smooth breaking changes little
    assert small.max() < np.array(broken["walk"]["dF_meV_per_A"][-100:]).mean()


def test_emt_on_a_rattled_metal_is_at_its_floor():
    emt = load_model("ase.calculators.emt:EMT")
    al = builtin_set(["Al-fcc"])["Al-fcc"]
    floor, walk = numerical_floor(emt, al), walk_metric(emt, al)
    assert floor["dF_meV_per_A"] < 1e-6 and walk["mean_dF_meV_per_A"] < FLOOR_FACTOR * max(floor["dF_meV_per_A"], 1e-9)
    assert np.abs(emt.predict(al).forces).max() > 0.01  # rattled: forces that can break symmetry


def test_bench_command_writes_json_and_html_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "builtin:qtip4pf", "--structures", "H2O,CH4", "--out", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert list(result["models"]) == ["builtin:qtip4pf"] and result["walk_orientations"] == 114
    page = (out / "bench.html").read_text()
    assert "table-bench-summary" in page and "CH4" in page and "data:image/png;base64" in page
    assert "skipped: CH4" in capsys.readouterr().out
    assert main(["bench", "builtin:qtip4pf", "--structures", "H2O", "--out", str(out)]) == 2  # a used directory
    assert "already holds a run" in capsys.readouterr().err
    assert main(["bench", "builtin:qtip4pf", "--structures", "H2O,quartz", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("symprobe bench: error: unknown bench structure(s) quartz") and "\n" not in err


def test_bench_runs_every_model_given():
    structures = builtin_set(["H2O"])
    result = bench({"a": qtip4pf(), "b": qtip4pf()}, structures, progress=lambda line: None)
    assert list(result["models"]) == ["a", "b"] and set(result["seconds"]) == {"a", "b"}


def test_alpha_quartz_is_quartz():
    """Nine atoms (Si3O6) in P3₂21, every Si with four O at 1.6 Å (the rattle moves atoms by about 0.05 Å)."""
    import spglib
    from ase.neighborlist import neighbor_list

    from symprobe.bench.structures import builtin_set

    quartz = builtin_set(["alpha-quartz"])["alpha-quartz"]
    assert quartz.get_chemical_formula() == "O6Si3"
    assert spglib.get_spacegroup((quartz.cell[:], quartz.get_scaled_positions(), quartz.numbers), symprec=0.25) == "P3_221 (154)"
    i, j, d = neighbor_list("ijd", quartz, 1.9)
    symbols = quartz.get_chemical_symbols()
    assert all(symbols[a] != symbols[b] for a, b in zip(i, j))  # no Si–Si or O–O within 1.9 Å
    silicon = [k for k, s in enumerate(symbols) if s == "Si"]
    assert [int(np.sum(i == k)) for k in silicon] == [4, 4, 4] and np.abs(d - 1.61).max() < 0.25
