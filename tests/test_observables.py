"""Observables on cases with known answers: ideal gas, perfect lattices, free rotors, random walks,
rotational diffusion, pure tones, AR noise, and built-in water boxes with broken molecules."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet
from scipy import signal, stats
from scipy.spatial.transform import Rotation

from symprobe.analysis.observables import (
    CM1_PER_INV_FS,
    EV_FS_PER_AMU_A2_PER_FS,
    angular_momentum,
    conserved_drift,
    decay_time,
    diffusion_coefficient,
    diffusive_window,
    dipole_correlations,
    dipole_directions,
    mean_squared_displacement,
    net_torque,
    orientational_autocorrelation,
    orientational_free_energy,
    persistent_molecules,
    power_spectrum,
    radial_distributions,
    trajectory_arrays,
    unwrap_positions,
    water_molecules,
)
from symprobe.analysis.statistics import curve_difference_significance, curve_mean_and_error
from symprobe.structures import water_box, water_monomer

# ---------------------------------------------------------------------------------------------------
# g(r)


def test_ideal_gas_rdf_is_one_within_error():
    rng = np.random.default_rng(0)
    length, n_atoms, n_frames = 16.0, 500, 10
    frames = [Atoms("Ar" * n_atoms, positions=rng.uniform(0, length, (n_atoms, 3)), cell=[length] * 3, pbc=True) for _ in range(n_frames)]
    rdf = radial_distributions(frames, [("Ar", "Ar")], r_max=7.5, bin_width=0.25)[("Ar", "Ar")]
    mean, error = curve_mean_and_error(rdf.g_frames, n_blocks=n_frames)
    resolved = rdf.r > 1.5  # enough pairs per bin for a Gaussian error
    verdict = curve_difference_significance(mean[resolved], error[resolved], np.ones(resolved.sum()), np.zeros(resolved.sum()), dof=n_frames - 1)
    assert not verdict["significant"], verdict["verdict"]
    assert 0.5 < verdict["chi2_per_dof"] < 2.0
    assert abs(np.average(mean[resolved], weights=rdf.r[resolved] ** 2) - 1.0) < 0.01  # the normalisation itself
    assert rdf.partner_density == pytest.approx((n_atoms - 1) / length**3)


@pytest.mark.parametrize(
    "atoms, shells",
    [
        # simple cubic a = 3 Å: 6 at a, 12 at a√2, 8 at a√3, 6 at 2a
        (bulk("Po", "sc", a=3.0).repeat(5), [(3.0, 6), (3.0 * np.sqrt(2), 18), (3.0 * np.sqrt(3), 26), (6.0, 32)]),
        # fcc a = 3.6 Å: 12 at a/√2, 6 at a, 24 at a√(3/2)
        (bulk("Cu", "fcc", a=3.6, cubic=True).repeat(4), [(3.6 / np.sqrt(2), 12), (3.6, 18), (3.6 * np.sqrt(1.5), 42)]),
    ],
)
def test_lattice_rdf_peaks_and_coordination(atoms, shells):
    symbol = atoms.get_chemical_symbols()[0]
    rdf = radial_distributions([atoms], [(symbol, symbol)], r_max=6.5, bin_width=0.05)[(symbol, symbol)]
    coordination = rdf.coordination()
    peaks = rdf.r[rdf.g > 0]
    for radius, cumulative in shells:
        assert np.min(np.abs(peaks - radius)) <= 0.025 + 1e-9  # the shell's bin holds its distance
        just_after = np.searchsorted(rdf.edges[1:], radius + 0.1)
        assert coordination[just_after] == pytest.approx(cumulative)
    assert np.all(rdf.g[rdf.r < shells[0][0] - 0.1] == 0)


def test_partial_rdfs_of_water_box():
    atoms = water_box(3, density=0.6, seed=1)  # dilute: no intermolecular H–H closer than 1.6 Å
    rdfs = radial_distributions([atoms], r_max=4.0, bin_width=0.02)
    oh = rdfs[("O", "H")]
    first = np.searchsorted(oh.edges[1:], 1.2)
    assert oh.coordination()[first] == pytest.approx(2.0)  # two covalent H per O
    assert oh.partner_density == pytest.approx(54 / atoms.get_volume())
    hh = rdfs[("H", "H")]
    # intramolecular H–H distance 2 r_OH sin(θ/2) = 1.5139 Å: one partner per H
    assert hh.coordination()[np.searchsorted(hh.edges[1:], 1.6)] == pytest.approx(1.0)
    assert rdfs[("O", "O")].coordination()[np.searchsorted(hh.edges[1:], 2.0)] == 0.0


def test_rdf_bad_input():
    atoms = water_box(2)
    with pytest.raises(ValueError, match="exceeds half the smallest cell width"):
        radial_distributions([atoms], r_max=10.0)
    with pytest.raises(ValueError, match="periodic cell"):
        radial_distributions([water_monomer()], r_max=3.0)
    with pytest.raises(ValueError, match="not enough C"):
        radial_distributions([atoms], [("C", "O")], r_max=2.0)


# ---------------------------------------------------------------------------------------------------
# Molecules and dipoles


def test_water_molecules_of_intact_box_split_by_boundaries():
    atoms = water_box(3, seed=2)
    found = water_molecules(atoms)
    assert len(found.triples) == 27 and found.n_broken == 0 and found.n_free_hydrogens == 0
    assert sorted(found.triples.ravel().tolist()) == list(range(81))
    # shift so that molecules straddle the cell faces, then wrap: identification and dipoles use minimum image
    spacing = atoms.cell[0, 0] / 3
    shifted = atoms.copy()
    shifted.positions += 0.5 * spacing + 0.3
    shifted.wrap()
    assert np.any(np.linalg.norm(shifted.positions[1::3] - shifted.positions[0::3], axis=1) > 2.0)  # some are split
    again = water_molecules(shifted)
    assert np.array_equal(again.triples, found.triples)
    u_before = dipole_directions(atoms.get_positions(), found.triples, atoms.cell.array)
    u_after = dipole_directions(shifted.get_positions(), again.triples, shifted.cell.array)
    assert np.allclose(u_before, u_after, atol=1e-12)
    positions, cells = trajectory_arrays([atoms, shifted])  # one cell per frame
    assert np.allclose(dipole_directions(positions, found.triples, cells), [u_before, u_before], atol=1e-12)


def test_water_molecules_flags_broken_molecules():
    atoms = water_box(3, seed=3)
    far = atoms.copy()
    far.positions[1] = far.positions[0] + [0.0, 0.0, 0.5 * far.cell[2, 2]]  # H of molecule 0 sent far away
    # keep the stray H clear of every O
    distances = far.get_distances(1, list(range(0, 81, 3)), mic=True)
    assert distances.min() > 1.25
    found = water_molecules(far)
    assert len(found.triples) == 26 and found.n_broken == 1 and found.n_free_hydrogens == 1
    assert 0 not in found.triples[:, 0]

    hydronium = atoms.copy()  # move H of molecule 0 onto molecule 13 (the box centre): OH⁻ + H3O⁺
    u13 = dipole_directions(atoms.get_positions(), np.array([[39, 40, 41]]), atoms.cell.array)[0]
    hydronium.positions[1] = hydronium.positions[39] - 0.98 * u13
    found = water_molecules(hydronium)
    assert len(found.triples) == 25 and found.n_broken == 2 and found.n_free_hydrogens == 0
    assert not {0, 39} & set(found.triples[:, 0].tolist())
    # a persistent set over the two frames keeps only molecules intact in both
    assert len(persistent_molecules([atoms, hydronium])) == 25
    with pytest.raises(ValueError, match="no oxygen"):
        water_molecules(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))


def test_shared_hydrogen_goes_to_the_nearest_oxygen():
    positions = [
        [0.0, 0.0, 0.0],  # O 0
        [-0.3, 0.9, 0.0],  # H 1, own H of O 0
        [1.1, 0.3, 0.0],  # H 2, shared: 1.14 Å from O 0, 1.24 Å from O 3 (both within 1.25 Å)
        [2.3, 0.0, 0.0],  # O 3
        [2.6, -0.9, 0.0],  # H 4
        [3.2, 0.3, 0.3],  # H 5
    ]
    atoms = Atoms("OHHOHH", positions=positions, cell=[20.0] * 3, pbc=False)
    found = water_molecules(atoms)
    assert found.triples.tolist() == [[0, 1, 2], [3, 4, 5]] and found.n_broken == 0


def test_dipole_direction_of_monomer_and_rotation():
    atoms = water_monomer()
    triples = water_molecules(atoms).triples
    assert np.allclose(dipole_directions(atoms.get_positions(), triples), [[0.0, 0.0, 1.0]])
    rotation = Rotation.from_euler("zyz", [0.3, 1.1, -0.7]).as_matrix()
    rotated = (atoms.get_positions() - atoms.get_positions()[0]) @ rotation.T
    assert np.allclose(dipole_directions(rotated, triples), rotation[:, 2][None])


# ---------------------------------------------------------------------------------------------------
# Orientational free energy


def test_orientational_free_energy_uniform_is_flat():
    u = Rotation.random(100_000, random_state=7).apply([0.0, 0.0, 1.0])
    result = orientational_free_energy(u, bandwidth=0.1)
    assert result.noise == pytest.approx(np.sqrt(100.0 / 100_000))
    assert np.abs(result.free_energy).std() < 2.0 * result.noise
    assert result.max_deviation < 6.0 * result.noise  # max over ~200 independent kernel patches
    assert result.free_energy.shape == (41, 81)


def test_orientational_free_energy_recovers_von_mises_bias():
    kappa0 = 1.0
    mu = np.array([0.0, 0.6, 0.8])
    u = stats.vonmises_fisher(mu, kappa0).rvs(200_000, random_state=np.random.default_rng(8))
    result = orientational_free_energy(u, bandwidth=0.1)
    sin_theta = np.sqrt(1 - result.cos_theta**2)[:, None]
    cos_angle = mu[0] * sin_theta * np.cos(result.phi) + mu[1] * sin_theta * np.sin(result.phi) + mu[2] * result.cos_theta[:, None]
    # −ln(4π p) for p = κ/(4π sinh κ) exp(κ μ·x)
    expected = -np.log(kappa0 / np.sinh(kappa0)) - kappa0 * cos_angle
    # the noise is largest where the density is smallest: at the antipode of μ
    tolerance = 0.02 + 5.0 * result.noise * np.exp(np.max(expected) / 2)
    assert np.max(np.abs(result.free_energy - expected)) < tolerance
    assert result.max_deviation == pytest.approx(np.max(np.abs(expected)), abs=tolerance)
    assert result.max_deviation > 5 * tolerance


def test_orientational_free_energy_rejects_non_unit_vectors():
    with pytest.raises(ValueError, match="not unit vectors"):
        orientational_free_energy(np.array([[0.0, 0.0, 2.0]]))


# ---------------------------------------------------------------------------------------------------
# Dipole correlations


def aligned_lattice(a: float = 3.1, n: int = 5, random_orientations: bool = False, seed: int = 0) -> Atoms:
    """Water molecules on a simple-cubic lattice, dipoles all along z (or random)."""
    monomer = water_monomer(0.0).get_positions()
    rotations = Rotation.random(n**3, random_state=seed).as_matrix() if random_orientations else np.tile(np.eye(3), (n**3, 1, 1))
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    positions = np.concatenate([monomer @ R.T + g for R, g in zip(rotations, grid)])
    return Atoms("OH2" * n**3, positions=positions, cell=[a * n] * 3, pbc=True)


def test_dipole_correlations_of_aligned_and_random_lattices():
    aligned = dipole_correlations([aligned_lattice()], r_max=4.5, bin_width=0.1)
    first = np.flatnonzero(aligned.pair_counts[0])[0]
    assert aligned.r[first] == pytest.approx(3.1, abs=0.1)
    # six neighbours along ±x, ±y, ±z with u = z: ⟨(r̂·z)²⟩ = 1/3, c_T = 1 − 1/3
    assert aligned.longitudinal[first] == pytest.approx(1 / 3)
    assert aligned.transverse[first] == pytest.approx(2 / 3)
    second = np.flatnonzero(aligned.pair_counts[0])[1]  # 12 neighbours at a√2, 4 of them in the xy plane
    assert aligned.longitudinal[second] == pytest.approx(8 * 0.5 / 12)
    frames = [aligned_lattice(random_orientations=True, seed=s) for s in range(4)]
    random = dipole_correlations(frames, r_max=7.5, bin_width=0.5)
    mean_l, error_l = curve_mean_and_error(random.longitudinal_sums, n_blocks=4, counts=random.pair_counts)
    filled = np.isfinite(error_l)
    assert np.all(np.abs(mean_l[filled]) < 5 * error_l[filled] + 1e-12)
    assert np.all(np.abs(random.transverse[filled]) < 0.1)


# ---------------------------------------------------------------------------------------------------
# Angular momentum and torque


def test_rigid_rotor_angular_momentum_is_inertia_times_omega():
    atoms = water_monomer()
    masses = atoms.get_masses()
    positions = atoms.get_positions()
    centre = masses @ positions / masses.sum()
    omega = np.array([0.01, -0.02, 0.005])  # rad/fs
    drift = np.array([1e-3, 2e-3, -1e-3])  # Å/fs, must not contribute
    velocities = np.cross(omega, positions - centre) + drift
    relative = positions - centre
    inertia = np.einsum("i,ij,ik->jk", masses, relative, relative)
    inertia = np.trace(inertia) * np.eye(3) - inertia  # amu Å²
    expected = inertia @ omega
    assert np.allclose(angular_momentum(positions, velocities, masses), expected, rtol=1e-12)
    # equivariance: the rotated molecule spinning about R ω has angular momentum R L
    turned = Rotation.from_rotvec([0.4, -1.0, 2.0]).as_matrix()
    later = angular_momentum(relative @ turned.T, np.cross(turned @ omega, relative @ turned.T), masses)
    assert np.allclose(later, turned @ expected, rtol=1e-10)
    # unit conversion against ASE (L about the origin in amu·Å·(Å/ASE-time) = eV·ASE-time)
    atoms.set_positions(relative)
    atoms.set_velocities(np.cross(omega, relative) / units.fs)
    assert np.allclose(expected * EV_FS_PER_AMU_A2_PER_FS, atoms.get_angular_momentum() / units.fs, rtol=1e-10)
    assert EV_FS_PER_AMU_A2_PER_FS == pytest.approx(103.6427, rel=1e-6)


def test_angular_momentum_conserved_in_torque_free_velocity_verlet():
    cluster = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0.3, 2.4, 0.2], [1.1, 0.9, 2.2]], cell=[30] * 3, pbc=False)
    cluster.calc = EMT()
    cluster.positions += 10.0
    masses = cluster.get_masses()
    relative = cluster.positions - masses @ cluster.positions / masses.sum()
    cluster.set_velocities(np.cross([0.002, 0.001, -0.003], relative) / units.fs)  # rad/fs
    history, torques = [], []

    def record():
        history.append(angular_momentum(cluster.get_positions(), cluster.get_velocities() * units.fs, masses))
        torques.append(net_torque(cluster.get_positions(), cluster.get_forces(), masses))

    dynamics = VelocityVerlet(cluster, timestep=2.0 * units.fs)
    dynamics.attach(record, interval=1)
    dynamics.run(200)
    history = np.array(history)
    assert np.linalg.norm(history[0]) > 1.0  # amu·Å²/fs, a real rotation
    assert np.max(np.abs(history - history[0])) < 1e-9 * np.linalg.norm(history[0])
    assert np.max(np.abs(torques)) < 1e-10  # central forces exert no net torque
    assert np.max(np.abs(cluster.get_forces())) > 0.01  # ... although the forces are not zero


def test_net_torque_of_a_couple():
    positions = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    forces = np.array([[0.0, 0.5, 0.0], [0.0, -0.5, 0.0]])  # eV/Å
    assert np.allclose(net_torque(positions + 7.0, forces, [2.0, 2.0]), [0.0, 0.0, 1.0])  # eV, about the centre
    with pytest.raises(ValueError, match="masses"):
        net_torque(positions, forces, [1.0])


# ---------------------------------------------------------------------------------------------------
# MSD, diffusion, unwrapping, orientational autocorrelation


def test_random_walk_msd_and_diffusion_coefficient():
    rng = np.random.default_rng(9)
    step = 0.2  # Å, root-mean-square step length s: per-component σ = s/√3
    n_frames, n_walkers, timestep = 4000, 200, 2.0
    steps = rng.normal(0.0, step / np.sqrt(3), size=(n_frames - 1, n_walkers, 3))
    walk = np.concatenate([np.zeros((1, n_walkers, 3)), np.cumsum(steps, axis=0)])
    msd = mean_squared_displacement(walk, timestep, max_lag=200)
    n = np.arange(201)
    assert np.all(np.abs(msd.mean - n * step**2) <= 4 * msd.error + 1e-12)
    assert np.allclose(msd.mean, n * step**2, rtol=0.05, atol=1e-12)
    result = diffusion_coefficient(walk, timestep, fit_start_fs=20.0, fit_end_fs=400.0)
    exact = step**2 / (6 * timestep) * 1000.0  # Å²/ps
    assert abs(result.a2_per_ps.mean - exact) < 4 * result.a2_per_ps.error
    assert 0 < result.a2_per_ps.error < 0.1 * exact
    assert result.cm2_per_s.mean == pytest.approx(result.a2_per_ps.mean * 1e-4)
    single = mean_squared_displacement(walk, timestep, max_lag=50, n_segments=1)
    assert np.all(np.isnan(single.error)) and np.allclose(single.mean, n[:51] * step**2, rtol=0.03)
    with pytest.raises(ValueError, match="too short"):
        mean_squared_displacement(walk[:100], timestep, max_lag=50)
    with pytest.raises(ValueError, match="timestep_fs must be positive"):
        diffusion_coefficient(walk, 0.0, 20.0, 400.0)


def test_diffusion_in_its_regime_from_a_walk_with_a_ballistic_start():
    """Walkers whose velocities are AR(1) (memory τ = 40 frames) move ballistically at short lags and
    diffusively at long ones, with D = σ² Δt (1 + φ)/(2(1 − φ)) per component. The diffusive window is found
    after the ballistic start and D is recovered within 5 %; a run that stops inside the ballistic regime
    has no window."""
    rng = np.random.default_rng(12)
    phi, sigma, timestep = np.exp(-1 / 40), 0.01, 1.0  # σ Å/fs per component, Δt fs
    velocities = signal.lfilter([1.0], [1.0, -phi], rng.normal(0.0, sigma * np.sqrt(1 - phi**2), size=(20000, 300, 3)), axis=0)
    walk = np.cumsum(velocities * timestep, axis=0)
    exact = sigma**2 * timestep * (1 + phi) / (2 * (1 - phi)) * 1000.0  # Å²/ps
    msd = mean_squared_displacement(walk, timestep, max_lag=4000, n_segments=4)
    window = diffusive_window(msd.lags, msd.mean)
    assert window is not None and 200.0 < window[0] < 1500.0 and window[1] == 4000.0
    result = diffusion_coefficient(walk, timestep, *window)
    assert abs(result.a2_per_ps.mean / exact - 1) < 0.05
    ballistic = mean_squared_displacement(walk[:400], timestep, max_lag=60, n_segments=1)
    assert diffusive_window(ballistic.lags, ballistic.mean) is None


def test_decay_time_only_when_the_run_covers_it():
    lags = np.arange(0.0, 2001.0, 10.0)
    c = np.exp(-lags / 700.0)
    assert decay_time(lags, c) == pytest.approx(700.0, abs=1.0)
    assert decay_time(lags[:50], c[:50]) is None  # 490 fs < τ


def test_unwrap_recovers_a_wrapped_trajectory():
    rng = np.random.default_rng(10)
    cell = np.array([[8.0, 0.0, 0.0], [1.0, 7.0, 0.0], [0.5, 0.5, 9.0]])  # triclinic
    walk = 4.0 + np.cumsum(rng.normal(0.0, 0.4, size=(300, 20, 3)), axis=0)
    fractional = walk @ np.linalg.inv(cell)
    wrapped = (fractional - np.floor(fractional)) @ cell
    assert not np.allclose(wrapped - wrapped[0], walk - walk[0])
    unwrapped = unwrap_positions(wrapped, cell)
    assert np.allclose(unwrapped - unwrapped[0], walk - walk[0], atol=1e-10)
    frames = [Atoms("Ar" * 20, positions=p, cell=cell, pbc=True) for p in wrapped[:5]]
    positions, cells = trajectory_arrays(frames)
    assert np.allclose(unwrap_positions(positions, cells) - positions[0], walk[:5] - walk[0], atol=1e-10)


def test_orientational_autocorrelation_of_rotational_diffusion():
    rng = np.random.default_rng(11)
    n_frames, n_molecules, timestep, d_rot = 3000, 300, 10.0, 5e-4  # fs, rad²/fs
    u = Rotation.random(n_molecules, random_state=12).apply([0.0, 0.0, 1.0])
    history = np.empty((n_frames, n_molecules, 3))
    for t in range(n_frames):
        history[t] = u
        kicks = rng.normal(0.0, np.sqrt(2 * d_rot * timestep), size=(n_molecules, 3))
        u = Rotation.from_rotvec(kicks).apply(u)
    cuu = orientational_autocorrelation(history, timestep, max_lag=200)
    # exp(−2 D_r t) in the continuum; for finite Gaussian kicks of variance σ² per component each step
    # multiplies c_uu by (1 + 2(1 − σ²) e^(−σ²/2))/3 (the mean of cos of the angle to the rotated vector)
    sigma2 = 2 * d_rot * timestep
    per_step = (1 + 2 * (1 - sigma2) * np.exp(-sigma2 / 2)) / 3
    expected = per_step ** np.arange(len(cuu.lags))
    assert np.allclose(expected, np.exp(-2 * d_rot * cuu.lags), rtol=0.01)
    assert cuu.mean[0] == pytest.approx(1.0)
    assert np.all(np.abs(cuu.mean - expected) < 4 * cuu.error + 1e-3)
    assert cuu.mean[-1] < 0.2  # it really decays over the window


# ---------------------------------------------------------------------------------------------------
# Spectra and drift


def test_power_spectrum_of_a_sine_peaks_at_its_wavenumber():
    timestep, period = 0.5, 10.0  # fs: 0.1 fs⁻¹ = 3335.6 cm⁻¹
    t = np.arange(8000) * timestep
    series = 3.0 + np.sin(2 * np.pi * t / period) + 0.3 * np.sin(2 * np.pi * t / 30.0)
    spectrum = power_spectrum(series, timestep)
    resolution = spectrum.wavenumber[1]
    peak = spectrum.wavenumber[np.argmax(spectrum.intensity)]
    assert abs(peak - CM1_PER_INV_FS / period) <= resolution
    assert CM1_PER_INV_FS / period == pytest.approx(3335.64, abs=0.01)
    second = spectrum.wavenumber[np.argmax(np.where(spectrum.wavenumber < 2000, spectrum.intensity, 0))]
    assert abs(second - CM1_PER_INV_FS / 30.0) <= resolution
    assert spectrum.intensity.max() > 1e3 * np.abs(spectrum.intensity[spectrum.wavenumber > 6000]).max()


def test_conserved_drift_recovers_slope_in_mev_per_molecule():
    rng = np.random.default_rng(13)
    t = np.arange(20_000) * 5.0  # fs, 100 ps
    slope = 2e-6  # eV/fs over the whole cell of 64 molecules
    noise = 0.02 * signal.lfilter([1.0], [1.0, -0.95], rng.normal(size=len(t)))  # correlated, eV
    drift = conserved_drift(t, -30.0 + slope * t + noise, n_molecules=64)
    exact = slope * 1e6 / 64  # meV per molecule per ps
    assert abs(drift.mev_per_molecule_per_ps.mean - exact) < 4 * drift.mev_per_molecule_per_ps.error
    assert drift.per_500ps.mean == pytest.approx(500 * drift.mev_per_molecule_per_ps.mean)
    assert drift.mev_per_molecule_per_ps.error < 0.2 * exact
    with pytest.raises(ValueError, match="matching"):
        conserved_drift(t, t[:-1], 64)
