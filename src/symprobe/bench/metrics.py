"""The bench's measurements on one model: the audit, ml-peg's walk of orientations and the numerical floor."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from ase import Atoms

from symprobe.audit.precision import FLOOR_FACTOR, roundoff_floor
from symprobe.models.base import Model
from symprobe.structures import StructureError, check_structure

WALK_SEED = 42
WALK_STEPS_DEG = (1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 20.0, 28.0, 40.0)
WALK_RANDOM = 100
DEFAULT_GRID = "2i"
FLOOR_TERMS = {False: "round-off", True: "translation/permutation"}  # which term sets the floor (the larger)


def walk_rotations(seed: int = WALK_SEED) -> tuple[np.ndarray, np.ndarray]:
    """ml-peg's walk of orientations: (114, 3, 3) rotation matrices, each the previous one composed with a step,
    and the angle between successive orientations in degrees (the first from the identity)."""
    from scipy.spatial.transform import Rotation

    axes = np.random.default_rng(seed).normal(size=(len(WALK_STEPS_DEG), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    steps = Rotation.concatenate([Rotation.from_rotvec(np.radians(WALK_STEPS_DEG)[:, None] * axes),
                                  Rotation.random(WALK_RANDOM, random_state=seed)]).as_matrix()
    orientations, current = [], np.eye(3)
    for step in steps:
        current = step @ current
        orientations.append(current)
    frames = np.concatenate([np.eye(3)[None], orientations])
    relative = [np.degrees(np.arccos(np.clip((np.trace(b @ a.T) - 1) / 2, -1, 1))) for a, b in zip(frames[:-1], frames[1:])]
    return np.array(orientations), np.array(relative)


@dataclass
class Differences:
    """|ΔE| per atom (meV/atom) and force MAE (meV/Å) between pairs of predictions, per pair."""

    energy_meV_per_atom: np.ndarray
    force_mae_meV_per_A: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean and largest energy (meV/atom) and force (meV/Å) differences over the structures."""
        return {"mean_dE_meV_per_atom": float(self.energy_meV_per_atom.mean()), "max_dE_meV_per_atom": float(self.energy_meV_per_atom.max()),
                "mean_dF_meV_per_A": float(self.force_mae_meV_per_A.mean()), "max_dF_meV_per_A": float(self.force_mae_meV_per_A.max())}


def _differences(energies: np.ndarray, forces: np.ndarray, first: np.ndarray, second: np.ndarray, n_atoms: int) -> Differences:
    return Differences(1000 * np.abs(energies[second] - energies[first]) / n_atoms,
                       1000 * np.abs(forces[second] - forces[first]).mean(axis=(1, 2)))


def walk_metric(model: Model, atoms: Atoms) -> dict[str, Any]:
    """The ml-peg rotational metric of ``model`` on ``atoms`` (see the module docstring), with each pair's angle."""
    orientations, angles = walk_rotations()
    batch = model.predict_rotated(atoms, np.concatenate([np.eye(3)[None], orientations]))  # forces in the input frame
    pairs = _differences(batch.energies, batch.forces, np.arange(len(angles)), np.arange(1, len(angles) + 1), len(atoms))
    return {**pairs.summary(), "relative_angle_deg": angles.tolist(), "dE_meV_per_atom": pairs.energy_meV_per_atom.tolist(),
            "dF_meV_per_A": pairs.force_mae_meV_per_A.tolist()}


