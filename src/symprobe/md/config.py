"""MD run configs: :class:`MDConfig` declares every key once (pydantic: type, range, default, meaning with units),
:data:`EXAMPLE` is the annotated YAML, and a config is validated completely before any step.

A config is a YAML file or a dict; :func:`validate_config` checks every key and returns an :class:`MDConfig`,
or raises :class:`ConfigError` naming the key and the problem. See docs/conventions.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from ase import Atoms
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from symprobe import so3
from symprobe.checks import ConfigError, Section, read_yaml, validate
from symprobe.cluster.spec import ClusterError, ClusterSpec, parse_cluster
from symprobe.md.ipi_clients import TRANSPORTS
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
                                     # with Langevin) | ipi (i-PI; adds nvt-gle)
clients: 0                           # engine ipi: 0 runs the model inside i-PI; N > 0 starts N `symprobe serve`
                                     # clients on an i-PI socket (symmetrizer none, or grid averaged by i-PI's
                                     # <ffrotations> on a Legendre grid: 2, 2i, 3, 3i, legendre-L[+i])
# transport: unix                    # with clients > 0, their socket: unix (a fresh socket file) | inet (127.0.0.1)
device: cpu                          # cpu | cuda | cuda:N: where the model runs (model specs only)
replicas: 1                          # engine batched: independent copies stepped together (seeds seed..seed+N-1)
# cluster: local:2                   # engine batched, replicas ≥ 2: each replica a task on Dask: local:N | tcp://HOST:PORT
                                     # | slurm:FILE.yaml (docs/cluster.md); files in output.directory/replica-K/
# threads_per_worker: 1              # with cluster: torch threads of each replica's task (slurm: in its YAML)
output: {directory: md, trajectory: trajectory.extxyz, trajectory_stride: 10, log_stride: 1,
         checkpoint_stride: 100, progress: true}
"""


ENGINES = ("ase", "batched", "ipi")
MIN_IPI_VERSION = (3, 3)  # scripting.InteractiveSimulation, <ffdirect> custom PES, softexit.reset; tested with 3.3.1


# ---------------------------------------------------------------------------------------------------
# Config: every key declared once, with its type, range, default and meaning (units in the description)


def _known_quadrature(grid: str | Quadrature) -> str | Quadrature:
    quadrature(grid)
    return grid


QuadratureName = Annotated[str | Quadrature, AfterValidator(_known_quadrature), WithJsonSchema({"type": "string"})]
"""A quadrature by name (``symprobe grids`` lists them) or a :class:`~symprobe.so3.Quadrature`."""


class NoSymmetrizer(Section):
    """The model as it is."""

    kind: Literal["none"]


class GridSymmetrizer(Section):
    """The average over the rotations of a quadrature, every step."""

    kind: Literal["grid"]
    grid: QuadratureName = Field(description="quadrature name, e.g. 2i (`symprobe grids` lists them)")


class RandomSymmetrizer(Section):
    """One random rotation per step."""

    kind: Literal["random"]
    inversion: bool = Field(False, description="also invert the structure at random (kind random)")
    seed: int | None = Field(None, ge=0, description="seed of the random rotations (kind random; default: the run's seed)")


class MTSSymmetrizer(Section):
    """Multiple time stepping: the model every inner step, the grid average's correction every ``n_inner``."""

    kind: Literal["mts"]
    grid: QuadratureName = Field(description="quadrature name, e.g. 2i (`symprobe grids` lists them)")
    n_inner: int = Field(gt=0, description="inner steps per outer step (kind mts)")


class NVE(Section):
    """Constant energy."""

    kind: Literal["nve"]


class BussiNVT(Section):
    """The Bussi–Donadio–Parrinello stochastic velocity rescaling thermostat."""

    kind: Literal["nvt-bussi"]
    temperature_K: float = Field(gt=0, description="thermostat temperature (K)")
    tau_fs: float = Field(gt=0, description="thermostat time constant (fs)")


class LangevinNVT(Section):
    """A Langevin thermostat."""

    kind: Literal["nvt-langevin"]
    temperature_K: float = Field(gt=0, description="thermostat temperature (K)")
    tau_fs: float = Field(gt=0, description="thermostat time constant (fs)")


class GLENVT(Section):
    """A canonical generalized Langevin (GLE) thermostat, engine ipi only."""

    kind: Literal["nvt-gle"]
    temperature_K: float = Field(gt=0, description="thermostat temperature (K)")
    A_per_fs: list[list[float]] = Field(description="GLE drift matrix A (fs⁻¹, a list of rows; kind nvt-gle)")

    @field_validator("A_per_fs", mode="before")
    @classmethod
    def _drift(cls, value: Any) -> list[list[float]]:
        return _drift_matrix(value, "ensemble.A_per_fs")


