"""A pre-training set of classical labels, made by one command from a config with seeds:
``symprobe pretrain-data CONFIG.yaml`` (issue 30).

q-TIP4P/F NVT (Bussi, batched engine of :mod:`symprobe.md.batched`, all boxes stepped together) of
``molecules_per_side``³-molecule boxes at every (temperature, density) pair of the config; after
``equilibration_steps`` a frame is kept every ``frame_stride_steps``. A share of the kept frames is also
written strained (a random symmetric strain, components uniform in ±``max_strain``) and compressed (lengths
scaled by a factor drawn in ``compression``); both deformations move molecules rigidly (their oxygen with the
cell, each O–H vector unchanged), so the deformed frames differ from the MD ones by intermolecular distances only.
Every cell is labelled by q-TIP4P/F: energy (eV), forces (eV/Å) and stress (eV/Å³, ASE sign), in extended XYZ
with ``info``: ``kind`` (md, strained, compressed), ``temperature_K``, ``density_g_cm3`` (of the cell as
written), ``box``, ``chunk``.

The work is cut into ``chunks``, each the next ``frames_per_chunk`` frames of every box. A finished chunk leaves
``chunks/chunk_NNNN.extxyz`` (its cells) and ``chunks/chunk_NNNN.npz`` (positions Å and momenta of every box
at its end, float64), both written atomically; a rerun skips finished chunks and continues the MD from the last
one's end state, so an interrupted set is bit-identical to one made in one go. Chunk k's thermostat noise is
seeded ``[seed, box, k]``. Raising ``chunks`` extends a finished set; any other change of the config is refused
for an existing ``output_dir``. At the end ``pretrain.extxyz`` (all chunks in order) and ``manifest.json``
(counts, label ranges, wall time) are written.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from ase import Atoms
from pydantic import Field, field_validator

from symprobe.checks import ConfigError, Section, read_yaml, validate
from symprobe.files import atomic_write, replacing, write_json

SET_FILE = "pretrain.extxyz"
Positive = Annotated[float, Field(gt=0)]


class PretrainDataFile(Section):
    """A pre-training data config file (YAML): the run's name and output directory, and how the set is made."""

    name: str | None = Field(None, min_length=1, description="the set's name (default: the config file's stem)")
    output_dir: str | None = Field(None, min_length=1, description="where the set goes, relative to the current directory "
                                   "(default: runs/NAME)")
    seed: int = Field(0, ge=0, description="seed of the lattices, momenta, thermostats and deformations")
    molecules_per_side: int = Field(4, ge=2, description="molecules along each box edge (N³ molecules per box)")
    temperatures_K: list[Positive] = Field([250.0, 300.0, 350.0, 400.0], min_length=1,
                                           description="temperatures (K); one box per (temperature, density)")
    densities_g_cm3: list[Positive] = Field([0.9, 1.0, 1.1], min_length=1, description="densities of the boxes (g/cm³)")
    timestep_fs: float = Field(0.5, gt=0, description="MD time step (fs)")
    thermostat_tau_fs: float = Field(10.0, gt=0, description="time constant of the Bussi thermostat (fs)")
    equilibration_steps: int = Field(2000, ge=0, description="MD steps before the first kept frame")
    frame_stride_steps: int = Field(20, ge=1, description="MD steps between kept frames")
    frames_per_chunk: int = Field(40, ge=1, description="frames of each box in one chunk")
    chunks: int = Field(16, ge=1, description="chunks (raise it to extend a finished set)")
    strained_fraction: float = Field(0.2, ge=0, le=1, description="share of MD frames also written under a random "
                                     "symmetric strain")
    max_strain: float = Field(0.04, ge=0, lt=0.5, description="strain components uniform in ± this")
    compressed_fraction: float = Field(0.1, ge=0, le=1, description="share of MD frames also written compressed")
    compression: list[float] = Field([0.95, 0.99], description="[low, high]: the isotropic length factor of a compressed "
                                     "frame, uniform in this range (0 < low ≤ high ≤ 1; density × 1/factor³)")

    @field_validator("compression", mode="before")
    @classmethod
    def _length_range(cls, value: Any) -> list[float]:
        numbers = isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not numbers or not 0 < value[0] <= value[1] <= 1:
            raise ConfigError(f"compression must be [low, high] with 0 < low ≤ high ≤ 1, got {value!r}")
        return [float(v) for v in value]


@dataclass
class PretrainDataConfig:
    """A checked pre-training data config: ``generation`` holds every key of :class:`PretrainDataFile` but the
    name and output directory."""

    name: str
    output_dir: Path
    generation: dict[str, Any]

    @property
    def states(self) -> list[tuple[float, float]]:
        """The (temperature K, density g/cm³) of each box, temperatures outermost."""
        g = self.generation
        return [(t, d) for t in g["temperatures_K"] for d in g["densities_g_cm3"]]


