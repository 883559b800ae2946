"""Running MD: :func:`run_md` for one config (any engine), :func:`run_batched` for many replicas in one state.

Outputs of a run directory: ``log.csv`` and the trajectory (:mod:`symprobe.md.output`) and
``checkpoint.npz`` (written atomically). A resumed run continues from the checkpoint up to the configured
length and reproduces the uninterrupted run bit for bit (same machine and thread count; on CUDA, to
round-off), on the engine that wrote it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from ase import Atoms, units

from symprobe.checks import differences
from symprobe.files import atomic_write, claim_directory, file_sha256, writing_to
from symprobe.interrupt import deferred_signals
from symprobe.md.batched import BatchedDynamics, Replica
from symprobe.md.config import ConfigError, MDConfig, load_config, quadrature, validate_config
from symprobe.md.output import Log, angular_momentum_eVfs, log_row, truncate_log, truncate_trajectory, write_frame
from symprobe.models.base import Model
from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation, Symmetrizer


# ---------------------------------------------------------------------------------------------------
# Building a run


BUILTIN_STRUCTURES = ("builtin:water-monomer", "builtin:water-box")  # one H2O in a 100 Å box; 64 H2O, periodic


def load_structure(spec: Atoms | str, index: int = -1) -> Atoms:
    """A structure from an Atoms object, ``builtin:water-monomer``, ``builtin:water-box`` (64 H2O) or a file."""
    from symprobe.structures import read_structures, water_box, water_monomer

    if isinstance(spec, Atoms):
        return spec.copy()
    builtins = dict(zip(BUILTIN_STRUCTURES, (water_monomer, water_box)))
    if spec in builtins:
        return builtins[spec]()
    if str(spec).startswith("builtin:"):
        raise ConfigError(f"structure: unknown built-in {spec!r} (one of {', '.join(builtins)})")
    frames = read_structures(spec)
    try:
        return frames[index]
    except IndexError:
        raise ConfigError(f"structure_index={index}: {spec} holds {len(frames)} structures") from None


def load_model(spec: Model | str, device: str = "cpu") -> Model:
    """A model object as it is, or one loaded from a spec string onto ``device``
    (:func:`symprobe.models.external.load_model`)."""
    if isinstance(spec, Model):
        return spec
    from symprobe.models.external import load_model as load_from_spec

    try:
        return load_from_spec(str(spec), device=device)
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"model: {error}") from error


def build_potential(model: Model, config: MDConfig, seed: int | None = None) -> tuple[Model, Model | None]:
    """(model seen by the integrator, slow MTS model or None) for the config's symmetrizer; ``seed``
    overrides the random rotation's default seed (the run's)."""
    if "forces" not in tuple(model.implemented_properties):
        raise ConfigError(f"model {model.name!r} does not compute forces: it cannot drive MD")
    symmetrizer = config.symmetrizer
    kind = symmetrizer.kind
    try:
        if kind == "grid":
            return GridAverage(model, quadrature(symmetrizer.grid)), None
        if kind == "random":
            default = config.seed if seed is None else seed
            return RandomRotation(model, default if symmetrizer.seed is None else symmetrizer.seed, symmetrizer.inversion), None
        if kind == "mts":
            return model, AveragingCorrection(model, quadrature(symmetrizer.grid))
    except ValueError as error:
        raise ConfigError(f"symmetrizer ({kind}): {error}") from error
    return model, None


def thermalized(atoms: Atoms, temperature_K: float | None, seed: int) -> Atoms:
    """``atoms`` with Maxwell–Boltzmann momenta at ``temperature_K`` (generator [seed, 1]), centre-of-mass
    motion removed; unchanged momenta when the temperature is None."""
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    atoms = atoms.copy()
    if temperature_K is not None:
        thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng([seed, 1]))
        Stationary(atoms)
    return atoms


def run_identity(config: MDConfig, atoms: Atoms, model: Model) -> dict[str, Any]:
    """What makes a checkpoint belong to this config (JSON values): the model (spec, and the SHA-256 of its file
    when it is one), the structure (spec and a hash of its atoms before thermalisation), timestep, seed,
    ensemble, symmetrizer, engine, replicas and initial temperature. The run length and strides may change."""
    spec = config.model if isinstance(config.model, str) else model.name
    model_file = Path(spec.removeprefix("metatomic:"))
    structure = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in
                                        (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)))
    identity = {"model": spec, "model_sha256": file_sha256(model_file) if model_file.is_file() else None,
                "structure": config.structure if isinstance(config.structure, str) else atoms.get_chemical_formula(),
                "structure_index": config.structure_index, "structure_sha256": structure.hexdigest(),
                "timestep_fs": config.timestep_fs, "seed": config.seed, "ensemble": config.ensemble.as_dict(),
                "symmetrizer": config.symmetrizer.as_dict(), "engine": config.engine, "replicas": config.replicas,
                "initial_temperature_K": config.initial_temperature_K}
    return json.loads(json.dumps(identity, default=lambda value: getattr(value, "name", repr(value))))  # Quadrature → name


def check_same_run(saved: Mapping[str, Any] | None, identity: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume from the checkpoint at ``path`` if its run identity (``saved``; None for checkpoints
    written before identities were kept) differs from ``identity``, listing every difference on one line."""
    if saved is None:
        return
    changed = differences(saved, identity)
    if changed:
        raise ConfigError(f"resume: the config differs from the run in {path.parent} (checkpoint → config): "
                          f"{'; '.join(changed)}; use --overwrite to start a new run there, or another output.directory")


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, state) of a checkpoint file; :class:`ConfigError` if there is none."""
    if not path.exists():
        raise ConfigError(f"resume: no checkpoint at {path}")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, json.loads(str(arrays.pop("state")))


def write_checkpoint(path: Path, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
    """Write arrays and a JSON state to ``path`` atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, state=np.array(json.dumps(state)), **arrays)
    atomic_write(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------------
# One config


def run_md(config: Mapping[str, Any] | MDConfig | str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Run the MD of ``config`` (dict, :class:`MDConfig` or YAML path); return the output directory.

    With ``resume=True`` the run continues from ``output.directory/checkpoint.npz`` up to the config's
    total length (which may be longer than the interrupted run's); logs and trajectory are cut back to the
    checkpoint first, so the files equal those of an uninterrupted run; a checkpoint of another run (model,
    structure, timestep, seed, ensemble...: :func:`run_identity`) is refused. Without ``resume`` a directory
    that holds a run is refused unless ``overwrite``. Engine ``batched`` with ``replicas: N > 1`` writes
    replica k (seed + k) into ``replica-k/`` and one checkpoint for all; with ``cluster`` each replica is a task
    (:func:`replica_task`) writing the same files into ``replica-k/`` with a checkpoint of its own there (``run.json``:
    the task settings, ``log.jsonl``: every attempt), and resuming keeps the finished replicas. SIGINT and SIGTERM write a
    checkpoint at the end of the current step and raise :class:`~symprobe.interrupt.Interrupted`.
    """
    from symprobe.structures import check_structure

    config = load_config(config) if isinstance(config, (str, Path)) else validate_config(config)
    model = load_model(config.model, "cpu" if config.clients else config.device)  # clients: it runs in them, on device
    atoms = load_structure(config.structure, config.structure_index)
    build_potential(model, config)  # refuses models without forces before anything is written
    check_structure(atoms, species=model.species)
    out = config.output.directory
    identity = run_identity(config, atoms, model)
    claim_directory(out, _run_files(config), resume, overwrite)
    if config.engine == "batched" and config.cluster is not None:
        replica_of(model, atoms, config, 0)  # refuses a thermostat on atoms at rest before any task starts
        _farm_replicas(config, atoms, identity, resume)
    elif config.engine == "batched":
        replicas = [replica_of(model, atoms, config, k) for k in range(config.replicas)]
        groups = [Group([k], out if config.replicas == 1 else out / f"replica-{k}", config.output.trajectory)
                  for k in range(config.replicas)]
        run_batched(replicas, groups, config.timestep_fs, config.steps, out / "checkpoint.npz", resume=resume,
                    strides=Strides.of(config), progress=config.output.progress, identity=identity)
    else:
        _run_single(atoms, model, config, resume, identity)
    return out


def replica_of(model: Model, atoms: Atoms, config: MDConfig, k: int) -> Replica:
    """Replica ``k`` of an engine-batched config: ``atoms`` started, thermostatted and rotated with seed + k."""
    potential, slow = build_potential(model, config, seed=config.seed + k)
    start = thermalized(atoms, config.initial_temperature_K, config.seed + k)
    if config.ensemble.kind != "nve" and start.get_kinetic_energy() <= 0:
        raise ConfigError(f"ensemble {config.ensemble.kind}: the atoms start at rest; set initial_temperature_K > 0")
    return Replica(start, potential, slow, config.n_inner, config.ensemble.as_dict(), config.seed + k, f"replica {k}")


def replica_task(directory: Path, config: MDConfig, atoms: Atoms, k: int, identity: Mapping[str, Any]) -> dict[str, Any]:
    """Replica ``k`` of ``config`` (starting from ``atoms``) run alone in ``directory`` (log, trajectory, checkpoint),
    continued from its checkpoint when an earlier attempt left one, the model loaded from its spec on this worker; its
    seed and the step it continued from."""
    from symprobe.cluster import worker_model

    checkpoint = directory / "checkpoint.npz"
    resumed = int(read_checkpoint(checkpoint)[1]["nsteps"]) if checkpoint.exists() else 0
    model = worker_model(str(config.model), None, config.device)
    run_batched([replica_of(model, atoms, config, k)], [Group([0], directory, config.output.trajectory)], config.timestep_fs,
                config.steps, checkpoint, resume=checkpoint.exists(), strides=Strides.of(config), progress=False,
                identity={**identity, "replica": k})
    return {"replica": k, "seed": config.seed + k, "steps": config.steps, "resumed_from_step": resumed}


def _farm_replicas(config: MDConfig, atoms: Atoms, identity: Mapping[str, Any], resume: bool) -> None:
    """Each replica of ``config`` a task ``replica-K`` (:func:`replica_task`) in the output directory, on the config's
    cluster; resuming, finished replicas are kept and the others continue from their checkpoints."""
    from symprobe.cluster import Task, claim_task_root, run_tasks
    from symprobe.interrupt import Interrupted

    out = config.output.directory
    claim_task_root(out, {**identity, "strides": vars(Strides.of(config))}, resume)
    if resume:
        lengthen_finished_tasks(out, lambda directory: config.steps)
    tasks = [Task(f"replica-{k}", replica_task, (config, atoms, k, identity)) for k in range(config.replicas)]
    try:
        run_tasks(tasks, out, config.cluster_spec, config.output.progress)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped; the finished replicas are kept in {out}, the others continue from their checkpoints: "
                          "run again with --resume") from None


def lengthen_finished_tasks(root: Path, wanted: Callable[[Path], int]) -> list[str]:
    """Let the finished MD tasks under ``root`` go on to ``wanted(task directory)`` (inner) steps: a task whose final
    checkpoint stands short of that loses its result, so that the next run of the tasks continues it from there.
    Returns their ids; a task already past its length raises :class:`ConfigError` (one line)."""
    from symprobe.cluster.farm import RESULT

    lengthened = []
    for result in sorted(Path(root).glob(f"*/{RESULT}")):
        checkpoint = result.parent / "checkpoint.npz"
        if not checkpoint.exists():
            continue
        done, steps = int(read_checkpoint(checkpoint)[1]["nsteps"]), wanted(result.parent)
        if done > steps:
            raise ConfigError(f"{result.parent}: the run already made {done} steps, more than the {steps} asked for; "
                              f"ask for at least {done}")
        if done < steps:
            result.unlink()
            lengthened.append(result.parent.name)
    return lengthened


def checkpoint_step(config: MDConfig) -> int | None:
    """The (inner) step at which the checkpoint in the config's output directory stands, or None without one."""
    path = config.output.directory / "checkpoint.npz"
    if not path.exists():
        return None
    _, state = read_checkpoint(path)
    outer = state.get("engine", "ase") != "batched"  # engines ase and ipi count outer steps, batched inner ones
    return int(state["nsteps"]) * (config.n_inner if outer else 1)


def _run_files(config: MDConfig) -> list[str]:
    """The names in the output directory that belong to a run of ``config``'s layout (on a cluster: the task settings
    and log, and a checkpoint in each replica's directory)."""
    from symprobe.cluster.farm import IDENTITY
    from symprobe.cluster.log import LOG

    names = ["checkpoint.npz", "log.csv", config.output.trajectory, IDENTITY, LOG]
    if config.replicas > 1:
        names += [f"replica-{k}" for k in range(config.replicas)]
    return names


def _run_single(atoms: Atoms, model: Model, config: MDConfig, resume: bool, identity: Mapping[str, Any]) -> None:
    """One structure on ASE or i-PI."""
    out = config.output.directory
    log_path, traj_path, ckpt_path = out / "log.csv", out / config.output.trajectory, out / "checkpoint.npz"
    potential, slow = build_potential(model, config)
    arrays = state = None
    if resume:
        arrays, state = read_checkpoint(ckpt_path)
        if state.get("engine", "ase") != config.engine:
            raise ConfigError(f"resume: {ckpt_path} was written by engine {state.get('engine', 'ase')}; it cannot resume "
                              f"on engine {config.engine}")
        check_same_run(state.get("run"), identity, ckpt_path)
        if int(state["nsteps"]) * config.n_inner > config.steps:
            raise ConfigError(f"resume: the checkpoint is at step {state['nsteps'] * config.n_inner}, beyond steps={config.steps}")
        atoms.set_cell(arrays["cell"], scale_atoms=False)
        atoms.set_positions(arrays["positions"])
        atoms.set_momenta(arrays["momenta"], apply_constraint=False)
        if isinstance(potential, Symmetrizer):
            potential.restore(state["symmetrizer"])
    else:
        atoms = thermalized(atoms, config.initial_temperature_K, config.seed)
    if config.ensemble.kind != "nve" and atoms.get_kinetic_energy() <= 0:
        raise ConfigError(f"ensemble {config.ensemble.kind}: the atoms start at rest; set initial_temperature_K > 0")
    atoms.calc = potential.as_calculator()
    dyn = _dynamics(atoms, config, potential, slow, arrays, state)
    try:
        if arrays is not None:
            truncate_log(log_path, dyn.nsteps * config.n_inner)
            truncate_trajectory(traj_path, dyn.nsteps * config.n_inner)
        _step_single(dyn, atoms, potential, config, log_path, traj_path, ckpt_path, identity)
    finally:
        dyn.close()


def _dynamics(atoms: Atoms, config: MDConfig, potential: Model, slow: Model | None,
              arrays: Mapping[str, np.ndarray] | None, state: Mapping[str, Any] | None):
    """The dynamics of the config's engine, restored from ``arrays``/``state`` when given."""
    if config.engine == "ipi":
        from symprobe.md.ipi import IpiDynamics
        from symprobe.md.ipi_clients import ClientPool, threads_per_client

        clients = None
        if config.clients:
            clients = ClientPool(str(config.model), atoms, config.clients, config.transport, config.device,
                                 threads_per_client(config.clients))
        return IpiDynamics(atoms, config, potential, slow, arrays, state, clients)
    from symprobe.md.ase_engine import ase_dynamics, cache_results

    if arrays is None:
        return ase_dynamics(atoms, config, potential, slow)
    cache_results(atoms, arrays)
    dyn = ase_dynamics(atoms, config, potential, slow)
    dyn.restore(arrays, state)
    return dyn


def _step_single(dyn, atoms: Atoms, potential: Model, config: MDConfig, log_path: Path, traj_path: Path,
                 ckpt_path: Path, identity: Mapping[str, Any]) -> None:
    """Step ``dyn`` to the config's length, writing log rows, frames and checkpoints at their strides; on
    SIGINT/SIGTERM write a checkpoint after the current step and raise ``Interrupted``."""
    from symprobe.progress import progress_bar

    n_inner = config.n_inner
    masses = atoms.get_masses()
    log = Log(log_path, bool(atoms.pbc.any()))

    def observe() -> None:
        step, time_fs = dyn.nsteps * n_inner, dyn.nsteps * dyn.dt / units.fs
        potential_energy = dyn.potential_energy()
        if step % config.output.log_stride == 0:
            angular = None if atoms.pbc.any() else angular_momentum_eVfs(atoms.get_positions(), atoms.get_momenta(), masses)
            log.write(log_row(step, time_fs, potential_energy, atoms.get_kinetic_energy(), dyn.transferred_energy,
                              atoms.get_temperature(), angular))
        if step % config.output.trajectory_stride == 0:
            write_frame(traj_path, atoms, potential_energy, atoms.calc.results["forces"], step, time_fs)
        if step % config.output.checkpoint_stride == 0:
            checkpoint()

    def checkpoint() -> None:
        log.flush()
        arrays, state = dyn.checkpoint()
        state["symmetrizer"] = potential.state() if isinstance(potential, Symmetrizer) else {}
        state["run"] = identity
        write_checkpoint(ckpt_path, {"positions": atoms.get_positions(), "momenta": atoms.get_momenta(),
                                     "cell": atoms.cell.array, **arrays}, state)

    try:
        with deferred_signals() as stop, writing_to(log_path.parent):
            if dyn.nsteps == 0:
                atoms.get_forces()
                observe()
            remaining = config.steps // n_inner - dyn.nsteps
            with progress_bar(total=remaining * n_inner, enabled=config.output.progress, unit="step",
                      desc=f"md {potential.name}") as bar:
                for _ in range(remaining):
                    if stop.requested:
                        checkpoint()
                        raise stop.interrupted(_stopped_at(dyn.nsteps * n_inner, config.steps, ckpt_path))
                    dyn.step()
                    dyn.nsteps += 1
                    atoms.get_forces()
                    observe()
                    bar.update(n_inner)
            if (dyn.nsteps * n_inner) % config.output.checkpoint_stride:
                checkpoint()
    finally:
        log.close()


def _stopped_at(step: int, steps: int, checkpoint: Path) -> str:
    """The one-line message of an interrupted MD run."""
    return f"stopped at step {step} of {steps}; checkpoint written to {checkpoint}; continue with --resume"


# ---------------------------------------------------------------------------------------------------
# Many replicas


@dataclass
class Group:
    """Replicas written together into ``directory``: one log (energies summed over the group; angular
    momentum summed over replicas, each about its own centre of mass) and one trajectory (frames joined)."""

    replicas: list[int]
    directory: Path
    trajectory: str = "trajectory.extxyz"


@dataclass
class Strides:
    """Write strides in (inner) time steps."""

    log: int = 1
    trajectory: int = 10
    checkpoint: int = 100

    @classmethod
    def of(cls, config: MDConfig) -> "Strides":
        """The log, trajectory and checkpoint strides (time steps) of ``config``."""
        return cls(config.output.log_stride, config.output.trajectory_stride, config.output.checkpoint_stride)


def run_batched(replicas: Sequence[Replica], groups: Sequence[Group], timestep_fs: float, steps: int, checkpoint_path: Path,
                resume: bool = False, strides: Strides = Strides(), progress: bool = True, skin: float = 1.0,
                identity: Mapping[str, Any] | None = None) -> BatchedDynamics:
    """Step ``replicas`` together for ``steps`` (inner) steps of ``timestep_fs``, writing each group's files.

    The log and checkpoint strides and ``steps`` must be multiples of every replica's ``n_inner`` (frames may
    fall inside a block; their energy then holds the correction of the block's start). With ``resume`` the run continues from
    ``checkpoint_path`` (the same replicas, as built for the first run). A replica that blows up raises
    :class:`~symprobe.md.batched.ReplicaBlowUp`; the last checkpoint is kept as it was. ``identity`` (JSON) is
    stored in the checkpoint and a resume from another run's is refused (:func:`check_same_run`). SIGINT and
    SIGTERM write a checkpoint after the current step and raise :class:`~symprobe.interrupt.Interrupted`.
    """
    from symprobe.progress import progress_bar

    for stride in (strides.log, strides.checkpoint, steps):
        for r in replicas:
            if r.slow is not None and stride % r.n_inner:
                raise ConfigError(f"batched MD: strides and the run length must be multiples of n_inner={r.n_inner} "
                                  f"({r.name}), got {stride}")
    dyn = BatchedDynamics(replicas, timestep_fs, skin)
    for group in groups:
        group.directory.mkdir(parents=True, exist_ok=True)
    if resume:
        arrays, state = read_checkpoint(checkpoint_path)
        if state.get("engine") != "batched" or len(state["rngs"]) != len(replicas):
            raise ConfigError(f"resume: {checkpoint_path} was not written by a batched run of these {len(replicas)} replicas")
        if identity is not None:
            check_same_run(state.get("run"), identity, checkpoint_path)
        if int(state["nsteps"]) > steps:
            raise ConfigError(f"resume: the checkpoint is at step {state['nsteps']}, beyond steps={steps}")
        dyn.restore(arrays, state)
        for group in groups:
            truncate_log(group.directory / "log.csv", dyn.nsteps)
            truncate_trajectory(group.directory / group.trajectory, dyn.nsteps)
    else:
        checkpoint_path.unlink(missing_ok=True)
        for group in groups:
            (group.directory / "log.csv").unlink(missing_ok=True)
            (group.directory / group.trajectory).unlink(missing_ok=True)
    logs = [Log(group.directory / "log.csv", bool(replicas[group.replicas[0]].atoms.pbc.any())) for group in groups]

    def checkpoint() -> None:
        for log in logs:
            log.flush()
        arrays, state = dyn.checkpoint()
        if identity is not None:
            state["run"] = dict(identity)
        write_checkpoint(checkpoint_path, arrays, state)

    def observe() -> None:
        n = dyn.nsteps
        if n % strides.log == 0:
            _log_groups(dyn, groups, logs)
        if n % strides.trajectory == 0:
            _write_group_frames(dyn, groups)
        if n % strides.checkpoint == 0:
            checkpoint()

    try:
        with deferred_signals() as stop, writing_to(checkpoint_path.parent):
            if dyn.nsteps == 0:
                observe()
            with progress_bar(total=steps - dyn.nsteps, enabled=progress, unit="step",
                      desc=f"md {len(replicas)} replicas") as bar:
                while dyn.nsteps < steps:
                    if stop.requested:
                        checkpoint()
                        raise stop.interrupted(_stopped_at(dyn.nsteps, steps, checkpoint_path))
                    dyn.step()
                    observe()
                    bar.update(1)
            if dyn.nsteps % strides.checkpoint:
                checkpoint()
    finally:
        for log in logs:
            log.close()
    return dyn


def _log_groups(dyn: BatchedDynamics, groups: Sequence[Group], logs: Sequence[Log]) -> None:
    potential = dyn.potential_energies().cpu().numpy()
    kinetic = dyn.kinetic_energies().cpu().numpy()
    heat = dyn.heat.cpu().numpy()
    time_fs = dyn.nsteps * dyn.timestep_fs
    for group, log in zip(groups, logs):
        r = group.replicas
        n_atoms = sum(int(dyn.atom_start[k + 1] - dyn.atom_start[k]) for k in r)
        temperature = 2.0 * kinetic[r].sum() / (3 * n_atoms * units.kB)
        angular = None
        if not dyn.replicas[r[0]].atoms.pbc.any():
            angular = sum(angular_momentum_eVfs(a.get_positions(), a.get_momenta(), a.get_masses())
                          for a in (dyn.atoms(k) for k in r))
        log.write(log_row(dyn.nsteps, time_fs, potential[r].sum(), kinetic[r].sum(), heat[r].sum(), temperature, angular))


def _write_group_frames(dyn: BatchedDynamics, groups: Sequence[Group]) -> None:
    potential = dyn.potential_energies().cpu().numpy()
    forces = dyn.forces.cpu().numpy()
    for group in groups:
        frame = dyn.atoms(group.replicas[0])
        for k in group.replicas[1:]:
            frame += dyn.atoms(k)
        f = np.concatenate([forces[dyn.atom_start[k] : dyn.atom_start[k + 1]] for k in group.replicas])
        write_frame(group.directory / group.trajectory, frame, potential[group.replicas].sum(), f, dyn.nsteps,
                    dyn.nsteps * dyn.timestep_fs)
