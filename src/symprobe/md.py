"""Molecular dynamics with raw or symmetrized models: configs, ASE and i-PI engines, logs, checkpoints, restarts.

A run is described by a config (YAML file or dict, see :data:`EXAMPLE` and docs/conventions.md) that is
validated completely before any step. With ``engine: ase`` (the default) the integrators are ASE's: velocity
Verlet (NVE), :class:`ase.md.bussi.Bussi` (stochastic velocity rescaling) and
:class:`ase.md.langevinbaoab.LangevinBAOAB`. Multiple time stepping is r-RESPA (:class:`MultipleTimeStep`): ASE
velocity-Verlet inner steps with the raw model, and half kicks with the slow force (grid average − raw) around
every block of ``n_inner`` inner steps. With ``engine: ipi`` the same run goes through i-PI in-process
(:class:`symprobe.ipi.IpiDynamics`: its ``svr``, ``langevin`` and ``gle`` thermostats and its ``<nmts>``
multiple time stepping, which also runs with Langevin and GLE), writing the same files.

Outputs in ``output.directory``: ``trajectory.extxyz`` (or ``.traj``), ``log.csv`` (one row per logged
step) and ``checkpoint.npz`` (written atomically). ``run_md(config, resume=True)`` continues from the
checkpoint and reproduces the uninterrupted run bit for bit (same machine, same thread count), on either
engine; a checkpoint resumes only on the engine that wrote it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms, units
from ase.md.bussi import Bussi
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.md import MolecularDynamics
from ase.md.verlet import VelocityVerlet

from symprobe.models.base import Model
from symprobe.so3 import Quadrature
from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation, Symmetrizer

EXAMPLE = """\
structure: builtin:water-monomer     # builtin:water-monomer | builtin:water-box | path to a file ASE reads
structure_index: -1                  # which frame of the file (default: the last)
model: builtin:qtip4pf               # model spec (see symprobe.models.external.load_model)
symmetrizer: {kind: none}            # none | {kind: grid, grid: 2i} | {kind: random, inversion: false}
                                     # | {kind: mts, grid: 2i, n_inner: 10}
ensemble: {kind: nve}                # nve | {kind: nvt-bussi, temperature_K: 300, tau_fs: 10}
                                     # | {kind: nvt-langevin, temperature_K: 300, tau_fs: 100}
                                     # | {kind: nvt-gle, temperature_K: 300, A_per_fs: [[...]]} (engine ipi)
initial_temperature_K: 300           # Maxwell–Boltzmann start, centre-of-mass motion removed
timestep_fs: 0.5                     # the (inner) time step
steps: 1000                          # or time_ps: 0.5
seed: 0
engine: ase                          # ase | ipi (i-PI in-process; adds nvt-gle, and MTS with Langevin/GLE)
output: {directory: md, trajectory: trajectory.extxyz, trajectory_stride: 10, log_stride: 1,
         checkpoint_stride: 100, progress: true}