def _named(value: Any) -> Any:
    """A section given by name only (``nve``) as ``{kind: nve}``."""
    return {"kind": value} if isinstance(value, str) else value


_Symmetrizers = NoSymmetrizer | GridSymmetrizer | RandomSymmetrizer | MTSSymmetrizer
_Ensembles = NVE | BussiNVT | LangevinNVT | GLENVT
SymmetrizerSection = Annotated[_Symmetrizers, Field(discriminator="kind"),
                               BeforeValidator(_named, json_schema_input_type=Literal["none", "random"] | _Symmetrizers)]
EnsembleSection = Annotated[_Ensembles, Field(discriminator="kind"),
                            BeforeValidator(_named, json_schema_input_type=Literal["nve"] | _Ensembles)]
STRIDES = ("trajectory_stride", "log_stride", "checkpoint_stride")


class OutputConfig(Section):
    """Where and how often to write. Strides count time steps (multiples of n_inner for MTS)."""

    directory: Path = Field(Path("md"), strict=False, description="output directory (log.csv, trajectory, checkpoint.npz)")
    trajectory: str = Field("trajectory.extxyz", description="trajectory file name in the directory (.extxyz, .xyz or .traj)")
    trajectory_stride: int = Field(10, gt=0, description="time steps between trajectory frames (× n_inner by default for MTS)")
    log_stride: int = Field(1, gt=0, description="time steps between log rows (× n_inner by default for MTS)")
    checkpoint_stride: int = Field(100, gt=0, description="time steps between checkpoints (× n_inner by default for MTS)")
    progress: bool = Field(True, description="show a progress bar")

    @field_validator("trajectory")
    @classmethod
    def _trajectory_format(cls, name: str) -> str:
        if not name.endswith((".extxyz", ".xyz", ".traj")):
            raise ConfigError(f"output.trajectory must end in .extxyz, .xyz or .traj, got {name!r}")
        return name


def _device_name(name: str) -> str:
    try:
        resolve_device(name)
    except DeviceError as error:
        raise ConfigError(str(error)) from None
    return name


def _cluster_spec(text: str | None) -> str | None:
    """``text`` if it is a cluster spec (a SLURM YAML is read and checked); :class:`ConfigError` naming the problem."""
    if text is not None:
        try:
            parse_cluster(text)
        except ClusterError as error:
            raise ConfigError(f"cluster: {str(error).removeprefix('--cluster ')}") from None
    return text


def _ipi_installed(engine: str) -> str:
    if engine == "ipi":
        check_ipi_installed()
    return engine


