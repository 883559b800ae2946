"""Issue 13: throughput of the batched engine against the paths it replaces, every ratio measured in one run.

Parts (each writes its rows into ``--out`` as it finishes, so a run can be done in pieces with ``--parts``):

- (a) gas phase: 64 independent water molecules with the bundled model, NVE at 0.5 fs. Simulated
  molecule-picoseconds per wall-second: one batched state against one ASE run per molecule (the ASE
  rate is measured on ``--ase-molecules`` of them, one after another).
- (b) the 64-molecule liquid: MD steps per second, batched engine against ASE's velocity Verlet; and 4 liquid
  replicas in one state against 4 batched runs one after another.
- (c) the study's four gas variants (raw, 2i average, random rotation, MTS 2i/10) on ``--gas-molecules``
  molecules each, stepped together against one variant after another.
- (d) raw throughput (energy + forces, atom-steps per second) at 192 and 1536 atoms for the PET-style model,
  its twin and q-TIP4P/F; and the model averaged over O+i (48 copies) in one call against 48 raw calls.
- (e) a metatomic model (the bundled model exported) averaged over the rotations of metatomic's
  ``SymmetrizedCalculator`` (l_max = 3): ours (one call, one neighbour list per structure) against theirs.
- (sweep) seconds per copy against the memory budget of a pass (``SYMPROBE_CPU_PASS_MB``), which sets
  :data:`symprobe.models.device.CPU_PASS_BYTES`.

Every part records the device, torch's thread count and the load average before and after. Measure on an
otherwise idle machine. ``--device cuda`` runs the same on a GPU (part (f) of the issue, via gpu_check.py).

    python benchmarks/engine_throughput.py --out results/engine_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from symprobe import so3
from symprobe.files import save_figure, write_json
from symprobe.md.ase_engine import NVE
from symprobe.md.batched import BatchedDynamics, Replica
from symprobe.md.run import thermalized
from symprobe.models.device import device_name, resolve_device
from symprobe.models.external import load_model
from symprobe.structures import water_box
from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation

PARTS = ("a", "b", "c", "d", "e", "sweep")
TARGETS = {"a": 10.0, "b": 1.5, "e": 2.0}  # the goals for the headline ratios


def context(device: torch.device) -> dict[str, Any]:
    return {"device": device_name(device), "torch_threads": torch.get_num_threads(), "load_before": os.getloadavg()}


def finish(row: dict[str, Any]) -> dict[str, Any]:
    row["load_after"] = os.getloadavg()
    return row


def timed(call: Callable[[], Any], repeats: int = 1, sync: torch.device | None = None) -> float:
    """Seconds per call (after two warm-up calls: TorchScript optimises on its second run)."""
    call()
    call()
    if sync is not None and sync.type == "cuda":
        torch.cuda.synchronize(sync)
    begin = time.perf_counter()
    for _ in range(repeats):
        call()
    if sync is not None and sync.type == "cuda":
        torch.cuda.synchronize(sync)
    return (time.perf_counter() - begin) / repeats


def steps_per_second(dyn: BatchedDynamics, steps: int) -> float:
    for _ in range(3):
        dyn.step()  # warm-up: neighbour lists, first passes
    begin = time.perf_counter()
    for _ in range(steps):
        dyn.step()
    if dyn.device.type == "cuda":
        torch.cuda.synchronize(dyn.device)
    return steps / (time.perf_counter() - begin)


def ase_steps_per_second(atoms, model, steps: int) -> float:
    atoms = atoms.copy()
    atoms.calc = model.as_calculator()
    from ase import units

    dyn = NVE(atoms, 0.5 * units.fs)
    dyn.step()
    begin = time.perf_counter()
    for _ in range(steps):
        dyn.step()
    return steps / (time.perf_counter() - begin)


def gas(n: int, seed: int = 0):
    from symprobe.study.gas import isolated_molecules, with_molecular_momenta

    return with_molecular_momenta(isolated_molecules(n, seed), 300.0, seed)


def part_a(model, device, steps: int, ase_molecules: int) -> dict[str, Any]:
    row = context(device)
    molecules = gas(64)
    batched = steps_per_second(BatchedDynamics([Replica(m, model) for m in molecules], 0.5), steps)
    ase = np.mean([ase_steps_per_second(m, model, steps) for m in molecules[:ase_molecules]])
    ps = 0.5e-3
    row.update(molecules=64, steps=steps, ase_molecules_timed=ase_molecules,
               batched_molecule_ps_per_s=64 * batched * ps, ase_molecule_ps_per_s=ase * ps,
               ratio=64 * batched / ase, target=TARGETS["a"])
    return finish(row)


def part_b(model, device, steps: int) -> dict[str, Any]:
    row = context(device)
    box = thermalized(water_box(4, seed=1), 300.0, 1)
    batched = steps_per_second(BatchedDynamics([Replica(box, model)], 0.5), steps)
    ase = ase_steps_per_second(box, model, steps)
    four = steps_per_second(BatchedDynamics([Replica(thermalized(box, 300.0, k), model) for k in range(4)], 0.5), steps)
    row.update(molecules=64, steps=steps, batched_steps_per_s=batched, ase_steps_per_s=ase, ratio=batched / ase,
               target=TARGETS["b"], four_replicas_one_state_replica_steps_per_s=4 * four,
               four_replicas_one_after_another_replica_steps_per_s=batched, four_replicas_ratio=4 * four / batched)
    return finish(row)


def variants(model, molecules):
    grid, mts = so3.paper_grid("2i"), so3.paper_grid("2i")
    made = {"raw": [], "averaged": [], "random": [], "mts": []}
    for k, m in enumerate(molecules):
        made["raw"].append(Replica(m, model))
        made["averaged"].append(Replica(m, GridAverage(model, grid)))
        made["random"].append(Replica(m, RandomRotation(model, k, True)))
        made["mts"].append(Replica(m, model, AveragingCorrection(model, mts), 10))
    return made


def part_c(model, device, steps: int, n_molecules: int) -> dict[str, Any]:
    row = context(device)
    made = variants(model, gas(n_molecules))
    together = steps_per_second(BatchedDynamics([r for rs in made.values() for r in rs], 0.5), steps)
    alone = {name: steps_per_second(BatchedDynamics(rs, 0.5), steps) for name, rs in made.items()}
    sequential = 1.0 / sum(1.0 / rate for rate in alone.values())  # steps of all four per second, one after another
    row.update(molecules_per_variant=n_molecules, steps=steps, together_steps_per_s=together,
               one_after_another_steps_per_s=sequential, alone_steps_per_s=alone, ratio=together / sequential)
    return finish(row)


def part_d(device, repeats: int) -> dict[str, Any]:
    row = context(device)
    rows = []
    specs = {"water-pet (float32)": ("builtin:water-pet", None), "water-pet-twin (float32)": ("builtin:water-pet-twin", None),
             "q-TIP4P/F (float64)": ("builtin:qtip4pf", None)}
    for name, (spec, dtype) in specs.items():
        model = load_model(spec, dtype=dtype, device=device)
        for n in (4, 8):
            box = water_box(n, seed=1)
            seconds = timed(lambda: model.predict(box), repeats, device)
            rows.append({"model": name, "atoms": len(box), "seconds_per_call": seconds, "atom_steps_per_s": len(box) / seconds})
    model = load_model("builtin:water-pet", device=device)
    box = water_box(4, seed=1)
    grid = so3.with_inversion(so3.group("O"))
    averaged = timed(lambda: GridAverage(model, grid).predict(box), max(1, repeats // 2), device)
    single = timed(lambda: model.predict(box), repeats, device)
    row.update(raw=rows, averaged_O_i={"atoms": len(box), "copies": len(grid), "one_call_s": averaged,
                                        "copies_times_raw_call_s": len(grid) * single, "ratio": len(grid) * single / averaged})
    return finish(row)


def part_e(device, repeats: int) -> dict[str, Any]:
    import tempfile

    from ase.calculators.calculator import all_changes
    from metatomic_ase import MetatomicCalculator, SymmetrizedCalculator

    from symprobe.models.export import export_metatomic
    from symprobe.models.external import MetatomicModel
    from symprobe.structures import water_monomer

    row = context(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_metatomic(load_model("builtin:water-pet"), Path(tmp) / "water-pet.pt")
        theirs = SymmetrizedCalculator(MetatomicCalculator(str(path), device=str(device)), l_max=3)
        rotations = np.asarray(theirs.quadrature_rotations, dtype=np.float64)
        weights = np.asarray(theirs.quadrature_weights, dtype=np.float64)
        ours = GridAverage(MetatomicModel(path, device=device), so3.Quadrature("metatomic-ase-lmax3", rotations, weights / weights.sum(), 0))
        for name, atoms in (("water monomer", water_monomer()), ("64-molecule box", water_box(4, seed=1))):
            def theirs_call(atoms=atoms):
                theirs.calculate(atoms.copy(), ["energy", "forces"], all_changes)
                return theirs.results["energy"], theirs.results["forces"]

            ours_s = timed(lambda: ours.predict(atoms), repeats, device)
            theirs_s = timed(theirs_call, repeats, device)
            e_ours, (e_theirs, f_theirs) = ours.predict(atoms), theirs_call()
            rows.append({"structure": name, "atoms": len(atoms), "rotations": len(rotations), "ours_s": ours_s, "theirs_s": theirs_s,
                         "ratio": theirs_s / ours_s, "energy_difference_eV": abs(e_ours.energy - float(e_theirs)),
                         "force_difference_eV_per_A": float(np.abs(e_ours.forces - np.asarray(f_theirs)).max())})
    row.update(rows=rows, target=TARGETS["e"])
    return finish(row)


def part_sweep(device, repeats: int) -> dict[str, Any]:
    row = context(device)
    model = load_model("builtin:water-pet", device=device)
    box, grid = water_box(4, seed=1), so3.with_inversion(so3.group("O"))
    molecules = gas(64)
    rows = []
    for mb in (4, 16, 32, 64, 128, 256, 1024):
        os.environ["SYMPROBE_CPU_PASS_MB"] = str(mb)
        box_s = timed(lambda: model.predict_rotated(box, grid.rotations), repeats, device)
        gas_s = timed(lambda: model.predict_many(molecules, [grid.rotations] * len(molecules)), repeats, device)
        rows.append({"pass_MB": mb, "box_O_i_seconds_per_copy": box_s / len(grid), "gas_O_i_seconds_per_copy": gas_s / (64 * len(grid))})
    os.environ.pop("SYMPROBE_CPU_PASS_MB")
    row.update(rows=rows, activation_bytes_per_unit=model.activation_bytes)
    return finish(row)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.2, 1]})
    labels, ratios, goals = [], [], []
    if "a" in data:
        labels.append("(a) 64 molecules, batched vs one ASE run each"), ratios.append(data["a"]["ratio"]), goals.append(TARGETS["a"])
    if "b" in data:
        labels.append("(b) liquid 64 H2O, batched vs ASE"), ratios.append(data["b"]["ratio"]), goals.append(TARGETS["b"])
        labels.append("(b) 4 liquid replicas, one state vs in turn"), ratios.append(data["b"]["four_replicas_ratio"]), goals.append(None)
    if "c" in data:
        labels.append("(c) 4 gas variants, together vs in turn"), ratios.append(data["c"]["ratio"]), goals.append(None)
    if "d" in data:
        labels.append("(d) O+i average, one call vs 48 calls"), ratios.append(data["d"]["averaged_O_i"]["ratio"]), goals.append(None)
    for r in data.get("e", {}).get("rows", []):
        labels.append(f"(e) metatomic, {r['structure']}: ours vs theirs"), ratios.append(r["ratio"]), goals.append(TARGETS["e"])
    y = np.arange(len(ratios))[::-1]
    left.barh(y, ratios, color="tab:blue")
    first_goal = next((k for k, goal in enumerate(goals) if goal is not None), None)
    for k, (row, goal) in enumerate(zip(y, goals)):
        if goal is not None:
            left.plot([goal, goal], [row - 0.4, row + 0.4], color="tab:red", lw=2.5, label="goal" if k == first_goal else None)
        left.text(ratios[k] * 1.05, row, f"{ratios[k]:.2f}x", va="center", fontsize=8)
    left.axvline(1.0, color="gray", lw=0.8)
    left.set_yticks(y, labels, fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("speed-up (×, log scale; 1 = no gain)")
    left.set_title(f"batched engine against the one-at-a-time path, {data.get('device', '')}")
    left.legend(loc="lower right")
    if "sweep" in data:
        rows = data["sweep"]["rows"]
        mb = [r["pass_MB"] for r in rows]
        right.plot(mb, [1e3 * r["box_O_i_seconds_per_copy"] for r in rows], "o-", label="64-molecule box, O+i (48 copies)")
        right.plot(mb, [1e6 * r["gas_O_i_seconds_per_copy"] for r in rows], "s-", label="64 molecules × O+i (µs per copy)")
        right.set_xscale("log")
        right.set_xlabel("memory budget of one pass (MB)")
        right.set_ylabel("wall time per copy (ms; µs for molecules)")
        right.set_title("pass size on this device")
        right.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/engine_throughput.json"))
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=40, help="timed MD steps per measurement")
    parser.add_argument("--ase-molecules", type=int, default=4)
    parser.add_argument("--gas-molecules", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"--parts: unknown {sorted(unknown)} (known: {', '.join(PARTS)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.update(device=device_name(device), units={"molecule_ps_per_s": "simulated molecule-picoseconds per wall second",
                                                   "atom_steps_per_s": "atoms × energy+force calls per second"})
    model = load_model("builtin:water-pet", device=device)
    run = {"a": lambda: part_a(model, device, args.steps, args.ase_molecules), "b": lambda: part_b(model, device, args.steps),
           "c": lambda: part_c(model, device, args.steps, args.gas_molecules), "d": lambda: part_d(device, args.repeats),
           "e": lambda: part_e(device, args.repeats), "sweep": lambda: part_sweep(device, args.repeats)}
    for part in parts:
        print(f"part {part} ...", flush=True)
        data[part] = run[part]()
        print(json.dumps(data[part], indent=1)[:1500], flush=True)
        write_json(args.out, data)
    plot(data, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
