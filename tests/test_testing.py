"""Known-answer models: q-TIP4P/F against an independent numpy reference, finite differences, exact
invariance, and the exact angular power of the orientation-dependent terms."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.optimize import BFGS
from ase.stress import full_3x3_to_voigt_6_stress
from scipy.integrate import lebedev_rule
from scipy.spatial.transform import Rotation
from scipy.special import erfc, roots_legendre

from symprobe import so3
from symprobe.models.torch_model import batch_graph
from symprobe.structures import StructureError, water_box
from symprobe.models.qtip4pf import check_water_molecules, qtip4pf
from symprobe.testing import (
    NoO3Term,
    anisotropic_qtip4pf,
    expected_power,
    finite_difference_forces,
    max_rotation_deviation,
    noo3_qtip4pf,
    random_rotations,
    real_spherical_harmonics,
    unit_bisectors,
)

# --- an independent numpy implementation of q-TIP4P/F (paper values, loops over periodic images) -----
KCAL = units.kcal / units.mol
KE = units.Hartree * units.Bohr


def reference_energy(atoms: Atoms, rc: float = 9.0, alpha: float = 0.2, damped: bool = True) -> float:
    """q-TIP4P/F by brute force: ``damped`` uses DSF electrostatics and shifted-force LJ cut at ``rc``;
    otherwise plain Coulomb and LJ over all pairs (isolated structures only)."""
    D, a, r0 = 116.09 * KCAL, 2.287, 0.9419
    k, t0 = 87.85 * KCAL, np.radians(107.4)
    eps, sig, gamma = 0.1852 * KCAL, 3.1589, 0.73612
    qm, qh = -1.1128, 0.5564

    def lj(r):
        return 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)

    def dlj(r):
        return 4 * eps * (-12 * sig**12 / r**13 + 6 * sig**6 / r**7)

    def coulomb(r):
        if not damped:
            return 1 / r
        c = erfc(alpha * rc) / rc**2 + 2 * alpha / np.sqrt(np.pi) * np.exp(-(alpha * rc) ** 2) / rc
        return np.where(r < rc, erfc(alpha * r) / r - erfc(alpha * rc) / rc + c * (r - rc), 0.0)

    def pair_lj(r):
        if not damped:
            return lj(r)
        return np.where(r < rc, lj(r) - lj(rc) - dlj(rc) * (r - rc), 0.0)

    x = atoms.get_positions()
    n_mol = len(atoms) // 3
    oxygens, charged = [], []
    energy = 0.0
    for m in range(n_mol):
        o = x[3 * m]
        h1 = o + atoms.get_distance(3 * m, 3 * m + 1, mic=True, vector=True)
        h2 = o + atoms.get_distance(3 * m, 3 * m + 2, mic=True, vector=True)
        v1, v2 = h1 - o, h2 - o
        r1, r2 = np.linalg.norm(v1), np.linalg.norm(v2)
        theta = np.arccos(v1 @ v2 / (r1 * r2))
        for r in (r1, r2):
            energy += D * (a**2 * (r - r0) ** 2 - a**3 * (r - r0) ** 3 + 7 / 12 * a**4 * (r - r0) ** 4)
        energy += 0.5 * k * (theta - t0) ** 2
        oxygens.append(o)
        charged.append((np.array([gamma * o + (1 - gamma) / 2 * (h1 + h2), h1, h2]), np.array([qm, qh, qh])))
    if atoms.pbc.all():
        cell = atoms.cell.array
        heights = atoms.cell.volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = np.ceil((rc + 4.0) / heights).astype(int)
        images = np.array(list(itertools.product(*[range(-n, n + 1) for n in reach]))) @ cell
    else:
        images = np.zeros((1, 3))
    for m, n in itertools.product(range(n_mol), repeat=2):
        t = images if m != n else images[np.any(images != 0, axis=1)]
        energy += 0.5 * pair_lj(np.linalg.norm(oxygens[n] + t - oxygens[m], axis=1)).sum()
        (sm, qm_), (sn, qn) = charged[m], charged[n]
        r = np.linalg.norm(sn[None, None, :, :] + t[:, None, None, :] - sm[None, :, None, :], axis=-1)
        energy += 0.5 * KE * (qm_[:, None] * qn[None, :] * coulomb(r)).sum()
    return float(energy)


# --- structures ----------------------------------------------------------------------------------------
def equilibrium_monomer() -> np.ndarray:
    r, th = 0.9419, np.radians(107.4)
    s, c = r * np.sin(th / 2), r * np.cos(th / 2)
    return np.array([[0, 0, 0], [s, 0, c], [-s, 0, c]])


def cluster(n: int, seed: int = 0, spacing: float = 3.0) -> Atoms:
    """``n`` distorted molecules in random orientations on a line-ish random arrangement (isolated)."""
    rng = np.random.default_rng(seed)
    positions = []
    for k in range(n):
        R = Rotation.random(random_state=rng.integers(2**31)).as_matrix()
        centre = np.array([spacing * k, rng.normal(0, 0.5), rng.normal(0, 0.5)])
        positions.append((equilibrium_monomer() + rng.normal(0, 0.04, (3, 3))) @ R.T + centre)
    atoms = Atoms("OH2" * n, positions=np.concatenate(positions), pbc=False)
    atoms.info["name"] = f"cluster of {n}"
    return atoms


def sheared_box(seed: int = 0) -> Atoms:
    """8 molecules in a triclinic periodic cell, wrapped so that molecules straddle the boundaries."""
    atoms = water_box(2, seed=seed)
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.0, 0.0], [0.2, 1.0, 0.0], [0.1, -0.15, 1.0]]), scale_atoms=True)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    atoms.wrap()
    atoms.info["name"] = "sheared 8-molecule box"
    return atoms


def dimer() -> Atoms:
    d = equilibrium_monomer() @ Rotation.from_rotvec([0, np.pi / 2 - np.radians(107.4) / 2, 0]).as_matrix().T
    acceptor = equilibrium_monomer() @ Rotation.from_rotvec([0, 0, np.pi]).as_matrix().T
    acceptor = acceptor @ Rotation.from_rotvec([0, 0.9, 0]).as_matrix().T + [2.9, 0, 0]
    return Atoms("OH2OH2", positions=np.vstack([d, acceptor]), pbc=False)


@pytest.fixture(scope="module")
def model():
    return qtip4pf()


# --- q-TIP4P/F energies ---------------------------------------------------------------------------------
def test_monomer_minimum_and_intramolecular_terms(model):
    atoms = Atoms("OH2", positions=equilibrium_monomer() + 5.0)
    prediction = model.predict(atoms)
    assert abs(prediction.energy) < 1e-14
    assert np.abs(prediction.forces).max() < 1e-10
    # stretch one bond by 0.1 Å and open the angle by 5°: quartic Morse + harmonic bend, by hand
    r, th = 0.9419, np.radians(107.4)
    dr, dth = 0.1, np.radians(5.0)
    positions = np.array([[0, 0, 0], [(r + dr) * np.sin((th + dth) / 2), 0, (r + dr) * np.cos((th + dth) / 2)],
                          [-r * np.sin((th + dth) / 2), 0, r * np.cos((th + dth) / 2)]])
    x = 2.287 * dr
    expected = 116.09 * KCAL * (x**2 - x**3 + 7 / 12 * x**4) + 0.5 * 87.85 * KCAL * dth**2
    assert model.predict(Atoms("OH2", positions=positions)).energy == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("make", [dimer, lambda: cluster(4, seed=3)], ids=["dimer", "cluster4"])
def test_isolated_energy_matches_reference(model, make):
    atoms = make()
    assert model.predict(atoms).energy == pytest.approx(reference_energy(atoms), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_periodic_energy_matches_reference(model, seed):
    atoms = sheared_box(seed)
    energy = model.predict(atoms).energy
    assert energy == pytest.approx(reference_energy(atoms), rel=1e-8)


def test_molecule_sees_its_own_images(model):
    """One molecule in a 4 Å cell (much smaller than the cutoff): only image interactions."""
    atoms = Atoms("OH2", positions=equilibrium_monomer() + [3.5, 3.7, 3.6], cell=[4.0, 4.2, 3.9], pbc=True)
    atoms.wrap()
    energy = model.predict(atoms).energy
    assert abs(energy) > 1e-3  # not just the (zero) intramolecular energy
    assert energy == pytest.approx(reference_energy(atoms), rel=1e-8)


def test_dimer_binding_and_dsf_against_plain_coulomb(model):
    """Optimised dimer: a hydrogen-bonded minimum near −0.28 eV (−6.4 kcal/mol) at r_OO ≈ 2.79 Å, and
    DSF (α = 0.2 Å⁻¹, 9 Å) within 0.03 eV of undamped Coulomb + plain LJ for the isolated pair."""
    atoms = dimer()
    atoms.calc = model.as_calculator()
    BFGS(atoms, logfile=None).run(fmax=1e-4, steps=300)
    energy = atoms.get_potential_energy()
    assert -0.35 < energy < -0.20
    assert 2.70 < atoms.get_distance(0, 3) < 2.90
    assert abs(energy - reference_energy(atoms, damped=False)) < 0.03


def test_energy_and_force_continuous_across_the_cutoff(model):
    """Rigidly separate a dimer through the 9 Å cutoff: second differences of E show neither jumps nor
    kinks (DSF and shifted-force LJ vanish with their first derivative at the cutoff)."""
    atoms = dimer()
    frames = []
    for d in np.arange(8.5, 10.5, 0.002):
        moved = atoms.copy()
        moved.positions[3:] += [d - 2.9, 0, 0]
        frames.append(moved)
    with torch.no_grad():
        energies = model.module(batch_graph(frames, model.cutoff)).numpy()
    assert np.abs(energies[0]) > 1e-4
    assert np.abs(np.diff(energies, 2)).max() < 1e-7
    assert np.abs(energies[-1]) < 1e-14  # beyond cutoff + molecule size: no interaction


# --- derivatives -------------------------------------------------------------------------------------------
def test_forces_and_stress_match_finite_differences(model):
    atoms = sheared_box(0)
    prediction = model.predict(atoms)
    numerical = finite_difference_forces(model, atoms, h=1e-4)
    assert np.abs(prediction.forces - numerical).max() < 1e-6 * max(1.0, np.abs(numerical).max())
    atoms.calc = model.as_calculator()
    with warnings.catch_warnings():  # ASE suggests its FiniteDifferenceCalculator; this call is the same
        warnings.simplefilter("ignore", FutureWarning)
        stress = atoms.calc.calculate_numerical_stress(atoms, d=1e-5)
    assert np.abs(full_3x3_to_voigt_6_stress(prediction.stress) - stress).max() < 1e-7


@pytest.mark.parametrize(
    "make", [lambda: anisotropic_qtip4pf({1: 0.3, 2: 0.2, 5: 0.1}), noo3_qtip4pf], ids=["ylm", "noo3"]
)
def test_anisotropic_forces_match_finite_differences(make):
    model = make()
    atoms = cluster(3, seed=1)
    numerical = finite_difference_forces(model, atoms, h=1e-4)
    assert np.abs(model.predict(atoms).forces - numerical).max() < 1e-6 * max(1.0, np.abs(numerical).max())


# --- invariance --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("improper", [False, True])
def test_qtip4pf_is_exactly_invariant(model, improper):
    rotations = random_rotations(6, seed=2, improper=improper)
    for atoms in (sheared_box(1), cluster(4, seed=5)):
        energy = model.predict(atoms).energy
        assert max_rotation_deviation(model, atoms, rotations) <= 1e-12 * abs(energy)


def test_anisotropic_model_is_not_invariant():
    model = anisotropic_qtip4pf({2: 0.1})
    assert max_rotation_deviation(model, cluster(2), random_rotations(4, seed=0)) > 1e-3


# --- spherical harmonics and the orientation terms ------------------------------------------------------
def test_real_spherical_harmonics_orthonormal_and_match_so3():
    lmax = 8
    points, weights = lebedev_rule(29)
    points = points.T
    harmonics = real_spherical_harmonics(lmax, torch.tensor(points))
    table = torch.cat(harmonics, dim=1).numpy()
    gram = table.T @ (weights[:, None] * table)
    assert np.abs(gram - np.eye(len(gram))).max() < 1e-12
    for l in range(lmax + 1):
        assert np.abs(harmonics[l].numpy() - so3.real_sph_harm(l, points)).max() < 1e-12


def test_anisotropic_term_is_the_stated_sum():
    amplitudes = {0: 0.05, 1: 0.1, 3: -0.2, 6: 0.07}
    model, base = anisotropic_qtip4pf(amplitudes, seed=4), qtip4pf()
    atoms = sheared_box(0)
    u = unit_bisectors(atoms)
    expected = 0.0
    for l, a in amplitudes.items():
        c = np.random.default_rng([4, l]).standard_normal(2 * l + 1)
        expected += a * (so3.real_sph_harm(l, u) @ (c / np.linalg.norm(c))).sum()
    assert model.predict(atoms).energy - base.predict(atoms).energy == pytest.approx(expected, rel=1e-12)


def test_noo3_term_is_ipi_formula():
    model, base = noo3_qtip4pf(), qtip4pf()
    atoms = cluster(3, seed=2)
    u = unit_bisectors(atoms)
    expected = 2e-2 * units.Hartree * np.exp(u * [1.0, 0.5, 2.0]).sum()
    assert model.predict(atoms).energy - base.predict(atoms).energy == pytest.approx(expected, rel=1e-12)


def euler_grid(L: int) -> tuple[np.ndarray, np.ndarray]:
    """ZYZ Euler product rule (Haar weights summing to 1), exact for functions of degree ≤ 2L."""
    n = 2 * L + 1
    x, w = roots_legendre(L + 1)
    phis = 2 * np.pi * np.arange(n) / n
    angles = np.array([(a, np.arccos(c), g) for a in phis for c in x for g in phis])
    weights = np.array([wc / 2 for _ in range(n) for wc in w for _ in range(n)]) / n**2
    return Rotation.from_euler("ZYZ", angles).as_matrix(), weights


@pytest.mark.parametrize("l", [1, 2, 3, 4])
def test_expected_power_single_degree_by_quadrature(l):
    """One pure degree: the variance of E(R x) over SO(3) is P_ℓ, the squared mean is P_0."""
    model = anisotropic_qtip4pf({l: 0.3}, seed=l)
    atoms = cluster(3, seed=7)
    rotations, weights = euler_grid(l)
    energies = model.predict_rotated(atoms, rotations).energies
    mean = weights @ energies
    power = expected_power(model, atoms)
    assert set(power) == set(range(l + 1))
    assert weights @ (energies - mean) ** 2 == pytest.approx(power[l], rel=1e-10)
    assert mean**2 == pytest.approx(power[0], rel=1e-10)
    assert all(power[k] == 0.0 for k in range(1, l))


def test_expected_power_mixed_degrees_by_wigner_projection_and_parity():
    amplitudes = {0: 0.1, 1: 0.2, 2: 0.15, 4: 0.1}
    model = anisotropic_qtip4pf(amplitudes, seed=3)
    atoms = cluster(3, seed=8)
    rotations, weights = euler_grid(4)
    f = model.predict_rotated(atoms, rotations).energies
    power = expected_power(model, atoms)
    for l in range(5):
        D = so3.wigner_D(l, rotations)  # real orthogonal, (N, 2l+1, 2l+1)
        projected = (2 * l + 1) * np.sum(np.einsum("n,n,nmk->mk", weights, f, D) ** 2)
        assert projected == pytest.approx(power[l], rel=1e-10, abs=1e-14)
    assert weights @ f**2 == pytest.approx(sum(power.values()), rel=1e-10)
    # inversion: f(−R) = Σ_ℓ (−1)^ℓ f_ℓ(R), so ∫ f(R) f(−R) dR = Σ_ℓ (−1)^ℓ P_ℓ
    f_inverted = model.predict_rotated(atoms, -rotations).energies
    assert weights @ (f * f_inverted) == pytest.approx(sum((-1) ** l * p for l, p in power.items()), rel=1e-10)


def test_expected_power_periodic_box():
    model = anisotropic_qtip4pf({2: 0.2}, seed=1)
    atoms = sheared_box(1)
    rotations, weights = euler_grid(2)
    f = model.predict_rotated(atoms, rotations).energies
    power = expected_power(model, atoms)
    assert weights @ (f - weights @ f) ** 2 == pytest.approx(power[2], rel=1e-10)
    assert (weights @ f) ** 2 == pytest.approx(power[0], rel=1e-10)


def test_noo3_power_is_exact_for_every_degree():
    """Non-band-limited: a degree-16 rule resolves the term to round-off; variance = Σ_{ℓ≥1} P_ℓ."""
    term = NoO3Term()
    atoms = cluster(3, seed=9)
    u = unit_bisectors(atoms)
    rotations, weights = euler_grid(16)
    rotated = torch.tensor(np.einsum("nab,ib->nia", rotations, u).reshape(-1, 3))
    f = term.per_molecule(rotated).reshape(len(rotations), -1).sum(1).numpy()
    power = expected_power(term, atoms, lmax=16)
    assert power[16] < 1e-20 * power[1]
    assert (weights @ f) ** 2 == pytest.approx(power[0], rel=1e-12)
    assert weights @ (f - weights @ f) ** 2 == pytest.approx(sum(p for l, p in power.items() if l), rel=1e-10)
    with pytest.raises(ValueError, match="not band-limited"):
        expected_power(term, atoms)


def test_expected_power_of_invariant_model(model):
    atoms = cluster(2)
    power = expected_power(model, atoms, lmax=3)
    assert power == {0: model.predict(atoms).energy ** 2, 1: 0.0, 2: 0.0, 3: 0.0}


# --- input errors and helpers -----------------------------------------------------------------------------
def test_bad_water_input_names_the_structure(model):
    atoms = cluster(2)
    swapped = atoms[[1, 0, 2, 3, 4, 5]]
    swapped.info["name"] = "swapped dimer"
    with pytest.raises(StructureError, match=r"swapped dimer: molecule 0 .* is H, O, H"):
        model.predict(swapped)
    with pytest.raises(StructureError, match="not a whole number"):
        model.predict(atoms[:5])
    with pytest.raises(StructureError, match="unknown species C"):
        model.predict(Atoms("COH2", positions=[[0, 0, 0], [3, 0, 0], [3.9, 0, 0], [2.7, 0.9, 0]]))
    check_water_molecules(atoms)  # whole molecules pass
    graph = batch_graph([swapped], model.cutoff)
    with pytest.raises(ValueError, match=r"structure #0 of the graph: atoms 0–2 are H, O, H"):
        model.module(graph)


def test_broken_molecule_is_refused(model):
    atoms = cluster(2)
    atoms.positions[1:3] = atoms.positions[0] + [[-2.5, 0.3, 0.0], [-2.5, -0.3, 0.0]]
    with pytest.raises(ValueError, match="M site .* broken molecule"):
        model.predict(atoms)


def test_random_rotations():
    proper, improper = random_rotations(5, seed=3), random_rotations(5, seed=3, improper=True)
    assert np.allclose(np.einsum("nij,nkj->nik", proper, proper), np.eye(3), atol=1e-14)
    assert np.allclose(np.linalg.det(proper), 1.0) and np.allclose(np.linalg.det(improper), -1.0)
    assert np.array_equal(improper, -proper)
    assert np.array_equal(proper, random_rotations(5, seed=3))
    assert not np.allclose(proper, random_rotations(5, seed=4))


def test_float32_model_runs_close_to_float64(model):
    atoms = sheared_box(0)
    single = qtip4pf(dtype=torch.float32)
    assert single.predict(atoms).energy == pytest.approx(model.predict(atoms).energy, rel=1e-4)