"""

ANGULAR_MOMENTUM_UNIT = "eV·fs"  # amu·Å²/fs × 103.6427


class ConfigError(ValueError):
    """An MD config that cannot run: the message names the key and the problem."""


# ---------------------------------------------------------------------------------------------------
# Config


@dataclass
class OutputConfig:
    """Where and how often to write. Strides count time steps (multiples of n_inner for MTS)."""

    directory: Path
    trajectory: str = "trajectory.extxyz"
    trajectory_stride: int = 10
    log_stride: int = 1
    checkpoint_stride: int = 100
    progress: bool = True


@dataclass
class MDConfig:
    """A validated MD run (see :data:`EXAMPLE`). ``structure`` and ``model`` may be objects or specs."""

    structure: Atoms | str
    model: Model | str
    timestep_fs: float
    steps: int
    output: OutputConfig
    symmetrizer: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})
    ensemble: dict[str, Any] = field(default_factory=lambda: {"kind": "nve"})
    structure_index: int = -1
    initial_temperature_K: float | None = None
    seed: int = 0
    engine: str = "ase"

    @property
    def n_inner(self) -> int:
        """Inner steps per outer step (1 unless multiple time stepping)."""
        return int(self.symmetrizer.get("n_inner", 1)) if self.symmetrizer["kind"] == "mts" else 1


_TOP_KEYS = {"structure", "structure_index", "model", "symmetrizer", "ensemble", "initial_temperature_K",
             "timestep_fs", "steps", "time_ps", "seed", "engine", "output"}
_SYMMETRIZER_KEYS = {"none": {"kind"}, "grid": {"kind", "grid"}, "random": {"kind", "inversion", "seed"},
                     "mts": {"kind", "grid", "n_inner"}}
_ENSEMBLE_KEYS = {"nve": {"kind"}, "nvt-bussi": {"kind", "temperature_K", "tau_fs"},
                  "nvt-langevin": {"kind", "temperature_K", "tau_fs"},
                  "nvt-gle": {"kind", "temperature_K", "A_per_fs"}}
ENGINES = ("ase", "ipi")
_OUTPUT_KEYS = {"directory", "trajectory", "trajectory_stride", "log_stride", "checkpoint_stride", "progress"}


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _positive(value: Any, key: str, integer: bool = False) -> Any:
    kind = int if integer else float
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise ConfigError(f"{key} must be a positive {'integer' if integer else 'number'}, got {value!r}")
    if not value > 0:
        raise ConfigError(f"{key} must be positive, got {value!r}")
    return kind(value)


def _drift_matrix(value: Any, key: str) -> list[list[float]]:
    """A canonical GLE drift matrix A (fs⁻¹): square, finite, eigenvalues of positive real part, A + Aᵀ ⪰ 0."""
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0 or not np.isfinite(matrix).all():
        raise ConfigError(f"{key} must be a square matrix of numbers (fs⁻¹, a list of rows), got {value!r}")
    symmetric = np.linalg.eigvalsh(matrix + matrix.T)
    if not (np.linalg.eigvals(matrix).real > 0).all() or symmetric.min() < -1e-12 * np.abs(symmetric).max():
        raise ConfigError(f"{key}: a canonical GLE drift matrix needs eigenvalues with positive real parts and "
                          "A + Aᵀ positive semi-definite (its noise is kT (A + Aᵀ))")
    return matrix.tolist()


def _as_section(value: Any, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"kind": value}
    if not isinstance(value, Mapping) or "kind" not in value:
        raise ConfigError(f"{key} must be a name or a mapping with 'kind', got {value!r}")
    return dict(value)


def validate_config(config: Mapping[str, Any] | MDConfig) -> MDConfig:
    """Check every key of a config and return it as an :class:`MDConfig`; raise :class:`ConfigError`."""
    if isinstance(config, MDConfig):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"an MD config must be a mapping, got {type(config).__name__}")
    _check_keys(config, _TOP_KEYS, "config")
    for key in ("structure", "model", "timestep_fs"):
        if key not in config:
            raise ConfigError(f"config: missing required key {key!r}")
    timestep = _positive(config["timestep_fs"], "timestep_fs")
    if ("steps" in config) == ("time_ps" in config):
        raise ConfigError("config: give the run length as exactly one of 'steps' or 'time_ps'")
    if "steps" in config:
        steps = _positive(config["steps"], "steps", integer=True)
    else:
        steps = int(round(_positive(config["time_ps"], "time_ps") * 1000.0 / timestep))
        if steps < 1:
            raise ConfigError(f"time_ps={config['time_ps']} is shorter than one {timestep} fs step")

    symmetrizer = _as_section(config.get("symmetrizer", "none"), "symmetrizer")
    if symmetrizer["kind"] not in _SYMMETRIZER_KEYS:
        raise ConfigError(f"symmetrizer: unknown kind {symmetrizer['kind']!r} (one of {', '.join(_SYMMETRIZER_KEYS)})")
    _check_keys(symmetrizer, _SYMMETRIZER_KEYS[symmetrizer["kind"]], f"symmetrizer ({symmetrizer['kind']})")
    if symmetrizer["kind"] in ("grid", "mts"):
        if "grid" not in symmetrizer:
            raise ConfigError(f"symmetrizer ({symmetrizer['kind']}): missing 'grid' (a quadrature name, e.g. 2i)")
        _quadrature(symmetrizer["grid"])
    if symmetrizer["kind"] == "mts":
        if "n_inner" not in symmetrizer:
            raise ConfigError("symmetrizer (mts): missing 'n_inner' (inner steps per outer step)")
        symmetrizer["n_inner"] = _positive(symmetrizer["n_inner"], "symmetrizer.n_inner", integer=True)

    ensemble = _as_section(config.get("ensemble", "nve"), "ensemble")
    if ensemble["kind"] not in _ENSEMBLE_KEYS:
        raise ConfigError(f"ensemble: unknown kind {ensemble['kind']!r} (one of {', '.join(_ENSEMBLE_KEYS)})")
    _check_keys(ensemble, _ENSEMBLE_KEYS[ensemble["kind"]], f"ensemble ({ensemble['kind']})")
    for key in sorted(_ENSEMBLE_KEYS[ensemble["kind"]] - {"kind"}):
        if key not in ensemble:
            raise ConfigError(f"ensemble ({ensemble['kind']}): missing required parameter {key!r}")
        check = _drift_matrix if key == "A_per_fs" else _positive
        ensemble[key] = check(ensemble[key], f"ensemble.{key}")
    engine = config.get("engine", "ase")
    if engine not in ENGINES:
        raise ConfigError(f"engine: unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    if engine == "ipi":
        from symprobe.ipi import check_ipi_installed

        check_ipi_installed()
    if engine == "ase" and ensemble["kind"] == "nvt-gle":
        raise ConfigError("ensemble nvt-gle needs engine ipi (ASE has no GLE thermostat)")
    if engine == "ase" and symmetrizer["kind"] == "mts" and ensemble["kind"] == "nvt-langevin":
        raise ConfigError("ensemble nvt-langevin cannot be combined with the mts symmetrizer on engine ase: use nve "
                          "or nvt-bussi, or engine ipi")

    initial_t = config.get("initial_temperature_K")
    if initial_t is not None and (isinstance(initial_t, bool) or not isinstance(initial_t, (int, float)) or initial_t < 0):
        raise ConfigError(f"initial_temperature_K must be a non-negative number, got {initial_t!r}")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    index = config.get("structure_index", -1)
    if isinstance(index, bool) or not isinstance(index, int):
        raise ConfigError(f"structure_index must be an integer, got {index!r}")

    raw_output = config.get("output", {})
    if not isinstance(raw_output, Mapping):
        raise ConfigError(f"output must be a mapping, got {raw_output!r}")
    _check_keys(raw_output, _OUTPUT_KEYS, "output")
    n_inner = symmetrizer.get("n_inner", 1) if symmetrizer["kind"] == "mts" else 1
    output = OutputConfig(directory=Path(raw_output.get("directory", "md")))
    output.trajectory = str(raw_output.get("trajectory", output.trajectory))
    if not output.trajectory.endswith((".extxyz", ".xyz", ".traj")):
        raise ConfigError(f"output.trajectory must end in .extxyz, .xyz or .traj, got {output.trajectory!r}")
    output.progress = bool(raw_output.get("progress", True))
    for key in ("trajectory_stride", "log_stride", "checkpoint_stride"):
        default = getattr(output, key) * n_inner
        value = _positive(raw_output.get(key, default), f"output.{key}", integer=True)
        if value % n_inner:
            raise ConfigError(f"output.{key}={value} must be a multiple of symmetrizer.n_inner={n_inner}")
        setattr(output, key, value)
    if steps % n_inner:
        raise ConfigError(f"the run length ({steps} steps) must be a multiple of symmetrizer.n_inner={n_inner}")
    return MDConfig(config["structure"], config["model"], timestep, steps, output, symmetrizer, ensemble, index,
                    None if initial_t is None else float(initial_t), seed, engine)


def load_config(path: str | Path) -> MDConfig:
    """Read and validate a YAML config file."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    return validate_config(raw)