def load_pretrain_data_config(path: str | Path) -> PretrainDataConfig:
    """Read and check a YAML pre-training data config (:class:`ConfigError` naming the file and key);
    a relative ``output_dir`` is taken from the current directory."""
    path = Path(path)
    checked = validate(PretrainDataFile, read_yaml(path) or {}, str(path), prefixed=True)
    generation = checked.model_dump(exclude={"name", "output_dir"})
    name = checked.name or path.stem
    return PretrainDataConfig(name, Path(checked.output_dir or Path("runs") / name), generation)


def _chunk_seed(seed: int, box: int, chunk: int) -> int:
    return int(np.random.SeedSequence([seed, box, chunk]).generate_state(1)[0])


def _replicas(config: PretrainDataConfig, model: Any, chunk: int, state: dict[str, np.ndarray] | None) -> list[Any]:
    """The boxes of ``chunk`` as batched-MD replicas: fresh thermalised lattices for chunk 0, else the saved state."""
    from symprobe.md.batched import Replica
    from symprobe.md.run import thermalized
    from symprobe.structures import water_box

    g, replicas = config.generation, []
    for box, (temperature, density) in enumerate(config.states):
        seed = _chunk_seed(g["seed"], box, chunk)
        atoms = water_box(g["molecules_per_side"], density=density, seed=_chunk_seed(g["seed"], box, 0))
        if state is None:
            atoms = thermalized(atoms, temperature, seed)
        else:
            n = len(atoms)
            atoms.set_positions(state["positions"][box * n : (box + 1) * n])
            atoms.set_momenta(state["momenta"][box * n : (box + 1) * n], apply_constraint=False)
        ensemble = {"kind": "nvt-bussi", "temperature_K": temperature, "tau_fs": g["thermostat_tau_fs"]}
        replicas.append(Replica(atoms, model, ensemble=ensemble, seed=seed, name=f"box {box} ({temperature:g} K, {density:g} g/cm³)"))
    return replicas


def rigid_molecule_deformation(atoms: Atoms, deformation: np.ndarray) -> Atoms:
    """A copy of the O, H, H-ordered periodic water ``atoms`` with its cell mapped by x → D x and every molecule
    moved rigidly: its oxygen mapped by D, its O–H vectors (minimum image) unchanged."""
    from ase.geometry import find_mic

    deformed = atoms.copy()
    deformed.calc = None
    positions = atoms.get_positions()
    oxygens = positions[0::3]
    bonds = find_mic(positions.reshape(-1, 3, 3)[:, 1:].reshape(-1, 3) - np.repeat(oxygens, 2, axis=0), atoms.cell, pbc=True)[0]
    new_oxygens = oxygens @ deformation.T
    new = np.concatenate([new_oxygens[:, None], new_oxygens[:, None] + bonds.reshape(-1, 2, 3)], axis=1).reshape(-1, 3)
    deformed.set_cell(atoms.cell.array @ deformation.T, scale_atoms=False)
    deformed.set_positions(new)
    return deformed


def deformed_frames(frames: Sequence[Atoms], g: dict[str, Any], rng: np.random.Generator) -> list[Atoms]:
    """Strained and compressed copies of randomly chosen ``frames`` (``g``: the generation settings)."""
    out = []
    for kind, fraction in (("strained", g["strained_fraction"]), ("compressed", g["compressed_fraction"])):
        chosen = np.sort(rng.choice(len(frames), size=round(fraction * len(frames)), replace=False))
        for k in chosen:
            if kind == "strained":
                strain = rng.uniform(-g["max_strain"], g["max_strain"], (3, 3))
                deformation = np.eye(3) + 0.5 * (strain + strain.T)
            else:
                deformation = rng.uniform(*g["compression"]) * np.eye(3)
            atoms = rigid_molecule_deformation(frames[k], deformation)
            atoms.info = {**frames[k].info, "kind": kind}
            out.append(atoms)
    return out


