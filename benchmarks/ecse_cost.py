"""Cost of exact smooth symmetrization (ECSE) against the raw model and a 36-rotation batched grid average.

For an isolated water molecule and a 64-molecule periodic box, with the anisotropic q-TIP4P/F known-answer
model (float64) and the bundled PET-style model (float32, when it is installed), on ``--device`` (cpu, cuda or
cuda:N; default cpu; ECSE's frames are built on the CPU): wall time per
energy+forces evaluation of the raw model, of one batched
``predict_rotated`` call with 36 rotations (what a grid average costs), and of ECSE with and without
pruning (mean of two single calls); the number of frames ECSE used; and the rotational deviation
|E(Rx) − E(x)| for one random rotation, raw and symmetrized. Writes JSON (atomically) to ``--output``.

    python benchmarks/ecse_cost.py --output results/ecse_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from symprobe.symmetrize.ecse import ECSE
from symprobe.files import atomic_write
from symprobe.models.device import DeviceError, device_name, resolve_device
from symprobe.models.pet import pet_model
from symprobe.structures import rotate, water_box, water_monomer
from symprobe.testing import anisotropic_qtip4pf, random_rotations


def best_time(call, repeats: int) -> float:
    """Smallest wall time (s) of ``repeats`` calls (after one warm-up call)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def timed(call) -> tuple[float, object]:
    """(wall time in s, result) of one call."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def measure(name: str, atoms, model, repeats: int) -> dict:
    grid = random_rotations(36, seed=5)
    rotation = random_rotations(1, seed=11)[0]
    raw_time = best_time(lambda: model.predict(atoms), repeats)
    grid_time = best_time(lambda: model.predict_rotated(atoms, grid), repeats)
    raw_rotated = model.predict(rotate(atoms, rotation)).energy
    row = {
        "structure": name,
        "atoms": len(atoms),
        "raw_s": raw_time,
        "grid36_batched_s": grid_time,
        "raw_rotational_deviation_eV": abs(raw_rotated - model.predict(atoms).energy),
        "ecse": [],
    }
    for num_prunings in (0, 4):
        ecse = ECSE(model, num_prunings=num_prunings)
        # two single calls (ECSE on the box is slow): x and R x; their mean time, their energy difference
        t0, plain = timed(lambda: ecse.predict(atoms))
        t1, rotated = timed(lambda: ecse.predict(rotate(atoms, rotation)))
        seconds = 0.5 * (t0 + t1)
        row["ecse"].append(
            {
                "num_prunings": num_prunings,
                "frames": len(ecse.frames(atoms)),
                "frame_construction_s": best_time(lambda: ecse.frames(atoms), repeats),
                "seconds": seconds,
                "relative_to_raw": seconds / raw_time,
                "relative_to_grid36": seconds / grid_time,
                "rotational_deviation_eV": abs(rotated.energy - plain.energy),
            }
        )
        print(name, row["ecse"][-1], flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("results/ecse_cost.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where models run: cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(f"--device: {error}")
    if args.threads:
        torch.set_num_threads(args.threads)
    known = anisotropic_qtip4pf({1: 0.05, 2: 0.03, 3: 0.02}, seed=0).converted(device=device)
    models = {known.name: (known, "float64")}
    try:
        models["water-pet"] = (pet_model("water-pet", dtype=torch.float32, device=device), "float32")
    except FileNotFoundError as missing:
        print(f"PET-style model not measured: {missing}")
    box = water_box(4, seed=0)
    rows = []
    for name, (model, dtype) in models.items():
        for row in (measure("water monomer", water_monomer(), model, args.repeats),
                    measure("water box 64 H2O", box, model, max(1, args.repeats // 2))):
            rows.append({"model": name, "dtype": dtype, **row})
    result = {
        "device": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "ecse_defaults": {"cutoff_A": 3.0, "cutoff_width_A": 0.2, "beta_per_A": 5.0, "collinearity": 0.2},
        "units": {"times": "s per energy+forces evaluation", "deviations": "eV"},
        "rows": rows,
    }
    atomic_write(args.output, json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