def _quadrature(name: str | Quadrature) -> Quadrature:
    """A quadrature by name (``symprobe grids`` lists them); the Python API also takes a Quadrature."""
    from symprobe import so3

    if isinstance(name, Quadrature):
        return name
    try:
        return so3.get(str(name))
    except (KeyError, ValueError) as error:
        raise ConfigError(f"symmetrizer.grid: {error}") from error


# ---------------------------------------------------------------------------------------------------
# Engines


class LangevinWithHeat(LangevinBAOAB):
    """ASE's BAOAB Langevin dynamics that also counts the energy the thermostat put in (``transferred_energy``,
    eV), so that E_kin + E_pot − transferred_energy is conserved up to integration error."""

    transferred_energy = 0.0

    def _BAOAB_OU(self, drag_gamma_mod=0.0):
        before = self.atoms.get_kinetic_energy()
        super()._BAOAB_OU(drag_gamma_mod)
        self.transferred_energy += self.atoms.get_kinetic_energy() - before


class MultipleTimeStep(MolecularDynamics):
    """r-RESPA: one step of ``timestep`` (ASE units) is a half kick with the slow forces, ``n_inner`` ASE
    velocity-Verlet steps of ``timestep / n_inner`` with the atoms' calculator (the fast, raw model), and
    another slow half kick. An optional :class:`~ase.md.bussi.Bussi` rescales the velocities once per step.

    ``slow`` is a model (here the grid average minus the raw model); its last energy (eV) and forces are
    kept in ``slow_energy`` / ``slow_forces``. ``potential_energy()`` is the full potential fast + slow.
    """

    def __init__(self, atoms: Atoms, timestep: float, slow: Model, n_inner: int, thermostat: Bussi | None = None,
                 **kwargs):
        super().__init__(atoms, timestep, **kwargs)
        self.slow, self.n_inner, self.thermostat = slow, int(n_inner), thermostat
        self.inner = VelocityVerlet(atoms, timestep / n_inner)
        self.slow_energy, self.slow_forces = self._slow()

    def _slow(self) -> tuple[float, np.ndarray]:
        prediction = self.slow.predict(self.atoms)
        return prediction.energy, prediction.forces

    @property
    def transferred_energy(self) -> float:
        return 0.0 if self.thermostat is None else self.thermostat.transferred_energy

    def potential_energy(self) -> float:
        return self.atoms.get_potential_energy() + self.slow_energy

    def step(self, forces=None):
        if self.thermostat is not None:
            self.thermostat.scale_velocities()
        self.atoms.set_momenta(self.atoms.get_momenta() + 0.5 * self.dt * self.slow_forces, apply_constraint=False)
        for _ in range(self.n_inner):
            self.inner.step()
        self.slow_energy, self.slow_forces = self._slow()
        self.atoms.set_momenta(self.atoms.get_momenta() + 0.5 * self.dt * self.slow_forces, apply_constraint=False)