class MDConfig(Section):
    """A validated MD run (see :data:`EXAMPLE`). ``structure`` and ``model`` may be objects or specs."""

    structure: Annotated[Atoms | str, WithJsonSchema({"type": "string", "minLength": 1})] = Field(
        description="builtin:water-monomer, builtin:water-box, or a file ASE reads (relative to the config file)")
    structure_index: int = Field(-1, description="which frame of the structure file (default: the last)")
    model: Annotated[Model | str, WithJsonSchema({"type": "string", "minLength": 1})] = Field(
        description="model spec: builtin:NAME, metatomic:FILE.pt, a file, module:attribute (symprobe.models.external.load_model)")
    symmetrizer: SymmetrizerSection = Field(NoSymmetrizer(kind="none"), description="how the breaking is removed: "
                                            "none, grid, random or mts (the symmetrizer.* keys)")
    ensemble: EnsembleSection = Field(NVE(kind="nve"), description="nve, nvt-bussi, nvt-langevin or nvt-gle (engine ipi; "
                                      "the ensemble.* keys)")
    initial_temperature_K: float | None = Field(None, ge=0, description="Maxwell–Boltzmann start velocities at this "
                                                "temperature (K), centre-of-mass motion removed; default: the structure's")
    timestep_fs: float = Field(gt=0, description="the (inner) time step (fs)")
    steps: int | None = Field(None, gt=0, description="the run length in (inner) time steps; exactly one of steps and time_ps")
    time_ps: float | None = Field(None, gt=0, description="the run length (ps); exactly one of steps and time_ps")
    seed: int = Field(0, ge=0, description="seed of the start velocities, thermostats and random rotations (replica k: seed + k)")
    engine: Annotated[Literal[ENGINES], AfterValidator(_ipi_installed)] = Field(
        "ase", description="ase, batched (symprobe's engine: many replicas, any device, MTS with Langevin) or ipi (i-PI; adds nvt-gle)")
    device: Annotated[str, AfterValidator(_device_name)] = Field(
        "cpu", description="where the model runs: cpu, cuda or cuda:N (model specs only)")
    replicas: int = Field(1, gt=0, description="engine batched: independent copies stepped together (seeds seed … seed + N − 1)")
    cluster: Annotated[str | None, AfterValidator(_cluster_spec)] = Field(
        None, description="engine batched, replicas ≥ 2: run each replica as a task on Dask (its files and checkpoints in "
        "output.directory/replica-K/): local:N (N worker processes here), tcp://HOST:PORT (a running scheduler) or "
        "slurm:FILE.yaml (relative to the config file; docs/cluster.md); default: the replicas stepped together here")
    threads_per_worker: int | None = Field(None, ge=1, description="with cluster: torch threads of each replica's task "
                                           "(default 1; for slurm: threads_per_worker in its YAML)")
    clients: int = Field(0, ge=0, description="engine ipi: 0 runs the model inside i-PI; N > 0 starts N `symprobe serve` "
                         "clients on an i-PI socket (symmetrizer none or grid on a Legendre grid)")
    transport: Literal[TRANSPORTS] = Field("unix", description="the clients' socket: unix (a fresh socket file) or inet "
                                           "(127.0.0.1, a free port)")
    output: OutputConfig = Field(default_factory=OutputConfig, description="the output.* keys")

    @property
    def n_inner(self) -> int:
        """Inner steps per outer step (1 unless multiple time stepping)."""
        return self.symmetrizer.n_inner if isinstance(self.symmetrizer, MTSSymmetrizer) else 1

    @model_validator(mode="after")
    def _consistent(self) -> MDConfig:
        """The checks across keys: run length, engine and ensemble, replicas, clients, strides."""
        if (self.steps is None) == (self.time_ps is None):
            raise ConfigError("config: give the run length as exactly one of 'steps' or 'time_ps'")
        if self.steps is None:
            self.steps = round(self.time_ps * 1000.0 / self.timestep_fs)
            if self.steps < 1:
                raise ConfigError(f"time_ps={self.time_ps} is shorter than one {self.timestep_fs} fs step")
        kind = self.ensemble.kind
        if self.engine != "ipi" and kind == "nvt-gle":
            raise ConfigError(f"ensemble nvt-gle needs engine ipi (engine {self.engine} has no GLE thermostat)")
        if self.engine == "ase" and self.symmetrizer.kind == "mts" and kind == "nvt-langevin":
            raise ConfigError("ensemble nvt-langevin cannot be combined with the mts symmetrizer on engine ase: use nve "
                              "or nvt-bussi, or engine batched or ipi")
        if self.replicas > 1 and self.engine != "batched":
            raise ConfigError(f"replicas: {self.replicas} replicas need engine batched (engine {self.engine} runs one)")
        self._check_clients()
        self._check_cluster()
        n_inner = self.n_inner
        for key in STRIDES:
            if key not in self.output.model_fields_set:
                setattr(self.output, key, getattr(self.output, key) * n_inner)
            if getattr(self.output, key) % n_inner:
                raise ConfigError(f"output.{key}={getattr(self.output, key)} must be a multiple of symmetrizer.n_inner={n_inner}")
        if self.steps % n_inner:
            raise ConfigError(f"the run length ({self.steps} steps) must be a multiple of symmetrizer.n_inner={n_inner}")
        return self

    @property
    def cluster_spec(self) -> ClusterSpec | None:
        """The parsed ``cluster`` with ``threads_per_worker`` (None: the replicas stepped together in this process)."""
        return None if self.cluster is None else parse_cluster(self.cluster, self.threads_per_worker)

    def _check_cluster(self) -> None:
        """A cluster farms the replicas of engine batched, each worker loading the model from its spec."""
        if self.cluster is None:
            if self.threads_per_worker is not None:
                raise ConfigError("threads_per_worker: the torch threads of each replica's task on a cluster; set cluster too")
            return
        if self.engine != "batched" or self.replicas < 2:
            raise ConfigError(f"cluster: {self.cluster} runs the replicas of engine batched as tasks; it needs engine batched "
                              f"and replicas ≥ 2 (engine {self.engine}, replicas {self.replicas})")
        if not isinstance(self.model, str):
            raise ConfigError("cluster: each worker loads the model from its spec, so model must be a spec (builtin:NAME, a "
                              "file, module:attribute), not a model object")
        if self.threads_per_worker is not None and self.cluster.startswith("slurm:"):
            raise ConfigError("threads_per_worker: for cluster slurm:FILE.yaml give threads_per_worker in the YAML")

    def _check_clients(self) -> None:
        """Socket clients need engine ipi, a model spec each client can load, and a symmetrizer i-PI can apply on
        its side of the socket (none, or a grid :func:`ipi_rotation_grid` knows)."""
        if not self.clients:
            if "transport" in self.model_fields_set:
                raise ConfigError(f"transport: {self.transport} is the socket of the clients; set clients > 0 (clients: 0 "
                                  "runs the model inside i-PI)")
            return
        if self.engine != "ipi":
            raise ConfigError(f"clients: {self.clients} i-PI socket clients need engine ipi (engine {self.engine} runs the "
                              "model itself)")
        if not isinstance(self.model, str):
            raise ConfigError("clients: each client loads the model from its spec, so model must be a spec (builtin:NAME, a "
                              "file, module:attribute), not a model object")
        if isinstance(self.symmetrizer, GridSymmetrizer):
            ipi_rotation_grid(quadrature(self.symmetrizer.grid))
        elif self.symmetrizer.kind != "none":
            raise ConfigError(f"clients: symmetrizer {self.symmetrizer.kind} is not available with socket clients (i-PI "
                              "averages over grids with <ffrotations>: use symmetrizer none or grid, or clients: 0)")



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


