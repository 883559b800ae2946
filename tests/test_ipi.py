"""MD on i-PI (engine ipi): the same r-RESPA trajectory as on ASE, conservation laws, the virial convention,
thermostat heat, bit-for-bit restarts, and configs refused before any step."""

from __future__ import annotations

import filecmp
import importlib.metadata
import importlib.util
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from symprobe import so3
from symprobe.md.ipi import IpiDynamics, ipi_units
from symprobe.md import ConfigError, load_config, read_log, run_md, validate_config
from symprobe.structures import rotate, water_box, water_monomer
from symprobe.models.qtip4pf import qtip4pf
from symprobe.testing import anisotropic_qtip4pf, random_rotations

pytestmark = pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning")  # i-PI's softexit.start
ANGULAR = ["Lx_eVfs", "Ly_eVfs", "Lz_eVfs"]
needs_ipi = pytest.mark.skipif(importlib.util.find_spec("ipi") is None, reason="i-PI (the 'ipi' extra) is missing")


def monomer_config(tmp_path, name: str, model, steps: int, engine: str = "ipi", **extra) -> dict:
    output = {"directory": tmp_path / name, "progress": False, "log_stride": 4, "trajectory_stride": 40,
              "checkpoint_stride": 200, **extra.pop("output", {})}
    return {"structure": "builtin:water-monomer", "model": model, "timestep_fs": extra.pop("timestep_fs", 0.25),
            "steps": steps, "initial_temperature_K": 300, "seed": 5, "engine": engine, "output": output, **extra}


def angular_change(log: dict[str, np.ndarray]) -> float:
    """Largest change of any angular-momentum component over the run, eV·fs."""
    L = np.stack([log[k] for k in ANGULAR], axis=1)
    return float(np.abs(L - L[0]).max())


@needs_ipi
def test_ipi_mts_follows_the_ase_respa_trajectory(tmp_path):
    """Same r-RESPA integrator (outer half kicks with average − raw, inner velocity Verlet with the raw model):
    any disagreement beyond round-off would be a unit or convention error."""
    model = anisotropic_qtip4pf({2: 0.2}, seed=1)
    mts = {"kind": "mts", "grid": so3.group("T"), "n_inner": 4}
    output = {"trajectory": "trajectory.traj", "trajectory_stride": 4}  # .traj: positions at full precision
    runs = {engine: run_md(monomer_config(tmp_path, engine, model, 40, engine, timestep_fs=0.5, symmetrizer=mts,
                                          output=output))
            for engine in ("ase", "ipi")}
    frames = {engine: read(path / "trajectory.traj", ":") for engine, path in runs.items()}
    assert len(frames["ase"]) == len(frames["ipi"]) == 11  # every outer step of 4 × 0.5 fs, 20 fs
    for a, b in zip(frames["ase"], frames["ipi"]):
        assert a.info["step"] == b.info["step"]
        assert np.abs(a.positions - b.positions).max() < 1e-8  # Å (measured ≈ 1e-13)
        assert np.abs(a.get_momenta() - b.get_momenta()).max() < 1e-8
        assert np.abs(a.get_forces() - b.get_forces()).max() < 1e-8  # eV/Å, the raw model's forces
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-10)  # raw + correction
    logs = {engine: read_log(path) for engine, path in runs.items()}
    assert list(logs["ase"]) == list(logs["ipi"])  # same columns
    for column in logs["ase"]:
        np.testing.assert_allclose(logs["ipi"][column], logs["ase"][column], rtol=0, atol=1e-9, err_msg=column)

    # the outer-level correction matters at this tolerance: without it the molecule goes elsewhere
    raw = run_md(monomer_config(tmp_path, "raw", model, 40, "ase", timestep_fs=0.5, output=output))
    last_raw = read(raw / "trajectory.traj", -1)
    assert np.abs(last_raw.positions - frames["ipi"][-1].positions).max() > 1e-2  # Å (measured 0.17)