# ---------------------------------------------------------------------------------------------------
# Building a run


def load_structure(spec: Atoms | str, index: int = -1) -> Atoms:
    """A structure from an Atoms object, ``builtin:water-monomer``, ``builtin:water-box`` (64 H2O) or a file."""
    from symprobe.structures import read_structures, water_box, water_monomer

    if isinstance(spec, Atoms):
        return spec.copy()
    builtins = {"builtin:water-monomer": water_monomer, "builtin:water-box": water_box}
    if spec in builtins:
        return builtins[spec]()
    if str(spec).startswith("builtin:"):
        raise ConfigError(f"structure: unknown built-in {spec!r} (one of {', '.join(builtins)})")
    frames = read_structures(spec)
    try:
        return frames[index]
    except IndexError:
        raise ConfigError(f"structure_index={index}: {spec} holds {len(frames)} structures") from None


def load_model(spec: Model | str) -> Model:
    """A model object, or one loaded from a spec string by :func:`symprobe.models.external.load_model`."""
    if isinstance(spec, Model):
        return spec
    from symprobe.models.external import load_model as load_from_spec

    try:
        return load_from_spec(str(spec))
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"model: {error}") from error


def build_potential(model: Model, config: MDConfig) -> tuple[Model, Model | None]:
    """(model seen by the integrator, slow MTS model or None) for the config's symmetrizer."""
    if "forces" not in tuple(model.implemented_properties):
        raise ConfigError(f"model {model.name!r} does not compute forces: it cannot drive MD")
    kind = config.symmetrizer["kind"]
    try:
        if kind == "grid":
            return GridAverage(model, _quadrature(config.symmetrizer["grid"])), None
        if kind == "random":
            seed = int(config.symmetrizer.get("seed", config.seed))
            return RandomRotation(model, seed, bool(config.symmetrizer.get("inversion", False))), None
        if kind == "mts":
            return model, AveragingCorrection(model, _quadrature(config.symmetrizer["grid"]))
    except ValueError as error:
        raise ConfigError(f"symmetrizer ({kind}): {error}") from error
    return model, None