def label(model: Any, frames: Sequence[Atoms], batch: int = 8) -> list[Atoms]:
    """``frames`` with q-TIP4P/F energy (eV), forces (eV/Å) and stress (eV/Å³, Voigt) as single-point results,
    ``density_g_cm3`` of each cell in ``info``; evaluated ``batch`` frames at a time."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from symprobe.models.base import matrix_to_voigt
    from symprobe.structures import density_g_cm3

    out = []
    for start in range(0, len(frames), batch):
        part = list(frames[start : start + batch])
        for atoms, prediction in zip(part, model.predict_many(part)):
            atoms = atoms.copy()
            atoms.set_momenta(None)
            atoms.info["density_g_cm3"] = round(density_g_cm3(atoms), 6)
            atoms.calc = SinglePointCalculator(atoms, energy=float(prediction.energies[0]), forces=prediction.forces[0],
                                               stress=matrix_to_voigt(prediction.stress[0]))
            out.append(atoms)
    return out


def run_chunk(config: PretrainDataConfig, model: Any, chunk: int, state: dict[str, np.ndarray] | None,
              progress: bool = True) -> tuple[list[Atoms], dict[str, np.ndarray]]:
    """MD of chunk ``chunk`` from ``state`` (None: equilibrate fresh boxes first); returns its labelled cells
    (MD frames box by box, then the deformed copies) and the end state."""
    from symprobe.md.batched import BatchedDynamics
    from symprobe.progress import progress_bar

    g = config.generation
    dyn = BatchedDynamics(_replicas(config, model, chunk, state), g["timestep_fs"])
    first = g["equilibration_steps"] if state is None else 0
    steps = first + g["frames_per_chunk"] * g["frame_stride_steps"]
    frames: list[list[Atoms]] = [[] for _ in config.states]
    for _ in progress_bar(range(steps), desc=f"{config.name} chunk {chunk + 1}/{g['chunks']}", enabled=progress, in_logs=False):
        dyn.step()
        if dyn.nsteps > first and (dyn.nsteps - first) % g["frame_stride_steps"] == 0:
            for box, (temperature, _) in enumerate(config.states):
                atoms = dyn.atoms(box)
                atoms.info = {"kind": "md", "temperature_K": temperature, "box": box, "chunk": chunk}
                frames[box].append(atoms)
    md = [atoms for per_box in frames for atoms in per_box]
    deformed = deformed_frames(md, g, np.random.default_rng([g["seed"], chunk, 3]))
    end = {"positions": dyn.positions.cpu().numpy(), "momenta": dyn.momenta.cpu().numpy()}
    return label(model, md + deformed), end


def _chunk_paths(out: Path, chunk: int) -> tuple[Path, Path]:
    return out / "chunks" / f"chunk_{chunk:04d}.extxyz", out / "chunks" / f"chunk_{chunk:04d}.npz"


def _check_identity(config: PretrainDataConfig) -> None:
    """Refuse an ``output_dir`` made from another config (``chunks`` may differ); record this config's."""
    out = Path(config.output_dir)
    identity = {k: v for k, v in config.generation.items() if k != "chunks"}
    path = out / "identity.json"
    if path.exists():
        saved = json.loads(path.read_text())
        changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        if changed:
            raise ConfigError(f"{out} holds a set made with other settings ({', '.join(changed)} differ); choose another output_dir")
    else:
        write_json(path, identity)


def generate(config: PretrainDataConfig, progress: bool = True) -> dict[str, Any]:
    """Make (or continue) the pre-training set of ``config``; returns its manifest (also ``manifest.json``)."""
    import torch
    from ase.io import read, write

    from symprobe.models.qtip4pf import qtip4pf

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_identity(config)
    model, g = qtip4pf(), config.generation
    begin, made = time.time(), 0
    state = None
    for chunk in range(g["chunks"]):
        cells_path, state_path = _chunk_paths(out, chunk)
        if state_path.exists():
            with np.load(state_path) as saved:
                state = {k: saved[k] for k in ("positions", "momenta")}
            continue
        cells, state = run_chunk(config, model, chunk, state, progress)
        with replacing(cells_path) as tmp:
            write(tmp, cells, format="extxyz")
        with replacing(state_path) as tmp:
            np.savez(tmp, **state)
        made += 1
        print(f"[{config.name}] chunk {chunk + 1}/{g['chunks']}: {len(cells)} cells, {time.time() - begin:.0f} s", flush=True)
    parts = [_chunk_paths(out, chunk)[0].read_bytes() for chunk in range(g["chunks"])]
    data = b"".join(parts)
    atomic_write(out / SET_FILE, data)
    cells = read(out / SET_FILE, index=":")
    manifest = {
        "name": config.name, "file": SET_FILE, "sha256": hashlib.sha256(data).hexdigest(), "cells": len(cells),
        "by_kind": {kind: sum(a.info["kind"] == kind for a in cells) for kind in ("md", "strained", "compressed")},
        "molecules_per_cell": g["molecules_per_side"] ** 3, "generation": g, "model": "q-TIP4P/F (builtin:qtip4pf)",
        "energy_per_atom_eV": _spread([a.get_potential_energy() / len(a) for a in cells]),
        "force_rms_eV_per_A": float(np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() for a in cells]) ** 2))),
        "pressure_GPa": _spread([-np.trace(a.get_stress(voigt=False)) / 3 * 160.21766 for a in cells]),
        "chunks_made_this_call": made, "wall_seconds_this_call": time.time() - begin, "torch_threads": torch.get_num_threads(),
        "units": "energies eV, forces eV/Å, stress eV/Å³ (ASE sign); pressure GPa",
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _spread(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}