@needs_ipi
def test_ipi_nve_conserves_energy_and_angular_momentum_of_an_invariant_molecule(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    handler = signal.getsignal(signal.SIGINT)
    log = read_log(run_md(monomer_config(tmp_path, "nve", qtip4pf(), 400)))
    assert len(log["step"]) == 101 and log["time_fs"][-1] == pytest.approx(100.0)
    assert np.ptp(log["conserved_eV"]) < 1e-3  # eV, 0.25 fs velocity Verlet, 100 fs at ~300 K (measured 3e-4)
    assert np.ptp(log["kinetic_eV"]) > 10 * np.ptp(log["conserved_eV"])  # energy does flow
    assert np.abs(log["thermostat_energy_eV"]).max() == 0.0
    assert abs(log["Lx_eVfs"][0]) + abs(log["Ly_eVfs"][0]) + abs(log["Lz_eVfs"][0]) > 0.5  # it rotates
    assert angular_change(log) < 1e-9  # eV·fs: Verlet conserves L exactly for an invariant potential
    # i-PI wrote nothing outside the run's directory and gave Ctrl-C back
    assert os.listdir(cwd) == []
    assert sorted(os.listdir(tmp_path / "nve")) == ["checkpoint.npz", "log.csv", "trajectory.extxyz"]
    assert signal.getsignal(signal.SIGINT) is handler


@needs_ipi
def test_ipi_angular_momentum_drifts_with_an_anisotropic_potential_and_not_once_averaged(tmp_path):
    model = anisotropic_qtip4pf({1: 0.2, 3: 0.2}, seed=1)
    assert angular_change(read_log(run_md(monomer_config(tmp_path, "raw", model, 80)))) > 0.1
    grid = {"kind": "grid", "grid": so3.group("O")}  # O is exact to degree 3: the average is invariant
    assert angular_change(read_log(run_md(monomer_config(tmp_path, "grid", model, 80, symmetrizer=grid)))) < 1e-9


@needs_ipi
def test_ipi_virial_gives_the_ase_stress_of_a_periodic_box():
    """i-PI's stress (virial + Σ p pᵀ/m)/V is minus ASE's stress with its ideal-gas term (virial sign and
    units), and on a triclinic cell the energy is ASE's (cell handed over as h = cellᵀ and back)."""
    model = qtip4pf()
    box = water_box(2, seed=0)  # 8 molecules, 6.2 Å cubic cell, sheared: a ∥ x, b in the xy plane
    box.set_cell(box.cell.array + [[0.0, 0.0, 0.0], [0.6, 0.0, 0.0], [0.3, -0.4, 0.0]], scale_atoms=False)
    thermalize_momenta(box, 300, rng=np.random.default_rng(0))
    reference = box.copy()
    reference.calc = model.as_calculator()
    expected = reference.get_stress(voigt=True, include_ideal_gas=True)  # xx, yy, zz, yz, xz, xy
    config = validate_config({"structure": box, "model": model, "timestep_fs": 0.5, "steps": 1, "engine": "ipi"})
    dyn = IpiDynamics(box, config, model, None)
    try:
        h = dyn.system.cell.h / ipi_units().length
        np.testing.assert_allclose(h, box.cell.array.T, rtol=0, atol=1e-12)  # lattice vectors as columns
        xx, yy, zz, xy, xz, yz = dyn.simulation.properties("stress_md")
        assert dyn.simulation.properties("potential") == pytest.approx(reference.get_potential_energy(), abs=1e-12)
    finally:
        dyn.close()
    np.testing.assert_allclose([xx, yy, zz, yz, xz, xy], -expected, rtol=0, atol=1e-12)  # eV/Å³
    assert np.abs(expected).max() > 1e-3


@needs_ipi
def test_ipi_thermostat_heat_keeps_the_conserved_energy(tmp_path):
    model = anisotropic_qtip4pf({2: 0.05}, seed=1)
    log = read_log(run_md(monomer_config(
        tmp_path, "nvt", model, 200, timestep_fs=0.5, symmetrizer={"kind": "mts", "grid": "T", "n_inner": 4},
        ensemble={"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 10})))
    assert np.ptp(log["thermostat_energy_eV"]) > 0.02  # the thermostat moved energy in and out
    assert np.ptp(log["conserved_eV"]) < 0.1 * np.ptp(log["thermostat_energy_eV"])


@needs_ipi
def test_ipi_gle_with_a_one_by_one_drift_matrix_is_langevin():
    """A GLE whose drift matrix is the 1×1 friction 1/τ is Langevin dynamics with time constant τ."""
    model = anisotropic_qtip4pf({2: 0.05}, seed=1)

    def dynamics(ensemble: dict) -> IpiDynamics:
        atoms = water_monomer()
        thermalize_momenta(atoms, 300, rng=np.random.default_rng(0))
        Stationary(atoms)
        config = validate_config({"structure": atoms, "model": model, "timestep_fs": 0.5, "steps": 1,
                                  "engine": "ipi", "ensemble": ensemble})
        return IpiDynamics(atoms, config, model, None)

    langevin = dynamics({"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 10})
    gles = [dynamics({"kind": "nvt-gle", "temperature_K": 300, "A_per_fs": [[friction]]}) for friction in (0.1, 0.2)]
    try:
        for gle in gles:  # the GLE drew its initial auxiliary momenta: start all from the same generator state
            gle.simulation.prng.state = langevin.simulation.prng.state
        for _ in range(20):
            for dyn in (langevin, *gles):
                dyn.step()
        same, other = gles
        assert np.abs(same.atoms.positions - langevin.atoms.positions).max() < 1e-10  # Å (measured ≈ 1e-14)
        assert same.transferred_energy == pytest.approx(langevin.transferred_energy, abs=1e-10)
        assert abs(langevin.transferred_energy) > 1e-3  # eV: the thermostat did act
        assert np.abs(other.atoms.positions - langevin.atoms.positions).max() > 1e-3  # τ = 5 fs is not τ = 10 fs
    finally:
        for dyn in (langevin, *gles):
            dyn.close()


@needs_ipi
@pytest.mark.parametrize("extra", [
    {"symmetrizer": {"kind": "random", "inversion": True},
     "ensemble": {"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 20}},
    {"symmetrizer": {"kind": "mts", "grid": "paper-2", "n_inner": 4},
     "ensemble": {"kind": "nvt-bussi", "temperature_K": 300, "tau_fs": 10}},
    {"symmetrizer": {"kind": "mts", "grid": "paper-2", "n_inner": 4},
     "ensemble": {"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 10}},
    {"symmetrizer": {"kind": "mts", "grid": "paper-2", "n_inner": 4},
     "ensemble": {"kind": "nvt-gle", "temperature_K": 300, "A_per_fs": [[0.05, 0.1], [-0.1, 0.2]]}},
], ids=["random-langevin", "mts-bussi", "mts-langevin", "mts-gle"])
def test_ipi_restart_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, extra):
    model = anisotropic_qtip4pf({2: 0.05}, seed=1)
    output = {"log_stride": 4, "trajectory_stride": 8, "checkpoint_stride": 20}
    run_md(monomer_config(tmp_path, "whole", model, 64, output=output, **extra))
    run_md(monomer_config(tmp_path, "parts", model, 40, output=output, **extra))  # stops at a checkpoint
    with open(tmp_path / "parts" / "log.csv", "a") as log:  # lines written after it, before a "crash"
        log.write("44,11.0,0,0,0,0,0,0,0,0\n")
    run_md(monomer_config(tmp_path, "parts", model, 64, output=output, **extra), resume=True)
    for name in ("log.csv", "trajectory.extxyz"):
        assert filecmp.cmp(tmp_path / "whole" / name, tmp_path / "parts" / name, shallow=False), name
    with np.load(tmp_path / "whole" / "checkpoint.npz") as a, np.load(tmp_path / "parts" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


GOOD = {"structure": "builtin:water-monomer", "model": "builtin:qtip4pf", "timestep_fs": 0.5, "steps": 8}
MTS_LANGEVIN = {"symmetrizer": {"kind": "mts", "grid": "T", "n_inner": 4},
                "ensemble": {"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 10}}


@pytest.mark.parametrize("change, message", [
    ({"engine": "lammps"}, "engine must be one of ase, batched, ipi, got 'lammps'"),
    ({"engine": "ase", **MTS_LANGEVIN}, "nvt-langevin cannot be combined with the mts symmetrizer on engine ase"),
    ({"ensemble": {"kind": "nvt-gle", "temperature_K": 300, "A_per_fs": [[0.1]]}}, "nvt-gle needs engine ipi"),
    ({"engine": "ipi", "ensemble": {"kind": "nvt-gle", "temperature_K": 300}}, r"missing required key\(s\) A_per_fs"),
    ({"engine": "ipi", "ensemble": {"kind": "nvt-gle", "temperature_K": 300, "A_per_fs": [[0.1, 0.2]]}},
     "A_per_fs must be a square matrix"),
    ({"engine": "ipi", "ensemble": {"kind": "nvt-gle", "temperature_K": 300, "A_per_fs": [[0.1, 1.0], [0.0, 0.1]]}},
     r"A \+ Aᵀ positive semi-definite"),
])
def test_bad_engine_configs_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({**GOOD, **change})


@pytest.mark.parametrize("installed, message", [
    (None, r"engine ipi needs i-PI, which is not installed: pip install 'symprobe\[ipi\]'"),
    ("3.0.1", "engine ipi needs i-PI ≥ 3.3, installed: 3.0.1"),
])
def test_engine_ipi_without_a_usable_ipi_is_refused(monkeypatch, installed, message):
    def version(name):
        if installed is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ConfigError, match=message):
        validate_config({**GOOD, "engine": "ipi"})


@needs_ipi
def test_ipi_accepts_langevin_with_mts_and_the_example_config():
    assert validate_config({**GOOD, "engine": "ipi", **MTS_LANGEVIN}).engine == "ipi"
    example = load_config(Path(__file__).parents[1] / "configs" / "md_gas_mts_ipi.yaml")
    assert example.engine == "ipi" and example.n_inner == 10 and example.ensemble.kind == "nvt-bussi"


@needs_ipi
def test_ipi_refusals_come_before_any_step(tmp_path):
    box = rotate(water_box(2, seed=0), random_rotations(1, seed=3)[0])  # a periodic cell not upper triangular
    config = {**GOOD, "structure": box, "model": qtip4pf(), "engine": "ipi",
              "output": {"directory": tmp_path / "box", "progress": False}}
    with pytest.raises(ConfigError, match="engine ipi: i-PI stores the cell as an upper-triangular matrix"):
        run_md(config)
    assert not (tmp_path / "box" / "log.csv").exists()

    monomer = {**GOOD, "model": qtip4pf(), "initial_temperature_K": 100,
               "output": {"directory": tmp_path / "ase", "progress": False}}
    run_md(monomer)
    with pytest.raises(ConfigError, match="written by engine ase; it cannot resume on engine ipi"):
        run_md({**monomer, "engine": "ipi", "steps": 16}, resume=True)
    assert read_log(tmp_path / "ase")["step"][-1] == 8  # the ASE run's files are untouched