def _build_dynamics(atoms: Atoms, config: MDConfig, potential: Model, slow: Model | None,
                    checkpoint: Mapping[str, np.ndarray] | None = None,
                    state: Mapping[str, Any] | None = None) -> MolecularDynamics:
    """The dynamics of the config's engine and ensemble (thermostat generator seeded by [seed, 2]).

    ``checkpoint``/``state`` restore an i-PI run (ASE runs are restored by :func:`_restore_dynamics`).
    """
    dt = config.timestep_fs * config.n_inner * units.fs
    ensemble = config.ensemble
    rng = np.random.default_rng([config.seed, 2])
    if ensemble["kind"] != "nve" and atoms.get_kinetic_energy() <= 0:
        raise ConfigError(f"ensemble {ensemble['kind']}: the atoms start at rest; set initial_temperature_K > 0")
    if config.engine == "ipi":
        from symprobe.ipi import IpiDynamics

        return IpiDynamics(atoms, config, potential, slow, checkpoint, state)
    if ensemble["kind"] == "nvt-langevin":
        return LangevinWithHeat(atoms, dt, temperature_K=ensemble["temperature_K"], T_tau=ensemble["tau_fs"] * units.fs,
                                rng=rng)
    bussi = None
    if ensemble["kind"] == "nvt-bussi":
        bussi = Bussi(atoms, dt, temperature_K=ensemble["temperature_K"], taut=ensemble["tau_fs"] * units.fs, rng=rng)
    if slow is not None:
        return MultipleTimeStep(atoms, dt, slow, config.n_inner, thermostat=bussi)
    return bussi if bussi is not None else VelocityVerlet(atoms, dt)


def _transferred(dyn: MolecularDynamics) -> float:
    return float(getattr(dyn, "transferred_energy", 0.0))


def _thermostat(dyn: MolecularDynamics) -> Any:
    """The object owning the thermostat's generator and transferred energy, or None."""
    if isinstance(dyn, MultipleTimeStep):
        return dyn.thermostat
    return dyn if isinstance(dyn, (Bussi, LangevinWithHeat)) else None


def angular_momentum(atoms: Atoms) -> np.ndarray:
    """Total angular momentum about the centre of mass, eV·fs (1 amu·Å²/fs = 103.6427 eV·fs)."""
    r = atoms.get_positions() - atoms.get_center_of_mass()
    return np.cross(r, atoms.get_momenta()).sum(axis=0) / units.fs


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def write_checkpoint(path: Path, atoms: Atoms, dyn: MolecularDynamics, potential: Model) -> None:
    """Positions, momenta, cached forces, thermostat and symmetrizer generator states; atomic write.

    For engine ipi, :meth:`symprobe.ipi.IpiDynamics.checkpoint` gives i-PI's state and its last evaluations.
    """
    from symprobe.ipi import IpiDynamics

    results = atoms.calc.results
    arrays = {"positions": atoms.get_positions(), "momenta": atoms.get_momenta(), "cell": atoms.cell.array,
              "energy": np.array(results["energy"]), "forces": np.asarray(results["forces"])}
    if isinstance(dyn, IpiDynamics):
        engine_arrays, state = dyn.checkpoint()
        arrays.update(engine_arrays)
    else:
        if "stress" in results:
            arrays["stress"] = np.asarray(results["stress"])
        if isinstance(dyn, MultipleTimeStep):
            arrays["slow_energy"], arrays["slow_forces"] = np.array(dyn.slow_energy), dyn.slow_forces
        thermostat = _thermostat(dyn)
        state = {
            "engine": "ase",
            "nsteps": dyn.nsteps,
            "thermostat_rng": None if thermostat is None else thermostat.rng.bit_generator.state,
            "transferred_energy": None if thermostat is None else thermostat.transferred_energy,
        }
    state["symmetrizer"] = potential.state() if isinstance(potential, Symmetrizer) else {}
    buffer = io.BytesIO()
    np.savez(buffer, state=np.array(json.dumps(state)), **arrays)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def _restore_atoms(atoms: Atoms, checkpoint: Mapping[str, np.ndarray]) -> None:
    """Put positions, momenta and the cached calculator results of a checkpoint on ``atoms``."""
    atoms.set_cell(checkpoint["cell"], scale_atoms=False)
    atoms.set_positions(checkpoint["positions"])
    atoms.set_momenta(checkpoint["momenta"], apply_constraint=False)
    results = {"energy": float(checkpoint["energy"]), "free_energy": float(checkpoint["energy"]),
               "forces": np.array(checkpoint["forces"])}
    if "stress" in checkpoint:
        results["stress"] = np.array(checkpoint["stress"])
    atoms.calc.atoms = atoms.copy()
    atoms.calc.results = results


