"""The study's stages: each a function of one :class:`Context` that returns a JSON-ready dict, run in the order of
:data:`STAGES` and cached by :class:`StageCache` (``out/stages/<name>.json``, written atomically when the stage
finishes; a rerun with the same key loads it instead of recomputing). MD runs live under ``md/<plan id>/`` and
resume from their checkpoints."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ase import Atoms

from symprobe import so3
from symprobe.analysis.observables import water_molecules
from symprobe.audit import audit, in_float64
from symprobe.files import write_json
from symprobe.models.base import Model
from symprobe.structures import density_g_cm3, read_structures, shared_data_dir
from symprobe.study import gas, ice, liquid
from symprobe.study.plan import FARMED_STAGES, ICE_GRIDS, Plan
from symprobe.study.tasks import StudyFarm, group_farm, ice_farm, task_id
from symprobe.study.variants import REPEAT, VARIANTS, GroupRunner, read_trajectory
from symprobe.symmetrize import GridAverage


class StageCache:
    """Stage cache in ``out/stages``: a finished stage's JSON is returned instead of recomputing it."""

    def __init__(self, out: Path, plan_key: str, progress: bool = True):
        self.out, self.plan_key, self.progress = Path(out), plan_key, progress
        self.timings: dict[str, float] = {}
        self.computed: list[str] = []

    def path(self, name: str) -> Path:
        """The JSON file of stage ``name``: ``OUT/stages/NAME.json``."""
        return self.out / "stages" / f"{name}.json"

    def run(self, name: str, compute: Callable[[], dict[str, Any]], key: str | None = None) -> dict[str, Any]:
        """The cached result of stage ``name`` (with matching ``key``), else ``compute()`` saved atomically."""
        key = key or self.plan_key
        path = self.path(name)
        if path.exists():
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                self.timings[name] = cached["seconds"]
                self._say(f"stage {name}: cached ({cached['seconds']:.0f} s when computed)")
                return cached["result"]
        self._say(f"stage {name}: running")
        begin = time.perf_counter()
        result = compute()
        seconds = time.perf_counter() - begin
        write_json(path, {"stage": name, "key": key, "seconds": seconds, "result": result})
        self.timings[name] = seconds
        self.computed.append(name)
        self._say(f"stage {name}: done in {seconds:.0f} s")
        return result

    def _say(self, message: str) -> None:
        if self.progress:
            print(f"[study] {message}", flush=True)


@dataclass
class Context:
    """What every stage needs: the model (and the invariant control, if any), the plan, where MD runs live."""

    model: Model
    plan: Plan
    md_root: Path
    progress: bool = True
    control: Model | None = None
    control_info: dict[str, Any] | None = None
    farm: StudyFarm | None = None  # MD groups as tasks (symprobe.study.tasks), in turn or on a cluster

    def frames(self, stage: str, group: str) -> list[Atoms]:
        """The trajectory of MD group ``group`` of ``stage`` (:meth:`run`)."""
        return read_trajectory(self.run(stage, group))

    def run(self, stage: str, group: str) -> Path:
        """The directory of MD group ``group`` (``raw``, ``raw/0``) of ``stage``: in ``md_root/STAGE`` where all groups
        ran together, or in the group's task directory (farmed stages)."""
        if self.farm is None or stage not in FARMED_STAGES:
            return self.md_root / stage / group
        return self.tasks(stage) / task_id(stage, group) / group

    def tasks(self, stage: str) -> Path:
        """Where the tasks of a farmed stage (MD groups, ice cells) live."""
        return self.md_root / f"{stage}_tasks"

    def runner(self, stage: str) -> GroupRunner | None:
        """The ``runner`` of a farmed stage's MD (None: all groups together here)."""
        return None if self.farm is None else group_farm(self.farm, self.tasks(stage), stage)


def gas_nve(c: Context) -> dict[str, Any]:
    """Angular momentum of isolated molecules in NVE, every variant, and a second raw set (the null comparison)."""
    p = c.plan
    return gas.angular_momentum_runs(c.model, c.md_root / "gas_nve", (*VARIANTS, REPEAT), n_molecules=p.gas_nve_molecules,
                                     steps=p.gas_nve_steps, grid=p.grid, n_inner=p.n_inner, mts_grid=p.mts_grid,
                                     seed=p.seed, trajectory_stride=4, progress=c.progress, runner=c.runner("gas_nve"))


