"""MD run configs: the schema (:data:`EXAMPLE`), validated completely before any step.

A config is a YAML file or a dict; :func:`validate_config` checks every key and returns an :class:`MDConfig`,
or raises :class:`ConfigError` naming the key and the problem. See docs/conventions.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.checks import ConfigError, check_keys, flag, mapping, number, positive, read_yaml, text
from symprobe.models.base import Model
from symprobe.models.device import DeviceError, resolve_device
from symprobe.so3 import Quadrature

EXAMPLE = """\
structure: builtin:water-monomer     # builtin:water-monomer | builtin:water-box | path to a file ASE reads
                                     # (relative to the config file's directory)
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
engine: ase                          # ase | batched (symprobe's batched engine: many replicas, any device, MTS
                                     # with Langevin) | ipi (i-PI in-process; adds nvt-gle)
device: cpu                          # cpu | cuda | cuda:N: where the model runs (model specs only)
replicas: 1                          # engine batched: independent copies stepped together (seeds seed..seed+N-1)
output: {directory: md, trajectory: trajectory.extxyz, trajectory_stride: 10, log_stride: 1,
         checkpoint_stride: 100, progress: true}
"""


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
    device: str = "cpu"
    replicas: int = 1

    @property
    def n_inner(self) -> int:
        """Inner steps per outer step (1 unless multiple time stepping)."""
        return int(self.symmetrizer.get("n_inner", 1)) if self.symmetrizer["kind"] == "mts" else 1


_TOP_KEYS = {"structure", "structure_index", "model", "symmetrizer", "ensemble", "initial_temperature_K",
             "timestep_fs", "steps", "time_ps", "seed", "engine", "device", "replicas", "output"}
_SYMMETRIZER_KEYS = {"none": {"kind"}, "grid": {"kind", "grid"}, "random": {"kind", "inversion", "seed"},
                     "mts": {"kind", "grid", "n_inner"}}
_ENSEMBLE_KEYS = {"nve": {"kind"}, "nvt-bussi": {"kind", "temperature_K", "tau_fs"},
                  "nvt-langevin": {"kind", "temperature_K", "tau_fs"},
                  "nvt-gle": {"kind", "temperature_K", "A_per_fs"}}
ENGINES = ("ase", "batched", "ipi")
_OUTPUT_KEYS = {"directory", "trajectory", "trajectory_stride", "log_stride", "checkpoint_stride", "progress"}


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
    text(value["kind"], f"{key}.kind")
    return dict(value)


def validate_config(config: Mapping[str, Any] | MDConfig) -> MDConfig:
    """Check every key of a config and return it as an :class:`MDConfig`; raise :class:`ConfigError`."""
    if isinstance(config, MDConfig):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"an MD config must be a mapping, got {type(config).__name__}")
    check_keys(config, _TOP_KEYS, "config")
    for key in ("structure", "model", "timestep_fs"):
        if key not in config:
            raise ConfigError(f"config: missing required key {key!r}")
    timestep = positive(config["timestep_fs"], "timestep_fs")
    if ("steps" in config) == ("time_ps" in config):
        raise ConfigError("config: give the run length as exactly one of 'steps' or 'time_ps'")
    if "steps" in config:
        steps = positive(config["steps"], "steps", integer=True)
    else:
        steps = int(round(positive(config["time_ps"], "time_ps") * 1000.0 / timestep))
        if steps < 1:
            raise ConfigError(f"time_ps={config['time_ps']} is shorter than one {timestep} fs step")

    symmetrizer = _as_section(config.get("symmetrizer", "none"), "symmetrizer")
    if symmetrizer["kind"] not in _SYMMETRIZER_KEYS:
        raise ConfigError(f"symmetrizer: unknown kind {symmetrizer['kind']!r} (one of {', '.join(_SYMMETRIZER_KEYS)})")
    check_keys(symmetrizer, _SYMMETRIZER_KEYS[symmetrizer["kind"]], f"symmetrizer ({symmetrizer['kind']})")
    if symmetrizer["kind"] in ("grid", "mts"):
        if "grid" not in symmetrizer:
            raise ConfigError(f"symmetrizer ({symmetrizer['kind']}): missing 'grid' (a quadrature name, e.g. 2i)")
        quadrature(symmetrizer["grid"])
    if symmetrizer["kind"] == "mts":
        if "n_inner" not in symmetrizer:
            raise ConfigError("symmetrizer (mts): missing 'n_inner' (inner steps per outer step)")
        symmetrizer["n_inner"] = positive(symmetrizer["n_inner"], "symmetrizer.n_inner", integer=True)
    if symmetrizer["kind"] == "random":
        if "seed" in symmetrizer:
            symmetrizer["seed"] = number(symmetrizer["seed"], "symmetrizer.seed", integer=True, minimum=0)
        symmetrizer["inversion"] = flag(symmetrizer.get("inversion", False), "symmetrizer.inversion")

    ensemble = _as_section(config.get("ensemble", "nve"), "ensemble")
    if ensemble["kind"] not in _ENSEMBLE_KEYS:
        raise ConfigError(f"ensemble: unknown kind {ensemble['kind']!r} (one of {', '.join(_ENSEMBLE_KEYS)})")
    check_keys(ensemble, _ENSEMBLE_KEYS[ensemble["kind"]], f"ensemble ({ensemble['kind']})")
    for key in sorted(_ENSEMBLE_KEYS[ensemble["kind"]] - {"kind"}):
        if key not in ensemble:
            raise ConfigError(f"ensemble ({ensemble['kind']}): missing required parameter {key!r}")
        check = _drift_matrix if key == "A_per_fs" else positive
        ensemble[key] = check(ensemble[key], f"ensemble.{key}")
    engine = config.get("engine", "ase")
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ConfigError(f"engine: unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    if engine == "ipi":
        from symprobe.md.ipi import check_ipi_installed

        check_ipi_installed()
    if engine != "ipi" and ensemble["kind"] == "nvt-gle":
        raise ConfigError(f"ensemble nvt-gle needs engine ipi (engine {engine} has no GLE thermostat)")
    if engine == "ase" and symmetrizer["kind"] == "mts" and ensemble["kind"] == "nvt-langevin":
        raise ConfigError("ensemble nvt-langevin cannot be combined with the mts symmetrizer on engine ase: use nve "
                          "or nvt-bussi, or engine batched or ipi")

    initial_t = config.get("initial_temperature_K")
    if initial_t is not None:
        initial_t = number(initial_t, "initial_temperature_K", minimum=0)
    seed = number(config.get("seed", 0), "seed", integer=True, minimum=0)
    index = number(config.get("structure_index", -1), "structure_index", integer=True)
    for key, kind in (("structure", Atoms), ("model", Model)):
        if not isinstance(config[key], kind):
            text(config[key], key)
    device = str(config.get("device", "cpu"))
    try:
        resolve_device(device)
    except DeviceError as error:
        raise ConfigError(str(error)) from None
    replicas = positive(config.get("replicas", 1), "replicas", integer=True)
    if replicas > 1 and engine != "batched":
        raise ConfigError(f"replicas: {replicas} replicas need engine batched (engine {engine} runs one)")

    raw_output = mapping(config.get("output", {}), "output")
    check_keys(raw_output, _OUTPUT_KEYS, "output")
    n_inner = symmetrizer.get("n_inner", 1) if symmetrizer["kind"] == "mts" else 1
    directory = raw_output.get("directory", "md")
    output = OutputConfig(directory=Path(directory if isinstance(directory, Path) else text(directory, "output.directory")))
    output.trajectory = text(raw_output.get("trajectory", output.trajectory), "output.trajectory")
    if not output.trajectory.endswith((".extxyz", ".xyz", ".traj")):
        raise ConfigError(f"output.trajectory must end in .extxyz, .xyz or .traj, got {output.trajectory!r}")
    output.progress = flag(raw_output.get("progress", True), "output.progress")
    for key in ("trajectory_stride", "log_stride", "checkpoint_stride"):
        default = getattr(output, key) * n_inner
        value = positive(raw_output.get(key, default), f"output.{key}", integer=True)
        if value % n_inner:
            raise ConfigError(f"output.{key}={value} must be a multiple of symmetrizer.n_inner={n_inner}")
        setattr(output, key, value)
    if steps % n_inner:
        raise ConfigError(f"the run length ({steps} steps) must be a multiple of symmetrizer.n_inner={n_inner}")
    return MDConfig(config["structure"], config["model"], timestep, steps, output, symmetrizer, ensemble, index,
                    None if initial_t is None else float(initial_t), seed, engine, device, replicas)


def load_config(path: str | Path) -> MDConfig:
    """Read and validate a YAML config file; a relative ``structure:`` path is read from the config's directory."""
    config = read_yaml(path)
    structure = config.get("structure") if isinstance(config, Mapping) else None
    if isinstance(structure, str) and not structure.startswith("builtin:") and not Path(structure).expanduser().is_absolute():
        config = {**config, "structure": str(Path(path).parent / structure)}
    return validate_config(config)


def quadrature(name: str | Quadrature) -> Quadrature:
    """A quadrature by name (``symprobe grids`` lists them) or as given; :class:`ConfigError` if unknown."""
    try:
        return so3.get(name)
    except (KeyError, ValueError) as error:
        raise ConfigError(f"symmetrizer.grid: {error}") from error