def _restore_dynamics(dyn: MolecularDynamics, checkpoint: Mapping[str, np.ndarray], state: dict[str, Any]) -> None:
    dyn.nsteps = int(state["nsteps"])
    if isinstance(dyn, MultipleTimeStep):
        dyn.slow_energy, dyn.slow_forces = float(checkpoint["slow_energy"]), np.array(checkpoint["slow_forces"])
    thermostat = _thermostat(dyn)
    if thermostat is not None:
        thermostat.rng.bit_generator.state = state["thermostat_rng"]
        thermostat.transferred_energy = float(state["transferred_energy"])


# ---------------------------------------------------------------------------------------------------
# Outputs

LOG_COLUMNS = ["step", "time_fs", "potential_eV", "kinetic_eV", "thermostat_energy_eV", "conserved_eV",
               "temperature_K"]
ANGULAR_COLUMNS = ["Lx_eVfs", "Ly_eVfs", "Lz_eVfs"]


def _potential_energy(atoms: Atoms, dyn: MolecularDynamics) -> float:
    return dyn.potential_energy() if isinstance(dyn, MultipleTimeStep) else float(atoms.get_potential_energy())


def _log_row(atoms: Atoms, dyn: MolecularDynamics, n_inner: int) -> list[str]:
    potential, kinetic, heat = _potential_energy(atoms, dyn), float(atoms.get_kinetic_energy()), _transferred(dyn)
    values = [dyn.nsteps * dyn.dt / units.fs, potential, kinetic, heat, potential + kinetic - heat,
              float(atoms.get_temperature())]
    if not atoms.pbc.any():
        values += list(angular_momentum(atoms))
    return [str(dyn.nsteps * n_inner)] + [repr(float(v)) for v in values]


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep the header and the rows up to ``last_step`` (after a restart)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _truncate_trajectory(path: Path, last_step: int) -> None:
    """Keep the frames up to ``last_step`` (after a restart)."""
    from ase.io import read, write

    if not path.exists():
        return
    frames = [f for f in read(path, index=":") if int(f.info["step"]) <= last_step]
    tmp = path.with_name("tmp." + path.name)
    write(tmp, frames) if frames else tmp.write_bytes(b"")
    os.replace(tmp, path)


def _write_frame(path: Path, atoms: Atoms, dyn: MolecularDynamics, n_inner: int) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=_potential_energy(atoms, dyn),
                                       forces=np.array(atoms.calc.results["forces"]))
    frame.info.update(step=dyn.nsteps * n_inner, time_fs=dyn.nsteps * dyn.dt / units.fs)
    if path.suffix == ".traj":  # ase.io.write(append=True) makes .traj files ASE cannot read back
        from ase.io.trajectory import Trajectory

        with Trajectory(path, "a") as trajectory:
            trajectory.write(frame)
    else:
        write(path, frame, append=True)


# ---------------------------------------------------------------------------------------------------
# Running


