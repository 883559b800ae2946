"""Ice cells without the shared data: GenIce2 cells obey the ice rules, are seeded, and the fallback says why."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from symprobe.study import ice

pytest.importorskip("genice2", reason="GenIce2 (the 'ice' extra) is not installed")


def test_genice_cells_obey_the_ice_rules():
    atoms = ice.genice_cell(2)
    assert len(atoms) == 192 and atoms.pbc.all()
    d = atoms.get_all_distances(mic=True)
    oxygens = np.flatnonzero(atoms.numbers == 8)
    hydrogens = np.flatnonzero(atoms.numbers == 1)
    # every O has two covalent H (≈ 0.957 Å) and four O neighbours within 3 Å
    assert np.all((d[np.ix_(oxygens, hydrogens)] < 1.1).sum(1) == 2)
    oo = d[np.ix_(oxygens, oxygens)]
    assert np.all(((oo > 0) & (oo < 3.0)).sum(1) == 4)
    # Bernal–Fowler: each O–O hydrogen bond carries exactly one H
    for a, b in zip(*np.nonzero(np.triu((oo > 0) & (oo < 3.0)))):
        oa, ob = oxygens[a], oxygens[b]
        on_bond = (d[oa, hydrogens] + d[ob, hydrogens]) < oo[a, b] + 0.2
        assert on_bond.sum() == 1
    # zero net dipole (GenIce2 'strict' depolarisation): Σ (r_H1 + r_H2 − 2 r_O) with minimum images
    dipole = np.zeros(3)
    for o in oxygens:
        for h in hydrogens[d[o, hydrogens] < 1.1]:
            dipole += atoms.get_distance(o, h, mic=True, vector=True)
    assert np.linalg.norm(dipole) < 0.05 * 64  # Å; one molecule's is ≈ 1.17 Å


def test_genice_cells_are_seeded_and_distinct():
    a, b, again = ice.genice_cell(2), ice.genice_cell(3), ice.genice_cell(2)
    assert np.array_equal(a.positions, again.positions)
    assert not np.allclose(a.positions, b.positions)
    state = np.random.get_state()[1].copy()
    ice.genice_cell(4)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is left as it was


def test_fallback_without_shared_data(monkeypatch):
    monkeypatch.setattr(ice, "shared_data_dir", lambda: None)
    cells, description = ice.ice_cells((2, 3))
    assert len(cells) == 2 and "GenIce2" in description and "seeds [2, 3]" in description
    monkeypatch.setitem(sys.modules, "genice2.genice", None)  # as if GenIce2 were not installed
    cells, description = ice.ice_cells((2, 3))
    assert cells == [] and description.startswith("skipped") and "GenIce2 is not installed" in description


def test_ice_study_compares_models_at_identical_geometries_when_relaxations_stop_early():
    from symprobe.study.ice import ice_study
    from symprobe.structures import water_box
    from symprobe.models.qtip4pf import qtip4pf

    model = qtip4pf()
    cells = [water_box(2, seed=seed) for seed in (0, 1)]
    for atoms, seed in zip(cells, (0, 1)):
        atoms.info["name"] = f"box {seed}"
    result = ice_study(model, model, cells, fmax=1e-4, max_steps=2)  # the same model twice, stopped early
    assert result["converged"] is False and all(c["steps_raw"] == 2 for c in result["cells"])
    assert result["relative_change_same_geometry"]["value"] == pytest.approx(0.0, abs=1e-9)
    done = ice_study(model, model, cells, fmax=50.0, max_steps=2)  # every start already meets 50 eV/Å
    assert done["converged"] is True and done["relative_change"]["value"] == pytest.approx(0.0, abs=1e-9)


def test_ice_relative_energies_converge_on_grids_exact_to_the_models_degree():
    """q-TIP4P/F + an ℓ = 1, 2 orientation term: averaging on any rule exact to degree 2 gives the reference's
    relative energies; the raw model's differ (the term's sum over molecules differs between cells)."""
    from symprobe import so3
    from symprobe.study.ice import ice_study
    from symprobe.structures import water_box
    from symprobe.testing import anisotropic_qtip4pf

    model = anisotropic_qtip4pf({1: 0.02, 2: 0.02})
    cells = [water_box(2, seed=seed) for seed in (0, 1, 2)]
    for atoms, seed in zip(cells, (0, 1, 2)):
        atoms.info["name"] = f"box {seed}"
    grids = [so3.identity(), so3.group("T"), so3.paper_grid("2"), so3.group("O")]
    rows = ice_study(model, model, cells, fmax=50.0, max_steps=1, grids=grids)["grid_convergence"]["rows"]
    assert [r["grid"] for r in rows] == ["identity", "T", "paper-2", "O"]
    assert rows[0]["relative_change"]["value"] > 1e-2  # meV/H2O
    assert all(r["relative_change"]["value"] < 1e-9 for r in rows[1:])