def invariant_permutation(atoms: Atoms, rng: np.random.Generator) -> np.ndarray:
    """A random reordering of the atoms that every model must ignore: of whole molecules with their two H swapped
    when the structure is water ordered O, H, H (the order the water models require), else of all atoms."""
    numbers = atoms.numbers
    if len(numbers) % 3 == 0 and np.array_equal(numbers.reshape(-1, 3), np.tile([8, 1, 1], (len(numbers) // 3, 1))):
        molecules = rng.permutation(len(numbers) // 3)
        return (3 * molecules[:, None] + np.array([0, 2, 1])).ravel()
    return rng.permutation(len(numbers))


def numerical_floor(model: Model, atoms: Atoms, seed: int = 0) -> dict[str, Any]:
    """The model's round-off, in the units of the walk metric: the largest differences between ``atoms`` and a
    translated and a permuted copy (exact invariances), and no less than ``ROUNDOFF_FACTOR`` × ε × a force scale
    (energy per atom) at the model's precision ε (float64 when unknown), since an invariant function computed on
    rotated inputs rounds differently even where translations and permutations round alike. The force scale is the
    RMS force or, if larger, the energy per atom over 1 Å: forces near a minimum are small, but they are
    differences of terms as large as the energy, and round off like those."""
    from symprobe.audit import model_dtype

    rng = np.random.default_rng(seed)
    shifted = atoms.copy()
    shifted.positions += rng.uniform(-1.0, 1.0, 3)  # Å
    order = invariant_permutation(atoms, rng)
    predictions = [model.predict(a) for a in (atoms, shifted, atoms[order])]
    forces = np.stack([predictions[0].forces, predictions[1].forces, predictions[2].forces[np.argsort(order)]])
    energies = np.array([p.energy for p in predictions])
    copies = _differences(energies, forces, np.array([0, 0]), np.array([1, 2]), len(atoms))
    dtype = model_dtype(model)
    roundoff_energy, roundoff_force = roundoff_floor(energies[0], forces[0], dtype)
    moved = float(copies.force_mae_meV_per_A.max())
    return {"dE_meV_per_atom": max(float(copies.energy_meV_per_atom.max()), roundoff_energy),
            "dF_meV_per_A": max(moved, roundoff_force),
            "translated_permuted_dF_meV_per_A": moved, "roundoff_dF_meV_per_A": roundoff_force,
            "set_by": FLOOR_TERMS[moved >= roundoff_force], "precision": dtype}


def bench_structure(model: Model, name: str, atoms: Atoms, grid: str = DEFAULT_GRID, lmax: int = 2) -> dict[str, Any]:
    """Audit, ml-peg walk and floor of ``model`` on one structure: ``{"row": …, "audit": …}`` (the row and the
    structure's full audit), or ``{"skipped": …}`` when its species are not the model's."""
    from symprobe.audit import audit_structure

    try:
        check_structure(atoms, label=name, species=model.species)
    except StructureError as error:
        return {"skipped": {"structure": name, "reason": str(error)}}
    structure = audit_structure(model, atoms, grid, lmax, [])
    result = asdict(structure)
    walk, floor = walk_metric(model, atoms), numerical_floor(model, atoms)
    return {"row": {"audit": _audit_row(result), "walk": walk, "floor": floor,
                    "above_floor": walk["mean_dF_meV_per_A"] > FLOOR_FACTOR * max(floor["dF_meV_per_A"], 1e-300),
                    **structure_verdict([structure], grid, lmax)},
            "audit": result}


def bench_model(model: Model, structures: dict[str, Atoms], grid: str = DEFAULT_GRID, lmax: int = 2) -> dict[str, Any]:
    """Audit, ml-peg walk and floor of ``model`` on ``structures``; those it cannot take are listed in ``skipped``."""
    outcomes = {name: bench_structure(model, name, atoms, grid, lmax) for name, atoms in structures.items()}
    return merged_model(getattr(model, "name", type(model).__name__), outcomes, grid, lmax)


def merged_model(model_name: str, outcomes: dict[str, dict[str, Any]], grid: str = DEFAULT_GRID, lmax: int = 2) -> dict[str, Any]:
    """One model's bench from its :func:`bench_structure` outcomes by structure name (in the bench's order),
    with the verdict over all its structures."""
    from symprobe.audit.results import StructureAudit

    rows = {name: outcome["row"] for name, outcome in outcomes.items() if "row" in outcome}
    skipped = [outcome["skipped"] for outcome in outcomes.values() if "skipped" in outcome]
    walks = [rows[n]["walk"] for n in rows]
    overall = (Differences(np.concatenate([w["dE_meV_per_atom"] for w in walks]), np.concatenate([w["dF_meV_per_A"] for w in walks])).summary()
               if walks else None)
    audited = [StructureAudit.from_dict(outcome["audit"]) for outcome in outcomes.values() if "audit" in outcome]
    return {"model": model_name, "structures": rows, "skipped": skipped, "walk_overall": overall,
            "breaks_above_floor": [n for n in rows if rows[n]["above_floor"]],
            "inversion_broken_on": [n for n in rows if rows[n]["channels"]["inversion"]["broken_on"]],
            "verdict": structure_verdict(audited, grid, lmax)["verdict"] if audited else []}


def structure_verdict(structures: list, grid, lmax: int) -> dict[str, Any]:
    """The channels (:func:`~symprobe.audit.channels.channel_summary`) and verdict sentences of audited
    structures (``StructureAudit``) on ``grid`` (a name or a quadrature)."""
    from symprobe import so3
    from symprobe.audit.channels import channel_summary
    from symprobe.audit.results import GridInfo
    from symprobe.audit.summary import model_error_summary
    from symprobe.audit.verdict import verdict

    channels = channel_summary(structures, GridInfo.of(so3.get(grid)), model_error_summary(structures))
    return {"channels": channels, "verdict": verdict({"n_structures": len(structures), "channels": channels}, lmax)}


def _audit_row(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("n_atoms", "periodic", "energy_deviation_meV", "force_deviation_rms_meV_per_A", "stress_deviation_rms_meV_per_A3",
            "torque_raw_eV", "torque_symmetrized_eV")
    spectrum = result["spectrum"]  # power per λ = 0..lmax; λ ≥ 1 and parity-odd λ = 0 are symmetry breaking
    return {**{k: result[k] for k in keys}, "energy_deviation_meV_per_atom": result["energy_deviation_meV"] / result["n_atoms"],
            "spectrum_power_eV2": spectrum["power_eV2"], "spectrum_odd_power_eV2": spectrum["power_odd_eV2"]}


def bench(models: dict[str, Model | None], structures: dict[str, Atoms], grid: str = DEFAULT_GRID,
          progress: Callable[[str], None] = print, done: dict[str, Any] | None = None,
          on_model: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """:func:`bench_model` for every model (keyed by its spec), with the settings and the time each took (s).

    ``done`` is an earlier bench of the same grid and structures (:func:`resumable`): its models (None in ``models``)
    are kept, not run again. ``on_model`` is called with the result so far after each model."""
    result = bench_header(grid, structures)
    for k, (spec, model) in enumerate(models.items()):
        if done is not None and spec in done["models"]:
            progress(f"[bench] {spec} ({k + 1}/{len(models)}): kept from the bench already in the output directory")
            result["models"][spec], result["seconds"][spec] = done["models"][spec], done["seconds"][spec]
            continue
        start = time.perf_counter()
        progress(f"[bench] {spec} ({k + 1}/{len(models)})")
        result["models"][spec] = bench_model(model, structures, grid)
        result["seconds"][spec] = time.perf_counter() - start
        if on_model is not None:
            on_model(result)
    return result


def bench_header(grid: str, structures: dict[str, Atoms]) -> dict[str, Any]:
    """A bench document without models yet: the settings, the structures' names, empty ``models`` and ``seconds``."""
    return {"grid": grid, "walk_orientations": len(WALK_STEPS_DEG) + WALK_RANDOM, "walk_seed": WALK_SEED,
            "floor_factor": FLOOR_FACTOR, "structures": list(structures), "models": {}, "seconds": {},
            "units": "energy meV/atom, forces meV/Å, stress meV/Å³, torque eV, spectrum eV²"}


def resumable(saved: dict[str, Any], grid: str, structures: dict[str, Atoms]) -> dict[str, Any]:
    """``saved`` (a bench.json, finished or partial) if it was run on ``grid`` and ``structures``, else a
    ``ValueError`` naming the difference."""
    if saved["grid"] != grid or saved["structures"] != list(structures):
        raise ValueError(f"--resume: the bench in the output directory ran grid {saved['grid']} on {', '.join(saved['structures'])}; "
                         f"this one asks for grid {grid} on {', '.join(structures)}; use --overwrite or another --out")
    return saved