def run_md(config: Mapping[str, Any] | MDConfig | str | Path, resume: bool = False) -> Path:
    """Run the MD of ``config`` (dict, :class:`MDConfig` or YAML path); return the output directory.

    With ``resume=True`` the run continues from ``output.directory/checkpoint.npz`` up to the config's
    total length (which may be longer than the interrupted run's); logs and trajectory are cut back to the
    checkpoint first, so the files equal those of an uninterrupted run.
    """
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    config = load_config(config) if isinstance(config, (str, Path)) else validate_config(config)
    model = load_model(config.model)
    atoms = load_structure(config.structure, config.structure_index)
    potential, slow = build_potential(model, config)
    from symprobe.structures import check_structure

    check_structure(atoms, species=model.species)

    out = config.output.directory
    out.mkdir(parents=True, exist_ok=True)
    log_path, traj_path, ckpt_path = out / "log.csv", out / config.output.trajectory, out / "checkpoint.npz"
    n_inner = config.n_inner
    atoms.calc = potential.as_calculator()

    checkpoint, state = None, None
    if resume:
        if not ckpt_path.exists():
            raise ConfigError(f"resume: no checkpoint at {ckpt_path}")
        with np.load(ckpt_path) as data:
            checkpoint = {key: data[key] for key in data.files}
        state = json.loads(str(checkpoint.pop("state")))
        written_by = state.get("engine", "ase")
        if written_by != config.engine:
            raise ConfigError(f"resume: {ckpt_path} was written by engine {written_by}; it cannot resume on engine "
                              f"{config.engine}")
        if int(state["nsteps"]) * n_inner > config.steps:
            raise ConfigError(f"resume: the checkpoint is at step {state['nsteps'] * n_inner}, beyond steps={config.steps}")
        _restore_atoms(atoms, checkpoint)
        if isinstance(potential, Symmetrizer):
            potential.restore(state["symmetrizer"])
    else:
        for stale in (log_path, traj_path, ckpt_path):
            stale.unlink(missing_ok=True)
        if config.initial_temperature_K is not None:
            thermalize_momenta(atoms, config.initial_temperature_K, rng=np.random.default_rng([config.seed, 1]))
            Stationary(atoms)

    dyn = _build_dynamics(atoms, config, potential, slow, checkpoint, state)
    try:
        if checkpoint is not None:
            if config.engine == "ase":
                _restore_dynamics(dyn, checkpoint, state)
            _truncate_log(log_path, dyn.nsteps * n_inner)
            _truncate_trajectory(traj_path, dyn.nsteps * n_inner)
        _run(dyn, atoms, potential, config, log_path, traj_path, ckpt_path)
    finally:
        if config.engine == "ipi":
            dyn.close()
    return out


def _run(dyn: MolecularDynamics, atoms: Atoms, potential: Model, config: MDConfig, log_path: Path, traj_path: Path,
         ckpt_path: Path) -> None:
    """Step ``dyn`` to the config's length, writing log rows, frames and checkpoints at their strides."""
    from tqdm import tqdm

    n_inner = config.n_inner

    new_log = not log_path.exists()
    with open(log_path, "a", newline="") as log_file:
        writer = csv.writer(log_file, lineterminator="\n")
        if new_log:
            writer.writerow(LOG_COLUMNS + ([] if atoms.pbc.any() else ANGULAR_COLUMNS))

        def checkpoint_now() -> None:
            log_file.flush()
            write_checkpoint(ckpt_path, atoms, dyn, potential)

        dyn.attach(lambda: writer.writerow(_log_row(atoms, dyn, n_inner)), interval=config.output.log_stride // n_inner)
        dyn.attach(lambda: _write_frame(traj_path, atoms, dyn, n_inner),
                   interval=config.output.trajectory_stride // n_inner)
        dyn.attach(checkpoint_now, interval=config.output.checkpoint_stride // n_inner)
        remaining = config.steps // n_inner - dyn.nsteps
        with tqdm(total=remaining * n_inner, disable=not config.output.progress, unit="step",
                  desc=f"md {potential.name}") as bar:
            for count, _ in enumerate(dyn.irun(remaining)):
                bar.update(n_inner if count else 0)
        if dyn.nsteps % (config.output.checkpoint_stride // n_inner):
            checkpoint_now()


def read_log(directory: str | Path) -> dict[str, np.ndarray]:
    """The property log of a run as columns (numpy arrays), keyed by the CSV header."""
    path = Path(directory) / "log.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no MD log (did the run start?)")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, values = rows[0], np.array(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))
    return {name: values[:, k] for k, name in enumerate(header)}