def gas_torque(c: Context) -> dict[str, Any]:
    """RMS torque on raw-NVE molecules against the grid: the paper's grids and the smallest rules of degree 1–6."""
    grids = [so3.paper_grid(label) for label in so3.PAPER_LABELS]
    names = {q.name for q in grids}
    for degree in range(1, 7):
        q = so3.smallest(degree, improper=True)
        if q.name not in names:
            grids.append(q)
            names.add(q.name)
    return gas.torque_convergence(in_float64(c.model), c.frames("gas_nve", "raw"), grids, c.plan.torque_samples, c.plan.seed)


def gas_orientation_grid(c: Context) -> dict[str, Any]:
    """The molecule's static orientation-energy profile against the paper's grids (float64)."""
    grids = [so3.paper_grid(label) for label in so3.PAPER_LABELS]
    return gas.orientation_energy_convergence(in_float64(c.model), c.frames("gas_nve", "raw"), grids, c.plan.orientation_snapshots)


def gas_spectra(c: Context) -> dict[str, Any]:
    """Power spectra of V and of V − V_averaged along the raw NVE trajectory."""
    averaged = GridAverage(c.model, so3.paper_grid(c.plan.grid))
    return gas.potential_spectra(c.model, averaged, c.frames("gas_nve", "raw"), timestep_fs=2.0)


def gas_nvt(c: Context) -> dict[str, Any]:
    """Orientation maps of isolated molecules in Langevin NVT, every variant, and a second raw set (the null
    comparison; once it passes, the raw bias is measured on both sets pooled)."""
    p = c.plan
    return gas.orientation_runs(c.model, c.md_root / "gas_nvt", (*VARIANTS, REPEAT), n_molecules=p.gas_nvt_molecules,
                                n_averaged_molecules=p.gas_nvt_averaged_molecules, steps=p.gas_nvt_steps, grid=p.grid,
                                seed=p.seed, trajectory_stride=10, bandwidth=p.gas_bandwidth, n_inner=p.n_inner,
                                mts_grid=p.mts_grid, progress=c.progress, runner=c.runner("gas_nvt"))


def liquid_stage(c: Context) -> dict[str, Any]:
    """Liquid water: independent boxes per variant (and a second raw set, the null comparison), compared."""
    p, n = c.plan, c.plan.liquid_replicas
    boxes = [liquid_start(c.md_root, p, c.progress, k) for k in range(2 * n)]
    starts = {v: [box for box, _ in (boxes[n:] if v == REPEAT else boxes[:n])] for v in p.liquid_variants}
    data = liquid.liquid_runs(c.model, starts, c.md_root / "liquid", steps=p.liquid_steps,
                              equilibration_steps=p.liquid_equilibration, grid=p.grid, n_inner=p.n_inner,
                              mts_grid=p.mts_grid, seed=p.seed, trajectory_stride=p.liquid_stride, n_blocks=8,
                              progress=c.progress, runner=c.runner("liquid"))
    data["start"] = [description for _, description in boxes[:n]]
    data["repeat_start"] = [description for _, description in boxes[n:]]
    data.update(liquid.compare_variants(data))
    return data


def rotational_errors(c: Context) -> dict[str, Any]:
    """The paper's rotational-error table (see :func:`rotational_error_table`)."""
    return rotational_error_table(c.model, c.plan, c.run("liquid", f"{c.plan.liquid_variants[0]}/0"), c.run("gas_nve", "raw"))


def ice_stage(c: Context) -> dict[str, Any]:
    """Relative energies of proton-disordered ice cells, raw against averaged, relaxed with each."""
    p = c.plan
    cells, description = ice.ice_cells(p.ice_frames)
    if not cells:
        return {"skipped": description}
    grids = [so3.paper_grid(label) for label in ICE_GRIDS]
    if c.farm is None:
        averaged = GridAverage(c.model, so3.paper_grid(p.grid))
        data = ice.ice_study(c.model, averaged, cells, p.ice_fmax, p.ice_max_steps, grids, in_float64(c.model))
    else:
        farmed = ice_farm(c.farm, c.tasks("ice"), cells, p.grid, p.ice_fmax, p.ice_max_steps, ICE_GRIDS)
        data = ice.combined_cells(farmed, p.ice_fmax, p.ice_max_steps, grids)
    data["source"] = description
    return data


def control_stage(c: Context) -> dict[str, Any]:
    """The invariant control model through the gas NVE run and the torque: both must sit at round-off."""
    if c.control is None:
        return {"skipped": "no invariant control model (the twin is used when the model is the bundled water-pet)"}
    p = c.plan
    nve = gas.angular_momentum_runs(c.control, c.md_root / "control_nve", ("raw",), n_molecules=p.gas_nve_molecules,
                                    steps=min(p.gas_nve_steps, 2000), grid=p.grid, n_inner=p.n_inner,
                                    seed=p.seed, trajectory_stride=4, progress=c.progress)
    torques = gas.torque_convergence(in_float64(c.control), c.frames("control_nve", "raw"),
                                     [so3.paper_grid("0"), so3.paper_grid("2i")], min(p.torque_samples, 8), p.seed)
    return {"model": c.control_info, "gas_nve": nve, "torque": torques}