def validate_config(config: Mapping[str, Any] | MDConfig) -> MDConfig:
    """Check every key of a config and return it as an :class:`MDConfig`; raise :class:`ConfigError`."""
    if isinstance(config, MDConfig):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"an MD config must be a mapping, got {type(config).__name__}")
    return validate(MDConfig, config)


_IPI_GRIDS = re.compile(r"paper-(?P<paper>0|[2-9]|[1-9]\d+)?(?P<paper_i>i)?|legendre-(?P<order>[2-9]|[1-9]\d+)"
                        r"(?P<legendre_i>\+i)?|identity(?P<identity_i>\+i)?")


def ipi_rotation_grid(grid: Quadrature) -> tuple[int, bool]:
    """(grid_order, inversion) of the Legendre grid of i-PI's ``<ffrotations>`` that holds the rotations of ``grid``
    in the same order: the paper's grids (0, i, 2, 2i, 3, 3i), legendre-L[+i] with L ≥ 2 and identity[+i]
    (i-PI's order 1 is the identity, symprobe's legendre-1 is not); :class:`ConfigError` for any other grid."""
    match = _IPI_GRIDS.fullmatch(grid.name)
    if match is None:
        raise ConfigError(f"symmetrizer.grid: i-PI's <ffrotations> averages over Legendre grids (the paper's 0, i, 2, 2i, "
                          f"3, 3i, or legendre-L[+i] with L ≥ 2); {grid.name} is not one of them")
    order = int(match["paper"] or match["order"] or 1)
    return max(order, 1), any(match[k] for k in ("paper_i", "legendre_i", "identity_i"))


def check_ipi_installed() -> None:
    """Raise :class:`ConfigError` unless i-PI ≥ 3.3 is installed (looked up without importing it)."""
    from importlib import metadata

    try:
        version = metadata.version("ipi")
    except metadata.PackageNotFoundError:
        raise ConfigError("engine ipi needs i-PI, which is not installed: pip install 'symprobe[ipi]'") from None
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < MIN_IPI_VERSION:
        raise ConfigError(f"engine ipi needs i-PI ≥ {'.'.join(map(str, MIN_IPI_VERSION))}, installed: {version}")


def load_config(path: str | Path, **overrides: Any) -> MDConfig:
    """Read and validate a YAML config file, its keys replaced by ``overrides`` (command-line options); a relative
    ``structure:`` path and the FILE of ``cluster: slurm:FILE.yaml`` are read from the config's directory."""
    config = read_yaml(path)
    if not isinstance(config, Mapping):
        return validate_config(config)
    config = {**config, **overrides}
    structure, cluster = config.get("structure"), config.get("cluster")
    if isinstance(structure, str) and not structure.startswith("builtin:"):
        config["structure"] = _beside(path, structure)
    if isinstance(cluster, str) and cluster.startswith("slurm:") and "cluster" not in overrides:
        config["cluster"] = f"slurm:{_beside(path, cluster.removeprefix('slurm:'))}"
    return validate_config(config)


def _beside(config_path: str | Path, name: str) -> str:
    """``name`` as given when absolute, else in the directory of the config file at ``config_path``."""
    return name if Path(name).expanduser().is_absolute() else str(Path(config_path).parent / name)


def quadrature(name: str | Quadrature) -> Quadrature:
    """A quadrature by name (``symprobe grids`` lists them) or as given; :class:`ConfigError` if unknown."""
    try:
        return so3.get(name)
    except (KeyError, ValueError) as error:
        raise ConfigError(f"symmetrizer.grid: {error}") from error
