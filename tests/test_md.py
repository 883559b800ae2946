"""MD: energy and angular-momentum conservation, seeded reproducibility, bit-for-bit restarts, config errors."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest

from symprobe import so3
from symprobe.cli import main
from symprobe.md import ConfigError, read_log, run_md, validate_config
from symprobe.models.base import Model, Prediction
from symprobe.models.qtip4pf import qtip4pf
from symprobe.testing import anisotropic_qtip4pf

ANGULAR = ["Lx_eVfs", "Ly_eVfs", "Lz_eVfs"]


def monomer_run(tmp_path, name: str, model: Model, steps: int = 400, **extra) -> dict[str, np.ndarray]:
    config = {"structure": "builtin:water-monomer", "model": model, "timestep_fs": extra.pop("timestep_fs", 0.25),
              "steps": steps,
              "initial_temperature_K": 300, "seed": 5,
              "output": {"directory": tmp_path / name, "progress": False, "log_stride": 4, "trajectory_stride": 40,
                         "checkpoint_stride": 200, **extra.pop("output", {})}, **extra}
    return read_log(run_md(config))


def angular_change(log: dict[str, np.ndarray]) -> float:
    """Largest change of any angular-momentum component over the run, eV·fs."""
    L = np.stack([log[k] for k in ANGULAR], axis=1)
    return float(np.abs(L - L[0]).max())


def test_nve_with_invariant_water_conserves_energy_and_angular_momentum(tmp_path):
    log = monomer_run(tmp_path, "invariant", qtip4pf())
    assert len(log["step"]) == 101 and log["time_fs"][-1] == pytest.approx(100.0)
    assert np.ptp(log["conserved_eV"]) < 2e-3  # eV, 0.25 fs velocity Verlet, 100 fs at ~300 K
    assert np.ptp(log["kinetic_eV"]) > 10 * np.ptp(log["conserved_eV"])  # energy does flow
    assert abs(log["Lx_eVfs"][0]) + abs(log["Ly_eVfs"][0]) + abs(log["Lz_eVfs"][0]) > 0.5  # it rotates
    assert angular_change(log) < 1e-9  # Verlet conserves L exactly for an invariant potential


def test_angular_momentum_drifts_with_an_anisotropic_potential_and_not_once_averaged(tmp_path):
    model = anisotropic_qtip4pf({1: 0.2, 3: 0.2}, seed=1)
    assert angular_change(monomer_run(tmp_path, "raw", model, steps=80)) > 0.1
    averaged = monomer_run(tmp_path, "grid", model, steps=80, symmetrizer={"kind": "grid", "grid": so3.group("O")})
    assert angular_change(averaged) < 1e-9  # O is exact to degree 3: the average is invariant


def test_mts_conserves_the_full_energy(tmp_path):
    model = anisotropic_qtip4pf({2: 0.05}, seed=1)
    log = monomer_run(tmp_path, "mts", model, steps=200, timestep_fs=0.5,
                      symmetrizer={"kind": "mts", "grid": so3.group("T"), "n_inner": 4})
    assert log["step"][1] == 4 and log["time_fs"][-1] == pytest.approx(100.0)  # one row per outer step
    assert np.ptp(log["conserved_eV"]) < 5e-3


def test_seeded_random_rotation_run_is_reproducible(tmp_path):
    model = anisotropic_qtip4pf({2: 0.05}, seed=1)
    runs = [monomer_run(tmp_path, name, model, steps=40, symmetrizer={"kind": "random", "seed": seed})
            for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not np.array_equal(runs[0]["potential_eV"], runs[2]["potential_eV"])


@pytest.mark.parametrize("extra", [
    {"symmetrizer": {"kind": "random", "inversion": True},
     "ensemble": {"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 20}},
    {"symmetrizer": {"kind": "mts", "grid": "paper-2", "n_inner": 4},
     "ensemble": {"kind": "nvt-bussi", "temperature_K": 300, "tau_fs": 10}},
], ids=["random-langevin", "mts-bussi"])
def test_restart_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, extra):
    model = anisotropic_qtip4pf({2: 0.05}, seed=1)
    output = {"log_stride": 4, "trajectory_stride": 8, "checkpoint_stride": 20}
    monomer_run(tmp_path, "whole", model, steps=64, output=output, **extra)
    monomer_run(tmp_path, "parts", model, steps=40, output=output, **extra)  # stops at a checkpoint
    with open(tmp_path / "parts" / "log.csv", "a") as log:  # lines written after it, before a "crash"
        log.write("44,11.0,0,0,0,0,0,0,0,0\n")
    resumed = {"structure": "builtin:water-monomer", "model": model, "timestep_fs": 0.25, "steps": 64,
               "initial_temperature_K": 300, "seed": 5,
               "output": {"directory": tmp_path / "parts", "progress": False, **output}, **extra}
    run_md(resumed, resume=True)
    for name in ("log.csv", "trajectory.extxyz"):
        assert filecmp.cmp(tmp_path / "whole" / name, tmp_path / "parts" / name, shallow=False), name
    with np.load(tmp_path / "whole" / "checkpoint.npz") as a, np.load(tmp_path / "parts" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


class EnergyOnly(Model):
    implemented_properties = ("energy",)
    name = "energy-only"

    def _predict(self, atoms):
        return Prediction(0.0, np.zeros((len(atoms), 3)))


GOOD = {"structure": "builtin:water-monomer", "model": "builtin:qtip4pf", "timestep_fs": 0.5, "steps": 10}


@pytest.mark.parametrize("change, message", [
    ({"timestep_fs": 0}, "timestep_fs must be positive"),
    ({"timestep_fs": -0.5}, "timestep_fs must be positive"),
    ({"steps": 0}, "steps must be positive"),
    ({"steps": 2.5}, "steps must be a positive integer"),
    ({"steps": None, "time_ps": -1}, "time_ps must be positive"),
    ({"time_ps": 1.0}, "exactly one of 'steps' or 'time_ps'"),
    ({"thermostat": "bussi"}, "unknown key.*thermostat"),
    ({"ensemble": {"kind": "nvt-bussi", "tau_fs": 10}}, r"nvt-bussi.*missing required key\(s\) temperature_K"),
    ({"ensemble": {"kind": "nvt-langevin", "temperature_K": 300}}, r"missing required key\(s\) tau_fs"),
    ({"ensemble": {"kind": "npt"}}, "unknown kind 'npt'"),
    ({"symmetrizer": {"kind": "grid"}}, r"symmetrizer \(grid\): missing required key\(s\) grid"),
    ({"symmetrizer": {"kind": "grid", "grid": "nonsense"}}, "unknown quadrature 'nonsense'"),
    ({"symmetrizer": {"kind": "mts", "grid": "2i", "n_inner": 4}, "steps": 10}, "multiple of symmetrizer.n_inner"),
    ({"symmetrizer": {"kind": "random", "grid": "2i"}}, r"symmetrizer \(random\): unknown key"),
    ({"output": {"log_every": 3}}, "output: unknown key"),
])
def test_bad_configs_are_refused_with_the_key_named(change, message):
    config = {**GOOD, **change}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_errors_before_any_step(tmp_path):
    base = {**GOOD, "output": {"directory": tmp_path / "out", "progress": False}}
    with pytest.raises(ConfigError, match="energy-only.*does not compute forces"):
        run_md({**base, "model": EnergyOnly(), "symmetrizer": {"kind": "grid", "grid": "T"}})
    with pytest.raises(ConfigError, match="start at rest"):
        run_md({**base, "model": qtip4pf(), "ensemble": {"kind": "nvt-bussi", "temperature_K": 300, "tau_fs": 10}})
    assert not (tmp_path / "out" / "log.csv").exists()


def test_cli_reports_a_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("structure: builtin:water-monomer\nmodel: builtin:qtip4pf\ntimestep_fs: 0.5\nsteps: -3\n")
    assert main(["md", str(path)]) == 2
    assert capsys.readouterr().err == "symprobe md: error: steps must be positive, got -3\n"


def test_cli_runs_a_config_with_a_model_spec(tmp_path, capsys):
    path = tmp_path / "md.yaml"
    path.write_text(f"structure: builtin:water-monomer\nmodel: builtin:qtip4pf\ntimestep_fs: 0.5\nsteps: 20\n"
                    f"initial_temperature_K: 100\noutput: {{directory: {tmp_path / 'run'}, progress: false}}\n")
    assert main(["md", str(path)]) == 0
    log = read_log(tmp_path / "run")
    assert log["step"].tolist() == list(range(21)) and np.ptp(log["conserved_eV"]) < 1e-3
    assert (tmp_path / "run" / "trajectory.extxyz").exists() and (tmp_path / "run" / "checkpoint.npz").exists()
    path.write_text(path.read_text().replace("builtin:qtip4pf", "builtin:nonexistent"))
    assert main(["md", str(path), "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith("symprobe md: error: model: ")