STAGES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "gas_nve": gas_nve, "gas_torque": gas_torque, "gas_orientation_grid": gas_orientation_grid, "gas_spectra": gas_spectra,
    "gas_nvt": gas_nvt, "liquid": liquid_stage, "rotational_errors": rotational_errors, "ice": ice_stage,
    "control": control_stage}  # in the order they run; "costs" (plan.measure_costs) runs before them


def shared_liquid_cells(limit: int) -> Iterator[tuple[int, Atoms]]:
    """(frame index, cell) of the first ``limit`` frames of the shared revPBE0-D3 liquid test set that hold only
    intact H2O in O, H, H order (none without the shared data)."""
    data = shared_data_dir()
    path = None if data is None else data / "liquid" / "cheng2019_revPBE0-D3_liquid_test190.extxyz"
    if path is None or not path.exists():
        return
    for k, atoms in enumerate(read_structures(path)[:limit]):
        if len(water_molecules(atoms).triples) == len(atoms) // 3 and (atoms.numbers.reshape(-1, 3) == [8, 1, 1]).all():
            atoms.calc = None
            yield k, atoms


def liquid_start(md_root: Path, plan: Plan, progress: bool, index: int = 0) -> tuple[Atoms, str]:
    """(box, description) of the ``index``-th independent liquid start: the shared 512 box (full; from index 1 on,
    after its own q-TIP4P/F equilibration), the index-th shared revPBE0-D3 liquid snapshot of 64 intact H2O at
    0.95–1.05 g/cm³ (quick, when present), else a generated box pre-equilibrated with q-TIP4P/F (seed + index)."""
    if plan.quick:
        dense = [(k, atoms) for k, atoms in shared_liquid_cells(62) if 0.95 < density_g_cm3(atoms) < 1.05]
        if index < len(dense):
            k, start = dense[index]
            start.info = {"name": f"revPBE0-D3 liquid snapshot {k}"}
            return start, f"an equilibrated revPBE0-D3 liquid snapshot (shared data test set, frame {k}, 64 intact H2O)"
    return liquid.starting_box(md_root / ("liquid_start" if index == 0 else f"liquid_start_{index}"), plan.liquid_n_per_side,
                               plan.liquid_shared_512, plan.liquid_pre_steps, plan.seed + index, progress, fresh=index > 0)


def rotational_error_table(model: Model, plan: Plan, liquid_run: Path, gas_run: Path) -> dict[str, Any]:
    """Mean absolute deviation of the raw and coarse-grid predictions from the reference grid's average
    (the paper's measure) on test cells, bulk MD frames (of the liquid run in ``liquid_run``) and isolated molecules
    (of the gas run in ``gas_run``), per grid label, from one audit per set (:func:`~symprobe.audit.audit`), which
    also gives each set's breaking by channel (proper rotations, inversion) and its verdict."""
    model = in_float64(model)
    labels = [label for label in ("0", "i", "2", "2i", "3") if label != plan.error_reference]
    candidates = [so3.paper_grid(label) for label in labels]
    reference = so3.paper_grid(plan.error_reference)
    sets: dict[str, list] = {"test cells": [atoms for _, atoms in shared_liquid_cells(190)][: plan.error_cells]}
    frames = read_trajectory(liquid_run)
    sets["bulk MD"] = frames[-1 :: -max(1, len(frames) // plan.error_cells)][: plan.error_cells]
    gas_frames = read_trajectory(gas_run)
    sets["isolated molecule"] = [
        Atoms(frame.numbers[:3], positions=frame.get_positions()[3 * (k % 2): 3 * (k % 2) + 3], pbc=False)
        for k, frame in ((k, gas_frames[(k * 7) % len(gas_frames)]) for k in range(min(4 * plan.error_cells, 8)))]
    table: dict[str, Any] = {"reference": reference.name, "sets": {}}
    for name, structures in sets.items():
        if not structures:
            continue
        report = audit(model, structures, grid=reference, lmax=1, convergence_grids=candidates)
        table["sets"][name] = {
            "n_structures": len(structures),
            "rows": [{"grid": label, "evaluations": row["evaluations"], "energy_meV": row["energy_mae_meV"],
                      "force_meV_per_A": row["force_mae_meV_per_A"]} for label, row in zip(labels, report.convergence)],
            "channels": report.summary["channels"], "verdict": report.summary["verdict"],
        }
    return table
